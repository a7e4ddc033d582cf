"""export → import → replay on real components: the Docker engine, the registries on
127.0.0.1 (open and htpasswd) and two separate SQLite MLflow stores (A: where the run was
captured, B: where it is imported)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.conftest import run_envlock
from tests.integration.conftest import Experiment, make_experiment

REPO = f"tests/export-{uuid.uuid4().hex[:8]}"


def client(store: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(store)


def runs(store: str) -> list:
    return client(store).search_runs([e.experiment_id
                                      for e in client(store).search_experiments()])


def in_store(store: str, *args: str, cwd: Path, **env: str):
    return run_envlock(*args, cwd=cwd, env={"MLFLOW_TRACKING_URI": store, "CI": "1", **env})


def manifest_digest(registry: str, repository: str, reference: str,
                    auth: tuple[str, str] | None = None) -> str | None:
    import base64

    request = urllib.request.Request(
        f"http://{registry}/v2/{repository}/manifests/{reference}", method="HEAD",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json, "
                           "application/vnd.oci.image.manifest.v1+json"})
    if auth:
        token = base64.b64encode(":".join(auth).encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.headers.get("Docker-Content-Digest")
    except urllib.error.HTTPError:
        return None


def forget_image(docker_client, image_id: str) -> None:
    """Remove an image (all its tags) from the local engine, as on another machine."""
    with contextlib.suppress(Exception):
        docker_client.images.remove(image_id, force=True)
    import docker

    with pytest.raises(docker.errors.ImageNotFound):
        docker_client.images.get(image_id)


@pytest.fixture(scope="module")
def exp_a(tmp_path_factory, experiment_venv) -> Experiment:
    root = tmp_path_factory.mktemp("store-a") / "exp"
    return make_experiment(root, experiment_venv, f"sqlite:///{root.parent}/mlflow.db")


@pytest.fixture(scope="module")
def store_b(tmp_path_factory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('store-b')}/mlflow.db"


@pytest.fixture(scope="module")
def pushed(exp_a, infra, created_images):
    """A run of examples/minimal captured in store A, its image pushed to the registry,
    with one input outside the project copied beside it (issue #22)."""
    weights = exp_a.root.parent / "weights.bin"  # before the run: after, it is an output
    weights.write_bytes(b"w" * 1000)
    run_id = exp_a.train()
    return run_id, exp_a.capture(run_id, infra, created_images, "--registry",
                                 f"{infra.registry}/{REPO}", "--input", str(weights))


@pytest.fixture(scope="module")
def exported(exp_a, pushed, tmp_path_factory):
    run_id, _ = pushed
    path = tmp_path_factory.mktemp("archives") / "run.tar"
    result = exp_a.envlock("export", run_id, "-o", str(path), "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    return path, json.loads(result.stdout)["result"]


def test_export_copies_the_pinned_image_and_the_run(exp_a, pushed, exported):
    run_id, payload = pushed
    path, result = exported
    repository, digest = payload["image"].split("@")
    assert result["image"]["source"] == "registry"
    assert result["image"]["manifest_digest"] == digest  # bit for bit from the registry
    assert result["image"]["config_digest"] == payload["built"]["image_id"]
    with tarfile.open(path) as tar:
        names = set(tar.getnames())
        index = json.load(tar.extractfile("index.json"))
        docker = json.load(tar.extractfile("manifest.json"))
        record = json.load(tar.extractfile("envlock/run.json"))
        listing = json.load(tar.extractfile("envlock/MANIFEST.json"))
    assert {"oci-layout", "index.json", "manifest.json", "envlock/envlock.lock.yaml",
            "envlock/Dockerfile", "envlock/untracked.txt", "envlock/run.json",
            "envlock/MANIFEST.json", f"blobs/sha256/{digest.split(':')[1]}",
            "inputs/manifest.json",
            "inputs/sha256/" + __import__("hashlib").sha256(b"w" * 1000).hexdigest()} <= names
    assert index["manifests"][0]["digest"] == digest
    assert docker[0]["RepoTags"] == [f"{repository}:{run_id}"]
    assert listing["schema"] == "envlock.archive/1"
    assert {f["path"] for f in listing["files"]} == {
        n for n in names if n != "envlock/MANIFEST.json" and not tar_dir(path, n)}
    original = client(exp_a.store).get_run(run_id)
    assert record["params"] == original.data.params
    assert len(record["metrics"]["loss"]) == 20
    assert record["tags"]["envlock.image"] == payload["image"]
    assert record["experiment_name"] == "Default" and record["status"] == "FINISHED"
    assert record["source_tracking_uri"] == exp_a.store
    assert result["sha256"] == "sha256:" + __import__("hashlib").sha256(
        path.read_bytes()).hexdigest()
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".part")]


