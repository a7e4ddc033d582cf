"""Signed provenance (issue #27) on real components: keys from `envlock keys generate`, two
runs of examples/minimal captured with a signing key into a real registry on 127.0.0.1
(Debian's docker-registry 2.8: no referrers API, so the tag schema's index is used), a
real SQLite MLflow store, the real engine for the replay. Every way to break the proof —
the run pointed at another image, altered attestation bytes, the attestation removed, the
wrong key, an altered archive — is refused with one line and exit 2 before anything runs."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import tarfile
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.conftest import run_envlock
from tests.integration.conftest import Experiment, make_experiment

REPO = f"tests/signed-{uuid.uuid4().hex[:8]}"
DSSE = "application/vnd.dsse.envelope.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


# ---------------------------------------------------------------- the registry, by hand

def http(method: str, url: str, data: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def get_manifest(registry: str, repo: str, ref: str) -> bytes | None:
    status, body, _ = http("GET", f"http://{registry}/v2/{repo}/manifests/{ref}",
                           headers={"Accept": f"{OCI_MANIFEST}, {OCI_INDEX}"})
    return body if status == 200 else None


def put_manifest(registry: str, repo: str, ref: str, data: bytes, media: str) -> None:
    status, body, _ = http("PUT", f"http://{registry}/v2/{repo}/manifests/{ref}", data,
                           {"Content-Type": media})
    assert status == 201, body


def get_blob(registry: str, repo: str, digest: str) -> bytes:
    status, body, _ = http("GET", f"http://{registry}/v2/{repo}/blobs/{digest}")
    assert status == 200
    return body


def put_blob(registry: str, repo: str, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    status, _, headers = http("POST", f"http://{registry}/v2/{repo}/blobs/uploads/", b"")
    assert status == 202
    location = headers["Location"]
    url = location if location.startswith("http") else f"http://{registry}{location}"
    status, body, _ = http("PUT", f"{url}{'&' if '?' in url else '?'}digest={digest}", data,
                           {"Content-Type": "application/octet-stream"})
    assert status == 201, body
    return digest


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("keys")
    made = run_envlock("keys", "generate", str(root / "signer"), "--json")
    assert made.returncode == 0, made.stderr
    assert "PRIVATE KEY" not in made.stdout + made.stderr
    other = run_envlock("keys", "generate", str(root / "other"), "--algorithm", "ed25519")
    assert other.returncode == 0, other.stderr
    return {"key": root / "signer" / "envlock.key", "pub": root / "signer" / "envlock.pub",
            "other": root / "other" / "envlock.pub"}


@pytest.fixture(scope="module")
def exp(tmp_path_factory, experiment_venv) -> Experiment:
    root = tmp_path_factory.mktemp("signed") / "exp"
    return make_experiment(root, experiment_venv, f"sqlite:///{root.parent}/mlflow.db")


def capture(exp: Experiment, infra, keys, created: set[str], command: str) -> tuple[str, dict]:
    run_id = exp.train()
    result = exp.envlock("capture", "--run-id", run_id, "--python", str(exp.python),
                         "--command", command, "--base-image", infra.base_image,
                         "--registry", f"{infra.registry}/{REPO}", "--json",
                         ENVLOCK_SIGNING_KEY=str(keys["key"]))
    assert result.returncode == 0, result.stderr[-3000:]
    payload = json.loads(result.stdout)["result"]
    created.update({payload["built"]["image"], payload["built"]["env_image"]})
    assert "PRIVATE KEY" not in result.stdout + result.stderr
    return run_id, payload


@pytest.fixture(scope="module")
def runs(exp, infra, keys, created_images) -> dict[str, tuple[str, dict]]:
    """Run A and run B (another command: another lock), both captured signed."""
    return {"a": capture(exp, infra, keys, created_images, "python train.py"),
            "b": capture(exp, infra, keys, created_images, "python train.py --epochs 20")}


def replay(exp: Experiment, run_id: str, *extra: str, key: Path | None = None, **env: str):
    if key is not None:
        env["ENVLOCK_VERIFY_KEY"] = str(key)
    return exp.envlock("replay", run_id, "--no-track", *extra, **env)


def refused(result, *words: str) -> str:
    """Exit 2, one line on stderr saying what failed, nothing run."""
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("envlock: error:")]
    assert result.returncode == 2, result.stderr[-3000:]
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    assert "trained:" not in result.stdout  # the experiment never ran
    return lines[0]


def attestation(infra, image: str) -> tuple[bytes, dict]:
    digest = image.partition("@")[2]
    manifest = get_manifest(infra.registry, REPO, digest.replace(":", "-") + ".att")
    assert manifest is not None
    return manifest, json.loads(manifest)


@contextlib.contextmanager
def registry_restored(infra, image: str):
    """Put the attestation tag and the referrers index back as they were."""
    digest = image.partition("@")[2]
    att_tag, index_tag = digest.replace(":", "-") + ".att", digest.replace(":", "-")
    saved = {tag: get_manifest(infra.registry, REPO, tag) for tag in (att_tag, index_tag)}
    try:
        yield
    finally:
        put_manifest(infra.registry, REPO, att_tag, saved[att_tag], OCI_MANIFEST)
        put_manifest(infra.registry, REPO, index_tag, saved[index_tag], OCI_INDEX)


# ---------------------------------------------------------------- signing

def test_capture_pushes_signed_provenance_and_sbom_in_cosigns_layout(runs, infra, keys, exp):
    run_id, payload = runs["a"]
    image = payload["image"]
    digest = image.partition("@")[2]
    signed = payload["built"]["provenance"]
    assert signed["signed"] is True and signed["image"] == image
    assert signed["predicates"] == ["https://slsa.dev/provenance/v1",
                                    "https://cyclonedx.org/bom"]
    raw, manifest = attestation(infra, image)
    assert manifest["subject"]["digest"] == digest
    assert manifest["artifactType"] == DSSE
    assert [layer["annotations"]["predicateType"] for layer in manifest["layers"]] == \
        signed["predicates"]
    assert {layer["mediaType"] for layer in manifest["layers"]} == {DSSE}
    # the referrers tag schema's index lists the attestation and the plain SBOM artifact
    index = json.loads(get_manifest(infra.registry, REPO, digest.replace(":", "-")))
    kinds = {m["artifactType"]: m["digest"] for m in index["manifests"]}
    assert kinds[DSSE] == sha(raw) == signed["referrer"].partition("@")[2]
    assert "application/vnd.cyclonedx+json" in kinds
    # never the private key in what the run recorded
    from mlflow.tracking import MlflowClient

    tags = MlflowClient(exp.store).get_run(run_id).data.tags
    secret = keys["key"].read_text().splitlines()[1]
    assert not [k for k, v in tags.items() if secret in v or "PRIVATE KEY" in v]


def test_a_reader_without_envlock_verifies_the_envelope_with_cryptography(runs, infra, keys):
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    run_id, payload = runs["a"]
    _, manifest = attestation(infra, payload["image"])
    public = serialization.load_pem_public_key(keys["pub"].read_bytes())
    statements = []
    for layer in manifest["layers"]:
        envelope = json.loads(get_blob(infra.registry, REPO, layer["digest"]))
        body = base64.b64decode(envelope["payload"])
        kind = envelope["payloadType"].encode()
        pae = b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(body), body)
        public.verify(base64.b64decode(envelope["signatures"][0]["sig"]), pae,
                      ec.ECDSA(hashes.SHA256()))
        statements.append(json.loads(body))
    in_toto_verifies(manifest, infra, keys["pub"])
    provenance, bom = statements
    assert provenance["_type"] == "https://in-toto.io/Statement/v1"
    assert provenance["subject"][0]["digest"]["sha256"] == payload["image"].split(":")[-1]
    params = provenance["predicate"]["buildDefinition"]["externalParameters"]
    assert (params["lock_digest"], params["env_digest"], params["run_id"]) == \
        (payload["lock_digest"], payload["env_digest"], run_id)
    assert params["base_image"] == payload["built"]["base"]
    deps = provenance["predicate"]["buildDefinition"]["resolvedDependencies"]
    assert any(d["uri"].startswith("pkg:pypi/mlflow-skinny@") and d["digest"] for d in deps)
    assert bom["predicateType"] == "https://cyclonedx.org/bom"
    assert bom["predicate"]["bomFormat"] == "CycloneDX"


def in_toto_verifies(manifest: dict, infra, public: Path) -> None:
    """in-toto's own DSSE implementation (securesystemslib) accepts every envelope, and
    refuses one whose payload was changed. cosign leaves the keyid empty; so does envlock."""
    from cryptography.hazmat.primitives import serialization
    from securesystemslib.dsse import Envelope
    from securesystemslib.exceptions import VerificationError
    from securesystemslib.signer import SSlibKey

    found = SSlibKey.from_crypto(serialization.load_pem_public_key(public.read_bytes()))
    key = SSlibKey("", found.keytype, found.scheme, found.keyval)
    for layer in manifest["layers"]:
        raw = get_blob(infra.registry, REPO, layer["digest"])
        assert list(Envelope.from_dict(json.loads(raw)).verify([key], 1)) == [""]
        envelope = json.loads(raw)  # from_dict consumes what it reads
        envelope["payload"] = base64.b64encode(b'{"_type": "forged"}').decode()
        with pytest.raises(VerificationError):
            Envelope.from_dict(envelope).verify([key], 1)


def test_provenance_prints_the_verified_statement(runs, exp, keys):
    run_id, payload = runs["a"]
    shown = exp.envlock("provenance", run_id, "--json", ENVLOCK_VERIFY_KEY=str(keys["pub"]))
    assert shown.returncode == 0, shown.stderr[-2000:]
    result = json.loads(shown.stdout)["result"]
    assert result["verified"] is True and result["image"] == payload["image"]
    assert result["parameters"]["lock_digest"] == payload["lock_digest"]
    assert result["statement"]["predicateType"] == "https://slsa.dev/provenance/v1"
    human = exp.envlock("provenance", run_id, ENVLOCK_VERIFY_KEY=str(keys["pub"]))
    assert human.returncode == 0 and '"predicateType"' in human.stdout
    refused(exp.envlock("provenance", run_id), "no verifying key")


def test_replay_with_require_signed_runs_a_verified_image(runs, exp, keys):
    run_id, _ = runs["a"]
    result = replay(exp, run_id, "--require-signed", key=keys["pub"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "carries a provenance signed by" in result.stderr
    assert "trained:" in result.stdout


# ---------------------------------------------------------------- refusals

def test_a_wrong_key_is_refused(runs, exp, keys):
    run_id, _ = runs["a"]
    refused(replay(exp, run_id, "--require-signed", key=keys["other"]), run_id,
            "does not verify with the verifying key")


def test_the_run_pointed_at_another_image_is_refused(runs, exp, keys, infra):
    """The run store says image B (signed, genuine, but built from another lock)."""
    from mlflow.tracking import MlflowClient

    run_id, payload = runs["a"]
    other = runs["b"][1]["image"]
    assert other != payload["image"]
    client = MlflowClient(exp.store)
    client.set_tag(run_id, "envlock.image", other)
    try:
        line = refused(replay(exp, run_id, key=keys["pub"]), "another lock")
        assert other in line
        refused(exp.envlock("verify", run_id, "--require-signed",
                            ENVLOCK_VERIFY_KEY=str(keys["pub"])), "another lock")
        # the registry's run tag moved to image B, and the run pointed at that tag
        repository = payload["image"].partition("@")[0]
        b_manifest = get_manifest(infra.registry, REPO, other.partition("@")[2])
        put_manifest(infra.registry, REPO, run_id, b_manifest, OCI_MANIFEST)
        client.set_tag(run_id, "envlock.image", f"{repository}:{run_id}")
        refused(replay(exp, run_id, "--require-signed", key=keys["pub"]),
                "not pinned to a digest")
    finally:
        client.set_tag(run_id, "envlock.image", payload["image"])


def test_altered_attestation_bytes_are_refused(runs, exp, keys, infra):
    """Someone with push rights rewrites the provenance to name another lock and points
    the image's attestation tag and referrers index at it: the signature no longer holds."""
    run_id, payload = runs["a"]
    image = payload["image"]
    digest = image.partition("@")[2]
    _, manifest = attestation(infra, image)
    with registry_restored(infra, image):
        layer = manifest["layers"][0]
        envelope = json.loads(get_blob(infra.registry, REPO, layer["digest"]))
        statement = json.loads(base64.b64decode(envelope["payload"]))
        params = statement["predicate"]["buildDefinition"]["externalParameters"]
        params["git_commit"] = "0" * 40
        envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
        altered = json.dumps(envelope).encode()
        layer = {**layer, "digest": put_blob(infra.registry, REPO, altered),
                 "size": len(altered)}
        forged = json.dumps({**manifest, "layers": [layer]}).encode()
        put_manifest(infra.registry, REPO, digest.replace(":", "-") + ".att", forged,
                     OCI_MANIFEST)
        put_manifest(infra.registry, REPO, digest.replace(":", "-"), json.dumps({
            "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [{
                "mediaType": OCI_MANIFEST, "digest": sha(forged), "size": len(forged),
                "artifactType": DSSE}]}).encode(), OCI_INDEX)
        refused(replay(exp, run_id, "--require-signed", key=keys["pub"]),
                "signature does not verify")
    again = exp.envlock("provenance", run_id, ENVLOCK_VERIFY_KEY=str(keys["pub"]))
    assert again.returncode == 0, again.stderr  # the restored attestation verifies again


