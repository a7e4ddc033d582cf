"""Pure: Hugging Face hub cache entries, the pretrained weights a run loaded.

The hub cache keeps one folder per repository, ``models--ORG--NAME`` (``datasets--``,
``spaces--``), holding ``blobs/<hash>`` (the bytes), ``snapshots/<commit>/<file>`` (links
to the blobs, the paths a run opens) and ``refs/<branch>`` (the commit a branch named
when it was downloaded). A path inside a snapshot names the repository, the commit and
the file; the input pinned for it is the repository folder with that snapshot's files
and the refs that point at it, so the replay has the same folder at the same path and
``hf_hub_download(..., local_files_only=True)`` finds the same bytes. Loaders that bypass
Python's ``open`` (safetensors' mmap) are covered: the whole snapshot is pinned, not
only the files seen read.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

_PATH = re.compile(r"^(?P<root>.*)/(?P<folder>(?P<type>models|datasets|spaces)--(?P<name>[^/]+))"
                   r"/snapshots/(?P<commit>[0-9a-f]{40})(?:/(?P<file>.+))?$")
_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
_FOLDER = re.compile(r"/(?:models|datasets|spaces)--[^/]+/(?:snapshots|blobs|refs)/")


@dataclass(frozen=True)
class HubEntry:
    """One snapshot of a hub cache's repository (see the module docs)."""

    root: str  # the cache folder that holds the repository's folder
    folder: str  # models--ORG--NAME
    repo_type: str  # model | dataset | space
    repo_id: str  # ORG/NAME
    commit: str

    @property
    def path(self) -> str:
        """The repository's folder: what is pinned, and where the replay puts it."""
        return f"{self.root}/{self.folder}"

    @property
    def snapshot(self) -> str:
        """The snapshot's folder, relative to :attr:`path`."""
        return f"snapshots/{self.commit}"

    def facts(self, refs: Mapping[str, str]) -> dict[str, str]:
        """What the lock says of it: repository, type, commit, and the refs naming it."""
        named = sorted(r for r, c in refs.items() if c == self.commit)
        out = {"repo": self.repo_id, "type": self.repo_type, "revision": self.commit}
        if named:
            out["refs"] = ",".join(named)
        return out

    def carried(self, rel: str, refs: Mapping[str, str]) -> bool:
        """Whether the repository folder's file ``rel`` is part of this snapshot's input:
        the snapshot's files and the refs that point at its commit (not other snapshots,
        not ``blobs/``: the snapshot's files are their bytes)."""
        if rel.startswith(self.snapshot + "/"):
            return True
        return rel.startswith("refs/") and refs.get(rel[len("refs/"):]) == self.commit


def parse(path: str) -> HubEntry | None:
    """The hub snapshot an absolute path lies in (a file in it, or the snapshot folder)."""
    found = _PATH.match(path.rstrip("/"))
    if found is None:
        return None
    return HubEntry(root=found["root"], folder=found["folder"],
                    repo_type=_TYPES[found["type"]],
                    repo_id=found["name"].replace("--", "/"), commit=found["commit"])


def in_cache(path: str) -> bool:
    """Whether a path lies in a hub cache's repository folder (a snapshot, a blob, a ref)."""
    return _FOLDER.search(path) is not None


#: What a replay sets for a run that loaded hub models (see :func:`replay_env`).
REPLAY_ENV = ("HF_HUB_CACHE", "HF_HUB_OFFLINE")


def replay_env(folders: Iterable[str]) -> dict[str, str]:
    """The environment of a replay whose pinned hub repositories are mounted at
    ``folders`` (their paths in the container): ``HF_HUB_CACHE`` at the cache folder that
    holds them — the container's ``HOME`` is not the original's, so the default
    ``~/.cache/huggingface/hub`` would be empty — and ``HF_HUB_OFFLINE=1``, as a replay
    has no network by default and the pinned snapshot is what the run must load. Nothing
    when there are no such folders, or when they lie in more than one cache (the run
    then set its caches itself)."""
    roots = {folder.rstrip("/").rsplit("/", 1)[0] for folder in folders}
    if len(roots) != 1:
        return {}
    return {"HF_HUB_CACHE": roots.pop() or "/", "HF_HUB_OFFLINE": "1"}
