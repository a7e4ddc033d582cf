"""Pure: signed provenance of an image — in-toto Statements (SLSA Provenance v1 and the
CycloneDX SBOM), DSSE envelopes (PAE), and the OCI artifacts that carry them.

The layout is the one cosign reads: one OCI image manifest whose layers are DSSE
envelopes (``application/vnd.dsse.envelope.v1+json``), each annotated with its
``predicateType``, tagged ``sha256-<hex>.att`` beside the image; it names the image as
its ``subject`` (an OCI 1.1 referrer), and the referrers tag schema's index
``sha256-<hex>`` lists it for registries without the referrers API. Signing and key
handling are in :mod:`envlock.operations.provenance`; nothing here does I/O.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from envlock.errors import EnvlockError
from envlock.image import oci

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
SLSA_PROVENANCE = "https://slsa.dev/provenance/v1"
CYCLONEDX = "https://cyclonedx.org/bom"
DSSE_MEDIA = "application/vnd.dsse.envelope.v1+json"
EMPTY_MEDIA = "application/vnd.oci.empty.v1+json"
EMPTY_CONFIG = b"{}"
#: cosign marks each attestation layer with an (empty) signature annotation.
COSIGN_SIGNATURE = "dev.cosignproject.cosign/signature"
BUILDER_ID = "https://github.com/envlock/envlock/builder/v1"
BUILD_TYPE = "https://github.com/envlock/envlock/build-types/image/v1"
#: The lock's per-package digest (sha256 over its RECORD entries), as an in-toto digest.
FILES_DIGEST = "envlockFilesSha256"


class ProvenanceError(EnvlockError):
    """A signature or provenance that is missing, invalid, or names something else."""


# ---------------------------------------------------------------- DSSE

def pae(payload_type: str, body: bytes) -> bytes:
    """DSSE v1 Pre-Authentication Encoding: what is signed, never the bare payload."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(body), body)


