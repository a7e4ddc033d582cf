"""Pure: a lock's packages as the standard installers' lock formats.

* ``requirements.txt`` for ``pip install --no-deps --require-hashes -r``: every index
  package as ``name==version --hash=sha256:…`` (the hash of the wheel envlock verified
  against the lock's ``files_digest``), archives with their recorded sha256. pip's
  hash-checking mode refuses any line without a hash, and a VCS checkout, a directory
  or an editable install has no file to hash: those go to a second file
  (``requirements.unhashed.txt``), installed after the first without ``--require-hashes``.
* PEP 751 ``pylock.toml`` (built and validated with ``packaging.pylock``): index
  packages with their wheel's URL, size and sha256; archives with their sha256; VCS
  commits and directories as the format allows (no hash exists for them).

Each package that cannot be hash-pinned (or not written at all: conda, the system's
packages) yields one warning line.

Installer tooling (pip, setuptools, wheel, distribute) is left out unless asked for, as
``pip freeze`` leaves it out: the target environment brings its own, and a distribution's
venv has its own rebuilds of it (see ``Source.origin``). A package installed from such a
rebuild is pinned to the index's wheel of its version, with a warning that says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envlock import __version__
from envlock.model.lockfile import Lock, Package

FORMATS = ("requirements", "pylock")
PYPI_SIMPLE = "https://pypi.org/simple"
_SYSTEMS = {"Linux": "linux", "Darwin": "darwin", "Windows": "win32"}
#: What ``pip freeze`` leaves out unless given ``--all``.
TOOLING = frozenset({"pip", "setuptools", "wheel", "distribute"})


@dataclass(frozen=True)
class Wheel:
    """The verified wheel of an index package: what pip/uv must install."""

    name: str  # the package (normalized)
    filename: str
    sha256: str  # hex
    url: str | None = None  # where the index serves it
    size: int | None = None
    index: str | None = None  # the index's simple URL
    #: The installed files are a rebuild (``Source.origin``), not this wheel's: the pin
    #: is the index's build of the same version.
    rebuilt: bool = False


@dataclass(frozen=True)
class Export:
    """The text of the export (and of its companion file of unhashed lines, if any)."""

    text: str
    unhashed: str | None
    warnings: tuple[str, ...]
    hashed: int
    unhashed_count: int


def left_out(lock: Lock, keep_all: bool = False) -> tuple[Package, ...]:
    """The lock's installer tooling, which the exports leave out unless ``keep_all``."""
    return () if keep_all else tuple(p for p in lock.packages if p.name in TOOLING)


def _rebuilt_warning(pkg: Package, wheel: Wheel) -> str:
    return (f"{pkg.name} {pkg.version} was installed from a rebuild "
            f"({pkg.source.origin or 'not the index wheel'}) whose files differ from the "
            f"index's wheel of that version: pinned to the index's {wheel.filename} "
            f"(sha256 {wheel.sha256[:12]}…), which installs the index's build")


def _packages(lock: Lock, wheels: dict[str, Wheel], skip: frozenset[str]
              ) -> tuple[list[Package], list[str]]:
    """The packages to write, and a warning for each one pinned to another build."""
    kept = [p for p in lock.packages if p.name not in skip]
    notes = [_rebuilt_warning(p, wheels[p.name]) for p in kept
             if p.source.kind == "index" and p.name in wheels and wheels[p.name].rebuilt]
    return kept, notes


def _left_out_line(lock: Lock, skip: frozenset[str]) -> list[str]:
    names = [f"{p.name} {p.version}" for p in lock.packages if p.name in skip]
    if not names:
        return []
    return [f"# left out: {', '.join(names)} (installer tooling, as pip freeze leaves it "
            "out; envlock pins --all keeps it)"]


def unhashed_path(path: Path) -> Path:
    """``requirements.txt`` -> ``requirements.unhashed.txt``."""
    return path.with_name(f"{path.stem}.unhashed{path.suffix or '.txt'}")


def _file_url(path: str) -> str:
    return Path(path).absolute().as_uri()


