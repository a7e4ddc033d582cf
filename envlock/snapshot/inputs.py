"""Find and hash the inputs a run read: declared paths (``--input``, ``inputs = [...]``),
paths in its command line, and its MLflow datasets whose source is a local file or an
``s3://`` object (referenced by ETag and VersionId:
:func:`envlock.operations.inputs.remote_inputs`).

Hashing goes through a stat cache (``$ENVLOCK_CACHE/inputs/stat.json``) keyed on
(path, size, mtime_ns, inode): a file whose stat is unchanged is not read again, so an
unchanged re-capture of a large dataset costs a walk and a ``stat`` per file. A file
modified after the run started is an output, not an input: it is skipped and named. A
file whose name or content looks like a secret (the code scan's detectors) is never
pinned: it is named, with the way to keep a false positive (``--allow-file``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from envlock.errors import UsageError
from envlock.model import hub
from envlock.model import inputs as model
from envlock.model.inputs import Entry, Input, StatCache

CHUNK = 1 << 20
#: Parts of a project that are never data: caches, environments, outputs, local state.
NOT_DATA = frozenset({".git", ".venv", "venv", "env", ".env", "__pycache__", "node_modules",
                      ".mypy_cache", ".pytest_cache", ".ruff_cache", ".tox", ".nox",
                      ".cache", "build", "dist", "outputs", "output", "mlruns",
                      "mlartifacts", ".envlock", "wandb", "lightning_logs", ".ipynb_checkpoints",
                      "site-packages", ".idea", ".vscode"})
#: Suffixes of files that look like data or weights.
DATA_SUFFIXES = frozenset({".csv", ".tsv", ".parquet", ".json", ".jsonl", ".npy", ".npz",
                           ".pt", ".pth", ".ckpt", ".safetensors", ".bin", ".h5", ".hdf5",
                           ".pkl", ".pickle", ".arrow", ".feather", ".txt", ".xlsx", ".zip",
                           ".gz", ".tar", ".tfrecord", ".onnx", ".msgpack", ".avro", ".orc",
                           ".jpg", ".png", ".wav", ".mp3"})


def cache_root() -> Path:
    return Path(os.environ.get("ENVLOCK_CACHE", Path.home() / ".cache" / "envlock")) / "inputs"


def load_cache(path: Path | None = None) -> StatCache:
    target = path or cache_root() / "stat.json"
    try:
        return StatCache.from_json(json.loads(target.read_text()))
    except (OSError, ValueError):
        return StatCache()


def save_cache(cache: StatCache, path: Path | None = None) -> None:
    from envlock.model.atomic import atomic_file

    if not cache.dirty:
        return
    target = path or cache_root() / "stat.json"
    with contextlib.suppress(OSError):  # a read-only cache only costs the next re-hash
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(target, 0o644) as handle:
            handle.write(json.dumps(cache.to_json(), separators=(",", ":")).encode())
        cache.dirty = False


def sha256_file(path: Path) -> str:
    """sha256 hex of a file: ``hashlib.file_digest`` (zero-copy reads, Python ≥ 3.11),
    else 1 MiB reads into one reused buffer."""
    with path.open("rb") as handle:
        file_digest = getattr(hashlib, "file_digest", None)
        if file_digest is not None:
            return str(file_digest(handle, "sha256").hexdigest())
        digest, buffer = hashlib.sha256(), bytearray(CHUNK)
        view = memoryview(buffer)
        while size := handle.readinto(buffer):
            digest.update(view[:size])
        return digest.hexdigest()


def hashed(path: Path, cache: StatCache, st: os.stat_result | None = None) -> tuple[int, str]:
    """(size, sha256) of a file, from the cache when its stat is unchanged."""
    st = st or path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns, st.st_ino)
    known = cache.get(key)
    if known is None:
        known = sha256_file(path)
        cache.put(key, known)
    return st.st_size, known


@dataclass
class Found:
    """What a look at the inputs found: the inputs, and what was left out and why."""

    inputs: list[Input] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)  # modified after the run started
    secrets: list[str] = field(default_factory=list)  # "path (kind)"
    missing: list[str] = field(default_factory=list)  # declared but not there


@dataclass(frozen=True)
class Scope:
    """How paths are seen: the project root, when the run started (ns; None: unknown),
    the files kept although they look like secrets (``--allow-file`` patterns)."""

    project: Path
    started_ns: int | None = None
    allow: tuple[str, ...] = ()


def seen_as(path: Path, project: Path) -> str:
    """The path as the run saw it: project-relative inside the project, else absolute."""
    resolved = path.resolve()
    with contextlib.suppress(ValueError):
        return resolved.relative_to(project.resolve()).as_posix()
    return resolved.as_posix()


def collect(paths: Iterable[tuple[str, str]], scope: Scope, cache: StatCache) -> Found:
    """Hash each (path, source): a file or a directory (relative paths are relative to the
    project); a declared path that is missing is named."""
    found = Found()
    for text, source in paths:
        path = Path(text).expanduser()
        path = path if path.is_absolute() else scope.project / path
        if not path.exists():
            if source in ("declared", "config"):
                found.missing.append(text)
            continue
        item = _one(path, source, scope, cache, found)
        if item is not None:
            found.inputs.append(item)
    return found


def _one(path: Path, source: str, scope: Scope, cache: StatCache, found: Found
         ) -> Input | None:
    snapshot = hub.parse(path.absolute().as_posix())
    if snapshot is not None:
        return _hub(snapshot, source, scope, cache, found)
    name = seen_as(path, scope.project)
    if path.is_dir():
        entries = [e for full, rel in sorted(_walk(str(path)), key=lambda x: x[1])
                   if (e := _entry(full, rel, _join(name, rel), scope, cache, found))]
        return model.directory(name, entries, (source,)) if entries else None
    entry = _entry(str(path), name, name, scope, cache, found)
    if entry is None:
        return None
    return Input(path=name, kind="file", size=entry.size, sha256=entry.sha256,
                 sources=(source,))


def _hub(entry: hub.HubEntry, source: str, scope: Scope, cache: StatCache, found: Found
         ) -> Input | None:
    """A hub cache's snapshot: its repository folder with the snapshot's files and the
    refs that name its commit (:mod:`envlock.model.hub`), kind hub-model."""
    refs = hub_refs(Path(entry.path))
    name = seen_as(Path(entry.path), scope.project)
    entries = [e for full, rel in _hub_files(entry, refs)
               if (e := _entry(full, rel, _join(name, rel), scope, cache, found))]
    return model.directory(name, entries, (source,), entry.facts(refs)) if entries else None


def _hub_files(entry: hub.HubEntry, refs: dict[str, str]) -> list[tuple[str, str]]:
    """(full path, path in the repository folder) of a snapshot's files and its refs."""
    folder = Path(entry.path)
    files = list(_walk(str(folder / entry.snapshot), entry.snapshot + "/")) if (
        folder / entry.snapshot).is_dir() else []
    files += [(str(folder / "refs" / r), f"refs/{r}") for r in refs]
    return sorted((f for f in files if entry.carried(f[1], refs)), key=lambda x: x[1])


