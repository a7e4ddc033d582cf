"""Pure: a canonical OCI/Docker image config, so the same layers give the same image id.

``docker commit`` writes the committing container's id, hostname, labels and the wall
clock into the image config, so two builds of identical layers get different image ids
and registry digests. The environment image is re-stated here from what the engine
reports (``docker inspect`` + ``docker history``) with only what the image *is*: its
layers, its run settings and a fixed creation time. The bytes are canonical JSON, so the
image id (the sha256 of the config) depends on nothing but those.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from envlock.image import oci

#: The run settings an image config carries (Docker's ``container_config`` extras -
#: hostname, attach flags, the container's own image name - are not part of an image).
RUN_SETTINGS = ("User", "ExposedPorts", "Env", "Entrypoint", "Cmd", "Volumes", "WorkingDir",
                "Labels", "StopSignal", "Healthcheck", "Shell", "OnBuild")


def _iso(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def canonical_config(inspect: dict[str, Any], history: list[dict[str, Any]], *, created: str,
                     created_by: str, drop_labels: tuple[str, ...] = ()) -> dict[str, Any]:
    """The image config for the image ``inspect`` describes, with ``created`` as its time.

    ``history`` is the engine's (newest first); its newest entry is the layer being
    re-stated and is described by ``created_by`` instead of the committing command."""
    settings = inspect.get("Config") or {}
    run = {key: settings[key] for key in RUN_SETTINGS if settings.get(key) not in (None, "", {})}
    if "Labels" in run:
        run["Labels"] = {k: v for k, v in run["Labels"].items() if k not in drop_labels}
    diff_ids = list((inspect.get("RootFS") or {}).get("Layers") or [])
    older = [{"created": _iso(int(h.get("Created") or 0)),
              **({"created_by": h["CreatedBy"]} if h.get("CreatedBy") else {}),
              **({"comment": h["Comment"]} if h.get("Comment") else {}),
              **({"empty_layer": True} if not h.get("Size") else {})}
             for h in reversed(history[1:])]
    if sum(1 for h in older if not h.get("empty_layer")) != len(diff_ids) - 1:
        older = []  # sizes do not tell which entries made layers: say nothing rather than lie
    config: dict[str, Any] = {
        "architecture": inspect.get("Architecture") or "amd64",
        "os": inspect.get("Os") or "linux",
        "config": run,
        "created": created,
        "history": [*older, {"created": created, "created_by": created_by}],
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    if inspect.get("Variant"):
        config["variant"] = inspect["Variant"]
    return config


def config_bytes(config: dict[str, Any]) -> bytes:
    """Canonical JSON (sorted keys, no spaces): the bytes whose sha256 is the image id."""
    return oci.canonical_json(config)


def image_id(config: dict[str, Any]) -> str:
    return oci.sha256_digest(config_bytes(config))