def _unhashable(pkg: Package) -> str:
    kind = pkg.source.kind
    return {"vcs": "a VCS checkout has no file to hash",
            "directory": "a local directory has no file to hash",
            "editable": "an editable install has no file to hash",
            "conda": "installed by conda: pip takes it from the index, unhashed",
            "system": "installed by the system: pip takes it from the index, unhashed",
            }.get(kind, "no hash is recorded for it")


def _vcs_requirement(pkg: Package) -> str:
    src = pkg.source
    line = f"{pkg.name} @ {src.vcs or 'git'}+{src.url}@{src.commit}"
    return line + (f"#subdirectory={src.subdirectory}" if src.subdirectory else "")


def _requirement_line(pkg: Package, wheels: dict[str, Wheel]) -> tuple[str, bool]:
    """(the line, whether it carries a hash)."""
    src = pkg.source
    if src.kind == "index" and pkg.name in wheels:
        return f"{pkg.name}=={pkg.version} \\\n    --hash=sha256:{wheels[pkg.name].sha256}", True
    if src.kind == "archive" and (src.url or src.path):
        where = src.url if src.url and "://" in src.url else _file_url(src.path or src.url or "")
        digest = src.hash.split(":", 1)[1] if src.hash and src.hash.startswith("sha256:") \
            else None
        if digest:
            return f"{pkg.name} @ {where} \\\n    --hash=sha256:{digest}", True
        return f"{pkg.name} @ {where}", False
    if src.kind == "vcs" and src.url and src.commit:
        return _vcs_requirement(pkg), False
    if src.kind == "editable" and src.path:
        return f"-e {src.path}", False
    if src.kind == "directory" and src.path:
        return f"{pkg.name} @ {_file_url(src.path)}", False
    return f"{pkg.name}=={pkg.version}", False


def _extra_indexes(lock: Lock) -> list[str]:
    """Indexes other than the default that index packages came from (PyTorch's)."""
    urls = [p.source.url.rstrip("/") for p in lock.packages
            if p.source.kind == "index" and p.source.url and "://" in p.source.url]
    return [u for u in dict.fromkeys(urls) if u != PYPI_SIMPLE]


def requirements(lock: Lock, wheels: dict[str, Wheel], name: str = "requirements.txt",
                 skip: frozenset[str] = frozenset()) -> Export:
    """``requirements.txt`` (hash-pinned lines) and its unhashed companion; the
    packages named in ``skip`` are left out (and named in a comment)."""
    companion = unhashed_path(Path(name)).name
    packages, warnings = _packages(lock, wheels, skip)
    hashed, unhashed = [], []
    for pkg in packages:
        line, has_hash = _requirement_line(pkg, wheels)
        if has_hash:
            hashed.append(line)
        else:
            unhashed.append(line)
            warnings.append(f"{pkg.name} {pkg.version} ({pkg.source.describe()}) cannot be "
                            f"hash-pinned ({_unhashable(pkg)}): written to {companion}, which "
                            "pip installs without --require-hashes")
    head = [f"# pinned by envlock {__version__} from env_digest {lock.env_digest}",
            f"# install: pip install --no-deps --require-hashes -r {name}"]
    if unhashed:
        head.append(f"#    then: pip install --no-deps -r {companion}")
    head += _left_out_line(lock, skip)
    head += [f"--extra-index-url {url}" for url in _extra_indexes(lock)]
    text = "\n".join([*head, *hashed]) + "\n"
    rest = None
    if unhashed:
        rest = "\n".join([f"# pinned by envlock {__version__}: cannot be hash-pinned; install "
                          f"after {name} with: pip install --no-deps -r {companion}",
                          *unhashed]) + "\n"
    return Export(text=text, unhashed=rest, warnings=tuple(warnings), hashed=len(hashed),
                  unhashed_count=len(unhashed))


# ---------------------------------------------------------------- pylock.toml

