"""Signed provenance of envlock's images: keys, signing, attaching, verifying.

When a signing key is set (``ENVLOCK_SIGNING_KEY`` or ``signing_key`` in the config),
every image envlock pushes gets two DSSE-signed in-toto attestations beside it in its
registry — SLSA Provenance v1 (builder, lock and env digests, base image, every locked
package with its files digest, run id, git commit) and the CycloneDX SBOM — as one OCI
artifact in cosign's layout (:mod:`envlock.model.provenance`), so that
``cosign verify-attestation --key envlock.pub --insecure-ignore-tlog`` reads them too.

Keys are local files made by ``envlock keys generate`` (ECDSA P-256, cosign's default,
or Ed25519), PEM, the private one mode 0600 and never printed or recorded. Verifying
(``ENVLOCK_VERIFY_KEY`` / ``verify_key``) finds the attestation through the referrers API,
else the referrers tag schema's index, else cosign's ``.att`` tag, checks the signature
and that the statement names the image's digest and the run's lock. Keyless signing
(Fulcio/Rekor) would be another :class:`Signer`; nothing else depends on the key kind.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envlock import __version__
from envlock.errors import EnvlockError, UsageError
from envlock.image import oci
from envlock.model import provenance as model
from envlock.model import runrecord
from envlock.model.lockfile import Lock
from envlock.model.provenance import Expected, ProvenanceError
from envlock.model.redact import strip_url_credentials

PRIVATE, PUBLIC = "envlock.key", "envlock.pub"
ALGORITHMS = ("ecdsa-p256", "ed25519")
Registries = Callable[[str], Any]
Auth = dict[str, str]


class Unsigned(ProvenanceError):
    """The image carries no attestation envlock could find."""


# ---------------------------------------------------------------- keys

def generate(directory: Path, algorithm: str = "ecdsa-p256") -> tuple[Path, Path]:
    """``DIR/envlock.key`` (PKCS#8 PEM, mode 0600) and ``DIR/envlock.pub`` (SPKI PEM).
    Existing files are never overwritten."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    if algorithm not in ALGORITHMS:
        raise UsageError(f"unknown key algorithm {algorithm!r}",
                         f"use one of {', '.join(ALGORITHMS)}")
    private, public = directory / PRIVATE, directory / PUBLIC
    taken = [str(p) for p in (private, public) if p.exists()]
    if taken:
        raise UsageError(f"{taken[0]} exists: keys are never overwritten",
                         "choose another directory, or move the old keys away first")
    key: Any = ec.generate_private_key(ec.SECP256R1()) if algorithm == "ecdsa-p256" \
        else ed25519.Ed25519PrivateKey.generate()
    directory.mkdir(parents=True, exist_ok=True)
    secret = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                               serialization.NoEncryption())
    descriptor = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(secret)
    public.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


