"""A Kubernetes replay's pinned inputs: the Job rendered from ReplaySpecs (an init container
fills an ``inputs`` volume from the inputs image, the experiment mounts each input
read-only where the run saw it), the plan from a lock (copied inputs carried, referenced
files refused), and the inputs image derived over a fake registry: one canonical layer,
the same digest for the same inputs, nothing pushed twice."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import tarfile
from types import SimpleNamespace

import pytest

from envlock.adapters.ocistore import Store
from envlock.config import Config
from envlock.errors import UsageError
from envlock.model import kubejob, runrecord
from envlock.model.inputs import Entry, Input, directory
from envlock.model.replayspec import ContainerFlags, Mount, ReplaySpec
from envlock.operations import inputimage, kube, replayplan
from envlock.operations import inputs as carried
from envlock.operations.replayplan import BASE_ENV, ReplayRequest
from tests.factories import make_lock
from tests.fakes import FakeRegistry, publish_base

RUN_ID = "0f3c9a1e2b7d4c56a8e9f0123456789a"
IMAGE = "registry.example.com/team/proj@sha256:" + "ab" * 32
URI = "http://mlflow.ml.svc.cluster.local:5000"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


TRAIN, EXTRA, A, B = b"1\n2\n3\n", b"10\n20\n", b"png-a", b"png-b"
COPIED = (
    Input("data/train.csv", "file", len(TRAIN), sha(TRAIN), carry="copy"),
    Input("/mnt/shared/extra.csv", "file", len(EXTRA), sha(EXTRA), carry="copy"),
    dataclasses.replace(directory("data/imgs", [Entry("a.png", 5, sha(A)),
                                                Entry("sub/b.png", 5, sha(B))]), carry="copy"),
)


def job(inputs: tuple[Mount, ...], inputs_image: str | None = "reg/x@sha256:" + "cd" * 32
        ) -> kubejob.JobSpec:
    replay = ReplaySpec(run_id=RUN_ID, image=IMAGE, env=dict(BASE_ENV), inputs=inputs)
    return kubejob.JobSpec(name=kubejob.job_name(RUN_ID, "r1"), replay=replay,
                           tracking_uri=URI, replay_run_id="r1", inputs_image=inputs_image)


def test_a_job_mounts_each_copied_input_read_only_where_the_run_saw_it():
    mounts = kubejob.input_mounts(COPIED, "/workspace")
    manifest = kubejob.job_manifest(job(mounts))
    pod = manifest["spec"]["template"]["spec"]
    main = pod["containers"][0]
    assert main["image"] == IMAGE  # the experiment runs the run's own image
    by_path = {m["mountPath"]: m for m in main["volumeMounts"] if m["name"] == "inputs"}
    assert by_path == {
        "/mnt/shared/extra.csv": {"name": "inputs", "mountPath": "/mnt/shared/extra.csv",
                                  "subPath": sha(EXTRA), "readOnly": True},
        "/workspace/data/imgs": {"name": "inputs", "mountPath": "/workspace/data/imgs",
                                 "subPath": COPIED[2].sha256, "readOnly": True},
        "/workspace/data/train.csv": {"name": "inputs", "mountPath": "/workspace/data/train.csv",
                                      "subPath": sha(TRAIN), "readOnly": True}}
    # after the workspace: the runtime mounts the workspace, then the inputs inside it
    names = [m["mountPath"] for m in main["volumeMounts"]]
    assert names.index("/workspace") < names.index("/workspace/data/train.csv")
    workspace, fill = pod["initContainers"]
    assert fill["name"] == "inputs" and fill["image"] == "reg/x@sha256:" + "cd" * 32
    assert fill["command"][-1] == kubejob.INPUTS_FILL
    assert "-t /envlock/inputs" in fill["command"][-1]
    assert fill["securityContext"] == main["securityContext"] == workspace["securityContext"]
    assert fill["volumeMounts"] == [{"name": "inputs", "mountPath": kubejob.INPUTS_COPY}]
    assert {"name": "inputs", "emptyDir": {}} in pod["volumes"]
    notes = manifest["metadata"]["annotations"]
    assert notes["envlock.dev/inputs-image"] == fill["image"]


def test_a_job_without_inputs_has_no_inputs_volume_or_init_container():
    pod = kubejob.job_manifest(job(()))["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["initContainers"]] == ["workspace"]
    assert all(v["name"] != "inputs" for v in pod["volumes"])
    assert "envlock.dev/inputs-image" not in kubejob.job_manifest(job(()))["metadata"][
        "annotations"]


def test_a_local_replays_host_paths_cannot_become_a_jobs_inputs():
    host = (Mount("/home/me/.cache/envlock/inputs/blobs/sha256/" + "a" * 64,
                  "/workspace/data.csv", True),)
    with pytest.raises(UsageError, match="which a pod cannot read"):
        kubejob.job_manifest(job(host))
    with pytest.raises(UsageError, match="no inputs image"):
        kubejob.job_manifest(job(kubejob.input_mounts(COPIED, "/workspace"), None))


@pytest.mark.extra("kubernetes")
def test_the_inputs_job_round_trips_through_the_clients_models():
    import kubernetes.client as client  # ~0.4 s: only where a test needs it

    from envlock.adapters import kube as kube_client

    manifest = kubejob.job_manifest(job(kubejob.input_mounts(COPIED, "/workspace")))
    api = client.ApiClient()
    assert api.sanitize_for_serialization(kube_client.to_model(api, manifest)) == manifest


# ------------------------------------------------------------------ the plan from a lock

class Tracker:
    uri = URI

    def __init__(self, lock, tags=None):
        self.lock, self.tags = lock, tags or {}

    def run(self, run_id):
        from envlock.adapters.tracking import RunData

        return RunData(run_id=run_id, experiment_id="1", status="FINISHED", name="r",
                       tags={"envlock.image": IMAGE, "envlock.lock_digest": self.lock.lock_digest,
                             **self.tags})

    def download(self, run_id, name, dest):
        from envlock.model import lockfile

        return lockfile.write(self.lock, dest / name)


def plan(inputs: tuple[Input, ...], **request: object):
    lock = make_lock(inputs=inputs)
    artifact = "registry.example.com/team/proj@sha256:" + "ef" * 32
    tracker = Tracker(lock, {runrecord.INPUTS: artifact})
    made, context = replayplan.kubernetes(ReplayRequest(RUN_ID, ContainerFlags(), **request),
                                          tracker=tracker, config=Config())
    return made, context, kube.plan(made, context, tracker=tracker, options=kube.KubeOptions())


def test_the_dry_run_says_which_image_would_be_derived_and_derives_nothing(monkeypatch):
    monkeypatch.setattr(kube, "derive", lambda *a, **k: pytest.fail("derived"))
    made, context, planned = plan(COPIED)
    assert made.inputs == kubejob.input_mounts(COPIED, "/workspace")
    assert set(context.copied) == set(COPIED) and context.inputs_artifact.endswith("ef" * 32)
    fill = planned.manifest["spec"]["template"]["spec"]["initContainers"][1]
    assert fill["image"].startswith(f"<derived at submit: {IMAGE} + one layer of 3 copied")
    assert planned.manifest["metadata"]["annotations"]["envlock.dev/inputs-image"] == fill["image"]


def test_referenced_files_stop_a_job_in_one_line_with_the_fix():
    referenced = (*COPIED[:1], Input("/mnt/big.bin", "file", 10, "0" * 64, carry="reference"))
    with pytest.raises(carried.InputsError) as stopped:
        plan(referenced)
    assert "references 1 input(s) by hash only (/mnt/big.bin)" in stopped.value.message
    assert "a cluster node is not this host" in stopped.value.message
    assert "\n" not in stopped.value.message
    assert "inputs_copy_max" in stopped.value.hint and "--on local" in stopped.value.hint
    made, context, _planned = plan(referenced, allow_changed_inputs=True)
    assert [m.target for m in made.inputs] == ["/workspace/data/train.csv"]
    assert context.inputs_changed == ("/mnt/big.bin: not given to the Job (referenced: a "
                                      "cluster node is not this host)",)


# ------------------------------------------------------------------ the inputs image

@pytest.fixture
def published(tmp_path, monkeypatch):
    """A run's image and its inputs artifact in a fake registry; an empty cache."""
    monkeypatch.setenv("ENVLOCK_CACHE", str(tmp_path / "cache"))
    registry = FakeRegistry("127.0.0.1:5000")
    base = publish_base(registry, "team/exp")
    for data in (TRAIN, EXTRA, A, B):
        registry.blobs[("team/exp", "sha256:" + sha(data))] = data
    return SimpleNamespace(registry=registry, image=base,
                           artifact="127.0.0.1:5000/team/exp@sha256:" + "ef" * 32)


