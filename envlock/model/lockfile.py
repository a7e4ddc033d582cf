"""Pure data model of ``envlock.lock.yaml``: dataclasses, validation, migration, digests.

The file is YAML in a fixed, readable order; the same environment always gives the
same bytes. Two digests make it trustworthy:

* ``env_digest`` covers exactly what defines the environment image: the Python
  implementation/version/architecture, the platform family and every package
  with its source. Git state, GPUs, host name and knobs do not change it.
* ``lock_digest`` covers the whole document except itself; loading recomputes it over
  the document as written (before any migration), so a hand-edited lock is caught.

Schema 2 adds two optional sections: ``host`` (the machine the experiment ran on: CPU
model, core count and ISA level, memory, ``/dev/shm``; it does not change the
environment image) and ``code`` (a project that is not a git repository: every packed
file with its sha256). A schema-1 lock migrates with both unknown (null).

Schema 3 adds ``inputs``: what the run read (data, pretrained weights), each with its
path as the run saw it, size, sha256 and carry (:mod:`envlock.model.inputs`). It does not
change the environment image (``env_digest``). An older lock migrates with no inputs.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from envlock import __version__
from envlock.errors import LockfileError
from envlock.model import locksections
from envlock.model.atomic import atomic_file
from envlock.model.locksections import (
    CodeSection,
    Frameworks,
    GitSection,
    GpuSection,
    HostSection,
    IndexSection,
    OsSection,
    PythonSection,
    RuntimeSection,
)

if TYPE_CHECKING:  # imported where used: a lock with no inputs (every `envlock lock`) needs none
    from envlock.model.inputs import Input

SCHEMA_VERSION = 3
DEFAULT_LOCKFILE = "envlock.lock.yaml"

def _v1_to_v2(doc: dict[str, Any]) -> dict[str, Any]:
    """Schema 1 knew nothing of the host's resources nor of projects outside git."""
    return {**doc, "schema_version": 2, "host": None, "code": None}


def _v2_to_v3(doc: dict[str, Any]) -> dict[str, Any]:
    """Schema 2 recorded no inputs: an older run's inputs are unknown (none pinned)."""
    return {**doc, "schema_version": 3, "inputs": []}


#: Migrations from schema N to N+1; each takes and returns a raw document.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _v1_to_v2,
                                                                     2: _v2_to_v3}

#: Required keys of each mapping section (types checked on load).
SECTION_KEYS = locksections.REQUIRED_KEYS


@dataclass(frozen=True)
class Source:
    """Where an installed distribution came from (PEP 610 vocabulary plus index/conda/system)."""

    kind: str  # index | vcs | archive | directory | editable | conda | system
    url: str | None = None
    vcs: str | None = None
    commit: str | None = None
    requested_revision: str | None = None
    subdirectory: str | None = None
    path: str | None = None
    hash: str | None = None
    git_commit: str | None = None
    git_dirty: bool | None = None
    #: Only for a build that is not the index's own of that version: the file it was
    #: installed from (the OS distribution's rebuilt wheel, e.g. Debian's
    #: ``/usr/share/python-wheels/pip-23.0.1-py3-none-any.whl``). Absent otherwise, so a
    #: lock of an ordinary environment is unchanged by it.
    origin: str | None = None

    KINDS = ("index", "vcs", "archive", "directory", "editable", "conda", "system")

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)
                if getattr(self, f.name) is not None}

    def describe(self) -> str:
        """Short human form: ``index``, ``git+https://…@abc1234``, ``editable /src/pkg``."""
        if self.kind == "vcs":
            return f"{self.vcs}+{self.url}@{(self.commit or '?')[:12]}"
        if self.kind in ("editable", "directory", "archive"):
            where = self.path or self.url or "?"
            extra = f"@{self.git_commit[:12]}" if self.git_commit else ""
            dirty = " (dirty)" if self.git_dirty else ""
            return f"{self.kind} {where}{extra}{dirty}"
        if self.kind == "index" and self.origin:
            return f"rebuild {self.origin}"
        if self.kind == "index" and self.url:
            return f"index {self.url}"
        return self.kind