def test_sigterm_mid_export_leaves_no_partial_archive(exp_a, pushed, tmp_path):
    """A cancelled CI job: the .part file goes, no archive appears, exit 143, one line."""
    run_id, _ = pushed
    target = tmp_path / "cancelled.tar"
    proc = subprocess.Popen([sys.executable, "-m", "envlock", "export", run_id, "-o",
                             str(target)], cwd=exp_a.root, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **exp_a.env(), "CI": "1"})
    seen = ""
    while "reading the manifest" not in seen:  # the archive is open from this step on
        line = proc.stderr.readline()
        assert line, f"export ended early: {seen}"
        seen += line
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:  # the export won the race: then it is whole
        assert target.is_file()
    else:
        assert proc.returncode == 143, err
        assert "envlock: interrupted (SIGTERM) while reading the manifest" in err
        assert err.rstrip().endswith("; nothing was recorded") and not target.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]


def tar_dir(path: Path, name: str) -> bool:
    with tarfile.open(path) as tar:
        return tar.getmember(name).isdir()


def test_import_into_another_repository_keeps_the_digest_and_replays(
        exp_a, pushed, exported, store_b, infra, docker_client, created_images, tmp_path):
    run_id, payload = pushed
    path, result = exported
    digest = result["image"]["manifest_digest"]
    forget_image(docker_client, payload["built"]["image_id"])
    target = f"{infra.registry}/{REPO}-imported"
    cache = {"ENVLOCK_CACHE": str(tmp_path / "cache")}  # another host's: no input cached
    imported = in_store(store_b, "import", str(path), "--registry", target, "--json",
                        cwd=tmp_path, **cache)
    assert imported.returncode == 0, imported.stderr[-3000:]
    out = json.loads(imported.stdout)["result"]
    assert out["image"] == f"{target}@{digest}" and out["reused"] is False
    assert out["blobs_pushed"] >= 1
    assert manifest_digest(infra.registry, f"{REPO}-imported", digest) == digest
    created_images.add(out["image"])

    new = client(store_b).get_run(out["run_id"])
    old = client(exp_a.store).get_run(run_id)
    assert new.info.run_id != run_id and new.info.run_name == old.info.run_name
    assert new.info.status == "FINISHED"
    assert (new.info.start_time, new.info.end_time) == (old.info.start_time, old.info.end_time)
    assert new.data.params == old.data.params and new.data.metrics == old.data.metrics
    history = [(m.value, m.step, m.timestamp)
               for m in client(store_b).get_metric_history(new.info.run_id, "loss")]
    assert history == [(m.value, m.step, m.timestamp)
                       for m in client(exp_a.store).get_metric_history(run_id, "loss")]
    for key, value in old.data.tags.items():
        if key not in ("envlock.image", "envlock.inputs"):
            assert new.data.tags[key] == value, key
    # the copied input travelled in the archive: cached here, pushed beside the image
    assert new.data.tags["envlock.inputs"].startswith(f"{target}@sha256:")
    blob = __import__("hashlib").sha256(b"w" * 1000).hexdigest()
    assert (tmp_path / "cache" / "inputs" / "blobs" / "sha256" / blob).read_bytes() == \
        b"w" * 1000
    assert new.data.tags["envlock.image"] == out["image"]
    assert new.data.tags["envlock.imported_from"] == run_id
    assert new.data.tags["envlock.imported_from_uri"] == exp_a.store
    assert new.data.tags["envlock.archive_sha256"] == result["sha256"]
    artifacts = {a.path for a in client(store_b).list_artifacts(new.info.run_id, "envlock")}
    assert {"envlock/envlock.lock.yaml", "envlock/Dockerfile", "envlock/untracked.txt"} <= \
        artifacts

    replayed = in_store(store_b, "replay", out["run_id"], "--json", cwd=tmp_path, **cache)
    assert replayed.returncode == 0, replayed.stderr[-3000:]
    comparison = json.loads(replayed.stdout)["result"]["comparison"]
    assert comparison["reproduced"] is True
    assert all(m["delta"] == 0 for m in comparison["metrics"])

    before = len(runs(store_b))
    again = in_store(store_b, "import", str(path), "--registry", target, "--json",
                     cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    second = json.loads(again.stdout)["result"]
    assert second["reused"] is True and second["run_id"] == out["run_id"]
    assert second["blobs_pushed"] == 0
    assert len(runs(store_b)) == before


def test_a_local_only_run_round_trips_through_docker_load(exp_a, infra, docker_client,
                                                         created_images, tmp_path):
    run_id = exp_a.train()
    payload = exp_a.capture(run_id, infra, created_images, "--no-push")
    image_id = payload["built"]["image_id"]
    assert payload["image"] == image_id
    path = tmp_path / "local.tar"
    exported = exp_a.envlock("export", run_id, "-o", str(path), "--json")
    assert exported.returncode == 0, exported.stderr[-3000:]
    image = json.loads(exported.stdout)["result"]["image"]
    assert image["source"] == "engine" and image["config_digest"] == image_id
    with tarfile.open(path) as archive:  # docker save's layers, gzipped on the way
        index = json.load(archive.extractfile("index.json"))
        digest = index["manifests"][0]["digest"].split(":")[1]
        layers = json.load(archive.extractfile(f"blobs/sha256/{digest}"))["layers"]
    assert {layer["mediaType"] for layer in layers} == {
        "application/vnd.oci.image.layer.v1.tar+gzip"}
    assert path.stat().st_size < 0.6 * docker_client.images.get(image_id).attrs["Size"]

    forget_image(docker_client, image_id)
    store_c = f"sqlite:///{tmp_path}/c.db"
    imported = in_store(store_c, "import", str(path), "--experiment", "from-archive",
                        cwd=tmp_path)
    assert imported.returncode == 0, imported.stderr[-3000:]
    assert "imported as run" in imported.stdout and "loaded into the engine" in imported.stdout
    assert docker_client.images.get(image_id).id == image_id  # the same image id
    created_images.add(image_id)
    (new,) = runs(store_c)
    assert client(store_c).get_experiment(new.info.experiment_id).name == "from-archive"
    assert new.data.tags["envlock.image"] == image_id
    replayed = in_store(store_c, "replay", new.info.run_id, cwd=tmp_path)
    assert replayed.returncode == 0, replayed.stderr[-3000:]
    assert "REPRODUCED" in replayed.stdout


def test_a_tampered_archive_is_refused_and_nothing_is_created(exported, store_b, tmp_path):
    path, result = exported
    tampered = tmp_path / "tampered.tar"
    shutil.copy(path, tampered)
    with tarfile.open(tampered) as tar:
        blob = max((m for m in tar.getmembers() if m.name.startswith("blobs/")),
                   key=lambda m: m.size)
    with tampered.open("r+b") as handle:
        handle.seek(blob.offset_data + blob.size // 2)
        byte = handle.read(1)
        handle.seek(-1, 1)
        handle.write(bytes([byte[0] ^ 0x01]))
    fresh = tmp_path / "fresh.db"
    refused = in_store(f"sqlite:///{fresh}", "import", str(tampered), cwd=tmp_path)
    assert refused.returncode == 2
    errors = [line for line in refused.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and f"blob {blob.name}" in errors[0], refused.stderr
    assert errors[0].startswith("envlock: error: ") and "export it again" in errors[0]
    assert not fresh.exists()
    before = len(runs(store_b))
    refused = in_store(store_b, "import", str(tampered), "--json", cwd=tmp_path)
    assert refused.returncode == 2
    assert json.loads(refused.stdout)["error"]["type"] == "ArchiveError"
    assert len(runs(store_b)) == before


def test_exporting_an_unknown_run_fails_and_writes_nothing(exp_a, tmp_path):
    target = tmp_path / "x.tar"
    result = exp_a.envlock("export", "0123456789abcdef0123456789abcdef", "-o", str(target))
    assert result.returncode == 2 and "no run 0123456789abcdef" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_exporting_a_run_that_was_never_captured(exp_a, tmp_path):
    run_id = exp_a.train()
    result = exp_a.envlock("export", run_id, "-o", str(tmp_path / "x.tar"))
    assert result.returncode == 2
    assert f"capture it first: envlock capture --run-id {run_id}" in result.stderr


def docker_config(directory: Path, registry: str, auth: tuple[str, str] | None) -> str:
    """A Docker config directory: logged in to ``registry`` with ``auth``, or to nothing."""
    import base64

    directory.mkdir()
    auths = {registry: {"auth": base64.b64encode(":".join(auth).encode()).decode()}} \
        if auth else {}
    (directory / "config.json").write_text(json.dumps({"auths": auths}))
    return str(directory)


def test_import_into_the_authenticated_registry(exported, infra, tmp_path):
    path, result = exported
    digest = result["image"]["manifest_digest"]
    repository = f"{REPO}-auth"
    target = f"{infra.auth_registry}/{repository}"
    credentials = (infra.auth_user, infra.auth_password)
    store = f"sqlite:///{tmp_path}/auth.db"
    refused = in_store(store, "import", str(path), "--registry", target, cwd=tmp_path,
                       DOCKER_CONFIG=docker_config(tmp_path / "none", infra.auth_registry,
                                                   None))
    assert refused.returncode == 2
    assert f"registry {infra.auth_registry} refused the credentials" in refused.stderr
    assert f"docker login {infra.auth_registry}" in refused.stderr
    assert runs(store) == []
    imported = run_envlock(  # credentials on stdin, no docker login, no Docker config
        "import", str(path), "--registry", target, "--json", "--registry-username",
        infra.auth_user, "--registry-password-stdin", cwd=tmp_path, stdin=infra.auth_password,
        env={"MLFLOW_TRACKING_URI": store, "CI": "1",
             "DOCKER_CONFIG": str(tmp_path / "none")})
    assert imported.returncode == 0, imported.stderr[-3000:]
    assert infra.auth_password not in imported.stdout + imported.stderr
    assert json.loads(imported.stdout)["result"]["image"] == f"{target}@{digest}"
    assert manifest_digest(infra.auth_registry, repository, digest, credentials) == digest
    (run,) = runs(store)
    assert run.data.tags["envlock.image"] == f"{target}@{digest}"


def test_a_registry_that_refuses_exports_the_engines_copy(exported, infra, docker_client,
                                                          created_images, tmp_path):
    """Runs must outlive registries: when the registry refuses (or is gone) and the engine
    holds the pinned image, its copy is exported (same image id) with a warning."""
    from envlock.adapters.engine import Engine

    path, result = exported
    digest = result["image"]["manifest_digest"]
    target = f"{infra.auth_registry}/{REPO}-fallback"
    credentials = (infra.auth_user, infra.auth_password)
    store = f"sqlite:///{tmp_path}/f.db"
    imported = in_store(store, "import", str(path), "--registry", target, "--json",
                        cwd=tmp_path, DOCKER_CONFIG=docker_config(
                            tmp_path / "login", infra.auth_registry, credentials))
    assert imported.returncode == 0, imported.stderr[-3000:]
    run_id = json.loads(imported.stdout)["result"]["run_id"]
    logged_out = docker_config(tmp_path / "none", infra.auth_registry, None)
    archive = tmp_path / "again.tar"
    refused = in_store(store, "export", run_id, "-o", str(archive), cwd=tmp_path,
                       DOCKER_CONFIG=logged_out)
    assert refused.returncode == 2 and "refused the credentials" in refused.stderr
    assert not archive.exists() and not list(tmp_path.glob(".again.tar.*"))

    Engine(docker_client).pull(f"{target}@{digest}", {"username": credentials[0],
                                                      "password": credentials[1]})
    created_images.add(f"{target}@{digest}")
    fallback = in_store(store, "export", run_id, "-o", str(archive), "--json", cwd=tmp_path,
                        DOCKER_CONFIG=logged_out)
    assert fallback.returncode == 0, fallback.stderr[-3000:]
    assert "exported the engine's copy instead" in fallback.stderr
    image = json.loads(fallback.stdout)["result"]["image"]
    assert image["source"] == "engine" and image["reference"] == f"{target}@{digest}"
    assert image["config_digest"] == result["image"]["config_digest"]
