"""Pure: what an environment's SBOM lists, independent of the document format.

From a lock (and, when known, the run's image, its base image and the base's OS
packages) come :class:`Item`\\ s: the image, the Python interpreter, every locked
package with its package URL (``pkg:pypi/torch@2.3.1%2Bcu121``; VCS commit, archive,
index as purl qualifiers), the frameworks and the CUDA libraries they carry, the base
image by digest and its OS packages. Each item names its parent, which the documents
render as dependencies (CycloneDX) or CONTAINS/DEPENDS_ON relationships (SPDX); see
:mod:`envlock.model.sbomdoc`.

Same inputs, same items, in the same order: nothing here reads a clock.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from envlock.model.lockfile import Lock, Package
from envlock.model.ospkgs import OsInventory, OsPackage

PYPI = "https://pypi.org/simple"
#: When nothing dates the document: the fixed time envlock's images use.
EPOCH = datetime(1980, 1, 1, tzinfo=timezone.utc)
#: Framework lock keys -> the libraries they carry that the SBOM lists.
CUDA_KEYS = {"cuda": "cuda_runtime", "cudnn": "cudnn", "nccl": "nccl", "hip": None}


@dataclass(frozen=True)
class Item:
    """One component. ``ref`` is unique in a document and stable across runs."""

    ref: str
    type: str  # container | operating-system | library | framework | application | data
    name: str
    version: str | None = None
    purl: str | None = None
    sha256: str | None = None  # hex, of the distributed file (archive, image manifest)
    properties: tuple[tuple[str, str], ...] = ()
    vcs: str | None = None  # the repository URL
    download: str | None = None  # where the file came from
    parent: str | None = None  # the ref of the item that contains or needs it
    description: str | None = None


@dataclass(frozen=True)
class SbomInput:
    """Everything an SBOM is made from."""

    lock: Lock
    image: str | None = None  # the run's image, pinned (HOST/REPO@sha256:… or sha256:…)
    base: str | None = None  # the base image, pinned
    os: OsInventory | None = None  # the base's OS packages
    created: datetime = EPOCH
    run_id: str | None = None

    @property
    def identity(self) -> str:
        """A digest of what the document says: its serial number is derived from it."""
        import json

        parts = [self.lock.lock_digest, self.image, self.base, self.created.isoformat(),
                 self.run_id, self.os.to_dict() if self.os else None]
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class Inventory:
    top: Item  # what the document describes: the image, or the locked environment
    items: tuple[Item, ...]
    properties: tuple[tuple[str, str], ...] = field(default=())


def created_at(run_started: str | None, environ: Mapping[str, str] | None = None) -> datetime:
    """The document's time: the run's start, else ``SOURCE_DATE_EPOCH``, else
    :data:`EPOCH` — never the clock, so the same inputs give the same bytes."""
    if run_started:
        return datetime.strptime(run_started, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    epoch = (environ if environ is not None else os.environ).get("SOURCE_DATE_EPOCH", "")
    if epoch.strip().isdigit():
        return datetime.fromtimestamp(int(epoch), tz=timezone.utc)
    return EPOCH


# ---------------------------------------------------------------- package URLs

def _purl(kind: str, name: str, version: str | None, namespace: str | None = None,
          **qualifiers: str | None) -> str:
    from packageurl import PackageURL

    kept = {k: v for k, v in qualifiers.items() if v}
    return str(PackageURL(type=kind, namespace=namespace, name=name, version=version,
                          qualifiers=kept or None).to_string())


def _index_url(pkg: Package, lock: Lock) -> str | None:
    """The index a package came from when it is not PyPI (purl ``repository_url``)."""
    url = pkg.source.url or lock.index.get("index_url") or PYPI
    url = url.rstrip("/")
    return None if url in (PYPI, "https://pypi.org/simple", "https://pypi.python.org/simple") \
        else url


def package_purl(pkg: Package, lock: Lock) -> str:
    """``pkg:pypi/NAME@VERSION`` with the source as qualifiers: ``vcs_url`` (with the
    commit), ``download_url`` (a remote archive), ``file_name`` (a local one),
    ``repository_url`` (an index other than PyPI)."""
    src = pkg.source
    qualifiers: dict[str, str | None] = {}
    if src.kind == "vcs" and src.url:
        qualifiers["vcs_url"] = f"{src.vcs or 'git'}+{src.url}@{src.commit or ''}".rstrip("@")
    elif src.kind == "archive":
        remote = src.url if src.url and "://" in src.url and not src.url.startswith("file:") \
            else None
        qualifiers["download_url"] = remote
        if not remote and (src.path or src.url):
            qualifiers["file_name"] = (src.path or src.url or "").rsplit("/", 1)[-1]
    elif src.kind == "index":
        qualifiers["repository_url"] = _index_url(pkg, lock)
    return _purl("pypi", pkg.name, pkg.version, **qualifiers)


def _sha256_hex(value: str | None) -> str | None:
    if value and value.startswith("sha256:") and re.fullmatch(r"[0-9a-f]{64}", value[7:]):
        return value[7:]
    return None


# ---------------------------------------------------------------- items

def _package_item(pkg: Package, lock: Lock, parent: str) -> Item:
    src = pkg.source
    props = [("envlock:source", src.kind)]
    for key, value in (("installer", pkg.installer), ("files_digest", pkg.files_digest),
                       ("path", src.path if src.kind in ("editable", "directory") else None),
                       ("git_commit", src.git_commit), ("subdirectory", src.subdirectory),
                       ("requested_revision", src.requested_revision)):
        if value:
            props.append((f"envlock:{key}", str(value)))
    if src.git_dirty:
        props.append(("envlock:git_dirty", "true"))
    if pkg.requested:
        props.append(("envlock:requested", "true"))
    purl = package_purl(pkg, lock)
    remote = src.url if src.kind == "archive" and src.url and "://" in src.url and \
        not src.url.startswith("file:") else None
    return Item(ref=purl, type="library", name=pkg.name, version=pkg.version, purl=purl,
                sha256=_sha256_hex(src.hash) if src.kind == "archive" else None,
                properties=tuple(props), vcs=src.url if src.kind == "vcs" else None,
                download=remote, parent=parent)


def _python_item(lock: Lock, parent: str) -> Item:
    py = lock.python
    impl = str(py.get("implementation") or "python")
    props = tuple((f"envlock:{key}", str(py[key])) for key in
                  ("abi", "platform_tag", "arch", "executable") if py.get(key))
    return Item(ref=f"python:{impl}@{py['version']}", type="application", name=impl,
                version=str(py["version"]), purl=_purl("generic", impl, str(py["version"])),
                properties=props, parent=parent,
                description="the Python interpreter the environment runs on")


def _framework_package(key: str, info: Mapping[str, Any], packages: Mapping[str, Item]
                       ) -> str | None:
    candidates = {"torch": ["torch"], "jax": ["jaxlib", "jax"]}.get(
        key, [str(info.get("distribution") or key)])
    return next((packages[n].ref for n in candidates if n in packages), None)


def _cuda_items(lock: Lock, packages: dict[str, Item]) -> Iterator[Item]:
    """Frameworks become ``framework`` items (their build facts as properties); a CUDA
    library they carry is the wheel that ships it (``nvidia-cudnn-cu12``, then a child of
    the framework), else a ``pkg:generic/nvidia/…`` item inside the framework."""
    wheels = lock.frameworks.get("cuda_libraries") or {}
    seen: set[str] = set()
    for key, info in sorted(lock.frameworks.items()):
        if key == "cuda_libraries" or not isinstance(info, dict):
            continue
        ref = _framework_package(key, info, packages)
        if ref is None:
            continue
        name = next(n for n, item in packages.items() if item.ref == ref)
        scalars = tuple((f"envlock:framework.{k}", str(v)) for k, v in sorted(info.items())
                        if isinstance(v, (str, int, float, bool)) and v is not None)
        packages[name] = _replace(packages[name], type="framework",
                                  properties=packages[name].properties + scalars)
        for lib, wheel_key in CUDA_KEYS.items():
            version = info.get(lib)
            if not version:
                continue
            shipped = (wheels.get(wheel_key) or {}).get("from") if wheel_key else None
            if shipped and shipped in packages:  # its wheel is listed: the framework needs it
                wheel = packages[shipped]
                packages[shipped] = _replace(wheel, parent=ref, properties=(
                    *wheel.properties, ("envlock:cuda_library", lib), ("envlock:carried_by", key)))
                continue
            lib_name = "rocm" if lib == "hip" else lib
            lib_ref = f"{lib_name}@{version}"
            if lib_ref in seen:
                continue
            seen.add(lib_ref)
            yield Item(ref=lib_ref, type="library", name=lib_name, version=str(version),
                       purl=_purl("generic", lib_name, str(version),
                                  namespace="amd" if lib == "hip" else "nvidia"),
                       parent=ref, description=f"{lib_name} as built into {key}",
                       properties=(("envlock:carried_by", key),))


def _replace(item: Item, **changes: Any) -> Item:
    from dataclasses import replace

    return replace(item, **changes)


def _toolkit_item(lock: Lock, parent: str) -> Item | None:
    toolkit = lock.gpu.get("cuda_toolkit") or {}
    if not toolkit.get("version"):
        return None
    version = str(toolkit["version"])
    return Item(ref=f"cuda-toolkit@{version}", type="library", name="cuda-toolkit",
                version=version, purl=_purl("generic", "cuda-toolkit", version,
                                            namespace="nvidia"),
                parent=parent, properties=(("envlock:location", str(toolkit.get("path"))),),
                description="the system CUDA toolkit of the capture host (an image gets it "
                            "from its CUDA base image)")


def image_item(reference: str, role: str, parent: str | None) -> Item:
    """A container image by digest: ``pkg:oci/NAME@sha256:…?repository_url=HOST/REPO``."""
    name, _, digest = reference.partition("@")
    if not digest and reference.startswith("sha256:"):  # a local image ID
        return Item(ref=f"{role}:{reference}", type="container", name=f"{role} image",
                    version=reference, sha256=_sha256_hex(reference), parent=parent,
                    properties=(("envlock:image_id", reference),))
    first = name.split("/", 1)[0]
    host_given = "/" in name and ("." in first or ":" in first or first == "localhost")
    repo_url = name if host_given else f"docker.io/{name if '/' in name else 'library/' + name}"
    short = repo_url.rsplit("/", 1)[-1].lower()
    purl = _purl("oci", short, digest or None, repository_url=repo_url) if digest else None
    return Item(ref=purl or f"{role}:{reference}", type="container", name=repo_url,
                version=digest or None, purl=purl, sha256=_sha256_hex(digest),
                parent=parent, properties=(("envlock:role", role),))


def _os_items(inventory: OsInventory, parent: str) -> Iterator[Item]:
    release = inventory.release
    distro_ref = parent
    if release and release.id:
        distro_ref = f"os:{release.id}@{release.version_id or ''}"
        yield Item(ref=distro_ref, type="operating-system", name=release.id,
                   version=release.version_id, parent=parent,
                   description=release.pretty_name,
                   properties=tuple(("envlock:database", db) for db in inventory.databases))
    for pkg in inventory.packages:
        yield _os_package_item(pkg, inventory, distro_ref)


def _os_package_item(pkg: OsPackage, inventory: OsInventory, parent: str) -> Item:
    release = inventory.release
    kind = "deb" if pkg.manager == "dpkg" else "apk"
    namespace = (release.id if release and release.id else
                 "debian" if kind == "deb" else "alpine")
    purl = _purl(kind, pkg.name, pkg.version, namespace=namespace, arch=pkg.arch,
                 distro=release.distro if release else None)
    props = [("envlock:package_manager", pkg.manager)]
    if pkg.source and pkg.source != pkg.name:
        props.append(("envlock:source_package", pkg.source))
    if pkg.source_version:
        props.append(("envlock:source_version", pkg.source_version))
    if pkg.license:
        props.append(("envlock:license", pkg.license))
    return Item(ref=purl, type="library", name=pkg.name, version=pkg.version, purl=purl,
                parent=parent, properties=tuple(props))


def _host_properties(lock: Lock) -> tuple[tuple[str, str], ...]:
    """Facts of the machine the experiment ran on: not in the image, but what it needs."""
    gpu = lock.gpu
    props = [("envlock:env_digest", lock.env_digest), ("envlock:lock_digest", lock.lock_digest)]
    if gpu.get("driver_version"):
        props.append(("envlock:host.nvidia_driver", str(gpu["driver_version"])))
    if gpu.get("cuda_driver_version"):
        props.append(("envlock:host.cuda_driver", str(gpu["cuda_driver_version"])))
    names = sorted({str(d.get("name")) for d in gpu.get("devices") or [] if d.get("name")})
    props += [("envlock:host.gpu", name) for name in names]
    if lock.git and lock.git.get("commit"):
        props.append(("envlock:git_commit", str(lock.git["commit"])))
    return tuple(props)


def inventory(source: SbomInput) -> Inventory:
    """Every item of the SBOM of ``source``, each naming its parent."""
    lock = source.lock
    if source.image:
        top = image_item(source.image, "image", None)
    else:
        top = Item(ref=f"environment:{lock.env_digest}", type="application",
                   name="envlock environment", version=lock.env_digest,
                   description="the locked Python environment (no image built)")
    items: list[Item] = []
    if source.base:
        base = image_item(source.base, "base", top.ref)
        items.append(base)
        if source.os:
            items.extend(_os_items(source.os, base.ref))
    items.append(_python_item(lock, top.ref))
    packages = {p.name: _package_item(p, lock, top.ref) for p in lock.packages}
    cuda = list(_cuda_items(lock, packages))
    items.extend(packages.values())
    items.extend(cuda)
    toolkit = _toolkit_item(lock, top.ref)
    if toolkit:
        items.append(toolkit)
    items.extend(_input_item(i, top.ref) for i in lock.inputs)
    props = _host_properties(lock)
    if source.run_id:
        props += (("envlock:run_id", source.run_id),)
    return Inventory(top=top, items=tuple(_unique(items)), properties=props)


def _input_item(item: Any, parent: str) -> Item:
    """An input the run read (``lock.inputs``) as a ``data`` component: its sha256 (of the
    file; of a directory, its manifest), size and carry."""
    props = [("envlock:input_kind", item.kind), ("envlock:size", str(item.size)),
             ("envlock:carry", item.carry)]
    if item.remote:
        props += [("envlock:etag", str(item.remote.get("etag"))),
                  ("envlock:version_id", str(item.remote.get("version_id")))]
    if item.hub:
        props += [("envlock:hub_repo", str(item.hub.get("repo"))),
                  ("envlock:hub_revision", str(item.hub.get("revision")))]
    if item.is_tree:
        props += [("envlock:files", str(len(item.files))),
                  ("envlock:sha256_of", "manifest of (path, size, sha256)")]
    if item.dataset:
        props += [("envlock:mlflow_dataset", str(item.dataset.get("name"))),
                  ("envlock:mlflow_dataset_digest", str(item.dataset.get("digest")))]
    return Item(ref=f"input:{item.path}", type="data", name=item.path,
                sha256=item.sha256, parent=parent, properties=tuple(props),
                description=f"an input the run read ({item.kind})")


def _unique(items: list[Item]) -> Iterator[Item]:
    seen: set[str] = set()
    for item in items:
        if item.ref in seen:
            continue
        seen.add(item.ref)
        yield item
