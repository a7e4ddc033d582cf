"""Interpreter probe: standard library only, runs inside the interpreter being locked.

envlock imports this module for its own interpreter and feeds its source to any
other interpreter (``envlock lock --python .venv/bin/python``) on stdin, so that
nothing has to be installed into the environment being captured. It must keep
working on old Pythons (3.8+): no third-party imports, no new syntax.

It only reads raw facts (file contents, paths); every decision about what they
mean is made by envlock's pure code in ``envlock.snapshot.packages``.
"""

import json
import os
import sys

METADATA_FILES = ("METADATA", "PKG-INFO")
TORCH_LIB_PREFIXES = ("libcudnn", "libnccl", "libcudart", "libcublas")


def read_text(path, limit=None):
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read(limit) if limit else handle.read()
    except OSError:
        return None


def read_headers(path):
    """Name and Version from a core-metadata file, stopping at the body."""
    found = {}
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


def metadata_path(meta_dir, is_dir):
    if not is_dir:
        return meta_dir  # a bare PKG-INFO file named foo-1.0.egg-info
    for name in METADATA_FILES:
        candidate = os.path.join(meta_dir, name)
        if os.path.isfile(candidate):
            return candidate
    return None


def describe(location, entry_name, meta_dir, is_dir, kind, order):
    meta = metadata_path(meta_dir, is_dir)
    headers = read_headers(meta) if meta else None
    item = {
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
        item["has_record"] = os.path.isfile(os.path.join(meta_dir, "RECORD"))
    return item


def scan_location(location, order):
    """Every distribution's metadata directory found directly in one sys.path entry."""
    found = []
    try:
        entries = sorted(os.scandir(location), key=lambda e: e.name)
    except OSError:
        return found, []
    links = []
    for entry in entries:
        name = entry.name
        if name.endswith(".dist-info"):
            found.append(describe(location, name, entry.path, True, "dist-info", order))
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


def site_dirs():
    dirs = []
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


def libc():
    try:
        value = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (AttributeError, ValueError, OSError):
        value = ""
    if value.startswith("glibc "):
        return {"family": "glibc", "version": value.split(" ", 1)[1]}
    if os.path.isdir("/lib") and any(n.startswith("ld-musl-") for n in os.listdir("/lib")):
        return {"family": "musl", "version": None}
    return {"family": None, "version": None}


def python_facts():
    import platform
    import sysconfig

    return {
        "implementation": sys.implementation.name,
        "version": platform.python_version(),
        "version_info": list(sys.version_info[:3]),
        "build": sys.version.split("\n")[0],
        "executable": sys.executable,
        "prefix": sys.prefix,
        "base_prefix": getattr(sys, "base_prefix", sys.prefix),
        "venv": getattr(sys, "base_prefix", sys.prefix) != sys.prefix,
        "cache_tag": sys.implementation.cache_tag,
        "soabi": sysconfig.get_config_var("SOABI"),
        "sysconfig_platform": sysconfig.get_platform(),
        "machine": platform.machine(),
        "byteorder": sys.byteorder,
        "libc": libc(),
        "path": list(sys.path),
        "site_dirs": site_dirs(),
    }


def os_facts():
    release = {}
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


def framework_files(distributions):
    """Raw build-info files of CUDA-bearing frameworks, read without importing them."""
    wanted = {
        "torch": ("torch", "version.py"),
        "tensorflow": ("tensorflow", "python", "platform", "build_info.py"),
        "jaxlib": ("jaxlib", "version.py"),
    }
    out = {}
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


def probe():
    py = python_facts()
    distributions = []
    egg_links = []
    seen = set()
    # sys.path[0] is the directory of whatever started Python (here: "-c"), not
    # part of the environment; everything after it is what imports would see.
    for order, location in enumerate(py["path"][1:], start=1):
        location = os.path.abspath(location or os.getcwd())
        if location in seen or not os.path.isdir(location):
            continue
        seen.add(location)
        found, links = scan_location(location, order)
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


if __name__ == "__main__":
    json.dump(probe(), sys.stdout)