def derive(published, store_dir) -> inputimage.Derived:
    return inputimage.derive(published.image, COPIED, published.artifact,
                             store=Store(store_dir), registry=published.registry)


def layer_entries(registry: FakeRegistry, image: str) -> dict[str, tarfile.TarInfo]:
    repo, digest = image.split("/", 1)[1].split("@")
    manifest = json.loads(registry.manifests[(repo, digest)])
    top = registry.blobs[(repo, manifest["layers"][-1]["digest"])]
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(top))) as tar:
        return {m.name: m for m in tar.getmembers()}


def test_the_inputs_image_is_the_runs_image_plus_one_canonical_layer(published, tmp_path):
    derived = derive(published, tmp_path / "one")
    repo = "team/exp"
    base = json.loads(published.registry.manifests[(repo, published.image.split("@")[1])])
    mine = json.loads(published.registry.manifests[(repo, derived.image.split("@")[1])])
    assert [d["digest"] for d in mine["layers"][:-1]] == [d["digest"] for d in base["layers"]]
    pushed = [c[1][1] for c in published.registry.calls if c[0] == "push_blob"]
    assert len(pushed) == 2  # the inputs layer and the config: the base layers are there
    entries = layer_entries(published.registry, derived.image)
    root = ".envlock/inputs"
    assert {n for n, m in entries.items() if m.isfile()} == {
        f"{root}/{sha(TRAIN)}", f"{root}/{sha(EXTRA)}", f"{root}/{COPIED[2].sha256}/a.png",
        f"{root}/{COPIED[2].sha256}/sub/b.png"}
    assert all(m.mtime == entries[root].mtime and m.uid == 0 for m in entries.values())
    assert list(entries) == sorted(entries)
    # a second replay: found in the store's names and the registry, nothing written
    published.registry.calls.clear()
    again = derive(published, tmp_path / "one")
    assert again.image == derived.image and again.reused and again.pushed_bytes == 0
    assert not [c for c in published.registry.calls if c[0] in ("push_blob", "blob")]
    # another host (another cache): the same bytes, so the same digest; nothing new pushed
    fresh = inputimage.derive(published.image, COPIED[::-1], published.artifact,
                              store=Store(tmp_path / "two"), registry=published.registry)
    assert fresh.image == derived.image and fresh.pushed_bytes == 0 and not fresh.reused