def test_a_removed_attestation_is_refused_when_required_by_the_config(runs, exp, keys, infra):
    run_id, payload = runs["a"]
    image = payload["image"]
    raw, _ = attestation(infra, image)
    config = exp.root / "envlock.yaml"
    with registry_restored(infra, image):
        status, body, _ = http("DELETE",
                               f"http://{infra.registry}/v2/{REPO}/manifests/{sha(raw)}")
        assert status == 202, body
        config.write_text(f"verify_key: {keys['pub']}\nrequire_signed: true\n")
        try:
            refused(exp.envlock("verify", run_id), run_id, "no signed provenance")
            refused(replay(exp, run_id), "no signed provenance")
        finally:
            config.unlink()
        # not required: with a verifying key alone an unsigned image runs, with a warning
        ran = replay(exp, run_id, key=keys["pub"])
        assert ran.returncode == 0, ran.stderr[-3000:]
        assert "no signed provenance" in ran.stderr and "replaying it unverified" in ran.stderr
    again = exp.envlock("provenance", run_id, ENVLOCK_VERIFY_KEY=str(keys["pub"]))
    assert again.returncode == 0, again.stderr  # the restored attestation verifies again


# ---------------------------------------------------------------- archives

@pytest.fixture(scope="module")
def archive(runs, exp, tmp_path_factory) -> Path:
    run_id, _ = runs["a"]
    path = tmp_path_factory.mktemp("archive") / "run.tar"
    result = exp.envlock("export", run_id, "-o", str(path))
    assert result.returncode == 0, result.stderr[-3000:]
    return path