def hub_refs(folder: Path) -> dict[str, str]:
    """A hub repository folder's refs: branch (or tag) -> commit."""
    out = {}
    refs = folder / "refs"
    for ref in sorted(refs.rglob("*")) if refs.is_dir() else ():
        if ref.is_file():
            with contextlib.suppress(OSError, UnicodeDecodeError):
                out[ref.relative_to(refs).as_posix()] = ref.read_text().strip()
    return out


def _join(name: str, rel: str) -> str:
    return rel if name in ("", ".") else f"{name.rstrip('/')}/{rel}"


def _walk(root: str, prefix: str = "") -> Iterable[tuple[str, str]]:
    """(full path, path relative to ``root``) of every file under ``root`` (symlinks to
    files followed, ``.git`` and ``__pycache__`` left out)."""
    with os.scandir(root) as found:
        for entry in found:
            rel = prefix + entry.name
            if entry.is_dir():
                if entry.name not in (".git", "__pycache__"):
                    yield from _walk(entry.path, rel + "/")
            elif entry.is_file():
                yield entry.path, rel


def _entry(full: str, rel: str, shown: str, scope: Scope, cache: StatCache, found: Found
           ) -> Entry | None:
    st = os.stat(full)
    if model.is_output(st.st_mtime_ns, scope.started_ns):
        found.outputs.append(shown)
        return None
    known = cache.get((full, st.st_size, st.st_mtime_ns, st.st_ino))
    # a file in the cache was scanned when capture hashed it (a secret never is hashed)
    secret = _secret(Path(full), shown, scope, scan=known is None)
    if secret:
        found.secrets.append(f"{shown} ({secret})")
        return None
    size, sha = (st.st_size, known) if known else hashed(Path(full), cache, st)
    return Entry(rel, size, sha)