def test_a_blob_that_does_not_match_its_hash_stops_the_derivation(published, tmp_path):
    published.registry.blobs[("team/exp", "sha256:" + sha(TRAIN))] = b"tampered"
    with pytest.raises(carried.InputsError, match="does not match its hash"):
        derive(published, tmp_path / "s")


def test_submit_derives_the_inputs_image_and_records_it_on_the_replay_run(monkeypatch):
    from envlock.model.compat import Verdict
    from envlock.operations.replayplan import Context
    from tests.fakes import FakeTracker

    tracker, submitted, derived = FakeTracker(uri=URI), [], []
    monkeypatch.setattr(kube, "load_client", lambda: object())
    monkeypatch.setattr(kube, "node_preflight", lambda *a: Verdict(ok=True))
    monkeypatch.setattr(kube, "pull_secret", lambda *a: None)
    monkeypatch.setattr(kube, "submit_job", lambda manifest, api: submitted.append(manifest))

    def derive(image, copied, artifact, credentials=None):
        derived.append((image, copied, artifact))
        return inputimage.Derived("registry.example.com/team/proj@sha256:" + "cd" * 32, 10)

    monkeypatch.setattr(kube, "derive", derive)
    run_id = tracker.add_run(name="train", tags={"envlock.image": IMAGE})
    spec = ReplaySpec(run_id=run_id, image=IMAGE, env=dict(BASE_ENV),
                      inputs=kubejob.input_mounts(COPIED, "/workspace"))
    context = Context(run=tracker.run(run_id), locked={"gpu": {}}, copied=COPIED,
                      inputs_artifact="registry.example.com/team/proj@sha256:" + "ef" * 32)
    replay_id, job_spec, _verdict = kube.submit(spec, context, tracker=tracker,
                                                options=kube.KubeOptions())
    assert derived == [(IMAGE, COPIED, context.inputs_artifact)]
    fill = submitted[0]["spec"]["template"]["spec"]["initContainers"][1]
    assert fill["image"] == job_spec.inputs_image == "registry.example.com/team/proj@sha256:" \
        + "cd" * 32
    assert tracker.runs[replay_id].tags["envlock.inputs_image"] == fill["image"]
    assert tracker.runs[replay_id].tags["envlock.image"] == IMAGE