def test_an_archive_round_trip_carries_and_verifies_the_attestations(
        archive, runs, infra, keys, tmp_path):
    run_id, payload = runs["a"]
    with tarfile.open(archive) as tar:
        carried = [n for n in tar.getnames() if n.startswith("attestations/")]
    assert len(carried) == 2
    store = f"sqlite:///{tmp_path}/other.db"
    target = f"{infra.registry}/{REPO}-imported"
    env = {"MLFLOW_TRACKING_URI": store, "ENVLOCK_VERIFY_KEY": str(keys["pub"])}
    imported = run_envlock("import", str(archive), "--registry", target, "--json",
                           cwd=tmp_path, env=env)
    assert imported.returncode == 0, imported.stderr[-3000:]
    new = json.loads(imported.stdout)["result"]
    assert new["image"] == f"{target}@{payload['image'].partition('@')[2]}"
    shown = run_envlock("provenance", new["run_id"], "--json", cwd=tmp_path, env=env)
    assert shown.returncode == 0, shown.stderr[-3000:]
    result = json.loads(shown.stdout)["result"]
    assert result["image"] == new["image"]  # found beside the image in its new repository
    assert result["parameters"]["run_id"] == run_id  # signed for the original run


def rewritten(archive: Path, out: Path, change) -> Path:
    """The archive with one attestation changed and its MANIFEST.json made to match, as
    someone rewriting the whole archive would."""
    with tarfile.open(archive) as tar:
        members = [(m, tar.extractfile(m).read() if m.isfile() else None)
                   for m in tar.getmembers()]
    files = {m.name: data for m, data in members}
    name = sorted(n for n in files if n.startswith("attestations/"))[0]
    files[name] = change(files[name])
    listing = json.loads(files["envlock/MANIFEST.json"])
    for entry in listing["files"]:
        if entry["path"] == name:
            entry["sha256"], entry["size"] = sha(files[name]), len(files[name])
    files["envlock/MANIFEST.json"] = json.dumps(listing, indent=2, sort_keys=True).encode()
    with tarfile.open(out, "w") as tar:
        for member, _ in members:
            data = files[member.name]
            if data is not None:
                member.size = len(data)
            tar.addfile(member, io.BytesIO(data) if data is not None else None)
    return out


