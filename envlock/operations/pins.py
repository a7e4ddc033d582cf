"""``envlock pins``: a lock's packages as ``requirements.txt`` (with ``--hash`` lines) or
PEP 751 ``pylock.toml``, so pip and uv reproduce the package set without envlock.

The hashes are those of the wheels envlock verifies: pip picks, for the lock's exact
Python and platform, the wheel the index serves (its installation report names the
file, its URL and the index's sha256, nothing installed); that wheel is taken from
envlock's wheel cache or downloaded, and accepted only when the files it installs hash
to the lock's ``files_digest`` and its own sha256 is the one the index gives. Every
index package gets its wheel, or nothing is written and the error names each one.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from envlock.errors import EnvlockError, UsageError
from envlock.model import pins as model
from envlock.model.atomic import atomic_file
from envlock.model.lockfile import Lock, Package
from envlock.model.redact import strip_url_credentials
from envlock.operations.build import provision


class PinError(EnvlockError):
    """Some index packages could not be pinned to a verified wheel."""

    def __init__(self, reasons: dict[str, str]) -> None:
        listing = "; ".join(f"{name}: {why}" for name, why in sorted(reasons.items()))
        super().__init__(f"cannot pin {len(reasons)} package(s) to a verified wheel: {listing}",
                         "make their index reachable from this host (nothing was written)")
        self.reasons = reasons


@dataclass(frozen=True)
class Served:
    """What pip's report says the index serves for one requirement."""

    filename: str
    url: str
    sha256: str | None


@dataclass
class PinsResult:
    format: str
    output: str
    companion: str | None
    packages: int
    hashed: int
    unhashed: int
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def served(report: dict[str, Any]) -> dict[str, Served]:
    """Each package of a pip installation report (schema 1): its file, URL and sha256."""
    from packaging.utils import canonicalize_name

    found: dict[str, Served] = {}
    for item in report.get("install") or []:
        info = item.get("download_info") or {}
        url = str(info.get("url") or "")
        archive = info.get("archive_info") or {}
        digest = (archive.get("hashes") or {}).get("sha256")
        if not digest and str(archive.get("hash", "")).startswith("sha256="):
            digest = archive["hash"].split("=", 1)[1]
        name = canonicalize_name(str((item.get("metadata") or {}).get("name", "")))
        found[name] = Served(filename=unquote(urlsplit(url).path.rsplit("/", 1)[-1]),
                             url=strip_url_credentials(url) or url, sha256=digest)
    return found


def _report(lock: Lock, packages: list[Package], scratch: Path
            ) -> tuple[dict[str, Served], dict[str, str]]:
    """pip's pick for every package; a failed run is retried one package at a time to
    name each one the index does not serve."""
    path = scratch / "report.json"
    ok, message = provision.pip_report(lock, packages, path)
    if ok:
        return served(json.loads(path.read_text())), {}
    if len(packages) == 1:
        return {}, {packages[0].name: f"not on the package index for this platform ({message})"}
    found: dict[str, Served] = {}
    reasons: dict[str, str] = {}
    for index, pkg in enumerate(packages):
        single = scratch / f"one-{index}"
        single.mkdir()
        got, why = _report(lock, [pkg], single)
        found.update(got)
        reasons.update(why)
    return found, reasons


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _index_of(pkg: Package, lock: Lock, url: str) -> str | None:
    if not url.startswith(("http://", "https://")):
        return None  # a find-links directory or a local mirror: no index URL to give
    index = pkg.source.url or lock.index.get("index_url") or model.PYPI_SIMPLE
    return strip_url_credentials(index)


def verified_wheels(lock: Lock, *, use_cache: bool = True, log: Any = None
                    ) -> dict[str, model.Wheel]:
    """The verified wheel of every index package of ``lock`` (see module docs)."""
    packages = [p for p in lock.packages if p.source.kind == "index"]
    if not packages:
        return {}
    log = log or (lambda _: None)
    with tempfile.TemporaryDirectory(prefix="envlock-pins-") as tmp:
        scratch = Path(tmp)
        picks, reasons = _report(lock, packages, scratch)
        wanted = [p for p in packages if p.name in picks]
        got, failed = provision.index_wheels(lock, wanted, scratch / "cache", use_cache=use_cache,
                                             log=log)
        stale = [p for p in wanted if p.name in got and
                 got[p.name].wheel.name != picks[p.name].filename]
        if stale:  # the cache holds another build than the index now serves: fetch that one
            again, failed_again = provision.index_wheels(lock, stale, scratch / "fresh",
                                                         use_cache=False, log=log)
            got.update(again)
            failed.update(failed_again)
        reasons.update(failed)
        wheels = {}
        for pkg in wanted:
            if pkg.name not in got:
                continue
            wheel, pick = got[pkg.name].wheel, picks[pkg.name]
            digest = _sha256(wheel)
            if pick.sha256 and digest != pick.sha256:
                reasons[pkg.name] = (f"the index gives sha256 {pick.sha256[:12]}… for "
                                     f"{pick.filename}, the verified wheel has {digest[:12]}…")
                continue
            wheels[pkg.name] = model.Wheel(name=pkg.name, filename=wheel.name, sha256=digest,
                                           url=pick.url, size=wheel.stat().st_size,
                                           index=_index_of(pkg, lock, pick.url))
    missing = {p.name: reasons.get(p.name, "no verified wheel") for p in packages
               if p.name not in wheels}
    if missing:
        raise PinError(missing)
    return wheels


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path, 0o644) as handle:
        handle.write(text.encode())


def pins(lock: Lock, fmt: str, output: Path, *, use_cache: bool = True,
         log: Any = None) -> PinsResult:
    """Write ``output`` in ``fmt`` (``requirements`` or ``pylock``); see module docs."""
    if fmt not in model.FORMATS:
        raise UsageError(f"--format {fmt!r} is not one of {', '.join(model.FORMATS)}",
                         "use --format requirements or --format pylock")
    if fmt == "pylock" and not _pylock_name(output):
        raise UsageError(f"{output.name}: PEP 751 names lock files pylock.toml or "
                         "pylock.NAME.toml", "pass -o pylock.toml")
    wheels = verified_wheels(lock, use_cache=use_cache, log=log)
    if fmt == "requirements":
        export = model.requirements(lock, wheels, output.name)
    else:
        export = model.pylock(lock, wheels)
    companion = None
    if export.unhashed is not None:
        companion = model.unhashed_path(output)
        _write(companion, export.unhashed)
    _write(output, export.text)
    return PinsResult(format=fmt, output=str(output), companion=str(companion) if companion
                      else None, packages=len(lock.packages), hashed=export.hashed,
                      unhashed=export.unhashed_count, warnings=list(export.warnings))


def _pylock_name(path: Path) -> bool:
    from packaging.pylock import is_valid_pylock_path

    return bool(is_valid_pylock_path(path))
