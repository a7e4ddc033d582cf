"""Pure: an SBOM inventory (:mod:`envlock.model.sbom`) as a standard document.

CycloneDX 1.6 JSON through ``cyclonedx-python-lib`` and SPDX 2.3 JSON through
``spdx-tools`` (which validates the document before it writes it): no hand-written
schema. Byte-stable: the serial number (CycloneDX) and the document namespace (SPDX)
are derived from what the document describes, the time is the one the input carries,
and every list comes out in one order.
"""

from __future__ import annotations

import hashlib
import io
import re
import uuid
from typing import Any

from envlock import __version__
from envlock.model.sbom import Inventory, Item, SbomInput, inventory

FORMATS = ("cyclonedx-json", "spdx-json")
MEDIA_TYPES = {"cyclonedx-json": "application/vnd.cyclonedx+json",
               "spdx-json": "application/spdx+json"}
#: The CycloneDX schema version written.
CYCLONEDX_VERSION = "1.6"
_NAMESPACE = uuid.UUID("5b8d8a44-0f5e-4c4e-9d7a-8c1a7e2f6a10")  # envlock's, for uuid5


def serial_number(source: SbomInput) -> uuid.UUID:
    """The same inputs give the same ``urn:uuid:…``; other inputs another one."""
    return uuid.uuid5(_NAMESPACE, source.identity)


def render(source: SbomInput, fmt: str = "cyclonedx-json") -> bytes:
    """The SBOM of ``source`` as ``fmt`` (one of :data:`FORMATS`), UTF-8 JSON bytes."""
    inv = inventory(source)
    if fmt == "cyclonedx-json":
        return cyclonedx(source, inv)
    if fmt == "spdx-json":
        return spdx(source, inv)
    raise ValueError(f"unknown SBOM format {fmt!r} (one of {', '.join(FORMATS)})")


# ---------------------------------------------------------------- CycloneDX

_CDX_TYPES = {"container": "CONTAINER", "operating-system": "OPERATING_SYSTEM",
              "library": "LIBRARY", "framework": "FRAMEWORK", "application": "APPLICATION",
              "data": "DATA"}


def _cdx_component(item: Item) -> Any:
    from cyclonedx.model import (
        ExternalReference,
        ExternalReferenceType,
        HashAlgorithm,
        HashType,
        Property,
        XsUri,
    )
    from cyclonedx.model.component import Component, ComponentType
    from packageurl import PackageURL

    refs = []
    if item.vcs:
        refs.append(ExternalReference(type=ExternalReferenceType.VCS, url=XsUri(item.vcs)))
    if item.download:
        refs.append(ExternalReference(type=ExternalReferenceType.DISTRIBUTION,
                                      url=XsUri(item.download)))
    return Component(
        bom_ref=item.ref, type=getattr(ComponentType, _CDX_TYPES[item.type]), name=item.name,
        version=item.version, description=item.description,
        purl=PackageURL.from_string(item.purl) if item.purl else None,
        hashes=[HashType(alg=HashAlgorithm.SHA_256, content=item.sha256)] if item.sha256
        else None,
        properties=[Property(name=k, value=v) for k, v in item.properties],
        external_references=refs)


def cyclonedx(source: SbomInput, inv: Inventory) -> bytes:
    from cyclonedx.model import Property
    from cyclonedx.model.bom import Bom, BomMetaData
    from cyclonedx.model.bom_ref import BomRef
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.model.dependency import Dependency
    from cyclonedx.output.json import JsonV1Dot6

    tool = Component(type=ComponentType.APPLICATION, name="envlock", version=__version__,
                     bom_ref="tool:envlock")
    top = _cdx_component(inv.top)
    meta = BomMetaData(component=top, timestamp=source.created,
                       properties=[Property(name=k, value=v) for k, v in inv.properties])
    meta.tools.components.add(tool)
    components = {item.ref: _cdx_component(item) for item in inv.items}
    children: dict[str, list[str]] = {}
    for item in inv.items:
        children.setdefault(item.parent or inv.top.ref, []).append(item.ref)
    # Built at once: Bom.register_dependency searches the set per call (quadratic).
    dependencies = [Dependency(ref=BomRef(ref), dependencies=[
        Dependency(ref=BomRef(kid)) for kid in children.get(ref, ())])
        for ref in [inv.top.ref, *components]]
    bom = Bom(serial_number=serial_number(source), metadata=meta,
              components=components.values(), dependencies=dependencies)
    text = JsonV1Dot6(bom).output_as_string(indent=2)
    return (text.rstrip("\n") + "\n").encode()


