"""``envlock pins``: a lock's packages as ``requirements.txt`` (with ``--hash`` lines) or
PEP 751 ``pylock.toml``, so pip and uv reproduce the package set without envlock.

The hashes are those of the wheels envlock verifies: pip picks, for the lock's exact
Python and platform, the wheel the index serves (its installation report names the
file, its URL and the index's sha256, nothing installed); that wheel is taken from
envlock's wheel cache or downloaded, and accepted only when the files it installs hash
to the lock's ``files_digest`` and its own sha256 is the one the index gives. Every
index package gets its wheel, or nothing is written and the error names each one.

A package installed from a rebuild of its index release (``Source.origin``: Debian's
pip and setuptools in ``python3 -m venv``) can have no such wheel: it is pinned to the
index's wheel of its version, as the index gives and serves it, with a warning. Any
other package whose installed files are not the index wheel's is refused, saying so.
Installer tooling is left out unless ``keep_all`` (see ``envlock.model.pins``).
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
        rebuilt = sorted(n for n, why in reasons.items() if isinstance(why, provision.Differs))
        if rebuilt:
            hint = (f"{', '.join(rebuilt)}: the installed files are another build than the "
                    "index's of that version. A distribution's wheel (Debian's "
                    "/usr/share/python-wheels): lock again, envlock records that origin and "
                    "pins the index's build; conda's or a local build: reinstall it from the "
                    "index (pip install --force-reinstall --no-deps NAME==VERSION) and lock "
                    "again (nothing was written)")
        else:
            hint = "make their index reachable from this host (nothing was written)"
        super().__init__(f"cannot pin {len(reasons)} package(s) to a verified wheel: {listing}",
                         hint)
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
    left_out: list[str] = field(default_factory=list)  # installer tooling: "pip 23.0.1"

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


def _is_served(wheel: Path, pick: Served) -> bool:
    return wheel.name == pick.filename and pick.sha256 in (None, _sha256(wheel))


def _fetch(lock: Lock, wanted: list[Package], picks: dict[str, Served], scratch: Path,
           use_cache: bool, log: Any) -> tuple[dict[str, Path], dict[str, str]]:
    """The verified wheel of each package in ``wanted``; a cached one that is not the file
    the index serves now (another build, or a rebuild packed from the installed files) is
    fetched from the index again."""
    got, failed = provision.index_wheels(lock, wanted, scratch / "cache", use_cache=use_cache,
                                         log=log)
    stale = [p for p in wanted if p.name in got and got[p.name].how == "cache" and
             not _is_served(got[p.name].wheel, picks[p.name])]
    if stale:
        for pkg in stale:
            del got[pkg.name]
        again, failed_again = provision.index_wheels(lock, stale, scratch / "fresh",
                                                     use_cache=False, log=log)
        got.update(again)
        failed.update(failed_again)
    return {name: provided.wheel for name, provided in got.items()}, failed


def _index_wheel(lock: Lock, pkg: Package, pick: Served, scratch: Path, log: Any
                 ) -> model.Wheel | str:
    """The index's own wheel of a rebuilt package, downloaded and hashed."""
    dest = scratch / "rebuilt" / pkg.name
    dest.mkdir(parents=True, exist_ok=True)
    ok, message = provision.pip_download(lock, [pkg], dest, log)
    wheel = dest / pick.filename
    if not ok or not wheel.is_file():
        return f"the index's wheel {pick.filename} could not be downloaded ({message})"
    return _wheel(lock, pkg, pick, wheel, rebuilt=True)


def _wheel(lock: Lock, pkg: Package, pick: Served, wheel: Path, rebuilt: bool = False
           ) -> model.Wheel | str:
    """``wheel`` as the pin, when it is the file the index gives."""
    digest = _sha256(wheel)
    if pick.sha256 and digest != pick.sha256:
        return (f"the index gives sha256 {pick.sha256[:12]}… for {pick.filename}, the "
                f"{'downloaded' if rebuilt else 'verified'} wheel has {digest[:12]}…")
    return model.Wheel(name=pkg.name, filename=wheel.name, sha256=digest, url=pick.url,
                       size=wheel.stat().st_size, index=_index_of(pkg, lock, pick.url),
                       rebuilt=rebuilt)


def verified_wheels(lock: Lock, *, use_cache: bool = True, log: Any = None,
                    skip: frozenset[str] = frozenset()) -> dict[str, model.Wheel]:
    """The verified wheel of every index package of ``lock`` not in ``skip`` (see module
    docs)."""
    packages = [p for p in lock.packages if p.source.kind == "index" and p.name not in skip]
    if not packages:
        return {}
    log = log or (lambda _: None)
    wheels: dict[str, model.Wheel] = {}
    with tempfile.TemporaryDirectory(prefix="envlock-pins-") as tmp:
        scratch = Path(tmp)
        picks, reasons = _report(lock, packages, scratch)
        wanted = [p for p in packages if p.name in picks]
        got, failed = _fetch(lock, wanted, picks, scratch, use_cache, log)
        for pkg in wanted:
            pick = picks[pkg.name]
            why = failed.get(pkg.name, "no verified wheel")
            if pkg.name in got:
                outcome: model.Wheel | str = _wheel(lock, pkg, pick, got[pkg.name])
            elif isinstance(why, provision.Differs) and pkg.source.origin:
                outcome = _index_wheel(lock, pkg, pick, scratch, log)
            else:
                outcome = why
            if isinstance(outcome, model.Wheel):
                wheels[pkg.name] = outcome
            else:
                reasons[pkg.name] = outcome
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
         log: Any = None, keep_all: bool = False) -> PinsResult:
    """Write ``output`` in ``fmt`` (``requirements`` or ``pylock``); see module docs.
    ``keep_all`` keeps installer tooling (pip, setuptools, wheel) in."""
    if fmt not in model.FORMATS:
        raise UsageError(f"--format {fmt!r} is not one of {', '.join(model.FORMATS)}",
                         "use --format requirements or --format pylock")
    if fmt == "pylock" and not _pylock_name(output):
        raise UsageError(f"{output.name}: PEP 751 names lock files pylock.toml or "
                         "pylock.NAME.toml", "pass -o pylock.toml")
    left = model.left_out(lock, keep_all)
    skip = frozenset(p.name for p in left)
    wheels = verified_wheels(lock, use_cache=use_cache, log=log, skip=skip)
    if fmt == "requirements":
        export = model.requirements(lock, wheels, output.name, skip)
    else:
        export = model.pylock(lock, wheels, skip)
    companion = None
    if export.unhashed is not None:
        companion = model.unhashed_path(output)
        _write(companion, export.unhashed)
    _write(output, export.text)
    return PinsResult(format=fmt, output=str(output), companion=str(companion) if companion
                      else None, packages=len(lock.packages) - len(left), hashed=export.hashed,
                      unhashed=export.unhashed_count, warnings=list(export.warnings),
                      left_out=[f"{p.name} {p.version}" for p in left])


def _pylock_name(path: Path) -> bool:
    from packaging.pylock import is_valid_pylock_path

    return bool(is_valid_pylock_path(path))
