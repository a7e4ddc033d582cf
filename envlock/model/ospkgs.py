"""Pure: the OS packages of an image, read from its package databases.

An image's root filesystem says what its distribution installed: dpkg's
``var/lib/dpkg/status`` (Debian, Ubuntu), the one-file-per-package
``var/lib/dpkg/status.d/*`` of distroless images, or apk's ``lib/apk/db/installed``
(Alpine), and ``etc/os-release`` names the distribution. These parsers take the
files' bytes (read from the registry by :mod:`envlock.adapters.imagefs`, no container)
and return plain values; the SBOM turns them into components with package URLs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

DPKG_STATUS = "var/lib/dpkg/status"
DPKG_STATUS_D = "var/lib/dpkg/status.d/"
APK_INSTALLED = "lib/apk/db/installed"
OS_RELEASE = ("etc/os-release", "usr/lib/os-release")
#: Every path (or, ending in ``/``, folder) the SBOM reads from a base image.
PATHS = (DPKG_STATUS, DPKG_STATUS_D, APK_INSTALLED, *OS_RELEASE)

_SOURCE = re.compile(r"^(?P<name>\S+)(?:\s+\((?P<version>[^)]+)\))?$")


@dataclass(frozen=True)
class OsPackage:
    """One installed OS package."""

    name: str
    version: str
    arch: str | None
    manager: str  # dpkg | apk
    source: str | None = None  # the source package (dpkg Source:, apk origin)
    source_version: str | None = None
    license: str | None = None  # apk's L: (dpkg keeps licenses elsewhere)

    def to_dict(self) -> dict[str, str | None]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class OsRelease:
    """``etc/os-release``: the distribution (``ID``, ``VERSION_ID``, ``PRETTY_NAME``)."""

    id: str | None
    version_id: str | None
    pretty_name: str | None = None

    @property
    def distro(self) -> str | None:
        """The purl ``distro`` qualifier: ``debian-12``, ``alpine-3.19.1``."""
        if not self.id:
            return None
        return f"{self.id}-{self.version_id}" if self.version_id else self.id


def _paragraphs(text: str) -> list[dict[str, str]]:
    """RFC 822-style stanzas (dpkg): ``Field: value`` lines, continuation lines start
    with a space, stanzas are separated by blank lines."""
    stanzas: list[dict[str, str]] = []
    current: dict[str, str] = {}
    last = None
    for line in text.splitlines():
        if not line.strip():
            if current:
                stanzas.append(current)
            current, last = {}, None
        elif line[0] in " \t":
            if last:
                current[last] += "\n" + line.strip()
        elif ":" in line:
            key, _, value = line.partition(":")
            last = key.strip().lower()
            current[last] = value.strip()
    if current:
        stanzas.append(current)
    return stanzas


def _installed(stanza: Mapping[str, str]) -> bool:
    """dpkg's Status is ``want flag state``; only ``installed`` counts. Distroless
    ``status.d`` entries carry no Status: they are installed by construction."""
    status = stanza.get("status")
    return status is None or status.split()[-1:] == ["installed"]


def parse_dpkg(text: str) -> list[OsPackage]:
    """The installed packages of a dpkg ``status`` file (or one ``status.d`` entry)."""
    found = []
    for stanza in _paragraphs(text):
        if "package" not in stanza or "version" not in stanza or not _installed(stanza):
            continue
        source = _SOURCE.match(stanza.get("source", ""))
        found.append(OsPackage(
            name=stanza["package"], version=stanza["version"],
            arch=stanza.get("architecture"), manager="dpkg",
            source=source.group("name") if source else None,
            source_version=source.group("version") if source else None))
    return found


def parse_apk(text: str) -> list[OsPackage]:
    """The packages of apk's ``installed`` database: one stanza per package, one-letter
    keys (``P`` name, ``V`` version, ``A`` arch, ``o`` origin, ``L`` license)."""
    found = []
    for block in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            key, sep, value = line.partition(":")
            if sep and len(key) == 1 and key not in fields:
                fields[key] = value
        if "P" in fields and "V" in fields:
            found.append(OsPackage(name=fields["P"], version=fields["V"], arch=fields.get("A"),
                                   manager="apk", source=fields.get("o"),
                                   license=fields.get("L")))
    return found


def parse_os_release(text: str) -> OsRelease:
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and not key.startswith("#"):
            values[key] = value.strip().strip("\"'")
    return OsRelease(id=values.get("ID"), version_id=values.get("VERSION_ID"),
                     pretty_name=values.get("PRETTY_NAME"))


@dataclass(frozen=True)
class OsInventory:
    """What a base image's package databases list, sorted, duplicates dropped."""

    release: OsRelease | None
    packages: tuple[OsPackage, ...]
    databases: tuple[str, ...]  # the files they were read from

    def to_dict(self) -> dict[str, object]:
        return {"os": self.release.__dict__ if self.release else None,
                "databases": list(self.databases),
                "packages": [p.to_dict() for p in self.packages]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OsInventory:
        release = data.get("os")
        return cls(release=OsRelease(**release) if isinstance(release, dict) else None,
                   packages=tuple(OsPackage(**p) for p in data.get("packages") or []
                                  if isinstance(p, dict)),
                   databases=tuple(data.get("databases") or ()))


def inventory(files: Mapping[str, bytes]) -> OsInventory:
    """The OS packages in ``files`` (image paths without a leading ``/`` -> content):
    every package database present, and the os-release."""
    found: dict[tuple[str, str, str | None], OsPackage] = {}
    databases = []
    for path in sorted(files):
        text = files[path].decode("utf-8", errors="replace")
        if path == DPKG_STATUS or (path.startswith(DPKG_STATUS_D) and
                                   not path.endswith(".md5sums")):
            packages = parse_dpkg(text)
        elif path == APK_INSTALLED:
            packages = parse_apk(text)
        else:
            continue
        databases.append(path)
        for pkg in packages:
            found.setdefault((pkg.name, pkg.version, pkg.arch), pkg)
    # etc/os-release is usually a link to usr/lib/os-release: take the first that parses
    releases = [parse_os_release(files[p].decode("utf-8", errors="replace"))
                for p in OS_RELEASE if p in files]
    release = next((r for r in releases if r.id), None)
    ordered = tuple(sorted(found.values(), key=lambda p: (p.name, p.version, p.arch or "")))
    return OsInventory(release=release, packages=ordered, databases=tuple(databases))