def _pylock_package(pkg: Package, wheels: dict[str, Wheel]) -> tuple[Any, str | None]:
    """(a ``packaging.pylock.Package`` or None, a warning or None)."""
    from packaging.pylock import (
        Package as PyPackage,
    )
    from packaging.pylock import (
        PackageArchive,
        PackageDirectory,
        PackageVcs,
        PackageWheel,
    )
    from packaging.utils import canonicalize_name
    from packaging.version import Version

    src = pkg.source
    name = canonicalize_name(pkg.name)
    if src.kind == "index" and pkg.name in wheels:
        wheel = wheels[pkg.name]
        return PyPackage(name=name, version=Version(pkg.version), index=wheel.index,
                         wheels=[PackageWheel(name=wheel.filename, url=wheel.url,
                                              size=wheel.size,
                                              hashes={"sha256": wheel.sha256})]), None
    if src.kind == "archive" and src.hash and src.hash.startswith("sha256:"):
        remote = src.url if src.url and "://" in src.url and not src.url.startswith("file:") \
            else None
        archive = PackageArchive(url=remote, path=None if remote else (src.path or src.url),
                                 hashes={"sha256": src.hash.split(":", 1)[1]},
                                 subdirectory=src.subdirectory)
        return PyPackage(name=name, version=Version(pkg.version), archive=archive), None
    warning = (f"{pkg.name} {pkg.version} ({src.describe()}) cannot be hash-pinned "
               f"({_unhashable(pkg)})")
    if src.kind == "vcs" and src.url and src.commit:
        return PyPackage(name=name, vcs=PackageVcs(
            type=src.vcs or "git", url=src.url, commit_id=src.commit,
            requested_revision=src.requested_revision, subdirectory=src.subdirectory)), warning
    if src.kind in ("directory", "editable") and src.path:
        return PyPackage(name=name, directory=PackageDirectory(
            path=src.path, editable=src.kind == "editable" or None)), warning
    return None, f"{pkg.name} {pkg.version} ({src.describe()}) is left out of the pylock.toml: " \
                 f"{_unhashable(pkg)}, and the format has no unhashed form for it"


def _environment(lock: Lock) -> str | None:
    system = _SYSTEMS.get(str(lock.os.get("system")))
    arch = lock.python.get("arch")
    if not system or not arch:
        return None
    return f"sys_platform == '{system}' and platform_machine == '{arch}'"


def pylock(lock: Lock, wheels: dict[str, Wheel], skip: frozenset[str] = frozenset()
           ) -> Export:
    """A PEP 751 ``pylock.toml`` for the lock, validated by ``packaging.pylock``; the
    packages named in ``skip`` are left out (and named in ``[tool.envlock]``)."""
    import tomli_w
    from packaging.markers import Marker
    from packaging.pylock import Pylock
    from packaging.specifiers import SpecifierSet
    from packaging.version import Version

    packages, warnings = _packages(lock, wheels, skip)
    entries = []
    for pkg in packages:
        entry, warning = _pylock_package(pkg, wheels)
        if entry is not None:
            entries.append(entry)
        if warning:
            warnings.append(warning)
    minor = ".".join(str(lock.python["version"]).split(".")[:2])
    environment = _environment(lock)
    document = Pylock(
        lock_version=Version("1.0"), created_by="envlock",
        requires_python=SpecifierSet(f"=={minor}.*"),
        environments=[Marker(environment)] if environment else None,
        extras=[], dependency_groups=[], default_groups=[], packages=entries,
        tool={"envlock": _tool_table(lock, skip)})
    document.validate()
    text = tomli_w.dumps(document.to_dict())
    hashed = sum(1 for e in entries if e.wheels or e.archive)
    return Export(text=text, unhashed=None, warnings=tuple(warnings), hashed=hashed,
                  unhashed_count=len(entries) - hashed)


def _tool_table(lock: Lock, skip: frozenset[str]) -> dict[str, Any]:
    table: dict[str, Any] = {"version": __version__, "env_digest": lock.env_digest,
                             "lock_digest": lock.lock_digest}
    left = [p.name for p in lock.packages if p.name in skip]
    if left:
        table["left_out"] = left
    return table
