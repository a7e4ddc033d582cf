"""Provision every locked package as a wheel on the host, so images build offline.

Order of sources for each package: envlock's wheel cache; the package index (each
wheel's URL and sha256 read from the index's listing — PEP 691/503, the host's pip
configuration, the PyTorch index added for ``+cuXXX`` builds, find-links folders —
and picked for the image's exact Python and platform as pip would, ``model.wheelpick``;
then the wheels are fetched in parallel into the host's content-addressed cache,
``adapters.download``, hash-checked while they stream; ``pip download`` for what no
listing names); a VCS, archive or directory source
built with ``pip wheel``; and when the source is gone, the installed files packed
into a wheel as they are. A wheel is only accepted when the files it installs hash
to the lock's ``files_digest``: the wrong CUDA build or a tampered wheel is caught
here, not at run time. Every package ends up provided, or provisioning fails
naming each package it could not provide and why.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import sys
import tempfile
import threading
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from envlock.adapters import proc
from envlock.errors import EnvlockError
from envlock.model import wheelpick
from envlock.model.lockfile import Lock, Package
from envlock.snapshot._probe import INSTALLER_FILES, content_path, record_rows
from envlock.snapshot.rebuilt import wheel_files_digest


def downloads() -> int:
    """Parallel downloads at most, each one connection: ``$ENVLOCK_DOWNLOADS`` (1–64),
    else 8."""
    value = os.environ.get("ENVLOCK_DOWNLOADS", "").strip()
    return min(64, max(1, int(value))) if value.isdigit() else 8
_WHEEL_NAME = re.compile(r"^(?P<name>[^-]+)-(?P<version>[^-]+)-.*\.whl$")


class ProvisionError(EnvlockError):
    """Some locked packages could not be provided; each is named with the reason."""

    def __init__(self, missing: list[Missing]) -> None:
        listing = "; ".join(f"{m.name}=={m.version}: {m.reason}" for m in missing)
        super().__init__(f"cannot provide {len(missing)} locked package(s): {listing}",
                         "make their index or source reachable from this host, or rebuild "
                         "where the original environment still exists")
        self.missing = missing


@dataclass(frozen=True)
class Missing:
    name: str
    version: str
    reason: str


@dataclass(frozen=True)
class Provided:
    name: str
    version: str
    wheel: Path
    how: str  # cache | index | built | archive | repacked | editable
    note: str | None = None
    downloaded: int = 0  # bytes that came over the network for it


Log = Callable[[str], None]


class Differs(str):
    """Why a wheel was refused when it was found but installs other files than the
    locked ones (a reason like any other; its type tells a rebuild from a missing wheel)."""


def _quiet(_: str) -> None:
    pass


# ------------------------------------------------------------------ wheels

def escape(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name)


def wheel_digest(wheel: Path) -> str | None:
    """files_digest of a wheel, from its own RECORD."""
    return wheel_files_digest(wheel)


def _b64_sha256(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _wheel_tag(dist_info: Path) -> str:
    try:
        for line in (dist_info / "WHEEL").read_text().splitlines():
            if line.startswith("Tag:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "py3-none-any"


def repack(pkg: Package, dest: Path, rewrite: tuple[str, str] | None = None) -> Path:
    """A wheel of the files a distribution installed into site-packages, as they are.
    ``rewrite`` replaces a path prefix inside text files (editable installs)."""
    if not pkg.location or not pkg.dist_dir or not pkg.dist_dir.endswith(".dist-info"):
        raise FileNotFoundError("no installed .dist-info to pack")
    site = Path(pkg.location)
    dist_info = site / pkg.dist_dir
    rows = record_rows(str(dist_info / "RECORD"))
    if rows is None:
        raise FileNotFoundError(f"{dist_info}/RECORD is missing")
    name_part, _, version_part = pkg.dist_dir[: -len(".dist-info")].partition("-")
    target = dest / f"{escape(name_part)}-{version_part}-{_wheel_tag(dist_info)}.whl"
    record: list[str] = []
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, _hash in rows:
            if content_path(path) != path or path.split("/")[-1] in INSTALLER_FILES:
                continue
            data = (site / path).read_bytes()
            if rewrite and rewrite[0].encode() in data:
                data = data.replace(rewrite[0].encode(), rewrite[1].encode())
            archive.writestr(path, data)
            record.append(f"{path},{_b64_sha256(data)},{len(data)}")
        record.append(f"{pkg.dist_dir}/RECORD,,")
        archive.writestr(f"{pkg.dist_dir}/RECORD", "\n".join(record) + "\n")
    return target


# ------------------------------------------------------------------ pip

def platform_tags(lock: Lock) -> list[str]:
    tag = lock.python["platform_tag"]
    match = re.fullmatch(r"manylinux_(\d+)_(\d+)_(\w+)", tag)
    if not match:
        return [tag]
    major, minor, arch = int(match.group(1)), int(match.group(2)), match.group(3)
    tags = [f"manylinux_{major}_{m}_{arch}" for m in range(minor, 16, -1)]
    return tags + [f"manylinux2014_{arch}", f"manylinux2010_{arch}", f"manylinux1_{arch}"]


def reachable(url: str, timeout: float = 5.0) -> bool:
    """Whether an index answers at all (pip would retry an unreachable one for every
    package, with back-off: minutes for a large environment)."""
    if not url.startswith(("http://", "https://")):
        return True
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False


def _index_args(lock: Lock, packages: list[Package], log: Log = _quiet) -> list[str]:
    """Extra indexes (the build host's own pip config and credentials still apply)."""
    extra = list(lock.index.get("extra_index_urls") or [])
    extra += [p.source.url for p in packages if p.source.url and
              p.source.url.startswith("https://download.pytorch.org/")]
    args: list[str] = []
    for url in dict.fromkeys(extra):
        if reachable(url):
            args += ["--extra-index-url", url]
        else:
            log(f"index {url} is unreachable from this host: skipped")
    for link in lock.index.get("find_links") or []:
        if "://" in link or Path(link).exists():
            args += ["--find-links", link]
    return args


def _pip(*args: str, timeout: float = 1800) -> tuple[bool, str]:
    out = proc.run([sys.executable, "-m", "pip", "--disable-pip-version-check",
                    "--no-input", *args], timeout=timeout)
    text = (out.stderr or out.stdout).decode(errors="replace").strip().splitlines()
    return out.returncode == 0, (text[-1] if text else f"pip exited {out.returncode}")


def _target_args(lock: Lock) -> list[str]:
    """pip's flags for wheels of the lock's exact Python and platform."""
    major_minor = ".".join(lock.python["version"].split(".")[:2])
    tags = [a for t in platform_tags(lock) for a in ("--platform", t)]
    abi = "cp" + major_minor.replace(".", "")
    return ["--only-binary=:all:", "--python-version", major_minor, "--implementation", "cp",
            "--abi", abi, *tags]


def pip_download(lock: Lock, packages: list[Package], dest: Path,
                 log: Log = _quiet) -> tuple[bool, str]:
    return _pip("download", "--no-deps", "--progress-bar", "off", "-d", str(dest),
                *_target_args(lock), *_index_args(lock, packages, log),
                *[f"{p.name}=={p.version}" for p in packages])


def pip_report(lock: Lock, packages: list[Package], report: Path,
               log: Log = _quiet) -> tuple[bool, str]:
    """pip's installation report (JSON) for the wheels ``pip_download`` would pick: each
    one's URL and the hash the index gives for it; nothing is downloaded or installed."""
    return _pip("install", "--dry-run", "--ignore-installed", "--no-deps", "--quiet",
                "--report", str(report), "--target", str(report.parent / "unused-target"),
                *_target_args(lock), *_index_args(lock, packages, log),
                *[f"{p.name}=={p.version}" for p in packages])


def pip_wheel(requirement: str, dest: Path) -> tuple[bool, str]:
    return _pip("wheel", "--no-deps", "--progress-bar", "off", "-w", str(dest), requirement)


def _find_wheel(directory: Path, pkg: Package) -> Path | None:
    for wheel in sorted(directory.glob("*.whl")):
        match = _WHEEL_NAME.match(wheel.name)
        if match and escape(match.group("name")).lower() == escape(pkg.name).lower() \
                and match.group("version") == pkg.version.replace("-", "_"):
            return wheel
    return None


# ------------------------------------------------------------------ per package

@dataclass
class _Job:
    pkg: Package
    wheelhouse: Path
    cache: Path
    project_root: str | None
    log: Log

    @property
    def cache_dir(self) -> Path:
        key = (self.pkg.files_digest or "nodigest").split(":")[-1][:16]
        return self.cache / self.pkg.name / self.pkg.version / key

    def accept(self, wheel: Path, how: str, note: str | None = None) -> Provided | str:
        """Check a candidate wheel against the lock; copy it into the wheelhouse and cache."""
        match = _WHEEL_NAME.match(wheel.name)
        if not match or match.group("version") != self.pkg.version.replace("-", "_"):
            got = match.group("version") if match else wheel.name
            return f"{how} wheel is version {got}, the lock needs {self.pkg.version}"
        expected = self.pkg.files_digest
        actual = wheel_digest(wheel)
        if expected and self.pkg.source.kind != "editable" and actual != expected:
            return Differs(f"{how} wheel {wheel.name} differs from the locked files "
                           f"(files_digest {str(actual)[:19]}… ≠ {expected[:19]}…)")
        final = self.wheelhouse / wheel.name
        if wheel != final:
            place(wheel, final)
        if how not in ("cache", "editable") and expected:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            place(wheel, self.cache_dir / wheel.name)
        return Provided(self.pkg.name, self.pkg.version, final, how, note)

    def from_cache(self) -> Provided | str | None:
        if not self.pkg.files_digest or not self.cache_dir.is_dir():
            return None
        wheel = _find_wheel(self.cache_dir, self.pkg)
        return self.accept(wheel, "cache") if wheel else None

    def from_source(self, scratch: Path) -> Provided | str | None:
        src = self.pkg.source
        requirement = None
        if src.kind == "vcs" and src.url and src.commit:
            requirement = f"{src.vcs}+{src.url}@{src.commit}"
            if src.subdirectory:
                requirement += f"#subdirectory={src.subdirectory}"
        elif src.kind == "archive" and src.path and Path(src.path).is_file():
            if src.hash and src.hash.startswith("sha256:"):
                actual = hashlib.sha256(Path(src.path).read_bytes()).hexdigest()
                if actual != src.hash.split(":", 1)[1]:
                    return f"{src.path} no longer has the recorded sha256"
            if src.path.endswith(".whl"):
                return self.accept(Path(src.path), "archive")
            requirement = src.path
        elif src.kind == "archive" and src.url and "://" in src.url and \
                not src.url.startswith("file:"):
            requirement = src.url
        elif src.kind in ("directory", "editable") and src.path and Path(src.path).is_dir():
            requirement = src.path
        if requirement is None:
            return None
        out = scratch / self.pkg.name
        out.mkdir(parents=True, exist_ok=True)
        ok, message = pip_wheel(requirement, out)
        wheel = _find_wheel(out, self.pkg) if ok else None
        if wheel is None:
            return f"building from {src.describe()} failed: {message}"
        return self.accept(wheel, "built")

    def repacked(self, scratch: Path) -> Provided | str:
        rewrite = None
        how = "repacked"
        src = self.pkg.source
        if src.kind == "editable" and self.project_root and src.path and (
                src.path == self.project_root or src.path.startswith(self.project_root + "/")):
            from envlock.image.render import WORKDIR

            rewrite = (self.project_root, WORKDIR)
            how = "editable"
        try:
            scratch.mkdir(parents=True, exist_ok=True)
            wheel = repack(self.pkg, scratch, rewrite)
        except (OSError, ValueError) as exc:
            return f"installed files unavailable to pack ({exc})"
        result = self.accept(wheel, how)
        if isinstance(result, str):
            return "installed files differ from their RECORD (edited by hand? see " \
                   "`envlock check --deep`)"
        return result


def place(source: Path, target: Path) -> None:
    """``source`` at ``target`` in one step (a reader never sees half a wheel): a hard link
    when both are on one file system (no gigabytes copied), else a copy."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copyfile(source, tmp)
    os.replace(tmp, target)


def _editable_in_project(pkg: Package, root: str | None) -> bool:
    path = pkg.source.path or ""
    return pkg.source.kind == "editable" and bool(root) and (
        path == root or path.startswith(f"{root}/"))


def provision(lock: Lock, wheelhouse: Path, *, cache: Path | None = None,
              use_cache: bool = True, log: Log = _quiet,
              ready: Callable[[Provided], None] | None = None) -> list[Provided]:
    """Fill ``wheelhouse`` with one verified wheel per locked package, a requirements.txt
    and ``tools/pip.whl`` (the installer, not installed into the image). ``ready``: called
    with each wheel as soon as it is accepted (from the cache at once, from the index as
    its download is verified), in the calling thread, so it can be installed meanwhile."""
    from envlock.adapters.download import cache_root

    cache = cache or cache_root()
    wheelhouse.mkdir(parents=True, exist_ok=True)
    root = lock.project_root
    jobs = [_Job(p, wheelhouse, cache, root, log) for p in lock.packages]
    done: dict[str, Provided] = {}
    reasons: dict[str, list[str]] = {p.name: [] for p in lock.packages}

    def settle(job: _Job, outcome: Provided | str | None) -> None:
        if isinstance(outcome, Provided):
            done[job.pkg.name] = outcome
            if ready is not None:
                ready(outcome)
        elif outcome:
            reasons[job.pkg.name].append(outcome)

    with tempfile.TemporaryDirectory(prefix="envlock-provision-") as tmp:
        scratch = Path(tmp)
        for job in jobs:
            if _editable_in_project(job.pkg, root):
                settle(job, job.repacked(scratch))
            elif use_cache:
                settle(job, job.from_cache())
        index_jobs = [j for j in jobs if j.pkg.name not in done and j.pkg.source.kind == "index"]
        if index_jobs:
            log(f"downloading {len(index_jobs)} wheel(s) from the package index")
            _download(lock, index_jobs, scratch / "index", settle, log)
        for job in jobs:
            if job.pkg.name not in done and job.pkg.source.kind != "index":
                settle(job, job.from_source(scratch / "src"))
        for job in jobs:
            if job.pkg.name not in done:
                settle(job, job.repacked(scratch / "repack"))
    missing = [Missing(p.name, p.version, "; ".join(reasons[p.name]) or "no source recorded")
               for p in lock.packages if p.name not in done]
    if missing:
        raise ProvisionError(missing)
    _write_requirements(lock, wheelhouse)
    _add_installer(wheelhouse)
    return [done[p.name] for p in lock.packages]


def index_wheels(lock: Lock, packages: list[Package], dest: Path, *, use_cache: bool = True,
                 log: Log = _quiet) -> tuple[dict[str, Provided], dict[str, str]]:
    """A verified wheel of each index package in ``packages`` (envlock's cache, else the
    index), checked against the lock's ``files_digest`` as provision() checks them; and
    why each one that could not be had failed."""
    from envlock.adapters.download import cache_root

    jobs = [_Job(p, dest, cache_root(), lock.project_root, log) for p in packages]
    done: dict[str, Provided] = {}
    reasons: dict[str, str] = {}

    def settle(job: _Job, outcome: Provided | str | None) -> None:
        if isinstance(outcome, Provided):
            done[job.pkg.name] = outcome
        elif outcome:
            reasons[job.pkg.name] = outcome

    dest.mkdir(parents=True, exist_ok=True)
    for job in jobs:
        if use_cache:
            settle(job, job.from_cache())
    pending = [j for j in jobs if j.pkg.name not in done]
    if pending:
        log(f"downloading {len(pending)} wheel(s) from the package index")
        _download(lock, pending, dest / "index", settle, log)
    return done, {name: why for name, why in reasons.items() if name not in done}


def _download(lock: Lock, jobs: list[_Job], dest: Path,
              settle: Callable[[_Job, Any], None], log: Log = _quiet) -> None:
    """Each wheel's URL and sha256 from the indexes' listings (nothing downloaded), then
    the wheels fetched in parallel into the host's shared cache, each one checked as it
    arrives; what no listing names goes through ``pip download``."""
    dest.mkdir(parents=True, exist_ok=True)
    wanted = _resolve(lock, jobs, log)
    if wanted:
        _fetch_parallel([(j, wanted[j.pkg.name]) for j in jobs if j.pkg.name in wanted],
                        settle, log)
    rest = [j for j in jobs if j.pkg.name not in wanted]
    if rest:
        _pip_download_jobs(lock, rest, dest / "pip", settle, log)


def _resolve(lock: Lock, jobs: list[_Job], log: Log) -> dict[str, Any]:
    """Package name -> ``download.Wanted``: each wheel's URL and sha256 from the indexes'
    listings and the find-links folders, picked as pip would for the image
    (``model.wheelpick``); the packages are looked up in parallel and nothing is
    downloaded. A package none of them lists is left to ``pip download``."""
    from concurrent.futures import ThreadPoolExecutor

    from envlock.adapters.download import WheelCache

    indexes, folders = index_sources(lock, [j.pkg for j in jobs], log)
    ranks = wheelpick.supported_tags(lock.python["version"], platform_tags(lock))
    cache = WheelCache(jobs[0].cache, connections=downloads())
    with ThreadPoolExecutor(max(1, min(downloads(), len(jobs))),
                            thread_name_prefix="envlock-resolve") as pool:
        found = pool.map(lambda job: _pick(cache, job.pkg, indexes, folders, ranks, log),
                         jobs)
        return {job.pkg.name: wanted for job, wanted in zip(jobs, found, strict=True)
                if wanted is not None}


def _pick(cache: Any, pkg: Package, indexes: list[str], folders: list[Path],
          ranks: dict[str, int], log: Log) -> Any:
    from envlock.adapters.download import DownloadError, Wanted, local_files

    candidates = [c for folder in folders for c in local_files(folder, pkg.name, pkg.version)]
    for index in indexes:
        try:
            candidates += cache.index_files(index, pkg.name)
        except DownloadError as exc:
            log(f"{pkg.name}: {exc.message}")
    best = wheelpick.best_wheel(candidates, pkg.name, pkg.version, ranks)
    return Wanted(url=best.url, sha256=str(best.sha256), filename=best.filename) \
        if best else None


def index_sources(lock: Lock, packages: list[Package], log: Log = _quiet
                  ) -> tuple[list[str], list[Path]]:
    """The HTTP indexes to look wheels up in (this host's pip configuration, credentials
    kept, then the lock's extra indexes and the PyTorch index of ``+cuXXX`` builds), and
    the local find-links folders (this host's, then the lock's)."""
    from envlock.snapshot.index import PYPI, configured

    host = configured(os.environ, sys.prefix)
    no_index = host["no_index"] or bool(lock.index.get("no_index"))
    urls = [] if no_index else [host["index_url"] or PYPI, *host["extra_index_urls"],
                                *(lock.index.get("extra_index_urls") or [])]
    urls += [p.source.url for p in packages if not no_index and p.source.url and
             p.source.url.startswith("https://download.pytorch.org/")]
    indexes = [u for u in dict.fromkeys(urls) if u.startswith(("http://", "https://"))]
    for url in [u for u in indexes if u != (host["index_url"] or PYPI)]:
        if not reachable(url):
            log(f"index {url} is unreachable from this host: skipped")
            indexes.remove(url)
    links = [*host["find_links"], *(lock.index.get("find_links") or [])]
    folders = [Path(unquote(urlsplit(link).path)) if link.startswith("file:") else Path(link)
               for link in dict.fromkeys(links) if "://" not in link or
               link.startswith("file:")]
    return indexes, [f for f in folders if f.is_dir()]


def _fetch_parallel(pairs: list[tuple[_Job, Any]], settle: Callable[[_Job, Any], None],
                    log: Log) -> None:
    """The wheels fetched by a bounded pool of threads (``$ENVLOCK_DOWNLOADS``, default
    8), each accepted (checked against the lock) as soon as it is in the cache."""
    from concurrent.futures import ThreadPoolExecutor, as_completed

    from envlock.adapters.download import DownloadError, WheelCache

    cache = WheelCache(pairs[0][0].cache, connections=downloads())
    with ThreadPoolExecutor(max(1, min(downloads(), len(pairs))),
                            thread_name_prefix="envlock-download") as pool:
        futures = {pool.submit(cache.fetch, want): job for job, want in pairs}
        for future in as_completed(futures):
            job = futures[future]
            try:
                fetched = future.result()
            except DownloadError as exc:
                settle(job, f"download failed: {exc.message}")
                continue
            how = "cache" if fetched.reused else "index"
            log(f"{fetched.path.name}: " + ("in the wheel cache" if fetched.reused else
                                            f"{fetched.downloaded} bytes downloaded"))
            outcome = job.accept(fetched.path, how)
            settle(job, replace(outcome, downloaded=fetched.downloaded)
                   if isinstance(outcome, Provided) else outcome)


def _pip_download_jobs(lock: Lock, jobs: list[_Job], dest: Path,
              settle: Callable[[_Job, Any], None], log: Log = _quiet) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    ok, message = pip_download(lock, [j.pkg for j in jobs], dest, log)
    if not ok and len(jobs) > 1:  # pip stops at the first failure: find each one
        for job in jobs:
            single = dest / job.pkg.name
            single.mkdir(exist_ok=True)
            ok_one, message_one = pip_download(lock, [job.pkg], single)
            wheel = _find_wheel(single, job.pkg) if ok_one else None
            settle(job, job.accept(wheel, "index") if wheel else
                   f"not on the package index for this platform ({message_one})")
        return
    for job in jobs:
        wheel = _find_wheel(dest, job.pkg) if ok else None
        settle(job, job.accept(wheel, "index") if wheel else
               f"not on the package index for this platform ({message})")


def _write_requirements(lock: Lock, wheelhouse: Path) -> None:
    lines = [f"{p.name}=={p.version}" for p in lock.packages]
    (wheelhouse / "requirements.txt").write_text("\n".join(lines) + "\n")


def _add_installer(wheelhouse: Path) -> None:
    """pip itself, packed from envlock's own interpreter: it runs from the zip in the build
    container and is never installed there (unless the lock lists pip)."""
    from importlib import metadata

    tools = wheelhouse / "tools"
    tools.mkdir(exist_ok=True)
    dist = metadata.distribution("pip")
    location = str(Path(str(dist.locate_file(""))))
    dist_dir = next(p.name for p in Path(location).glob("pip-*.dist-info"))
    pip_pkg = Package(name="pip", version=dist.version, source=None,  # type: ignore[arg-type]
                      location=location, dist_dir=dist_dir)
    wheel = repack(pip_pkg, tools)
    wheel.rename(tools / "pip.whl")
