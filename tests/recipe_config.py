"""Read a published build recipe (Dockerfile text) back into the image config it states:
what the tests compare with the image that was really built."""

from __future__ import annotations

import json
import shlex
from typing import Any


def stages(dockerfile: str) -> dict[str, list[str]]:
    """The instructions of each ``FROM … AS name`` stage, comments and blanks left out."""
    out: dict[str, list[str]] = {}
    current = None
    for line in dockerfile.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if line.startswith("FROM "):
            current = line.split()[-1]
            out[current] = []
        elif current is not None:
            out[current].append(line)
    return out


def config(instructions: list[str]) -> dict[str, Any]:
    """Entrypoint, Cmd, Env, WorkingDir, User and Labels as Docker applies them."""
    conf: dict[str, Any] = {"Entrypoint": None, "Cmd": None, "Env": {}, "WorkingDir": "",
                            "User": "", "Labels": {}}
    for line in instructions:
        word, _, rest = line.partition(" ")
        if word in ("ENV", "LABEL"):
            key, _, value = rest.partition("=")
            target = conf["Env"] if word == "ENV" else conf["Labels"]
            target[shlex.split(key)[0]] = shlex.split(value)[0] if value else ""
        elif word in ("ENTRYPOINT", "CMD"):
            conf["Entrypoint" if word == "ENTRYPOINT" else "Cmd"] = json.loads(rest)
        elif word == "WORKDIR":
            conf["WorkingDir"] = rest
        elif word == "USER":
            conf["User"] = rest
    return conf
