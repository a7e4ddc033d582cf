"""Interpreter probe: standard library only, runs inside the interpreter being locked.

envlock imports this module for its own interpreter and feeds its source to any
other interpreter (``envlock lock --python .venv/bin/python``) on stdin, so that
nothing has to be installed into the environment being captured. It must keep
working on old Pythons (3.8+): no third-party imports, no new syntax.

It only reads raw facts (file contents, paths); every decision about what they
mean is made by envlock's pure code in ``envlock.snapshot.packages``.

It runs on every ``envlock lock`` and ``check``, so it keeps its start-up small: no
``json``, ``platform`` or ``hashlib`` on the usual path (the first two import ``re``,
together ~6 ms of a ~20 ms probe), and a RECORD whose stat is unchanged since the last
probe is not read again (see :func:`record_digest`).
"""

from __future__ import annotations

import os
import sys

# Annotations are never evaluated (the __future__ import) and typing is not imported at run
# time: it costs start-up and the probe must run on any Python from 3.8.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Tuple

    Row = Tuple[str, str]
    StatKey = Tuple[str, ...]

METADATA_FILES = ("METADATA", "PKG-INFO")
#: Files a dist-info gets from the installer, not from the wheel: never part of files_digest.
INSTALLER_FILES = ("INSTALLER", "REQUESTED", "RECORD", "RECORD.jws", "RECORD.p7s",
                   "direct_url.json")
TORCH_LIB_PREFIXES = ("libcudnn", "libnccl", "libcudart", "libcublas")
#: First line of a RECORD digest cache file (``--record-cache FILE``).
RECORD_CACHE_HEADER = "envlock record cache 1"
#: A RECORD changed less than this long ago is not cached: on a file system with coarse
#: timestamps a second change within the same tick could leave its stat as it was.
RACY_NS = 2 * 10**9


def read_text(path: str, limit: int | None = None) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read(limit) if limit else handle.read()
    except OSError:
        return None


def read_headers(path: str) -> dict[str, str] | None:
    """Name and Version from a core-metadata file, stopping at the body."""
    found: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if not line.strip():
                    break
                key, sep, value = line.partition(":")
                if sep and key in ("Name", "Version") and key not in found:
                    found[key] = value.strip()
                    if len(found) == 2:
                        break
    except OSError:
        return None
    return found


def record_rows(path: str) -> list[Row] | None:
    """(path, "algo=digest") rows of a RECORD file, or None when it cannot be read."""
    return parse_record(read_record(path)[0])


def read_record(path: str) -> tuple[str | None, os.stat_result | None]:
    """A RECORD's text and the stat of the file it was read from (taken before reading,
    so that a change while reading shows in the next stat); (None, None) if unreadable."""
    try:
        with open(path, "r", encoding="utf-8", newline="") as handle:
            info = os.fstat(handle.fileno())
            return handle.read(), info
    except (OSError, UnicodeDecodeError):
        return None, None


def parse_record(text: str | None) -> list[Row] | None:
    """(path, "algo=digest") rows of a RECORD's text, or None (no text, bad quoting)."""
    if text is None:
        return None
    if '"' in text:  # a quoted path (with a comma): let csv handle it
        import csv

        try:
            return [(r[0], r[1]) for r in csv.reader(text.splitlines()) if len(r) >= 2]
        except csv.Error:
            return None
    rows: list[Row] = []
    for line in text.splitlines():
        parts = line.rsplit(",", 2)
        if len(parts) == 3:
            rows.append((parts[0], parts[1]))
    return rows


def content_path(path: str) -> str | None:
    """Where a RECORD entry lands inside site-packages, or None when it is not part of the
    distribution's content (files outside site-packages such as scripts, which installers
    rewrite; byte-code; installer bookkeeping). Works for installed and wheel RECORDs.
    Runs once per RECORD row (tens of thousands for torch): string tests, no split."""
    if path.endswith((".pyc", ".pyo")) or path.startswith(("../", "/")):
        return None
    if "__pycache__" in path and "__pycache__" in path.split("/"):
        return None
    head, sep, rest = path.partition("/")
    if head.endswith(".data"):
        sub, sep, tail = rest.partition("/")
        return tail if sep and sub in ("purelib", "platlib") else None
    if sep and head.endswith(".dist-info") and rest in INSTALLER_FILES:
        return None
    return path


def files_digest(rows: list[Row]) -> str:
    """One sha256 over every (path, file hash) a distribution is made of."""
    import hashlib

    lines = []
    for path, digest in rows:
        if digest:
            inside = content_path(path)
            if inside:
                lines.append(inside + "," + digest)
    lines.sort()
    return "sha256:" + hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()


