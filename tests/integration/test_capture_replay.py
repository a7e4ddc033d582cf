"""capture → replay → lineage on real MLflow stores (embedded SQLite and `mlflow server` on
127.0.0.1), the real engine and the real registry."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.conftest import ROOT, init_repo, run_envlock
from tests.integration.conftest import (
    TORCH_REPO,
    Experiment,
    engine_loaded,
    make_experiment,
    same_mlflow,
    system_venv,
)

REPO = f"tests/capture-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def sqlite_exp(tmp_path_factory, experiment_venv) -> Experiment:
    root = tmp_path_factory.mktemp("sqlite") / "exp"
    return make_experiment(root, experiment_venv, f"sqlite:///{root.parent}/mlflow.db")


@pytest.fixture(scope="module")
def captured(sqlite_exp, infra, created_images):
    run_id = sqlite_exp.train()
    result = sqlite_exp.envlock("capture", "--python", str(sqlite_exp.python), "--command",
                                "python train.py", "--base-image", infra.base_image,
                                "--registry", f"{infra.registry}/{REPO}", "--json")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)["result"]
    created_images.update({payload["built"]["image"], payload["built"]["env_image"]})
    return run_id, payload


def client(store):
    from mlflow.tracking import MlflowClient

    return MlflowClient(store)


def test_capture_records_lineage_tags_and_artifacts(sqlite_exp, captured):
    run_id, payload = captured
    assert payload["run_id"] == run_id
    assert payload["picked"] == "the most recent run of the active experiment"
    run = client(sqlite_exp.store).get_run(run_id)
    tags = run.data.tags
    assert tags["envlock.image"] == payload["image"] and "@sha256:" in tags["envlock.image"]
    for key in ("envlock.env_digest", "envlock.lock_digest", "envlock.base_image",
                "envlock.python", "envlock.torch", "envlock.cuda", "envlock.driver",
                "envlock.git_commit", "envlock.dirty", "envlock.command", "envlock.version"):
        assert tags[key], key
    assert tags["envlock.command"] == "python train.py" and tags["envlock.python"] == "3.11.2"
    assert tags["envlock.env_image_id"] == payload["built"]["env_image_id"]
    names = {a.path for a in client(sqlite_exp.store).list_artifacts(run_id, "envlock")}
    assert {"envlock/envlock.lock.yaml", "envlock/Dockerfile", "envlock/untracked.txt"} <= names
    assert Path(payload["lockfile"]).is_file()


def test_capture_attaches_the_sbom_to_the_run_and_to_the_image(sqlite_exp, captured, infra,
                                                                tmp_path):
    """The SBOM artifact validates, lists the base's OS packages (read from the registry) and
    the image digest; `envlock sbom RUN_ID` gives the same bytes; the registry holds it as
    an OCI artifact whose subject is the image, under the referrers tag schema's tag."""
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    run_id, payload = captured
    tags = client(sqlite_exp.store).get_run(run_id).data.tags
    local = client(sqlite_exp.store).download_artifacts(run_id, "envlock/sbom.cdx.json",
                                                        str(tmp_path))
    document = Path(local).read_bytes()
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(document.decode()) is None
    bom = json.loads(document)
    image_digest = payload["image"].split("@")[1]
    assert bom["metadata"]["component"]["version"] == image_digest
    purls = [c.get("purl", "") for c in bom["components"]]
    assert any(p.startswith("pkg:deb/debian/python3.11@") for p in purls)
    assert any(p.startswith("pkg:pypi/mlflow-skinny@") for p in purls)
    assert infra.base_image.split("@")[1] in {c.get("version") for c in bom["components"]}
    again = sqlite_exp.envlock("sbom", run_id)
    assert again.returncode == 0 and again.stdout.encode() == document
    host, _, repo = tags["envlock.sbom"].partition("@")[0].partition("/")
    tag = image_digest.replace(":", "-") + ".sbom"
    request = urllib.request.Request(f"http://{host}/v2/{repo}/manifests/{tag}", headers={
        "Accept": "application/vnd.oci.image.manifest.v1+json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        manifest = json.loads(response.read())
    assert manifest["artifactType"] == "application/vnd.cyclonedx+json"
    assert manifest["subject"]["digest"] == image_digest
    layer = manifest["layers"][0]["digest"]
    with urllib.request.urlopen(f"http://{host}/v2/{repo}/blobs/{layer}", timeout=30) as blob:
        assert blob.read() == document


def test_replay_reproduces_the_metrics_exactly(sqlite_exp, captured):
    run_id, _ = captured
    result = sqlite_exp.envlock("replay", run_id, "--json")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)["result"]
    assert payload["comparison"]["reproduced"] is True
    assert all(m["delta"] == 0 for m in payload["comparison"]["metrics"])
    replay = client(sqlite_exp.store).get_run(payload["replay_run_id"])
    assert replay.info.status == "FINISHED"
    assert replay.data.tags["envlock.replay_of"] == run_id
    assert replay.data.tags["envlock.verdict"] == "reproduced"
    assert replay.data.params["seed"] == "0"
    assert replay.info.experiment_id == client(sqlite_exp.store).get_run(run_id).info.experiment_id
    assert "trained" in result.stderr  # the experiment's output is streamed


def test_lineage_shows_every_replay_with_its_verdict(sqlite_exp, captured):
    run_id, payload = captured
    assert sqlite_exp.envlock("replay", run_id).returncode == 0
    result = sqlite_exp.envlock("lineage", run_id, "--json")
    lineage = json.loads(result.stdout)["result"]
    assert lineage["image"] == payload["image"] and lineage["env_digest"] == payload["env_digest"]
    assert "reproduced" in {r["verdict"] for r in lineage["replays"]}
    same = sqlite_exp.envlock("diff", run_id, run_id)
    assert same.returncode == 0 and "No differences" in same.stdout


def test_detached_replay_finishes_in_the_background(sqlite_exp, captured):
    run_id, _ = captured
    before = len(client(sqlite_exp.store).search_runs(
        ["0"], filter_string=f"tags.`envlock.replay_of` = '{run_id}'"))
    result = sqlite_exp.envlock("replay", run_id, "--detach", "--json")
    assert result.returncode == 0, result.stderr
    log = Path(json.loads(result.stdout)["result"]["log"])
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and "REPRODUCED" not in log.read_text():
        time.sleep(0.5)
    assert "REPRODUCED" in log.read_text()
    after = client(sqlite_exp.store).search_runs(
        ["0"], filter_string=f"tags.`envlock.replay_of` = '{run_id}'")
    assert len(after) == before + 1


def test_capturing_the_same_run_twice_changes_nothing(sqlite_exp, captured, infra):
    run_id, payload = captured
    before = client(sqlite_exp.store).get_run(run_id).data.tags
    again = sqlite_exp.envlock("capture", "--run-id", run_id, "--python",
                               str(sqlite_exp.python), "--command", "python train.py",
                               "--base-image", infra.base_image, "--registry",
                               f"{infra.registry}/{REPO}", "--json")
    second = json.loads(again.stdout)["result"]
    assert second["built"]["env_reused"] == "local" and second["built"]["code_reused"] is True
    assert second["built"]["push_stats"]["bytes_pushed"] == 0
    assert client(sqlite_exp.store).get_run(run_id).data.tags == before


def test_drifting_metrics_are_reported_not_reproduced(sqlite_exp, captured):
    run_id, _ = captured
    result = sqlite_exp.envlock("replay", run_id, "--command", "python train.py --seed 1")
    assert result.returncode == 0  # the experiment itself succeeded ...
    assert "NOT REPRODUCED" in result.stdout and "DIFFERS" in result.stdout  # ... its metrics not
    loose = sqlite_exp.envlock("replay", run_id, "--command", "python train.py --seed 1",
                               "--tolerance", "abs=10")
    assert "REPRODUCED (tolerance abs=10" in loose.stdout


def test_a_failing_container_returns_its_exit_code_and_fails_the_replay(sqlite_exp, captured):
    run_id, _ = captured
    result = sqlite_exp.envlock("replay", run_id, "--command", "python -c 'raise SystemExit(3)'",
                                "--json")
    assert result.returncode == 3
    payload = json.loads(result.stdout)["result"]
    assert client(sqlite_exp.store).get_run(payload["replay_run_id"]).info.status == "FAILED"


def test_the_replay_container_is_hardened(sqlite_exp, captured):
    run_id, _ = captured
    probe = ("id -u; cat /proc/self/status | grep -E '^(CapEff|NoNewPrivs)'; "
             "touch /opt/x 2>&1 | head -1; touch /workspace/w /tmp/t && echo writable")
    result = sqlite_exp.envlock("replay", run_id, "--no-track", "--command", probe)
    out = result.stdout
    assert out.splitlines()[0] == "1000"
    assert "CapEff:\t0000000000000000" in out and "NoNewPrivs:\t1" in out
    assert "Read-only file system" in out and "writable" in out


def test_unknown_run(sqlite_exp):
    result = sqlite_exp.envlock("replay", "0123456789abcdef0123456789abcdef")
    assert result.returncode == 2 and "no run 0123456789abcdef" in result.stderr


def test_a_run_without_envlock_tags(sqlite_exp):
    run_id = sqlite_exp.train()
    result = sqlite_exp.envlock("replay", run_id)
    assert result.returncode == 2
    assert f"capture it first: envlock capture --run-id {run_id}" in result.stderr


def test_a_moved_tag_does_not_change_what_replays(sqlite_exp, captured, infra, docker_client):
    run_id, payload = captured
    image = payload["image"]
    repository = image.split("@")[0]
    moved = docker_client.images.get(infra.base_image)
    moved.tag(repository, run_id)
    docker_client.images.push(repository, tag=run_id)  # the tag now names other content
    for ref in (f"{repository}:{run_id}", payload["built"]["image_id"]):
        with contextlib.suppress(Exception):
            docker_client.images.remove(ref, force=True)
    result = sqlite_exp.envlock("replay", run_id)
    assert result.returncode == 0, result.stderr
    assert "REPRODUCED" in result.stdout


def test_an_image_gone_everywhere_says_how_to_rebuild(sqlite_exp, captured, infra,
                                                      docker_client):
    run_id, payload = captured
    image = payload["image"]
    repository, digest = image.split("@")
    name = repository.split("/", 1)[1]
    request = urllib.request.Request(f"http://{infra.registry}/v2/{name}/manifests/{digest}",
                                     method="DELETE")
    urllib.request.urlopen(request)
    with contextlib.suppress(Exception):
        docker_client.images.remove(image, force=True)
    with contextlib.suppress(Exception):
        docker_client.images.remove(payload["built"]["image_id"], force=True)
    result = sqlite_exp.envlock("replay", run_id)
    assert result.returncode == 2
    assert "is gone from the registry and this engine" in result.stderr
    assert f"envlock build --from-run {run_id} --no-cache" in result.stderr


def test_tracking_store_unreachable_keeps_the_lock(sqlite_exp, experiment_venv, tmp_path):
    result = sqlite_exp.envlock("capture", "--run-id", "0" * 32, "--no-build",
                                MLFLOW_TRACKING_URI="http://127.0.0.1:9/")
    assert result.returncode == 2
    assert "tracking store http://127.0.0.1:9/ is unreachable" in result.stderr
    kept = sqlite_exp.root / ".envlock" / "runs" / ("0" * 32) / "envlock.lock.yaml"
    assert kept.is_file() and f"the lockfile is kept at {kept}" in result.stderr
    assert f"retry with `envlock capture --run-id {'0' * 32}`" in result.stderr


def test_autolog_captures_when_the_run_ends(tmp_path):
    store = f"sqlite:///{tmp_path}/mlflow.db"
    repo = init_repo(tmp_path / "auto", {"train.py": (
        "import mlflow, envlock\n"
        "envlock.autolog(build=False)\n"
        "with mlflow.start_run() as run:\n"
        "    mlflow.log_metric('m', 1.0)\n"
        "    for c in (0.1, 1.0):\n"
        "        with mlflow.start_run(nested=True) as child:\n"
        "            mlflow.log_param('C', c)\n"
        "print(child.info.run_id)\n"
        "print(run.info.run_id)\n")})
    out = subprocess.run([sys.executable, "train.py", "--epochs", "2"], cwd=repo,
                         env={**os.environ, "MLFLOW_TRACKING_URI": store},
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    run_id = out.stdout.strip().splitlines()[-1]
    tags = client(store).get_run(run_id).data.tags
    assert tags["envlock.command"] == "python train.py --epochs 2"
    assert tags["envlock.git_commit"] and "envlock.image" not in tags
    child = out.stdout.strip().splitlines()[-2]  # a search's child is its parent's capture
    assert "envlock.lock_digest" not in client(store).get_run(child).data.tags


# ---------------------------------------------------------------- tracking server


def test_capture_and_replay_against_a_tracking_server(tmp_path, experiment_venv, mlflow_server,
                                                      infra, created_images):
    exp = make_experiment(tmp_path / "srv", experiment_venv, mlflow_server)
    run_id = exp.train()
    payload = exp.capture(run_id, infra, created_images, "--registry",
                          f"{infra.registry}/{REPO}-srv")
    shown = exp.envlock("show", run_id)
    assert shown.returncode == 0 and "Python:" in shown.stdout
    replayed = exp.envlock("replay", run_id, "--json")
    assert replayed.returncode == 0 and replayed.stdout, replayed.stderr[-3000:]
    assert json.loads(replayed.stdout)["result"]["comparison"]["reproduced"] is True
    # Every other command that reads a run works against the server too.
    second = exp.train()
    assert exp.envlock("capture", "--run-id", second, "--python", str(exp.python), "--command",
                       "python train.py", "--base-image", infra.base_image, "--registry",
                       f"{infra.registry}/{REPO}-srv").returncode == 0
    diffed = exp.envlock("diff", run_id, second)  # both lockfiles downloaded from the server
    assert diffed.returncode == 0, diffed.stdout + diffed.stderr
    verified = exp.envlock("verify", run_id, "--junit", str(tmp_path / "verify.xml"))
    assert verified.returncode == 0, verified.stderr[-3000:]
    lineage = exp.envlock("lineage", run_id, "--json")
    assert lineage.returncode == 0, lineage.stderr
    assert len(json.loads(lineage.stdout)["result"]["replays"]) == 2
    rebuilt = exp.envlock("build", "--from-run", run_id, "--env-only", "--no-push", "--json")
    assert rebuilt.returncode == 0, rebuilt.stderr[-3000:]
    assert json.loads(rebuilt.stdout)["result"]["env_digest"] == payload["env_digest"]
    # export from the server, import into a separate SQLite store: the lineage crosses over
    archive = tmp_path / "run.tar"
    exported = exp.envlock("export", run_id, "-o", str(archive))
    assert exported.returncode == 0, exported.stderr[-3000:]
    elsewhere = f"sqlite:///{tmp_path}/elsewhere.db"
    imported = exp.envlock("import", str(archive), "--json", MLFLOW_TRACKING_URI=elsewhere)
    assert imported.returncode == 0, imported.stderr[-3000:]
    copy = client(elsewhere).get_run(json.loads(imported.stdout)["result"]["run_id"])
    assert copy.data.tags["envlock.imported_from"] == run_id
    assert copy.data.metrics == client(mlflow_server).get_run(run_id).data.metrics


#: Seeds the global ``random`` before MLflow names the run: against a server the client never
#: draws from it for the name, against a local store it does (issue #24, item 6).
SEEDED = """\
import random

import mlflow

random.seed(1234)
with mlflow.start_run():
    draws = [random.random() for _ in range(4)]
    for step, value in enumerate(draws):
        mlflow.log_metric("draw", value, step=step)
print("drew", draws)
"""


def test_a_server_logged_run_that_seeds_the_global_random_reproduces(
        tmp_path, experiment_venv, mlflow_server, infra, created_images):
    root = tmp_path / "seeded"
    init_repo(root, {"train.py": SEEDED, ".gitignore": ".envlock/\n"})
    exp = Experiment(root=root, python=experiment_venv, store=mlflow_server)
    run_id = exp.train()
    exp.capture(run_id, infra, created_images, "--no-push")
    assert client(mlflow_server).get_run(run_id).data.tags["envlock.tracking_backend"] == (
        "server")
    replayed = exp.envlock("replay", run_id, "--json")
    assert replayed.returncode == 0, replayed.stderr[-3000:]
    comparison = json.loads(replayed.stdout)["result"]["comparison"]
    assert comparison["reproduced"] is True, comparison["metrics"]
    [draw] = comparison["metrics"]
    assert draw["name"] == "draw" and draw["delta"] == 0 and draw["history"]["points"] == [4, 4]


@pytest.mark.parametrize("name, args, metrics, torch", [
    ("pytorch", ("--epochs", "10"), {"loss", "final_loss", "accuracy"}, "2.13.0+cpu"),
    ("sklearn", (), {"accuracy", "log_loss"}, "none"),
])
def test_the_examples_replay_with_identical_metrics(name, args, metrics, torch, tmp_path, infra,
                                                    created_images, request):
    """The real PyTorch (CPU build) and scikit-learn examples, each in a venv of its
    requirements.txt, captured and replayed: identical metrics."""
    example = ROOT / "examples" / name
    root = init_repo(tmp_path / name, {"train.py": (example / "train.py").read_text(),
                                       ".gitignore": "mlflow.db\n.envlock/\n.venv/\n"})
    if name == "pytorch":  # the session's venv of that requirements.txt (installing is 30 s+)
        python, repo = request.getfixturevalue("torch_venv"), TORCH_REPO
    else:
        python, repo = system_venv(root / ".venv", "-r", str(example / "requirements.txt"),
                                   *same_mlflow("mlflow-skinny")), f"{REPO}-{name}"
    exp = Experiment(root=root, python=python, store=f"sqlite:///{tmp_path}/mlflow.db")
    run_id = exp.train(*args)
    exp.capture(run_id, infra, created_images, "--registry", f"{infra.registry}/{repo}",
                command=" ".join(("python train.py", *args)))
    assert client(exp.store).get_run(run_id).data.tags["envlock.torch"] == torch
    replayed = exp.envlock("replay", run_id, "--json")
    assert replayed.returncode == 0, replayed.stderr[-2000:]
    comparison = json.loads(replayed.stdout)["result"]["comparison"]
    assert comparison["reproduced"] is True
    assert {m["name"] for m in comparison["metrics"]} == metrics
    assert all(m["delta"] == 0 for m in comparison["metrics"])


def capture_fresh_run(exp, infra, created):
    """A run of its own (the module's captured run is deleted by the fault tests)."""
    run_id = exp.train()
    exp.capture(run_id, infra, created, "--no-push")
    return run_id


def test_verify_gates_ci_with_junit_and_markdown(sqlite_exp, infra, tmp_path, created_images):
    import xml.etree.ElementTree as ET

    run_id = capture_fresh_run(sqlite_exp, infra, created_images)
    summary = tmp_path / "step-summary.md"
    result = sqlite_exp.envlock("verify", run_id, "--junit", str(tmp_path / "j.xml"),
                                "--markdown", str(tmp_path / "s.md"),
                                GITHUB_STEP_SUMMARY=str(summary))
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("REPRODUCED")
    suite = ET.parse(tmp_path / "j.xml").getroot().find("testsuite")
    names = [case.get("name") for case in suite.findall("testcase")]
    assert names == [f"replay of {run_id}", "relay", "metric b", "metric loss", "metric w",
                     "params"]
    assert suite.get("failures") == "0"
    assert "reproduced" in (tmp_path / "s.md").read_text()
    assert summary.read_text() == (tmp_path / "s.md").read_text()


def test_verify_fails_when_metrics_drift_and_on_bad_input(sqlite_exp, infra, tmp_path,
                                                         created_images):
    run_id = capture_fresh_run(sqlite_exp, infra, created_images)
    drift_recorded_value(sqlite_exp.store, run_id, "w", 99.0)
    result = sqlite_exp.envlock("verify", run_id, "--junit", str(tmp_path / "j.xml"))
    assert result.returncode == 1 and result.stdout.startswith("NOT REPRODUCED")
    import xml.etree.ElementTree as ET

    suite = ET.parse(tmp_path / "j.xml").getroot().find("testsuite")
    assert suite.get("failures") == "1"
    unknown = sqlite_exp.envlock("verify", "f" * 32)
    assert unknown.returncode == 2 and "no run" in unknown.stderr
    # A per-metric tolerance in the project's config lets the same run pass the gate.
    config = sqlite_exp.root / "envlock.yaml"
    config.write_text("tolerances:\n  w: 100\n")
    try:
        tolerant = sqlite_exp.envlock("verify", run_id, "--json")
    finally:
        config.unlink()
    assert tolerant.returncode == 0, tolerant.stderr[-2000:]
    rows = {m["name"]: m for m in json.loads(tolerant.stdout)["result"]["comparison"]["metrics"]}
    assert rows["w"]["tolerance"] == {"absolute": 100.0, "relative": 0.0}
    assert "tolerance" not in rows["loss"]  # the others stay exact


def drift_recorded_value(store: str, run_id: str, key: str, value: float) -> None:
    """Rewrite a metric's recorded value in place in the test's own SQLite store: the record
    no longer holds, with the history's shape unchanged (logging a second value would add a
    point to the history, which no tolerance excuses)."""
    import sqlite3

    with sqlite3.connect(store.removeprefix("sqlite:///")) as db:
        for table in ("metrics", "latest_metrics"):
            changed = db.execute(f"UPDATE {table} SET value = ? WHERE run_uuid = ? AND key = ?",
                                 (value, run_id, key)).rowcount
            assert changed == 1, (table, changed)


def delete_from_registry(reference: str) -> None:
    """DELETE the manifest a tag points at (the test registry allows deletes)."""
    name, tag = reference.rsplit(":", 1)
    host, repository = name.split("/", 1)
    accept = ", ".join(["application/vnd.docker.distribution.manifest.v2+json",
                        "application/vnd.oci.image.manifest.v1+json"])
    head = urllib.request.Request(f"http://{host}/v2/{repository}/manifests/{tag}",
                                  method="HEAD", headers={"Accept": accept})
    with urllib.request.urlopen(head, timeout=10) as response:
        digest = response.headers["Docker-Content-Digest"]
    delete = urllib.request.Request(f"http://{host}/v2/{repository}/manifests/{digest}",
                                    method="DELETE")
    with urllib.request.urlopen(delete, timeout=10) as response:
        assert response.status == 202


def test_rebuild_from_the_lock_alone_after_the_image_is_gone(sqlite_exp, infra, created_images,
                                                             docker_client):
    """The long-term guarantee: with its image deleted from the engine AND the registry, a
    run's environment is provisioned and built again from its lockfile artifact (no cached
    wheel or image), proven to match the lock file by file, and is the very image the run
    recorded: same image ids, same registry digest, so the run's own pin replays again."""
    repo = f"{infra.registry}/tests/rebuild-{uuid.uuid4().hex[:8]}"
    run_id = sqlite_exp.train()
    built = sqlite_exp.capture(run_id, infra, created_images, "--registry", repo)["built"]
    for reference in (built["image"], built["env_image"]):
        delete_from_registry(reference)
        docker_client.images.remove(reference, force=True)
    gone = sqlite_exp.envlock("replay", run_id)
    assert gone.returncode == 2 and "is gone from the registry" in gone.stderr

    cache = sqlite_exp.root.parent / "empty-wheel-cache"
    rebuilt = sqlite_exp.envlock("build", "--from-run", run_id, "--no-cache", "--verify",
                                 "--registry", repo, "--json", ENVLOCK_CACHE=str(cache))
    assert rebuilt.returncode == 0, rebuilt.stderr[-3000:]
    result = json.loads(rebuilt.stdout)["result"]
    created_images.update({result["image"], result["env_image"]})
    assert result["env_reused"] is None  # built again, not found anywhere
    assert result["base"] == client(sqlite_exp.store).get_run(run_id).data.tags[
        "envlock.base_image"]  # on the base the run recorded
    fidelity = result["fidelity"]
    lock_packages = int(fidelity["packages"])
    assert fidelity["ok"] and fidelity["problems"] == [] and lock_packages > 20
    assert fidelity["files_verified"] > 1000
    assert "cache" not in set(result["provisioned"].values())  # provisioned afresh
    assert result["image"] == f"{repo}:{run_id}-rebuild" and result["pushed"]
    assert result["env_digest"] == built["env_digest"]
    # Not only the same files: the same bytes, so the same images and the run's very pin.
    assert result["env_image_id"] == built["env_image_id"]
    assert result["env_image_matches_run"] is True and result["image_matches_run"] is True
    assert result["image_id"] == built["image_id"]
    assert result["pinned"] == client(sqlite_exp.store).get_run(run_id).data.tags[
        "envlock.image"]
    human = sqlite_exp.envlock("build", "--from-run", run_id, "--registry", repo)
    assert human.returncode == 0, human.stderr[-3000:]
    assert f"environment image identical to the one run {run_id} recorded" in human.stdout
    assert f"image identical to the one run {run_id} recorded" in human.stdout
    assert f"the run's own pin resolves again: envlock replay {run_id}" in human.stdout
    again = sqlite_exp.envlock("replay", run_id)  # the recorded pin resolves again
    assert again.returncode == 0, again.stderr[-3000:]
    assert "REPRODUCED" in again.stdout


def test_capture_and_replay_through_an_authenticated_registry(sqlite_exp, infra, tmp_path,
                                                              created_images, docker_client):
    """Credentials on stdin, no docker login: capture pushes, replay pulls; without them the
    replay fails with a clear error and records no replay run."""
    repo = f"{infra.auth_registry}/tests/auth-{uuid.uuid4().hex[:8]}"
    env = sqlite_exp.env(DOCKER_CONFIG=str(tmp_path / "empty-docker-config"))
    creds = ("--registry-username", infra.auth_user, "--registry-password-stdin")
    password = infra.auth_password + "\n"
    run_id = sqlite_exp.train()
    captured = run_envlock("capture", "--run-id", run_id, "--python", str(sqlite_exp.python),
                           "--command", "python train.py", "--base-image", infra.base_image,
                           "--registry", repo, *creds, "--json", cwd=sqlite_exp.root, env=env,
                           stdin=password)
    assert captured.returncode == 0, captured.stderr[-2000:]
    built = json.loads(captured.stdout)["result"]["built"]
    assert built["pinned"].startswith(f"{repo}@sha256:")
    sbom = json.loads(captured.stdout)["result"]["sbom"]
    assert sbom["referrer"].startswith(f"{repo}@sha256:")  # pushed with the stdin credentials
    engine_loaded(built["image"], built["env_image"])
    for reference in (built["image"], built["env_image"]):
        docker_client.images.remove(reference, force=True)

    def replays():
        return client(sqlite_exp.store).search_runs(
            [client(sqlite_exp.store).get_run(run_id).info.experiment_id],
            f"tags.`envlock.replay_of` = '{run_id}'")

    denied = run_envlock("replay", run_id, cwd=sqlite_exp.root, env=env)
    assert denied.returncode == 2 and "refused the credentials" in denied.stderr
    assert replays() == []
    replayed = run_envlock("replay", run_id, *creds, "--json", cwd=sqlite_exp.root, env=env,
                           stdin=password)
    assert replayed.returncode == 0, replayed.stderr[-2000:]
    created_images.add(built["pinned"])
    assert json.loads(replayed.stdout)["result"]["comparison"]["reproduced"] is True
    assert len(replays()) == 1
    assert infra.auth_password not in captured.stdout + captured.stderr + replayed.stdout
    # --detach: the password read from stdin reaches the background replay, which pulls.
    docker_client.images.remove(built["pinned"], force=True)
    detached = run_envlock("replay", run_id, *creds, "--detach", "--json", cwd=sqlite_exp.root,
                           env=env, stdin=password)
    assert detached.returncode == 0, detached.stderr[-2000:]
    log = Path(json.loads(detached.stdout)["result"]["log"])
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and not any(
            end in log.read_text() for end in ("REPRODUCED", "envlock: error")):
        time.sleep(0.5)
    assert "REPRODUCED" in log.read_text(), log.read_text()[-2000:]
    assert infra.auth_password not in log.read_text()
    assert len(replays()) == 2
