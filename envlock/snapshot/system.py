"""Pure: the lock's ``python`` and ``os`` sections from the interpreter probe's raw facts."""

from __future__ import annotations

import re
from typing import Any

_CONTAINER_CGROUP = re.compile(r"(docker|containerd|kubepods|libpod|lxc|crio)")


def platform_tag(py: dict[str, Any]) -> str:
    """The most specific wheel platform tag this interpreter accepts (manylinux_2_36_x86_64)."""
    machine = py.get("machine") or "unknown"
    libc = py.get("libc") or {}
    if libc.get("family") == "glibc" and libc.get("version"):
        major, _, minor = libc["version"].partition(".")
        return f"manylinux_{major}_{minor.split('.')[0] or 0}_{machine}"
    if libc.get("family") == "musl":
        return f"musllinux_{machine}"
    return re.sub(r"[-.]", "_", py.get("sysconfig_platform") or machine)


def python_section(py: dict[str, Any]) -> dict[str, Any]:
    return {
        "implementation": py["implementation"],
        "version": py["version"],
        "build": py.get("build"),
        "executable": py["executable"],
        "prefix": py.get("prefix"),
        "venv": bool(py.get("venv")),
        "abi": py.get("soabi") or py.get("cache_tag"),
        "platform_tag": platform_tag(py),
        "arch": py.get("machine") or "unknown",
        "sys_path": [p for p in py.get("path", [])[1:] if p],
    }


def container_kind(raw_os: dict[str, Any], environ: dict[str, str]) -> str | None:
    if environ.get("KUBERNETES_SERVICE_HOST"):
        return "kubernetes"
    if raw_os.get("containerenv"):
        return "podman"
    if raw_os.get("dockerenv"):
        return "docker"
    match = _CONTAINER_CGROUP.search(raw_os.get("cgroup") or "")
    return match.group(1) if match else None


def os_section(raw_os: dict[str, Any], py: dict[str, Any],
               environ: dict[str, str]) -> dict[str, Any]:
    release = raw_os.get("os_release") or {}
    return {
        "system": raw_os.get("system") or "unknown",
        "distro": release.get("ID"),
        "distro_version": release.get("VERSION_ID"),
        "distro_codename": release.get("VERSION_CODENAME"),
        "pretty_name": release.get("PRETTY_NAME"),
        "kernel": raw_os.get("kernel"),
        "libc": {"family": (py.get("libc") or {}).get("family"),
                 "version": (py.get("libc") or {}).get("version")},
        "arch": py.get("machine") or "unknown",
        "container": container_kind(raw_os, environ),
        "hostname": raw_os.get("hostname"),
    }