def _read_key(path: Path, what: str, setting: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UsageError(f"the {what} key {path} cannot be read ({exc.strerror})",
                         f"point ENVLOCK_{setting.upper()} (or {setting} in [tool.envlock]) "
                         "at a file made by `envlock keys generate DIR`") from exc


def load_private(path: Path) -> Any:
    """The signing key at ``path`` (ECDSA P-256 or Ed25519, unencrypted PEM)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    data = _read_key(path, "signing", "signing_key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:  # never echo the bytes: they are the secret
        raise UsageError(f"the signing key {path} is not an unencrypted PEM private key",
                         "make one with `envlock keys generate DIR`") from exc
    if not (isinstance(key, ed25519.Ed25519PrivateKey) or (
            isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1")):
        raise UsageError(f"the signing key {path} is neither ECDSA P-256 nor Ed25519",
                         "make one with `envlock keys generate DIR`")
    return key


def load_public(path: Path) -> Any:
    from cryptography.hazmat.primitives import serialization

    data = _read_key(path, "verifying", "verify_key")
    try:
        return serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"the verifying key {path} is not a PEM public key",
                         "use the envlock.pub that `envlock keys generate` wrote") from exc


def keyid(public: Any) -> str:
    """sha256 of the public key's DER (SubjectPublicKeyInfo): shown, never signed."""
    from cryptography.hazmat.primitives import serialization

    der = public.public_bytes(serialization.Encoding.DER,
                              serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(der).hexdigest()


def sign(private: Any, data: bytes) -> bytes:
    """ECDSA P-256 with SHA-256 (DER signature, as cosign writes; deterministic, RFC 6979,
    where OpenSSL offers it) or Ed25519 (deterministic by design): the same statement
    signed again gives the same bytes, so a rebuild attaches the same attestation."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    if not isinstance(private, ec.EllipticCurvePrivateKey):
        return bytes(private.sign(data))
    try:
        return bytes(private.sign(data, ec.ECDSA(hashes.SHA256(), deterministic_signing=True)))
    except UnsupportedAlgorithm:  # an OpenSSL before 3.2: a random nonce, as valid
        return bytes(private.sign(data, ec.ECDSA(hashes.SHA256())))


def check_signature(public: Any, data: bytes, signature: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        if isinstance(public, ec.EllipticCurvePublicKey):
            public.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        else:
            public.verify(signature, data)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def sign_statement(private: Any, statement: dict[str, Any]) -> bytes:
    """The DSSE envelope of ``statement`` signed with ``private``. The keyid is left
    empty, as cosign leaves it, so that its verifiers match any key."""
    body = model.canonical(statement)
    return model.envelope(body, [("", sign(private, model.pae(model.PAYLOAD_TYPE, body)))])


def open_envelope(public: Any, data: bytes) -> dict[str, Any]:
    """The statement of a DSSE envelope once one of its signatures verifies with
    ``public``; a ProvenanceError otherwise."""
    found = model.parse_envelope(data)
    signed = model.pae(found.payload_type, found.payload)
    if not any(check_signature(public, signed, sig) for _keyid, sig in found.signatures):
        raise ProvenanceError(f"the attestation's signature does not verify with the "
                              f"verifying key ({keyid(public)[:19]}…): it was altered or "
                              "signed with another key")
    return found.statement()


# ---------------------------------------------------------------- settings

@dataclass(frozen=True)
class Policy:
    """What the config and flags ask: the keys' files and whether a signature is required."""

    signing_key: Path | None = None
    verify_key: Path | None = None
    required: bool = False

    @classmethod
    def load(cls, start: Path | None = None, require: bool = False) -> Policy:
        from envlock import config

        cfg = config.load(start)
        return cls(cfg.file_setting("signing_key"), cfg.file_setting("verify_key"),
                   cfg.enabled("require_signed", require))

    def verifier(self) -> Any:
        if self.verify_key is None:
            raise UsageError("a signature is required but no verifying key is set",
                             "set ENVLOCK_VERIFY_KEY=PATH (or verify_key in [tool.envlock]) "
                             "to the envlock.pub of the signing key")
        return load_public(self.verify_key)


# ---------------------------------------------------------------- attaching

def attach(image: str, envelopes: list[tuple[bytes, str]], auth: Auth | None = None,
           registries: Registries | None = None) -> str:
    """Push DSSE ``envelopes`` (bytes, predicate type) as one attestation artifact of
    ``image`` (HOST/REPO@sha256:…), through the SBOM's referrer path."""
    from envlock.operations.sbom import EMPTY_CONFIG, push_artifact

    return push_artifact(image, lambda subject: model.attestation_manifest(subject, envelopes),
                         (EMPTY_CONFIG, *(data for data, _ in envelopes)),
                         model.attestation_tag, auth, registries)


def facts_of(lock: Lock, built: Any, run_id: str | None, created: str | None) -> model.Facts:
    """The provenance facts of a build result (``operations.build.BuildResult``)."""
    repository, _, digest = built.pinned.partition("@")
    git = lock.git or {}
    return model.Facts(
        repository=repository, digest=digest, lock_digest=lock.lock_digest,
        env_digest=lock.env_digest, base_image=built.base, builder_version=__version__,
        run_id=run_id, git_commit=git.get("commit"),
        git_url=strip_url_credentials(git.get("remote_url")) or None,
        code_digest=built.code_digest or None, builder=built.builder, created=created,
        packages=tuple((p.name, p.version, p.source.kind, p.files_digest)
                       for p in lock.packages))


def attest_build(lock: Lock, built: Any, options: Any, registries: Registries | None = None,
                 report: Any = None) -> dict[str, Any] | None:
    """Build's hook: sign and attach the provenance and SBOM of a pushed image when a
    signing key is set (None when none is). ``options``: the BuildOptions."""
    policy = Policy.load(options.code_dir)
    if policy.signing_key is None:
        return None
    private = load_private(policy.signing_key)
    if not built.pushed:
        if report is not None:
            report.step("not signed: a signature goes beside the image in its registry, and "
                        "this image was not pushed")
        return {"signed": False, "reason": "the image was not pushed to a registry"}
    from envlock.operations import sbom

    if report is not None:
        report.step(f"signing the provenance and SBOM of {built.pinned} "
                    f"(key {keyid(private.public_key())[:19]}…)")
    facts = facts_of(lock, built, options.run_id, options.created)
    auth = sbom.same_registry_auth(options.auth, built.pinned, built.base)
    document = sbom.build(lock, "cyclonedx-json",
                          sbom.Subject(built.pinned, built.base, options.run_id,
                                       options.created),
                          auth=auth, registries=registries).document
    statements = [model.provenance_statement(facts),
                  model.sbom_statement(facts.repository, facts.digest, document)]
    envelopes = [(sign_statement(private, s), str(s["predicateType"])) for s in statements]
    referrer = attach(built.pinned, envelopes, options.auth, registries)
    return {"signed": True, "image": built.pinned, "referrer": referrer,
            "keyid": keyid(private.public_key()), "predicates": [p for _, p in envelopes]}


# ---------------------------------------------------------------- verifying

def _registry(host: str, auth: Auth | None, registries: Registries | None) -> Any:
    from envlock.adapters.registry import Registry

    if registries:
        return registries(host)
    return Registry(host, (auth["username"], auth["password"]) if auth else None)


def _candidates(registry: Any, repository: str, digest: str) -> list[str]:
    """The digests of the image's attestation manifests: the referrers API's, else the
    tag schema index's; then cosign's ``.att`` tag."""
    listed = registry.referrers(repository, digest)
    if listed is None:
        index = registry.find_manifest(repository, model.index_tag(digest))
        listed = _listed(index[0]) if index else []
    found = [str(m.get("digest")) for m in listed
             if m.get("artifactType") == model.DSSE_MEDIA and oci.is_digest(m.get("digest"))]
    cosign = registry.find_manifest(repository, model.attestation_tag(digest))
    if cosign is not None:
        found.append(oci.sha256_digest(cosign[0]))
    return list(dict.fromkeys(found))


def _listed(index: bytes) -> list[dict[str, Any]]:
    import json

    try:
        return [m for m in json.loads(index).get("manifests") or [] if isinstance(m, dict)]
    except (ValueError, AttributeError):
        return []


def fetch(image: str, auth: Auth | None = None, registries: Registries | None = None
          ) -> list[bytes]:
    """Every DSSE envelope attached to ``image`` (HOST/REPO@sha256:…) in its registry;
    ``Unsigned`` when there is none."""
    ref = oci.parse_reference(image) if "@sha256:" in image else None
    if ref is None or not ref.digest:
        raise Unsigned(f"image {image} is not pinned to a digest in a registry: it carries "
                       "no signature")
    registry = _registry(ref.registry, auth, registries)
    envelopes = []
    for digest in _candidates(registry, ref.repository, ref.digest):
        found = registry.find_manifest(ref.repository, digest)
        if found is None or oci.sha256_digest(found[0]) != digest:
            continue
        for layer in model.attestation_layers(found[0]):
            data = b"".join(registry.blob(ref.repository, layer["digest"]))
            if oci.sha256_digest(data) == layer["digest"]:
                envelopes.append(data)
    if not envelopes:
        raise Unsigned(f"image {image} has no signed provenance in its registry "
                       f"(no attestation refers to it)")
    return envelopes


@dataclass
class Verified:
    """A provenance whose signature verified and that names the expected image and lock."""

    image: str
    keyid: str
    statement: dict[str, Any]
    parameters: dict[str, Any]
    sbom: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"image": self.image, "keyid": self.keyid, "verified": True,
                "parameters": self.parameters, "statement": self.statement,
                "sbom_attested": self.sbom is not None}


def verify_envelopes(image: str, envelopes: list[bytes], public: Any,
                     expected: Expected) -> Verified:
    """The first provenance among ``envelopes`` that verifies with ``public`` and names
    ``expected``; else a ProvenanceError saying what failed (a bad signature first)."""
    problems: list[ProvenanceError] = []
    statements = []
    for data in envelopes:
        try:
            statements.append(open_envelope(public, data))
        except ProvenanceError as exc:
            problems.append(exc)
    sbom = next((s for s in statements if s.get("predicateType") == model.CYCLONEDX), None)
    for statement in statements:
        if statement.get("predicateType") != model.SLSA_PROVENANCE:
            continue
        try:
            parameters = model.check_provenance(statement, expected)
        except ProvenanceError as exc:
            problems.insert(0, exc)
            continue
        return Verified(image, keyid(public), statement, parameters, sbom)
    if problems:
        raise problems[0]
    raise Unsigned(f"image {image} has attestations but no signed SLSA provenance")


def verify_image(image: str, public: Any, expected: Expected, auth: Auth | None = None,
                 registries: Registries | None = None) -> Verified:
    return verify_envelopes(image, fetch(image, auth, registries), public, expected)


def expected_for(lock: Lock, run: Any, image: str) -> Expected:
    """What the provenance of a run's image must name (an imported run: its original)."""
    run_ids = (run.run_id, *([run.tags[runrecord.IMPORTED_FROM]]
                             if run.tags.get(runrecord.IMPORTED_FROM) else []))
    return Expected(image.rpartition("@")[2], lock.lock_digest, lock.env_digest, run_ids)


def check_run(run_id: str, require: bool = False, tracker: Any = None
              ) -> tuple[Verified | None, str | None]:
    """Replay's and verify's hook: with a verifying key (or a signature required), the
    run's image must carry a signed provenance that names it and the run's lock.
    Returns (the verified provenance or None, a warning or None); raises a
    ProvenanceError (exit 2) on a bad signature or another lock, and on a missing one
    when it is required."""
    policy = Policy.load(None, require)
    if not policy.required and policy.verify_key is None:
        return None, None
    public = policy.verifier()
    from envlock.operations.targets import captured

    if tracker is None:
        from envlock.operations.connect import open_tracker

        tracker = open_tracker()
    lock, run = captured(tracker, run_id, image=True)
    image = run.tags[runrecord.IMAGE]
    try:
        return verify_image(image, public, expected_for(lock, run, image)), None
    except Unsigned as exc:
        if policy.required:
            exc.message = f"run {run_id}: {exc.message}"
            exc.hint = ("sign it by capturing with ENVLOCK_SIGNING_KEY set, or replay "
                        "without --require-signed")
            raise
        return None, f"{exc.message}; replaying it unverified"
    except ProvenanceError as exc:
        exc.message = f"run {run_id}: image {image}: {exc.message}"
        exc.hint = exc.hint or "refusing to run an image envlock cannot verify"
        raise


# ---------------------------------------------------------------- export / import archives

ARCHIVE_DIR = "attestations"  # in an export archive: attestations/<sha256 hex>.dsse.json


def export_attestations(add: Callable[[str, bytes], Any], reference: str,
                        credentials: tuple[str, str] | None) -> list[str]:
    """Export's hook: the DSSE envelopes attached to the run's image, added to the
    archive with ``add(name, bytes)``; warnings (an image without any is not one)."""
    if "@sha256:" not in reference:
        return []
    auth = {"username": credentials[0], "password": credentials[1]} if credentials else None
    try:
        envelopes = fetch(reference, auth)
    except Unsigned:
        return []
    except EnvlockError as exc:
        return [f"the image's attestations were not exported: {exc.message}"]
    for data in envelopes:
        add(f"{ARCHIVE_DIR}/{hashlib.sha256(data).hexdigest()}.dsse.json", data)
    return []


@dataclass
class Carried:
    """The attestations an archive carries, verified when a verifying key is set."""

    envelopes: list[bytes]
    verified: Verified | None = None
    warning: str | None = None


def check_archive(contents: Any) -> Carried:
    """Import's hook, before anything is touched: with a verifying key (or a signature
    required) the archive's attestations must verify and name its image and lock."""
    from envlock.model import lockfile

    names = sorted(n for n in contents.members if n.startswith(ARCHIVE_DIR + "/"))
    carried = Carried([contents.read(n) for n in names])
    policy = Policy.load()
    if policy.verify_key is None and not policy.required:
        return carried
    public = policy.verifier()
    where = f"{contents.path}: "
    if not carried.envelopes:
        if policy.required:
            raise Unsigned(where + "the archive carries no signed provenance",
                           "export a run whose image was signed, or import without "
                           "require_signed")
        carried.warning = "the archive carries no signed provenance: imported unverified"
        return carried
    lock = lockfile.loads(contents.read("envlock/envlock.lock.yaml").decode(), "the archive")
    expected = Expected(contents.image.manifest_digest, lock.lock_digest, lock.env_digest,
                        (str(contents.run.get("run_id")),))
    try:
        for data in carried.envelopes:  # an archive is a closed set: every one must hold
            open_envelope(public, data)
        carried.verified = verify_envelopes(contents.image.reference, carried.envelopes,
                                            public, expected)
    except ProvenanceError as exc:
        exc.message = where + exc.message
        exc.hint = "nothing was imported; the archive's attestations were altered"
        raise
    return carried


def attach_imported(image: str, carried: Carried,
                    credentials: tuple[str, str] | None) -> list[str]:
    """Import's hook, after the image was pushed: its attestations beside it again (the
    same signed bytes, now referring to the image in the new repository)."""
    warnings = [carried.warning] if carried.warning else []
    if not carried.envelopes or "@sha256:" not in image:
        return warnings
    layers = []
    for data in carried.envelopes:
        try:
            kind = str(model.parse_envelope(data).statement().get("predicateType") or "")
        except ProvenanceError:
            kind = ""
        layers.append((data, kind))
    auth = {"username": credentials[0], "password": credentials[1]} if credentials else None
    attach(image, layers, auth)
    return warnings