def canonical(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def envelope(body: bytes, signatures: Sequence[tuple[str, bytes]],
             payload_type: str = PAYLOAD_TYPE) -> bytes:
    """A DSSE envelope of ``body`` with ``(keyid, signature)`` pairs."""
    return canonical({"payloadType": payload_type,
                      "payload": base64.b64encode(body).decode(),
                      "signatures": [{"keyid": keyid, "sig": base64.b64encode(sig).decode()}
                                     for keyid, sig in signatures]})


@dataclass(frozen=True)
class Envelope:
    payload_type: str
    payload: bytes
    signatures: tuple[tuple[str, bytes], ...]

    def statement(self) -> dict[str, Any]:
        """The in-toto Statement inside (read only after its signature was checked)."""
        if self.payload_type != PAYLOAD_TYPE:
            raise ProvenanceError(f"the attestation's payload type is {self.payload_type!r}, "
                                  f"not {PAYLOAD_TYPE}")
        try:
            statement = json.loads(self.payload)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ProvenanceError("the attestation's payload is not JSON") from exc
        if not isinstance(statement, dict) or statement.get("_type") != STATEMENT_TYPE:
            raise ProvenanceError(f"the attestation's payload is not an in-toto "
                                  f"{STATEMENT_TYPE} statement")
        return statement


def _b64(text: Any, what: str) -> bytes:
    if not isinstance(text, str):
        raise ProvenanceError(f"the DSSE envelope's {what} is not a string")
    try:  # DSSE allows the standard and the URL-safe alphabet
        return base64.b64decode(text.replace("-", "+").replace("_", "/") + "=" *
                                (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ProvenanceError(f"the DSSE envelope's {what} is not base64") from exc


def parse_envelope(data: bytes) -> Envelope:
    """A DSSE envelope from its JSON bytes; a ProvenanceError when it is not one."""
    try:
        raw = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ProvenanceError("the attestation is not a JSON DSSE envelope") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("signatures"), list):
        raise ProvenanceError("the attestation is not a DSSE envelope (no signatures)")
    signatures = tuple((str(s.get("keyid") or ""), _b64(s.get("sig"), "signature"))
                       for s in raw["signatures"] if isinstance(s, dict))
    if not signatures:
        raise ProvenanceError("the DSSE envelope carries no signature")
    return Envelope(str(raw.get("payloadType") or ""), _b64(raw.get("payload"), "payload"),
                    signatures)


# ---------------------------------------------------------------- statements

@dataclass(frozen=True)
class Facts:
    """What the provenance of one image states."""

    repository: str  # HOST[:PORT]/REPO
    digest: str  # the image manifest's sha256:…
    lock_digest: str
    env_digest: str
    base_image: str  # NAME@sha256:…
    builder_version: str
    run_id: str | None = None
    git_commit: str | None = None
    git_url: str | None = None
    code_digest: str | None = None
    builder: str = "oci"
    created: str | None = None
    #: (name, version, source kind, files digest) of every locked package
    packages: tuple[tuple[str, str, str, str | None], ...] = field(default_factory=tuple)


def subject(repository: str, digest: str) -> list[dict[str, Any]]:
    return [{"name": repository, "digest": {"sha256": digest.split(":", 1)[-1]}}]


def _dependencies(facts: Facts) -> list[dict[str, Any]]:
    name, _, digest = facts.base_image.partition("@")
    deps: list[dict[str, Any]] = [{"name": "base-image", "uri": f"oci://{name}",
                                   "digest": {"sha256": digest.split(":", 1)[-1]}}]
    if facts.git_commit:
        deps.append({"name": "code", "uri": f"git+{facts.git_url}" if facts.git_url else "git",
                     "digest": {"gitCommit": facts.git_commit}})
    for pkg, version, kind, files in facts.packages:
        entry: dict[str, Any] = {"name": pkg, "uri": f"pkg:pypi/{pkg}@{version}",
                                 "annotations": {"source": kind}}
        if files:
            entry["digest"] = {FILES_DIGEST: files.split(":", 1)[-1]}
        deps.append(entry)
    return deps


def provenance_statement(facts: Facts) -> dict[str, Any]:
    """An in-toto Statement v1 with a SLSA Provenance v1 predicate for the image."""
    external = {"lock_digest": facts.lock_digest, "env_digest": facts.env_digest,
                "base_image": facts.base_image, "run_id": facts.run_id,
                "git_commit": facts.git_commit, "code_digest": facts.code_digest}
    metadata: dict[str, Any] = {"invocationId": facts.run_id or facts.lock_digest}
    if facts.created:
        metadata["startedOn"] = facts.created
    return {"_type": STATEMENT_TYPE, "subject": subject(facts.repository, facts.digest),
            "predicateType": SLSA_PROVENANCE,
            "predicate": {
                "buildDefinition": {
                    "buildType": BUILD_TYPE,
                    "externalParameters": {k: v for k, v in external.items() if v},
                    "internalParameters": {"builder": facts.builder},
                    "resolvedDependencies": _dependencies(facts)},
                "runDetails": {
                    "builder": {"id": BUILDER_ID, "version": {"envlock": facts.builder_version}},
                    "metadata": metadata}}}


def sbom_statement(repository: str, digest: str, document: bytes) -> dict[str, Any]:
    """An in-toto Statement v1 whose predicate is the image's CycloneDX SBOM."""
    return {"_type": STATEMENT_TYPE, "subject": subject(repository, digest),
            "predicateType": CYCLONEDX, "predicate": json.loads(document)}


# ---------------------------------------------------------------- checks

@dataclass(frozen=True)
class Expected:
    """What a verified provenance must name: the image, and the run's lock."""

    digest: str
    lock_digest: str | None = None
    env_digest: str | None = None
    run_ids: tuple[str, ...] = ()


def check_subject(statement: dict[str, Any], digest: str) -> None:
    wanted = digest.split(":", 1)[-1]
    names = [s.get("digest", {}).get("sha256") for s in statement.get("subject") or []
             if isinstance(s, dict)]
    if wanted not in names:
        raise ProvenanceError(f"the signed statement is about another image "
                              f"(sha256:{str(names[0] if names else None)[:12]}…), not "
                              f"{digest[:19]}…")


def check_provenance(statement: dict[str, Any], expected: Expected) -> dict[str, Any]:
    """The SLSA predicate's parameters, once they name ``expected``'s image and lock."""
    check_subject(statement, expected.digest)
    if statement.get("predicateType") != SLSA_PROVENANCE:
        raise ProvenanceError(f"the statement's predicate is "
                              f"{statement.get('predicateType')!r}, not SLSA provenance")
    params = ((statement.get("predicate") or {}).get("buildDefinition") or {}).get(
        "externalParameters") or {}
    for key in ("lock_digest", "env_digest"):
        wanted = getattr(expected, key)
        if wanted and params.get(key) != wanted:
            raise ProvenanceError(f"the provenance names another lock: {key} "
                                  f"{str(params.get(key))[:19]}…, the run's is {wanted[:19]}…")
    if expected.run_ids and params.get("run_id") and params["run_id"] not in expected.run_ids:
        raise ProvenanceError(f"the provenance was made for run {params['run_id']}, not "
                              f"{expected.run_ids[0]}")
    return dict(params)


# ---------------------------------------------------------------- OCI artifacts

def attestation_manifest(image: tuple[str, str, int],
                         layers: Iterable[tuple[bytes, str]]) -> bytes:
    """The artifact carrying DSSE ``layers`` (envelope bytes, predicate type), whose
    ``subject`` is ``image`` (media type, digest, size)."""
    media, digest, size = image
    return oci.canonical_json({
        "schemaVersion": 2, "mediaType": oci.OCI_MANIFEST, "artifactType": DSSE_MEDIA,
        "config": {"mediaType": EMPTY_MEDIA, "digest": oci.sha256_digest(EMPTY_CONFIG),
                   "size": len(EMPTY_CONFIG)},
        "layers": [{"mediaType": DSSE_MEDIA, "digest": oci.sha256_digest(data),
                    "size": len(data),
                    "annotations": {COSIGN_SIGNATURE: "", "predicateType": predicate}}
                   for data, predicate in layers],
        "subject": {"mediaType": media, "digest": digest, "size": size}})


def attestation_tag(digest: str) -> str:
    """cosign's tag for an image's attestations: ``sha256-<hex>.att``."""
    return digest.replace(":", "-") + ".att"


def index_tag(digest: str) -> str:
    """The referrers tag schema's tag for an image's referrers: ``sha256-<hex>``."""
    return digest.replace(":", "-")


def descriptor(manifest: bytes) -> dict[str, Any]:
    """The descriptor of an artifact manifest in a referrers index."""
    document = json.loads(manifest)
    entry = {"mediaType": document.get("mediaType") or oci.OCI_MANIFEST,
             "digest": oci.sha256_digest(manifest), "size": len(manifest),
             "artifactType": document.get("artifactType")
             or (document.get("config") or {}).get("mediaType")}
    if document.get("annotations"):
        entry["annotations"] = document["annotations"]
    return entry


def referrers_index(existing: bytes | None, added: dict[str, Any]) -> bytes:
    """The ``sha256-<hex>`` index with ``added`` (replacing an entry of the same digest)."""
    manifests: list[dict[str, Any]] = []
    if existing:
        try:
            manifests = [m for m in json.loads(existing).get("manifests") or []
                         if isinstance(m, dict)]
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            manifests = []  # not an index: the tag schema's index is rebuilt
    manifests = [m for m in manifests if m.get("digest") != added["digest"]] + [added]
    return oci.canonical_json({"schemaVersion": 2, "mediaType": oci.OCI_INDEX,
                               "manifests": manifests})


def attestation_layers(manifest: bytes) -> list[dict[str, Any]]:
    """The DSSE layers of an attestation manifest (cosign's or envlock's)."""
    try:
        document = json.loads(manifest)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ProvenanceError("the attestation manifest is not JSON") from exc
    return [layer for layer in document.get("layers") or []
            if isinstance(layer, dict) and layer.get("mediaType") == DSSE_MEDIA]
