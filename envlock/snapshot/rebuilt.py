"""Probe: which installed packages are an OS distribution's rebuild of an index release.

Debian, Ubuntu and Fedora keep their own builds of pip and setuptools (and a few more)
as wheels in ``/usr/share/python-wheels``; ``python3 -m venv`` installs from there, not
from PyPI. Such a wheel has the index's name and version but other files (patched,
rebuilt), so no index wheel can ever match the lock's ``files_digest``. A package is a
distribution's rebuild when a wheel of its name and version lies in one of these
directories and the files that wheel installs are exactly the ones installed (the same
``files_digest``). Only the RECORD of a wheel whose name and version match is read.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Iterable
from pathlib import Path

from envlock.model.lockfile import Package, normalize
from envlock.snapshot._probe import files_digest, parse_record

#: Where distributions keep the wheels their ``venv``/``ensurepip`` installs.
DISTRIBUTION_WHEEL_DIRS = ("/usr/share/python-wheels",)
_WHEEL = re.compile(r"^(?P<name>[^-]+)-(?P<version>[^-]+)-.+\.whl$")


def wheel_files_digest(wheel: Path) -> str | None:
    """``files_digest`` of the files a wheel installs, from its own RECORD."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            records = [n for n in archive.namelist()
                       if n.endswith(".dist-info/RECORD") and n.count("/") == 1]
            if len(records) != 1:
                return None
            text = archive.read(records[0]).decode("utf-8")
    except (OSError, zipfile.BadZipFile, UnicodeDecodeError):
        return None
    rows = parse_record(text)
    return files_digest(rows) if rows is not None else None


def _candidates(directories: Iterable[str]) -> dict[tuple[str, str], list[Path]]:
    found: dict[tuple[str, str], list[Path]] = {}
    for directory in directories:
        folder = Path(directory)
        if not folder.is_dir():
            continue
        for wheel in sorted(folder.glob("*.whl")):
            match = _WHEEL.match(wheel.name)
            if match:
                key = (normalize(match.group("name")), match.group("version").replace("_", "-"))
                found.setdefault(key, []).append(wheel)
    return found


def distribution_wheels(pkgs: Iterable[Package],
                        directories: Iterable[str] = DISTRIBUTION_WHEEL_DIRS
                        ) -> dict[str, str]:
    """Package name -> the distribution's wheel it was installed from, for each index
    package whose installed files are exactly those of such a wheel."""
    candidates = _candidates(directories)
    if not candidates:
        return {}
    out: dict[str, str] = {}
    for pkg in pkgs:
        if pkg.source.kind != "index" or not pkg.files_digest:
            continue
        for wheel in candidates.get((pkg.name, pkg.version), []):
            if wheel_files_digest(wheel) == pkg.files_digest:
                out[pkg.name] = str(wheel)
                break
    return out
