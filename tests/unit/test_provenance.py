"""Signed provenance (issue #27): PAE, DSSE envelopes, statements and their checks (pure),
keys and signatures (cryptography), and the attach/fetch/verify round trip over the
in-memory registry fake. The real registries are in tests/integration/test_provenance.py."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pytest

from envlock.errors import UsageError
from envlock.model import provenance as model
from envlock.model.provenance import Expected, Facts, ProvenanceError
from envlock.operations import provenance
from tests.fakes import FakeRegistry, publish_base

LOCK = "sha256:" + "1" * 64
ENV = "sha256:" + "2" * 64
DIGEST = "sha256:" + "a" * 64
BASE = "reg.example/library/python@sha256:" + "b" * 64


def facts(**changes) -> Facts:
    values = dict(repository="reg.example/team/proj", digest=DIGEST, lock_digest=LOCK,
                  env_digest=ENV, base_image=BASE, builder_version="0.1.0", run_id="r" * 32,
                  git_commit="c" * 40, git_url="https://git.example/proj.git",
                  packages=(("six", "1.16.0", "index", "sha256:" + "3" * 64),
                            ("mlproj", "0.1.0", "editable", None)))
    values.update(changes)
    return Facts(**values)


@pytest.fixture(scope="module")
def keypair(tmp_path_factory) -> tuple[Path, Path]:
    return provenance.generate(tmp_path_factory.mktemp("keys"))


# ---------------------------------------------------------------- pure

def test_pae_is_the_dsse_v1_encoding():
    # The DSSE protocol's own example.
    assert model.pae("http://example.com/HelloWorld", b"hello world") == \
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    assert model.pae("t", b"") == b"DSSEv1 1 t 0 "


def test_an_envelope_round_trips_and_accepts_url_safe_base64():
    raw = model.envelope(b"\xfb\xff payload", [("k1", b"\xfa\xfbsig")])
    found = model.parse_envelope(raw)
    assert (found.payload_type, found.payload, found.signatures) == \
        (model.PAYLOAD_TYPE, b"\xfb\xff payload", (("k1", b"\xfa\xfbsig"),))
    doc = json.loads(raw)
    doc["payload"] = base64.urlsafe_b64encode(b"\xfb\xff payload").decode().rstrip("=")
    assert model.parse_envelope(json.dumps(doc).encode()).payload == b"\xfb\xff payload"


@pytest.mark.parametrize("data, problem", [
    (b"not json", "not a JSON DSSE envelope"),
    (b'{"payload": "e30="}', "no signatures"),
    (b'{"payloadType": "x", "payload": "e30=", "signatures": []}', "carries no signature"),
    (b'{"payloadType": "x", "payload": "%%%", "signatures": [{"sig": "AA=="}]}',
     "payload is not base64"),
])
def test_a_broken_envelope_is_a_provenance_error(data, problem):
    with pytest.raises(ProvenanceError, match=problem):
        model.parse_envelope(data)


def test_the_provenance_statement_states_the_build():
    statement = model.provenance_statement(facts())
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == "https://slsa.dev/provenance/v1"
    assert statement["subject"] == [{"name": "reg.example/team/proj",
                                     "digest": {"sha256": "a" * 64}}]
    build = statement["predicate"]["buildDefinition"]
    assert build["externalParameters"] == {
        "lock_digest": LOCK, "env_digest": ENV, "base_image": BASE, "run_id": "r" * 32,
        "git_commit": "c" * 40}
    deps = {d["name"]: d for d in build["resolvedDependencies"]}
    assert deps["base-image"]["digest"] == {"sha256": "b" * 64}
    assert deps["code"] == {"name": "code", "uri": "git+https://git.example/proj.git",
                            "digest": {"gitCommit": "c" * 40}}
    assert deps["six"]["digest"] == {model.FILES_DIGEST: "3" * 64}
    assert deps["six"]["uri"] == "pkg:pypi/six@1.16.0" and "digest" not in deps["mlproj"]
    builder = statement["predicate"]["runDetails"]["builder"]
    assert builder == {"id": model.BUILDER_ID, "version": {"envlock": "0.1.0"}}


def test_check_provenance_names_what_differs():
    statement = model.provenance_statement(facts())
    good = Expected(DIGEST, LOCK, ENV, ("r" * 32,))
    assert model.check_provenance(statement, good)["lock_digest"] == LOCK
    with pytest.raises(ProvenanceError, match="another lock: lock_digest"):
        model.check_provenance(statement, Expected(DIGEST, "sha256:" + "9" * 64, ENV))
    with pytest.raises(ProvenanceError, match="another lock: env_digest"):
        model.check_provenance(statement, Expected(DIGEST, LOCK, "sha256:" + "9" * 64))
    with pytest.raises(ProvenanceError, match="about another image"):
        model.check_provenance(statement, Expected("sha256:" + "f" * 64, LOCK, ENV))
    with pytest.raises(ProvenanceError, match="made for run r+, not other"):
        model.check_provenance(statement, Expected(DIGEST, LOCK, ENV, ("other",)))
    sbom = model.sbom_statement("reg.example/team/proj", DIGEST, b'{"bomFormat": "CycloneDX"}')
    with pytest.raises(ProvenanceError, match="not SLSA provenance"):
        model.check_provenance(sbom, good)


def test_the_attestation_manifest_is_cosigns_layout_with_a_subject():
    manifest = json.loads(model.attestation_manifest(
        ("application/vnd.oci.image.manifest.v1+json", DIGEST, 1234),
        [(b"env1", model.SLSA_PROVENANCE), (b"env2", model.CYCLONEDX)]))
    assert manifest["artifactType"] == model.DSSE_MEDIA
    assert manifest["subject"] == {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                                   "digest": DIGEST, "size": 1234}
    assert [(layer["mediaType"], layer["annotations"]) for layer in manifest["layers"]] == [
        (model.DSSE_MEDIA, {model.COSIGN_SIGNATURE: "", "predicateType": model.SLSA_PROVENANCE}),
        (model.DSSE_MEDIA, {model.COSIGN_SIGNATURE: "", "predicateType": model.CYCLONEDX})]
    assert model.attestation_tag(DIGEST) == "sha256-" + "a" * 64 + ".att"
    assert model.index_tag(DIGEST) == "sha256-" + "a" * 64


def test_the_referrers_index_adds_and_replaces_by_digest():
    first = model.attestation_manifest(("m", DIGEST, 1), [(b"x", model.SLSA_PROVENANCE)])
    second = b'{"mediaType": "application/vnd.oci.image.manifest.v1+json", ' \
             b'"artifactType": "application/vnd.cyclonedx+json"}'
    index = model.referrers_index(None, model.descriptor(first))
    index = model.referrers_index(index, model.descriptor(second))
    index = model.referrers_index(index, model.descriptor(first))  # again: not twice
    listed = json.loads(index)["manifests"]
    assert [m["artifactType"] for m in listed] == ["application/vnd.cyclonedx+json",
                                                   model.DSSE_MEDIA]
    assert json.loads(model.referrers_index(b"garbage", model.descriptor(first)))[
        "manifests"] == [model.descriptor(first)]


# ---------------------------------------------------------------- keys and signatures

def test_keys_generate_writes_a_private_key_only_its_owner_reads(keypair, tmp_path):
    private, public = keypair
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert private.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert public.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    with pytest.raises(UsageError, match="never overwritten"):
        provenance.generate(private.parent)
    with pytest.raises(UsageError, match="unknown key algorithm"):
        provenance.generate(tmp_path, "rsa")


@pytest.mark.parametrize("algorithm", ["ecdsa-p256", "ed25519"])
def test_a_signed_statement_verifies_with_cryptography_directly(algorithm, tmp_path):
    """An independent reader: decode the envelope by hand, rebuild PAE from the DSSE spec
    (not envlock's function), and check the signature with cryptography."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    private, public = provenance.generate(tmp_path, algorithm)
    statement = model.provenance_statement(facts())
    raw = json.loads(provenance.sign_statement(provenance.load_private(private), statement))
    body = base64.b64decode(raw["payload"])
    signed = b" ".join([b"DSSEv1", str(len(raw["payloadType"])).encode(),
                        raw["payloadType"].encode(), str(len(body)).encode(), body])
    key = serialization.load_pem_public_key(public.read_bytes())
    signature = base64.b64decode(raw["signatures"][0]["sig"])
    if algorithm == "ecdsa-p256":
        key.verify(signature, signed, ec.ECDSA(hashes.SHA256()))
    else:
        key.verify(signature, signed)
    assert json.loads(body) == statement


@pytest.mark.parametrize("algorithm", ["ecdsa-p256", "ed25519"])
def test_signing_the_same_statement_again_gives_the_same_envelope(algorithm, tmp_path):
    private = provenance.load_private(provenance.generate(tmp_path, algorithm)[0])
    statement = model.provenance_statement(facts())
    assert provenance.sign_statement(private, statement) == \
        provenance.sign_statement(private, statement)


def test_an_altered_envelope_or_another_key_is_refused(keypair, tmp_path):
    private, public = keypair
    data = provenance.sign_statement(provenance.load_private(private),
                                     model.provenance_statement(facts()))
    verifier = provenance.load_public(public)
    assert provenance.open_envelope(verifier, data)["predicateType"] == model.SLSA_PROVENANCE
    doc = json.loads(data)
    altered = json.loads(base64.b64decode(doc["payload"]))
    altered["predicate"]["buildDefinition"]["externalParameters"]["lock_digest"] = "sha256:0"
    doc["payload"] = base64.b64encode(model.canonical(altered)).decode()
    with pytest.raises(ProvenanceError, match="does not verify"):
        provenance.open_envelope(verifier, json.dumps(doc).encode())
    _, other = provenance.generate(tmp_path / "other")
    with pytest.raises(ProvenanceError, match="does not verify"):
        provenance.open_envelope(provenance.load_public(other), data)


def test_key_files_that_are_not_keys_are_one_line_usage_errors(tmp_path):
    junk = tmp_path / "junk.key"
    junk.write_text("-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n")
    with pytest.raises(UsageError, match="not an unencrypted PEM private key") as caught:
        provenance.load_private(junk)
    assert "c2VjcmV0" not in str(caught.value)  # never echo what could be the secret
    with pytest.raises(UsageError, match="cannot be read"):
        provenance.load_public(tmp_path / "missing.pub")


def test_key_settings_come_from_the_env_or_relative_to_the_config_file(tmp_path, monkeypatch):
    project = tmp_path / "proj"
    project.mkdir()
    (project / "envlock.yaml").write_text("signing_key: keys/envlock.key\n"
                                          "verify_key: /abs/envlock.pub\n"
                                          "require_signed: true\n")
    monkeypatch.chdir(project)
    for name in ("ENVLOCK_SIGNING_KEY", "ENVLOCK_VERIFY_KEY", "ENVLOCK_REQUIRE_SIGNED",
                 "ENVLOCK_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    policy = provenance.Policy.load()
    assert policy == provenance.Policy(project.resolve() / "keys/envlock.key",
                                       Path("/abs/envlock.pub"), True)
    monkeypatch.setenv("ENVLOCK_VERIFY_KEY", "rel.pub")
    monkeypatch.setenv("ENVLOCK_REQUIRE_SIGNED", "0")
    (project / "envlock.yaml").write_text("signing_key: k\n")
    assert provenance.Policy.load() == provenance.Policy(project.resolve() / "k",
                                                         Path("rel.pub"), False)
    assert provenance.Policy.load(require=True).required


# ---------------------------------------------------------------- attach, fetch, verify

@pytest.fixture
def registry() -> FakeRegistry:
    return FakeRegistry("reg.example")


def signed(keypair, image: str, **changes) -> list[tuple[bytes, str]]:
    private = provenance.load_private(keypair[0])
    repository, _, digest = image.partition("@")
    statements = [model.provenance_statement(facts(repository=repository, digest=digest,
                                                   **changes)),
                  model.sbom_statement(repository, digest, b'{"bomFormat": "CycloneDX"}')]
    return [(provenance.sign_statement(private, s), s["predicateType"]) for s in statements]


def test_attached_attestations_are_found_by_tag_schema_and_verified(keypair, registry):
    image = publish_base(registry)
    connect = {"registries": lambda host: registry}
    referrer = provenance.attach(image, signed(keypair, image), **connect)
    digest = image.partition("@")[2]
    assert referrer.partition("@")[2] == json.loads(
        registry.manifests[("library/python", model.index_tag(digest))])["manifests"][0][
        "digest"]
    assert ("library/python", model.attestation_tag(digest)) in registry.manifests
    verified = provenance.verify_image(image, provenance.load_public(keypair[1]),
                                       Expected(digest, LOCK, ENV, ("r" * 32,)), **connect)
    assert verified.parameters["lock_digest"] == LOCK
    assert verified.sbom is not None and verified.sbom["predicate"]["bomFormat"] == "CycloneDX"
    with pytest.raises(ProvenanceError, match="another lock"):
        provenance.verify_image(image, provenance.load_public(keypair[1]),
                                Expected(digest, "sha256:" + "9" * 64), **connect)


def test_an_image_without_attestations_is_unsigned(keypair, registry):
    image = publish_base(registry)
    with pytest.raises(provenance.Unsigned, match="no signed provenance"):
        provenance.fetch(image, registries=lambda host: registry)
    with pytest.raises(provenance.Unsigned, match="not pinned to a digest"):
        provenance.fetch("sha256:" + "c" * 64)


def test_a_valid_attestation_beside_an_altered_one_still_verifies(keypair, registry):
    """Anyone who can push can add an attestation; only one that verifies counts."""
    image = publish_base(registry)
    connect = {"registries": lambda host: registry}
    good = signed(keypair, image)
    provenance.attach(image, good, **connect)
    bad = json.loads(good[0][0])
    bad["signatures"][0]["sig"] = base64.b64encode(b"\x00" * 70).decode()
    provenance.attach(image, [(json.dumps(bad).encode(), model.SLSA_PROVENANCE)], **connect)
    digest = image.partition("@")[2]
    verified = provenance.verify_image(image, provenance.load_public(keypair[1]),
                                       Expected(digest, LOCK, ENV), **connect)
    assert verified.image == image