_SECRET_NAME: re.Pattern[str] | None = None


def _secret_name(shown: str) -> bool:
    """:func:`envlock.model.redact.is_secret_file`, its patterns compiled once."""
    import fnmatch

    from envlock.model.redact import SECRET_FILE_PATTERNS

    global _SECRET_NAME
    if _SECRET_NAME is None:
        _SECRET_NAME = re.compile("|".join(fnmatch.translate(p) for p in SECRET_FILE_PATTERNS))
    parts = shown.split("/")
    return bool({".ssh", ".aws", ".docker"} & set(parts[:-1])) or bool(
        _SECRET_NAME.match(parts[-1]))


def _secret(path: Path, shown: str, scope: Scope, scan: bool = True) -> str | None:
    """The kind of secret the file looks like, by name or (with ``scan``) content; None
    when clean or allowed (``--allow-file``)."""
    import fnmatch

    if scope.allow and any(shown == p or fnmatch.fnmatchcase(shown, p) for p in scope.allow):
        return None
    if _secret_name(shown):
        return "a secret by its name"
    if not scan or path.suffix.lower() in (".csv", ".parquet", ".npy", ".npz", ".pt", ".pth",
                               ".safetensors", ".bin", ".arrow", ".h5"):
        return None  # data and weights: the content scan reads text
    from envlock.snapshot.secrets import Scan

    finding = Scan().file(path, shown)
    return finding.kind if finding else None


# ------------------------------------------------------------------ where paths come from

def command_paths(command: str | None, project: Path, tracked: set[str]) -> list[str]:
    """Arguments of the recorded command that name existing files or directories, not the
    project's tracked code (``--data /abs/x.csv``, ``--data=data/train.csv``)."""
    if not command:
        return []
    try:
        argv = shlex.split(command)
    except ValueError:
        return []
    out = []
    for arg in argv[1:]:
        value = arg.split("=", 1)[1] if arg.startswith("-") and "=" in arg else arg
        if model.is_remote(value):
            out.append(value)  # an object store's: looked at by reference, not here
            continue
        if not value or value.startswith("-") or "/" not in value and "." not in value:
            continue
        path = Path(value).expanduser()
        full = path if path.is_absolute() else project / path
        if not full.exists() or _is_code(full, project, tracked) or _is_environment(full):
            continue
        out.append(value)
    return out


def _is_code(path: Path, project: Path, tracked: set[str]) -> bool:
    rel = seen_as(path, project)
    if rel.startswith("/"):
        return False
    if path.is_dir():
        return rel in ("", ".") or any(t.startswith(rel + "/") for t in tracked)
    return rel in tracked or path.suffix == ".py"


def _is_environment(path: Path) -> bool:
    text = path.resolve().as_posix()
    return any(part in text for part in ("/site-packages/", "/dist-packages/", "/bin/python",
                                         "/usr/lib/python", "/usr/bin/"))


def dataset_paths(datasets: Sequence[dict[str, Any]]) -> list[tuple[str, dict[str, str]]]:
    """MLflow dataset inputs whose source is a local path or a remote object (``s3://``,
    pinned by reference): (path or URL, {name, digest})."""
    out = []
    for dataset in datasets:
        uri = _source_uri(dataset.get("source"))
        if not uri:
            continue
        path = uri[len("file://"):] if uri.startswith("file://") else uri
        if not model.is_remote(path) and ("://" in path or not path.startswith("/")):
            continue
        out.append((path, {"name": str(dataset.get("name") or ""),
                           "digest": str(dataset.get("digest") or "")}))
    return out