def verify_rows(location: str, rows: list[Row]) -> list[dict[str, str]]:
    """Installed files whose content differs from RECORD (edited by hand) or that are gone."""
    import base64
    import hashlib

    problems = []
    for path, expected in rows:
        if not expected or "=" not in expected:
            continue
        algo, _, digest = expected.partition("=")
        full = os.path.normpath(os.path.join(location, path))
        try:
            hasher = hashlib.new(algo)
            with open(full, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    hasher.update(block)
        except FileNotFoundError:
            problems.append({"path": full, "problem": "missing"})
            continue
        except (OSError, ValueError):
            problems.append({"path": full, "problem": "unreadable"})
            continue
        actual = base64.urlsafe_b64encode(hasher.digest()).rstrip(b"=").decode("ascii")
        if actual != digest:
            problems.append({"path": full, "problem": "modified"})
    return problems


def metadata_path(meta_dir: str, is_dir: bool) -> str | None:
    if not is_dir:
        return meta_dir  # a bare PKG-INFO file named foo-1.0.egg-info
    for name in METADATA_FILES:
        candidate = os.path.join(meta_dir, name)
        if os.path.isfile(candidate):
            return candidate
    return None


class RecordCache:
    """``files_digest`` and row count of each RECORD, keyed by its path and stat (size,
    mtime, ctime, inode, device), as the last probe of this interpreter left them in a
    cache file (``--record-cache FILE``). Any change to a RECORD changes its stat (ctime
    cannot be set back), so a RECORD is read again exactly when it may differ; one that
    changed less than :data:`RACY_NS` ago is not cached (coarse file system clocks).
    envlock writes :meth:`text` back when it differs from what was loaded."""

    def __init__(self, path: str) -> None:
        self.old: dict[str, tuple[StatKey, str, int]] = {}
        self.new: dict[str, tuple[StatKey, str, int]] = {}
        text = read_text(path) or ""
        lines = text.split("\n")
        if lines[0] != RECORD_CACHE_HEADER:
            return
        for line in lines[1:]:
            fields = line.split("\t")
            if len(fields) == 8 and fields[7].isdigit() and fields[6].startswith("sha256:"):
                self.old[fields[0]] = (tuple(fields[1:6]), fields[6], int(fields[7]))

    def summary(self, record: str) -> tuple[str, int] | None:
        """(files_digest, files) of the RECORD at ``record``, or None when unreadable."""
        try:
            key = stat_key(os.stat(record))
        except OSError:
            return None
        cached = self.old.get(record)
        if cached is not None and cached[0] == key:
            self.new[record] = cached
            return cached[1], cached[2]
        text, info = read_record(record)
        rows = parse_record(text)
        if rows is None:
            return None
        digest = files_digest(rows)
        if info is not None and cacheable(record, info):
            self.new[record] = (stat_key(info), digest, len(rows))
        return digest, len(rows)

    def text(self) -> str | None:
        """The cache file's new content, or None when it would not change."""
        if self.new == self.old:
            return None
        lines = [RECORD_CACHE_HEADER]
        for record in sorted(self.new):
            key, digest, count = self.new[record]
            lines.append("\t".join((record,) + key + (digest, str(count))))
        return "\n".join(lines) + "\n"


def stat_key(info: os.stat_result) -> StatKey:
    return tuple(str(value) for value in (info.st_size, info.st_mtime_ns, info.st_ctime_ns,
                                          info.st_ino, info.st_dev))


def cacheable(record: str, info: os.stat_result) -> bool:
    """A RECORD last changed long enough ago, at a path the cache file can hold."""
    import time

    if "\t" in record or "\n" in record or "\r" in record:
        return False
    try:
        record.encode("utf-8")
    except UnicodeError:  # an undecodable name (surrogate escapes)
        return False
    return time.time_ns() - max(info.st_mtime_ns, info.st_ctime_ns) >= RACY_NS


def describe(location: str, entry_name: str, meta_dir: str, is_dir: bool, kind: str,
             order: int, deep: bool = False,
             cache: RecordCache | None = None) -> dict[str, Any]:
    meta = metadata_path(meta_dir, is_dir)
    headers = read_headers(meta) if meta else None
    item: dict[str, Any] = {
        "dir": entry_name,
        "location": location,
        "kind": kind,
        "order": order,
        "name": (headers or {}).get("Name"),
        "version": (headers or {}).get("Version"),
        "metadata_missing": meta is None,
    }
    if is_dir:
        installer = read_text(os.path.join(meta_dir, "INSTALLER"), 200)
        item["installer"] = installer.strip() if installer else None
        item["direct_url"] = read_text(os.path.join(meta_dir, "direct_url.json"), 65536)
        item["requested"] = os.path.exists(os.path.join(meta_dir, "REQUESTED"))
        record = os.path.join(meta_dir, "RECORD")
        if kind == "dist-info" and cache is not None and not deep:
            summary = cache.summary(record)
            item["has_record"] = summary is not None
            if summary is not None:
                item["files_digest"], item["files"] = summary
            return item
        rows = record_rows(record) if kind == "dist-info" else None
        item["has_record"] = rows is not None
        if rows is not None:
            item["files_digest"] = files_digest(rows)
            item["files"] = len(rows)
            if deep:
                item["problems"] = verify_rows(location, rows)
    return item


def scan_location(location: str, order: int, deep: bool = False, cache: RecordCache | None = None
                  ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every distribution's metadata directory found directly in one sys.path entry."""
    found: list[dict[str, Any]] = []
    try:
        entries = sorted(os.scandir(location), key=lambda e: e.name)
    except OSError:
        return found, []
    links: list[dict[str, Any]] = []
    for entry in entries:
        name = entry.name
        if name.endswith(".dist-info"):
            found.append(describe(location, name, entry.path, True, "dist-info", order, deep,
                                  cache))
        elif name.endswith(".egg-info"):
            is_dir = entry.is_dir()
            found.append(describe(location, name, entry.path, is_dir, "egg-info", order))
        elif name.endswith(".egg") and entry.is_dir():
            egg_info = os.path.join(entry.path, "EGG-INFO")
            if os.path.isdir(egg_info):
                found.append(describe(location, name, egg_info, True, "egg", order))
        elif name.endswith(".egg-link"):
            target = read_text(entry.path, 4096)
            links.append({"file": entry.path, "target": (target or "").splitlines()[:1]})
    return found, links


def site_dirs() -> list[str]:
    dirs: list[str] = []
    try:
        import site

        dirs.extend(site.getsitepackages())
        dirs.append(site.getusersitepackages())
    except Exception:  # noqa: BLE001 - virtualenv's old site.py lacks these
        pass
    import sysconfig

    for key in ("purelib", "platlib"):
        dirs.append(sysconfig.get_paths()[key])
    return sorted({os.path.realpath(d) for d in dirs if d})


def libc() -> dict[str, str | None]:
    try:
        value = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (AttributeError, ValueError, OSError):
        value = ""
    if value.startswith("glibc "):
        return {"family": "glibc", "version": value.split(" ", 1)[1]}
    if os.path.isdir("/lib") and any(n.startswith("ld-musl-") for n in os.listdir("/lib")):
        return {"family": "musl", "version": None}
    return {"family": None, "version": None}


def python_version() -> str:
    """``platform.python_version()`` without importing platform: the version that leads
    ``sys.version`` (what platform's CPython and PyPy parsers take: the longest run of
    ``[A-Za-z0-9_.+]``), with a patch level added when it has none."""
    text = sys.version
    if sys.implementation.name not in ("cpython", "pypy") or "IronPython" in text:
        import platform

        return platform.python_version()
    end = 0
    while end < len(text) and text[end] in VERSION_CHARS:
        end += 1
    parts = text[:end].split(".")
    if len(parts) == 2:
        parts.append("0")
    return ".".join(parts)


VERSION_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.+")


def machine() -> str:
    """``platform.machine()`` without importing platform: ``os.uname()``'s on POSIX."""
    value = os.uname().machine if hasattr(os, "uname") else ""
    if not value or value == "unknown":
        import platform

        return platform.machine()
    return value


def python_facts() -> dict[str, Any]:
    import sysconfig

    return {
        "implementation": sys.implementation.name,
        "version": python_version(),
        "version_info": list(sys.version_info[:3]),
        "build": sys.version.split("\n")[0],
        "executable": sys.executable,
        "prefix": sys.prefix,
        "base_prefix": getattr(sys, "base_prefix", sys.prefix),
        "venv": getattr(sys, "base_prefix", sys.prefix) != sys.prefix,
        "cache_tag": sys.implementation.cache_tag,
        "soabi": sysconfig.get_config_var("SOABI"),
        "sysconfig_platform": sysconfig.get_platform(),
        "machine": machine(),
        "byteorder": sys.byteorder,
        "libc": libc(),
        "path": list(sys.path),
        "site_dirs": site_dirs(),
    }


def os_facts() -> dict[str, Any]:
    release: dict[str, str] = {}
    text = read_text("/etc/os-release") or read_text("/usr/lib/os-release") or ""
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            release[key.strip()] = value.strip().strip('"')
    uname = os.uname() if hasattr(os, "uname") else None
    cgroup = read_text("/proc/1/cgroup", 65536) or ""
    return {
        "os_release": release,
        "system": uname.sysname if uname else sys.platform,
        "kernel": uname.release if uname else None,
        "hostname": uname.nodename if uname else None,
        "dockerenv": os.path.exists("/.dockerenv"),
        "containerenv": os.path.exists("/run/.containerenv"),
        "cgroup": cgroup[:4096],
    }


def framework_files(distributions: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Raw build-info files of CUDA-bearing frameworks, read without importing them."""
    wanted = {
        "torch": ("torch", "version.py"),
        "tensorflow": ("tensorflow", "python", "platform", "build_info.py"),
        "jaxlib": ("jaxlib", "version.py"),
    }
    out: dict[str, dict[str, Any]] = {}
    for dist in distributions:
        name = (dist.get("name") or "").lower()
        if name in wanted and name not in out:
            path = os.path.join(dist["location"], *wanted[name])
            out[name] = {"path": path, "text": read_text(path, 65536)}
            if name == "torch":
                lib = os.path.join(dist["location"], "torch", "lib")
                try:
                    libs = sorted(n for n in os.listdir(lib) if n.startswith(TORCH_LIB_PREFIXES))
                except OSError:
                    libs = []
                out[name]["libs"] = libs
    return out


def probe(deep: bool = False, cache: RecordCache | None = None) -> dict[str, Any]:
    py = python_facts()
    distributions: list[dict[str, Any]] = []
    egg_links: list[dict[str, Any]] = []
    seen: set[str] = set()
    # sys.path[0] is the directory of whatever started Python (here: "-c"), not
    # part of the environment; everything after it is what imports would see.
    for order, location in enumerate(py["path"][1:], start=1):
        location = os.path.abspath(location or os.getcwd())
        if location in seen or not os.path.isdir(location):
            continue
        seen.add(location)
        found, links = scan_location(location, order, deep, cache)
        distributions.extend(found)
        egg_links.extend(links)
    return {
        "probe_version": 1,
        "python": py,
        "os": os_facts(),
        "distributions": distributions,
        "egg_links": egg_links,
        "frameworks": framework_files(distributions),
    }


def dumps(value: object) -> str:
    """JSON text (ASCII) of the probe's answer. Strings go through the C encoder that
    ``json.dumps`` itself uses; the json package (which compiles regular expressions at
    import) is only imported where ``_json`` is missing or a value is not plain data."""
    quote: Callable[[str], str] | None
    try:
        from _json import encode_basestring_ascii as quote
    except ImportError:
        quote = None
    if quote is not None:
        out: list[str] = []
        try:
            _encode(value, quote, out.append)
            return "".join(out)
        except TypeError:
            pass
    import json

    return json.dumps(value)


def _encode(value: object, quote: Callable[[str], str], emit: Callable[[str], object]) -> None:
    if isinstance(value, str):
        emit(quote(value))
    elif value is None:
        emit("null")
    elif value is True or value is False:
        emit("true" if value else "false")
    elif type(value) is int:
        emit(int.__repr__(value))
    elif isinstance(value, dict):
        emit("{")
        for index, (key, item) in enumerate(value.items()):
            if type(key) is not str:
                raise TypeError(key)
            emit(("," if index else "") + quote(key) + ":")
            _encode(item, quote, emit)
        emit("}")
    elif isinstance(value, (list, tuple)):
        emit("[")
        for index, item in enumerate(value):
            if index:
                emit(",")
            _encode(item, quote, emit)
        emit("]")
    else:
        raise TypeError(value)


def main(argv: list[str]) -> None:
    """``[--deep] [--record-cache FILE]``: the probe's answer as JSON on stdout. With
    ``--record-cache``, ``record_cache`` holds the file's new content (None: unchanged)."""
    deep = "--deep" in argv
    cache = None
    if "--record-cache" in argv and argv.index("--record-cache") + 1 < len(argv) and not deep:
        cache = RecordCache(argv[argv.index("--record-cache") + 1])
    answer = probe(deep=deep, cache=cache)
    if cache is not None:
        answer["record_cache"] = cache.text()
    sys.stdout.write(dumps(answer))


def run(argv: list[str]) -> None:
    """:func:`main`, then end the process at once: the interpreter's teardown is ~2 ms of
    a probe that holds nothing to clean up."""
    main(argv)
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    run(sys.argv[1:])