@dataclass(frozen=True)
class Package:
    name: str  # PEP 503 normalized
    version: str  # exact, local tags (+cu121) kept
    source: Source
    installer: str | None = None
    location: str | None = None  # the sys.path entry holding its metadata
    dist_dir: str | None = None  # the .dist-info / .egg-info directory name
    requested: bool = False
    #: sha256 over the (path, hash) pairs of RECORD that make up its content (see _probe).
    files_digest: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "installer": self.installer,
                "requested": self.requested, "source": self.source.to_dict(),
                "files_digest": self.files_digest, "location": self.location,
                "dist_dir": self.dist_dir}

    def env_key(self, project_root: str | None = None) -> dict[str, Any]:
        """What about this package defines the environment image.

        An editable package inside the experiment's own repository is code, not
        environment: its path is taken relative to the repository and its commit,
        dirtiness and (path-dependent) files are left out, so that committing code
        never changes the environment image. A rebuild's ``origin`` is where the same
        files came from, not what they are: it is left out too."""
        source = self.source.to_dict()
        source.pop("origin", None)
        files = self.files_digest
        if self.source.kind == "editable":
            files = None
            path = self.source.path or ""
            if project_root and (path == project_root or path.startswith(project_root + "/")):
                source = {"kind": "editable", "project_path": os.path.relpath(path, project_root)}
        return {"name": self.name, "version": self.version, "source": source, "files": files}


@dataclass(frozen=True)
class Shadowed:
    """A distribution present on disk but hidden by another of the same name."""

    name: str
    version: str
    location: str
    dir: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "location": self.location,
                "dir": self.dir, "reason": self.reason}


@dataclass(frozen=True)
class Lock:
    python: PythonSection
    os: OsSection
    packages: tuple[Package, ...]
    frameworks: Frameworks = field(default_factory=dict)
    gpu: GpuSection = field(default_factory=lambda: GpuSection(driver_version=None, devices=[]))
    git: GitSection | None = None
    runtime: RuntimeSection = field(default_factory=lambda: RuntimeSection(env={}, command=None))
    index: IndexSection = field(default_factory=lambda: IndexSection())
    shadowed: tuple[Shadowed, ...] = ()
    #: The machine it ran on (cpu, memory, shm); None when unknown (a schema-1 lock).
    host: HostSection | None = None
    #: A project outside git: its packed files with their sha256 (None: git or no code).
    code: CodeSection | None = None
    #: What the run read (data, weights), sorted by path; () for an older lock.
    inputs: tuple[Input, ...] = ()
    schema_version: int = SCHEMA_VERSION
    generator: str = f"envlock {__version__}"

    @property
    def env_digest(self) -> str:
        return env_digest(self)

    @property
    def lock_digest(self) -> str:
        return _digest(_body(self))

    @property
    def project_root(self) -> str | None:
        """The experiment's code directory: the git root, else the packed directory."""
        return (self.git or {}).get("root") or (self.code or {}).get("root")

    def package(self, name: str) -> Package | None:
        wanted = normalize(name)
        return next((p for p in self.packages if p.name == wanted), None)

    def with_command(self, command: str | None) -> Lock:
        return replace(self, runtime={**self.runtime, "command": command})


_NORMALIZE = re.compile(r"[-_.]+")


def normalize(name: str) -> str:
    """PEP 503 normalized project name."""
    return _NORMALIZE.sub("-", name).lower()


# ---------------------------------------------------------------- digests