def test_an_archive_with_altered_attestations_or_the_wrong_key_is_refused(
        archive, infra, keys, tmp_path):
    def alter(data: bytes) -> bytes:
        envelope = json.loads(data)
        statement = json.loads(base64.b64decode(envelope["payload"]))
        statement["subject"][0]["name"] = "evil.example/x"
        envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
        return json.dumps(envelope).encode()

    bad = rewritten(archive, tmp_path / "bad.tar", alter)
    store = f"sqlite:///{tmp_path}/other.db"
    env = {"MLFLOW_TRACKING_URI": store, "ENVLOCK_VERIFY_KEY": str(keys["pub"])}
    target = f"{infra.registry}/{REPO}-refused"
    line = refused(run_envlock("import", str(bad), "--registry", target, cwd=tmp_path,
                               env=env), "bad.tar", "does not verify")
    assert "nothing was imported" in line
    wrong = {**env, "ENVLOCK_VERIFY_KEY": str(keys["other"])}
    refused(run_envlock("import", str(archive), "--registry", target, cwd=tmp_path,
                        env=wrong), "does not verify")
    status, _, _ = http("GET", f"http://{infra.registry}/v2/{REPO}-refused/tags/list")
    assert status == 404  # no image pushed
    assert not (tmp_path / "other.db").exists()  # no run created
