"""Pure: canonical OCI image configs and manifests, so the same layers give the same ids.

An assembled image's config is its parent's plus one layer's ``diff_id``, the recipe's
instructions applied to the run settings (ENV, LABEL, WORKDIR, USER, CMD, ENTRYPOINT, as
``docker commit --change`` would), a history entry and a creation time that comes from
the inputs. Nothing of a build host goes in (no container id, hostname or wall clock),
and the bytes are canonical JSON: the image id (the sha256 of the config) and the
manifest digest depend on nothing but the inputs.
"""

from __future__ import annotations

import json
import re
from typing import Any

from envlock.image import oci


def config_bytes(config: dict[str, Any]) -> bytes:
    """Canonical JSON (sorted keys, no spaces): the bytes whose sha256 is the image id."""
    return oci.canonical_json(config)


# ---------------------------------------------------------------- assembled images

_ENV = re.compile(r'ENV (\S+?)=(?:"(.*)"|(\S*))\Z', re.S)
_LABEL = re.compile(r'LABEL "(.*?)"="(.*)"\Z', re.S)
#: Docker's layer media types and their OCI names (same bytes).
OCI_LAYER_TYPES = {
    "application/vnd.docker.image.rootfs.diff.tar.gzip": oci.OCI_LAYER + "+gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip":
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
}


def apply_changes(settings: dict[str, Any], changes: tuple[str, ...] | list[str]
                  ) -> dict[str, Any]:
    """The run settings (an image config's ``config``) after the Dockerfile instructions a
    recipe lists (ENV, LABEL, WORKDIR, USER, CMD, ENTRYPOINT) — what ``docker commit
    --change`` would give, without an engine."""
    out = dict(settings)
    for change in changes:
        keyword, _, rest = change.partition(" ")
        if keyword == "ENV" and (m := _ENV.match(change)):
            env = [e for e in out.get("Env") or [] if e.partition("=")[0] != m.group(1)]
            value = m.group(2) if m.group(2) is not None else m.group(3)
            out["Env"] = [*env, f"{m.group(1)}={value}"]
        elif keyword == "LABEL" and (m := _LABEL.match(change)):
            out["Labels"] = {**(out.get("Labels") or {}), m.group(1): m.group(2)}
        elif keyword == "WORKDIR":
            out["WorkingDir"] = rest
        elif keyword == "USER":
            out["User"] = rest
        elif keyword in ("CMD", "ENTRYPOINT"):
            value = json.loads(rest)
            key = "Cmd" if keyword == "CMD" else "Entrypoint"
            if value:
                out[key] = value
            else:
                out.pop(key, None)
        else:
            raise ValueError(f"unsupported recipe instruction: {change!r}")
    return out


def child_config(parent: dict[str, Any], changes: tuple[str, ...] | list[str], diff_id: str,
                 *, created: str, created_by: str) -> dict[str, Any]:
    """The config of an image that is ``parent`` plus one layer (``diff_id``) and the
    recipe's ``changes``; canonical: the same inputs give the same bytes."""
    config = {k: v for k, v in parent.items()
              if k not in ("container", "container_config", "docker_version", "id", "parent")}
    config["config"] = apply_changes(parent.get("config") or {}, changes)
    config["created"] = created
    config["history"] = [*(parent.get("history") or []),
                         {"created": created, "created_by": created_by}]
    rootfs = parent.get("rootfs") or {}
    config["rootfs"] = {"type": "layers", "diff_ids": [*(rootfs.get("diff_ids") or []),
                                                       diff_id]}
    config.setdefault("architecture", "amd64")
    config.setdefault("os", "linux")
    return config


def oci_descriptor(descriptor: dict[str, Any]) -> dict[str, Any]:
    """A base layer's descriptor with the OCI media type for its (unchanged) bytes."""
    out = {k: v for k, v in descriptor.items() if k in ("mediaType", "digest", "size", "urls")}
    out["mediaType"] = OCI_LAYER_TYPES.get(str(out.get("mediaType")), out.get("mediaType"))
    return out


def manifest(config: bytes, layers: list[dict[str, Any]],
             annotations: dict[str, str] | None = None) -> bytes:
    document: dict[str, Any] = {
        "schemaVersion": 2, "mediaType": oci.OCI_MANIFEST,
        "config": {"mediaType": oci.OCI_CONFIG, "digest": oci.sha256_digest(config),
                   "size": len(config)},
        "layers": layers,
    }
    if annotations:
        document["annotations"] = annotations
    return oci.canonical_json(document)
