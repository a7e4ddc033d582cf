"""The run's own interpreter, carried into the image when no base has its exact version.

A capture whose interpreter is a self-contained tree (uv's python-build-standalone,
pyenv's build; :mod:`envlock.model.pytree`) on a base whose Python differs in version
records the tree in the lock (``python.carried``: kind, prefix, digest, file count); the
build then checks the tree on this host against that digest, writes it as a layer of its
own at the same absolute path (canonical, so the same tree gives the same layer bytes and
every environment on it shares the blob), points the venv at it, and checks with ``ldd``
in the base's file system that the base has the libraries it needs.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from envlock.errors import UsageError
from envlock.model import pytree
from envlock.model.lockfile import Lock
from envlock.model.locksections import CarriedInterpreter

#: What a lock without a carried interpreter's refusal suggests.
HINT = ("run the experiment with an interpreter of that version that envlock can carry "
        "into the image (uv's managed Python, or pyenv's) and capture it again")


def candidate(lock: Lock) -> tuple[str, str] | None:
    """(prefix, kind) of the lock's interpreter when it is a tree envlock can carry; the
    prefix with its links resolved (the image's venv is made to point at it)."""
    if lock.python.get("implementation") != "cpython":
        return None
    prefix = pytree.base_prefix(lock.python)
    if not prefix or not os.path.isdir(os.path.join(prefix, "bin")):
        return None
    real = os.path.realpath(prefix)  # uv's cpython-3.12-… links to cpython-3.12.8-…
    has_json = os.path.isfile(os.path.join(real, "PYTHON.json"))
    kind = pytree.kind_of(prefix, has_json) or pytree.kind_of(real, has_json)
    return (real, kind) if kind else None


def carried(lock: Lock) -> dict[str, Any] | None:
    """The lock's carried interpreter (kind, prefix, digest, files), or None."""
    value = lock.python.get("carried")
    return dict(value) if isinstance(value, dict) else None


def plan(lock: Lock, base_python: str | None, base: str, report: Any) -> Lock:
    """``lock`` with its interpreter recorded as carried when the base's Python is not the
    lock's version and the interpreter is a tree envlock can carry; else ``lock`` as is."""
    found = candidate(lock)
    wanted = lock.python["version"]
    if found is None or base_python == wanted or carried(lock):
        return lock
    prefix, kind = found
    entries = walk(prefix, wanted)
    record: CarriedInterpreter = {"kind": kind, "prefix": prefix,
                                  "digest": pytree.tree_digest(entries),
                                  "files": sum(e.kind == "file" for e in entries)}
    report.step(f"carrying Python {wanted} ({kind}, {prefix}) into the image as a layer "
                f"of its own: base {base} has "
                f"{'Python ' + base_python if base_python else 'no Python of a known version'}")
    return replace(lock, python={**lock.python, "carried": record})


def walk(prefix: str, version: str) -> list[pytree.Entry]:
    """The carried entries of the tree at ``prefix``, hashed, in path order."""
    major_minor = ".".join(version.split(".")[:2])
    entries: list[pytree.Entry] = []
    for current, dirs, files in os.walk(prefix):
        rel_dir = os.path.relpath(current, prefix)
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        dirs[:] = sorted(d for d in dirs if pytree.carried(rel_dir + d, major_minor))
        for name in dirs:
            path = os.path.join(current, name)
            entries.append(pytree.Entry(rel_dir + name, "link", target=os.readlink(path))
                           if os.path.islink(path) else pytree.Entry(rel_dir + name, "dir"))
        for name in sorted(files):
            if pytree.carried(rel_dir + name, major_minor):
                entries.append(_entry(os.path.join(current, name), rel_dir + name))
    return sorted(entries, key=lambda e: e.path)


def _entry(path: str, rel: str) -> pytree.Entry:
    if os.path.islink(path):
        return pytree.Entry(rel, "link", target=os.readlink(path))
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            sha.update(chunk)
    return pytree.Entry(rel, "file", sha256=sha.hexdigest(),
                        executable=bool(os.stat(path).st_mode & 0o111))


def verified(lock: Lock) -> list[pytree.Entry]:
    """The carried tree as it is on this host, checked against the lock's digest."""
    record = carried(lock)
    assert record is not None
    prefix = record["prefix"]
    fix = f"build on the host the run was captured on, or restore that interpreter at {prefix}"
    if not os.path.isdir(prefix):
        raise UsageError(f"the lock carries Python {lock.python['version']} from {prefix}, "
                         "which is not on this host", fix)
    entries = walk(prefix, lock.python["version"])
    digest = pytree.tree_digest(entries)
    if digest != record["digest"]:
        raise UsageError(f"the interpreter at {prefix} differs from the one the run was "
                         f"captured with (tree {digest[:19]}…, the lock's "
                         f"{record['digest'][:19]}…)", fix)
    return entries


def with_interpreter(facts: Any, lock: Lock) -> Any:
    """The base's facts with the carried interpreter as the venv's (``stage.BaseFacts``)."""
    record = carried(lock)
    assert record is not None
    prefix = record["prefix"]
    major_minor = ".".join(lock.python["version"].split(".")[:2])
    real = os.path.realpath(os.path.join(prefix, "bin", "python3"))
    executable = real if real.startswith(prefix + "/") else \
        f"{prefix}/bin/python{major_minor}"
    return replace(facts, python=lock.python["version"], interpreter=f"{prefix}/bin/python3",
                   executable=executable)


def layer(store: Any, lock: Lock, entries: list[pytree.Entry]) -> Any:
    """The carried tree as a canonical layer in ``store``: written once per tree digest
    (a later build of any environment on the same interpreter reuses the blob). The
    prefix's parents are carried as directories 0755, so that the image's non-root user
    reaches the interpreter (``/root`` included, which a base has 0700)."""
    from envlock.image.layer import Layer
    from envlock.operations.build import assemble

    record = carried(lock)
    assert record is not None
    name = f"envlock-python:{record['digest']}"
    known = store.lookup(name)
    if known:
        meta = json.loads(store.read(known))
        if store.has(meta["digest"]):
            return Layer(**meta)
    prefix = record["prefix"].strip("/")

    def fill(writer: Any) -> None:
        parts = prefix.split("/")
        for depth in range(1, len(parts)):
            writer.add_dir("/".join(parts[:depth]))
        writer.add_path(prefix, Path("/" + prefix))
        for entry in entries:
            writer.add_path(f"{prefix}/{entry.path}", Path("/" + prefix, entry.path))

    written = assemble.write_layer(store, fill)
    store.tag(name, store.put(json.dumps(written.__dict__, sort_keys=True).encode()))
    return written


def check_libraries(rootfs: Path | None, lock: Lock, entries: list[pytree.Entry],
                    report: Any) -> None:
    """``ldd`` of the interpreter, ``libpython`` and the standard library's extension
    modules, run in the base's file system: a UsageError when the base lacks what the
    interpreter itself needs; the modules that cannot load are named."""
    record = carried(lock)
    assert record is not None
    prefix = record["prefix"]
    if rootfs is None:
        report.detail("no OCI runtime here: the carried interpreter's libraries were not "
                      "checked against the base")
        return
    from envlock.adapters import ociruntime

    files = [f"{prefix}/{e.path}" for e in entries if e.kind == "file" and _elf(e.path)]
    code, out, err = ociruntime.run(
        rootfs, ["/bin/sh", "-c", 'for f; do echo "$f:"; ldd "$f" 2>&1; done', "sh", *files],
        binds=[(Path(prefix), prefix)])
    if code != 0 or not out:
        report.detail(f"ldd could not run in the base (exit {code}): the carried "
                      "interpreter's libraries were not checked: "
                      + err.decode(errors="replace").strip()[-200:])
        return
    missing = pytree.missing_libraries(out.decode(errors="replace"))
    fatal = sorted({lib for path, libs in missing.items() if pytree.essential(path, prefix)
                    for lib in libs})
    if fatal:
        raise UsageError(f"the base image lacks libraries the carried Python "
                         f"{lock.python['version']} needs: {', '.join(fatal)}",
                         "pass --base-image with an image that has them (install their "
                         "packages in it), or capture with an interpreter built for it")
    if missing:
        names = ", ".join(f"{os.path.basename(p).split('.')[0]} ({' '.join(libs)})"
                          for p, libs in sorted(missing.items()))
        report.step(f"the carried interpreter's modules that cannot load in this base "
                    f"(their libraries are missing there): {names}")


def _elf(rel: str) -> bool:
    name = rel.rsplit("/", 1)[-1]
    return (rel.startswith("bin/python") and "-config" not in name and
            not name.endswith(".py")) or (rel.startswith("lib/libpython") and ".so" in name) \
        or ("/lib-dynload/" in rel and name.endswith(".so"))