def _canonical(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _digest(data: Any) -> str:
    return "sha256:" + hashlib.sha256(_canonical(data)).hexdigest()


def env_identity(lock: Lock) -> dict[str, Any]:
    """Exactly the facts an environment image depends on."""
    py = lock.python
    project_root = lock.project_root
    python: dict[str, Any] = {"implementation": py["implementation"],
                              "version": py["version"], "arch": py["arch"]}
    carried = py.get("carried")
    if isinstance(carried, dict):  # the interpreter is a layer of the image (pytree)
        python["carried"] = {"prefix": carried.get("prefix"), "digest": carried.get("digest")}
    return {
        "python": python,
        "platform": {"system": lock.os["system"], "libc": lock.os["libc"].get("family")},
        "packages": [p.env_key(project_root) for p in lock.packages],
    }


def env_digest(lock: Lock) -> str:
    return _digest(env_identity(lock))


def _body(lock: Lock) -> dict[str, Any]:
    """The document without ``lock_digest``, in file order."""
    return {
        "schema_version": lock.schema_version,
        "generator": lock.generator,
        "env_digest": env_digest(lock),
        "python": lock.python,
        "os": lock.os,
        "frameworks": lock.frameworks,
        "gpu": lock.gpu,
        "host": lock.host,
        "git": lock.git,
        "code": lock.code,
        "runtime": lock.runtime,
        "index": lock.index,
        "packages": [p.to_dict() for p in lock.packages],
        "shadowed": [s.to_dict() for s in lock.shadowed],
        "inputs": _inputs_section(lock.inputs),
    }


def to_document(lock: Lock) -> dict[str, Any]:
    body = _body(lock)
    lock_digest = _digest(body)  # before the keys move: the digest is of the body as is
    doc = {"schema_version": body.pop("schema_version"), "generator": body.pop("generator"),
           "env_digest": body.pop("env_digest"), "lock_digest": lock_digest}
    doc.update(body)
    return doc


# ---------------------------------------------------------------- YAML

HEADER = ("# envlock lockfile: the exact environment of an experiment.\n"
          "# Generated; do not edit by hand (lock_digest would no longer match).\n")


def dumps(lock: Lock) -> str:
    """The lockfile text: envlock's own deterministic YAML writer, same bytes every time."""
    from envlock.model import yamlout

    return HEADER + yamlout.dump(to_document(lock))


def write(lock: Lock, path: str | Path) -> Path:
    """Write atomically: a temp file in the same directory, fsync, then rename over."""
    return save(lock, path)[0]


def save(lock: Lock, path: str | Path) -> tuple[Path, dict[str, Any]]:
    """:func:`write`, also returning the document written (its ``env_digest`` and
    ``lock_digest`` without computing them again)."""
    from envlock.model import yamlout

    target = Path(path)
    document = to_document(lock)
    data = (HEADER + yamlout.dump(document)).encode()
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(target, 0o644) as handle:
        handle.write(data)
    return target, document


# ---------------------------------------------------------------- loading

def load(path: str | Path) -> Lock:
    target = Path(path)
    try:
        text = target.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LockfileError(target, "no such lockfile",
                            "create one with `envlock lock` or pass the right path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise LockfileError(target, f"cannot read it: {exc}") from exc
    return loads(text, source=str(target))


def loads(text: str, source: str = "<lockfile>") -> Lock:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        doc = yaml.load(text, Loader=loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise LockfileError(source, f"malformed YAML{where}",
                            "regenerate it with `envlock lock`") from exc
    if not isinstance(doc, dict):
        raise LockfileError(source, "not an envlock lockfile (expected a YAML mapping)")
    version = doc.get("schema_version")
    migrated = migrate(doc, source)
    lock = from_document(migrated, source)
    # The digest is of the document as written: a migrated lock is checked as its own
    # schema wrote it, a current one also against the model it loads into.
    written = _digest({k: v for k, v in doc.items() if k != "lock_digest"})
    if doc.get("lock_digest") != written or (
            version == SCHEMA_VERSION and written != lock.lock_digest):
        raise LockfileError(source, "lock_digest does not match the content (edited by hand?)",
                            "regenerate it with `envlock lock`")
    return lock


def migrate(doc: dict[str, Any], source: str) -> dict[str, Any]:
    version = doc.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise LockfileError(source, "missing or invalid schema_version",
                            "is this an envlock lockfile? regenerate it with `envlock lock`")
    if version > SCHEMA_VERSION:
        raise LockfileError(source, f"schema_version {version} is newer than this envlock "
                            f"understands (≤ {SCHEMA_VERSION})",
                            "upgrade envlock: pip install -U envlock")
    while version < SCHEMA_VERSION:
        if version not in MIGRATIONS:
            raise LockfileError(source, f"schema_version {version} is no longer supported",
                                "regenerate the lock with `envlock lock`")
        doc = MIGRATIONS[version](doc)
        version = doc["schema_version"]
    return doc


def _require(doc: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str,
             source: str) -> Any:
    if key not in doc:
        raise LockfileError(source, f"missing field `{where}{key}`",
                            "regenerate it with `envlock lock`")
    value = doc[key]
    if not isinstance(value, kind):
        raise LockfileError(source, f"field `{where}{key}` has the wrong type "
                            f"({type(value).__name__})", "regenerate it with `envlock lock`")
    return value


def _section(doc: dict[str, Any], name: str, source: str) -> dict[str, Any]:
    section: dict[str, Any] = _require(doc, name, dict, "", source)
    for key, kind in SECTION_KEYS[name].items():
        _require(section, key, kind, f"{name}.", source)
    return section


def _package(raw: Any, index: int, source: str) -> Package:
    where = f"packages[{index}]."
    if not isinstance(raw, dict):
        raise LockfileError(source, f"`packages[{index}]` is not a mapping")
    src = _require(raw, "source", dict, where, source)
    kind = _require(src, "kind", str, where + "source.", source)
    if kind not in Source.KINDS:
        raise LockfileError(source, f"`{where}source.kind` is unknown: {kind!r}")
    known = {f.name for f in fields(Source)}
    return Package(
        name=_require(raw, "name", str, where, source),
        version=_require(raw, "version", str, where, source),
        source=Source(**{k: v for k, v in src.items() if k in known}),
        installer=raw.get("installer"), location=raw.get("location"),
        dist_dir=raw.get("dist_dir"), requested=bool(raw.get("requested", False)),
        files_digest=raw.get("files_digest"),
    )


def _inputs_section(inputs: tuple[Input, ...]) -> list[Any]:
    if not inputs:
        return []
    from envlock.model.inputs import to_section

    return to_section(inputs)


def _inputs(raw: Any, source: str) -> tuple[Input, ...]:
    from envlock.model.inputs import from_section

    try:
        return from_section(raw)
    except (KeyError, TypeError, ValueError) as exc:
        raise LockfileError(source, f"an entry of `inputs` is malformed ({exc})",
                            "regenerate it with `envlock capture`") from exc


def from_document(doc: dict[str, Any], source: str = "<lockfile>") -> Lock:
    raw_packages = _require(doc, "packages", list, "", source)
    git = doc.get("git")
    if git is not None and not isinstance(git, dict):
        raise LockfileError(source, "field `git` must be a mapping or null")
    shadowed = doc.get("shadowed") or []
    if not isinstance(doc.get("inputs") or [], list):
        raise LockfileError(source, "field `inputs` must be a list",
                            "regenerate it with `envlock lock`")
    for name in ("host", "code"):
        if doc.get(name) is not None and not isinstance(doc[name], dict):
            raise LockfileError(source, f"field `{name}` must be a mapping or null",
                                "regenerate it with `envlock lock`")
    if doc.get("code") is not None:
        _section(doc, "code", source)
    return Lock(
        python=cast(PythonSection, _section(doc, "python", source)),
        os=cast(OsSection, _section(doc, "os", source)),
        frameworks=_section(doc, "frameworks", source),
        gpu=cast(GpuSection, _section(doc, "gpu", source)),
        git=cast("GitSection | None", git),
        runtime=cast(RuntimeSection, _section(doc, "runtime", source)),
        index=cast(IndexSection, _section(doc, "index", source)),
        packages=tuple(_package(p, i, source) for i, p in enumerate(raw_packages)),
        shadowed=tuple(Shadowed(**s) for s in shadowed),
        host=doc.get("host"),
        code=doc.get("code"),
        inputs=_inputs(doc.get("inputs"), source),
        schema_version=doc["schema_version"],
        generator=str(doc.get("generator", "")),
    )