# ---------------------------------------------------------------- SPDX

_SPDX_PURPOSE = {"container": "CONTAINER", "operating-system": "OPERATING_SYSTEM",
                 "library": "LIBRARY", "framework": "FRAMEWORK",
                 "application": "APPLICATION", "data": "FILE"}


def _spdx_id(item: Item) -> str:
    """``SPDXRef-<name>-<8 hex of the ref>``: letters, digits, ``.`` and ``-`` only."""
    name = re.sub(r"[^A-Za-z0-9.-]+", "-", item.name).strip("-")[:60] or "item"
    return f"SPDXRef-{name}-{hashlib.sha256(item.ref.encode()).hexdigest()[:8]}"


def _spdx_package(item: Item) -> Any:
    from spdx_tools.spdx.model.checksum import Checksum, ChecksumAlgorithm
    from spdx_tools.spdx.model.package import (
        ExternalPackageRef,
        ExternalPackageRefCategory,
        Package,
        PackagePurpose,
    )
    from spdx_tools.spdx.model.spdx_no_assertion import SpdxNoAssertion

    refs = [ExternalPackageRef(ExternalPackageRefCategory.PACKAGE_MANAGER, "purl", item.purl)
            ] if item.purl else []
    from spdx_tools.spdx.validation.uri_validators import validate_download_location

    location: Any = SpdxNoAssertion()
    if item.vcs:
        location = f"git+{item.vcs}" if "+" not in item.vcs.split("://")[0] else item.vcs
    elif item.download:
        location = item.download
    if isinstance(location, str) and validate_download_location(location):
        location = SpdxNoAssertion()  # a form SPDX does not accept (a local git+file://)
    comment = "; ".join(f"{k}={v}" for k, v in item.properties) or None
    return Package(
        spdx_id=_spdx_id(item), name=item.name, download_location=location,
        version=item.version, files_analyzed=False, summary=item.description,
        checksums=[Checksum(ChecksumAlgorithm.SHA256, item.sha256)] if item.sha256 else [],
        external_references=refs, comment=comment,
        primary_package_purpose=getattr(PackagePurpose, _SPDX_PURPOSE[item.type]),
        license_concluded=SpdxNoAssertion(), license_declared=SpdxNoAssertion(),
        copyright_text=SpdxNoAssertion())


def spdx(source: SbomInput, inv: Inventory) -> bytes:
    from spdx_tools.spdx.model.actor import Actor, ActorType
    from spdx_tools.spdx.model.document import CreationInfo, Document
    from spdx_tools.spdx.model.relationship import Relationship, RelationshipType
    from spdx_tools.spdx.writer.json.json_writer import write_document_to_stream

    top = _spdx_package(inv.top)
    packages = {item.ref: _spdx_package(item) for item in inv.items}
    ids = {inv.top.ref: top.spdx_id, **{ref: p.spdx_id for ref, p in packages.items()}}
    info = CreationInfo(
        spdx_version="SPDX-2.3", spdx_id="SPDXRef-DOCUMENT", name=f"envlock {inv.top.name}",
        document_namespace=f"https://spdx.org/spdxdocs/envlock-{serial_number(source)}",
        creators=[Actor(ActorType.TOOL, f"envlock-{__version__}")], created=source.created,
        document_comment="; ".join(f"{k}={v}" for k, v in inv.properties) or None)
    relationships = [Relationship("SPDXRef-DOCUMENT", RelationshipType.DESCRIBES, top.spdx_id)]
    for item in inv.items:
        parent = item.parent or inv.top.ref
        kind = RelationshipType.DEPENDS_ON if item.ref.split("@")[0] in (
            "cuda", "cudnn", "nccl", "rocm") else RelationshipType.CONTAINS
        relationships.append(Relationship(ids[parent], kind, ids[item.ref]))
    document = Document(creation_info=info, packages=[top, *packages.values()],
                        relationships=relationships)
    stream = io.StringIO()
    try:
        write_document_to_stream(document, stream, validate=True)
    except ValueError as exc:  # spdx-tools lists what does not validate
        raise ValueError(f"the SPDX document does not validate: {str(exc)[:300]}") from exc
    return (stream.getvalue().rstrip("\n") + "\n").encode()
