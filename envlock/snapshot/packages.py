"""Pure: raw distribution facts from the probe -> lock packages with exact sources.

Sources follow PEP 610 (``direct_url.json``): a VCS checkout, an archive (wheel or
sdist, with its hash when recorded), a local directory, or an editable install.
Without ``direct_url.json`` a distribution came from a package index (or, for a
few installers, from conda or the OS vendor). Duplicates are resolved in
``sys.path`` order, exactly as ``import`` would; the losers are kept in the lock
as *shadowed* so that nothing is silently dropped.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from envlock.model.lockfile import Package, Shadowed, Source, normalize
from envlock.model.redact import strip_url_credentials

_LOCAL_CHANNEL = re.compile(r"\+(cu\d{2,3}|cpu|rocm\d+(?:\.\d+)*|xpu)$")
#: Packages published with ``+cuXXX``-style builds on the PyTorch index.
PYTORCH_INDEX_PACKAGES = frozenset(
    {"torch", "torchvision", "torchaudio", "torchtext", "torchdata", "torchrec", "fbgemm-gpu",
     "triton", "pytorch-triton", "pytorch-triton-rocm", "xformers", "torch-tensorrt"}
)
PYTORCH_INDEX = "https://download.pytorch.org/whl/"
SYSTEM_LOCATIONS = ("/usr/lib/python3/dist-packages", "/usr/lib/python3/site-packages")


@dataclass
class Resolved:
    packages: list[Package] = field(default_factory=list)
    shadowed: list[Shadowed] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def file_url_path(url: str) -> str:
    return unquote(urlsplit(url).path)


def _parse_direct_url(text: str | None) -> dict[str, Any] | None:
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) and "url" in data else None


def _archive_hash(info: dict[str, Any]) -> str | None:
    hashes = info.get("hashes") or {}
    if "sha256" in hashes:
        return f"sha256:{hashes['sha256']}"
    legacy = info.get("hash")  # "sha256=<hex>" (PEP 610 before hashes existed)
    if isinstance(legacy, str) and "=" in legacy:
        algo, _, value = legacy.partition("=")
        return f"{algo}:{value}"
    return None


def source_from_direct_url(data: dict[str, Any]) -> Source:
    url = strip_url_credentials(data["url"]) or ""
    subdirectory = data.get("subdirectory")
    if "vcs_info" in data:
        vcs = data["vcs_info"]
        return Source(kind="vcs", url=url, vcs=vcs.get("vcs"), commit=vcs.get("commit_id"),
                      requested_revision=vcs.get("requested_revision"), subdirectory=subdirectory)
    if "archive_info" in data:
        path = file_url_path(url) if url.startswith("file:") else None
        return Source(kind="archive", url=url, path=path, hash=_archive_hash(data["archive_info"]),
                      subdirectory=subdirectory)
    editable = bool((data.get("dir_info") or {}).get("editable"))
    path = file_url_path(url) if url.startswith("file:") else url
    return Source(kind="editable" if editable else "directory", url=url, path=path,
                  subdirectory=subdirectory)


def index_url_for(name: str, version: str, default_index: str | None) -> str | None:
    """The index a pinned build comes from: ``+cu121`` torch only exists on the PyTorch index."""
    match = _LOCAL_CHANNEL.search(version)
    if match and name in PYTORCH_INDEX_PACKAGES:
        return PYTORCH_INDEX + match.group(1)
    return default_index


def classify(raw: dict[str, Any], site_dirs: Iterable[str], default_index: str | None) -> Source:
    """The exact source of one installed distribution."""
    direct = _parse_direct_url(raw.get("direct_url"))
    if direct is not None:
        return source_from_direct_url(direct)
    installer = (raw.get("installer") or "").lower()
    location = raw["location"]
    if raw["kind"] == "egg-info" and location not in set(site_dirs):
        # ``setup.py develop`` / legacy editable: metadata sits in the source tree on sys.path.
        return Source(kind="editable", path=location, url=f"file://{location}")
    if installer == "conda":
        return Source(kind="conda")
    if location.startswith(SYSTEM_LOCATIONS) or installer in {"debian", "dpkg", "rpm"}:
        return Source(kind="system")
    name = normalize(raw["name"])
    return Source(kind="index", url=index_url_for(name, raw["version"], default_index))


def _preference(raw: dict[str, Any]) -> tuple[int, int]:
    """Lower sorts first: sys.path order, then dist-info over stale egg-info in one dir."""
    return (raw["order"], 0 if raw["kind"] == "dist-info" else 1)


def resolve(raws: list[dict[str, Any]], site_dirs: Iterable[str],
            default_index: str | None = None) -> Resolved:
    """Pick the distribution ``import`` would use for each name; keep the rest as shadowed."""
    out = Resolved()
    sites = list(site_dirs)
    winners: dict[str, dict[str, Any]] = {}
    for raw in sorted(raws, key=_preference):
        if not raw.get("name") or not raw.get("version"):
            out.problems.append(f"{raw['location']}/{raw['dir']}: no Name/Version in its metadata")
            out.shadowed.append(Shadowed(name=raw.get("name") or raw["dir"],
                                         version=raw.get("version") or "", location=raw["location"],
                                         dir=raw["dir"], reason="unreadable metadata"))
            continue
        name = normalize(raw["name"])
        if name in winners:
            kept = winners[name]
            reason = f"shadowed by {kept['dir']} in {kept['location']}"
            out.shadowed.append(Shadowed(name=name, version=raw["version"],
                                         location=raw["location"], dir=raw["dir"], reason=reason))
            continue
        winners[name] = raw
    for name in sorted(winners):
        raw = winners[name]
        out.packages.append(Package(
            name=name, version=raw["version"], source=classify(raw, sites, default_index),
            installer=raw.get("installer"), location=raw["location"], dist_dir=raw["dir"],
            requested=bool(raw.get("requested")), files_digest=raw.get("files_digest"),
        ))
    out.shadowed.sort(key=lambda s: (s.name, s.location, s.dir))
    return out


def with_origins(pkgs: Iterable[Package], origins: dict[str, str]) -> list[Package]:
    """Name the origin of each package that is a rebuild of its index release
    (``origins``: name -> the file it was installed from; see ``snapshot.rebuilt``)."""
    from dataclasses import replace

    return [replace(p, source=replace(p.source, origin=origins[p.name]))
            if p.name in origins else p for p in pkgs]