def _source_uri(source: Any) -> str | None:
    if isinstance(source, str):
        with contextlib.suppress(ValueError):
            parsed = json.loads(source)
            if isinstance(parsed, dict):
                source = parsed
    if isinstance(source, dict):
        value = source.get("uri") or source.get("path") or source.get("url")
        return str(value) if value else None
    return source if isinstance(source, str) else None


def with_datasets(found: Found, datasets: list[tuple[str, dict[str, str]]],
                  project: Path) -> None:
    """Attach MLflow's dataset name and digest to the inputs at the datasets' paths."""
    by_path = {p if model.is_remote(p) else seen_as(Path(p), project): facts
               for p, facts in datasets}
    found.inputs = [replace(i, dataset=by_path[i.path]) if i.path in by_path else i
                    for i in found.inputs]


def ignored_data(project: Path, ignored: Iterable[str], pinned: Iterable[Input],
                 limit: int = 20) -> list[str]:
    """Git-ignored files of the project that look like data and were not pinned."""
    covered = [i.path for i in pinned]
    out = []
    for rel in sorted(ignored):
        parts = rel.split("/")
        if any(p in NOT_DATA or p.endswith(".egg-info") for p in parts[:-1]):
            continue
        if Path(rel).suffix.lower() not in DATA_SUFFIXES or parts[0] in NOT_DATA:
            continue
        if any(rel == c or rel.startswith(c.rstrip("/") + "/") for c in covered):
            continue
        out.append(rel)
        if len(out) >= limit:
            break
    return out


def declared(values: Iterable[str]) -> list[tuple[str, str]]:
    out = []
    for value in values:
        if not str(value).strip():
            raise UsageError("--input '' names no path", "pass a file or a directory")
        out.append((str(value), "declared"))
    return out


def git_files(project: Path) -> tuple[set[str], list[str]]:
    """(tracked files, git-ignored files) of the project, project-relative; both empty
    outside git."""
    from envlock.snapshot.git import Repo

    repo = Repo.discover(project)
    if repo is None:
        return set(), []
    base = seen_as(project, repo.root)
    prefix = "" if base in ("", ".") else base + "/"

    def listed(*args: str) -> list[str]:
        names = repo.git("ls-files", "-z", *args).decode(errors="replace").split("\0")
        return [n[len(prefix):] for n in names if n and n.startswith(prefix)]

    tracked = set(listed())
    ignored: list[str] = []
    # --directory: an ignored folder is one entry (a .venv is not listed file by file);
    # only the folders that may hold data are looked into
    for name in listed("--others", "--ignored", "--exclude-standard", "--directory"):
        if not name.endswith("/"):
            ignored.append(name)
        elif not any(p in NOT_DATA or p.endswith(".egg-info") for p in name.split("/")):
            ignored += _files_under(project, name.rstrip("/"))
    return tracked, ignored


def _files_under(project: Path, folder: str, limit: int = 5000) -> list[str]:
    """Project-relative files under an ignored folder (not in caches, venvs, outputs)."""
    out: list[str] = []
    for root, dirs, files in os.walk(project / folder):
        dirs[:] = [d for d in dirs if d not in NOT_DATA]
        base = Path(root).relative_to(project).as_posix()
        out += [f"{base}/{name}" for name in files]
        if len(out) >= limit:
            break
    return out


def current(path: Path, name: str, cache: StatCache,
            facts: Mapping[str, str] | None = None) -> Input:
    """What is at ``path`` now (``name``: the path as the run saw it), hashed through the
    cache; nothing is skipped (it is compared, not pinned). ``facts``: a hub model's (only
    its snapshot's files and refs are compared)."""
    entry = hub.parse(f"{path}/snapshots/{facts.get('revision')}") if facts else None
    if entry is not None:
        files = _hub_files(entry, hub_refs(path))
        return model.directory(name, [Entry(rel, *hashed(Path(full), cache))
                                      for full, rel in files], hub=facts)
    if path.is_dir():
        entries = [Entry(rel, *hashed(Path(full), cache))
                   for full, rel in sorted(_walk(str(path)), key=lambda x: x[1])]
        return model.directory(name, entries)
    size, sha = hashed(path, cache)
    return Input(path=name, kind="file", size=size, sha256=sha)
