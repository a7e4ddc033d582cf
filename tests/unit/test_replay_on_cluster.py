"""A replay on Kubernetes ends as a local one does: when it does not reproduce, the ranked
explanations (recorded on the replay run and printed), then ``envlock/report.html`` on the
replay run. The Job is the fakes' (no cluster): following it logs what the experiment in
the pod would."""

from __future__ import annotations

import html
import json

import pytest

from envlock.model.compat import Verdict
from envlock.model.replayspec import ReplaySpec
from envlock.operations import kube
from envlock.operations.replayplan import BASE_ENV, Context
from tests.fakes import FakeTracker

IMAGE = "registry.example.com/team/proj@sha256:" + "ab" * 32
URI = "http://mlflow.ml.svc.cluster.local:5000"


@pytest.fixture
def cluster(monkeypatch):
    """The Kubernetes calls of envlock.operations.kube, answered without a cluster; the
    Job, when followed, logs ``loss`` (its points set by the test) into its replay run."""
    tracker = FakeTracker(uri=URI)
    job = {"loss": [(0, 1.0), (1, 0.5)], "submitted": [], "deleted": []}

    def follow(namespace, name, output, api):
        [replay] = [r for r in tracker.runs.values() if r.tags.get("envlock.replay_of")]
        replay.history["loss"] = [{"value": v, "step": s, "timestamp": i + 1}
                                  for i, (s, v) in enumerate(job["loss"])]
        output(b"epoch 1 done\n")
        return 0

    monkeypatch.setattr(kube, "load_client", lambda: object())
    monkeypatch.setattr(kube, "node_preflight", lambda *a: Verdict(ok=True))
    monkeypatch.setattr(kube, "pull_secret", lambda *a: None)
    monkeypatch.setattr(kube, "submit_job", lambda manifest, api: job["submitted"].append(
        manifest))
    monkeypatch.setattr(kube, "follow_job", follow)
    monkeypatch.setattr(kube, "delete_job", lambda *a: job["deleted"].append(a))
    return tracker, job


def replay(tracker: FakeTracker, env: dict[str, str]) -> kube.KubeReplayResult:
    run_id = tracker.add_run(name="train", tags={"envlock.image": IMAGE},
                             history={"loss": [(0, 1.0), (1, 0.5)]})
    spec = ReplaySpec(run_id=run_id, image=IMAGE, env={**BASE_ENV, **env})
    context = Context(run=tracker.run(run_id), original_command="python train.py",
                      locked={"gpu": {}, "frameworks": {}, "host": {"cpu": {"usable_cores": 2}},
                              "runtime": {"env": {}}})
    return kube.replay_on_kubernetes(spec, context, tracker=tracker,
                                     options=kube.KubeOptions(), output=lambda chunk: None)


def artifact(tracker: FakeTracker, run_id: str, name: str) -> bytes | None:
    return tracker.runs[run_id].artifacts.get(f"envlock/{name}")


def test_a_cluster_replay_that_differs_is_explained_and_reported(cluster):
    tracker, job = cluster
    job["loss"] = [(0, 1.0), (1, 0.75)]  # the pod's run parts from the original at step 1
    result = replay(tracker, {"LR_SCALE": "1.5"})
    assert result.exit_code == 0 and result.comparison is not None
    assert not result.comparison.reproduced and len(job["submitted"]) == 1
    [why] = [e for e in result.explanations if e.kind == "env"]
    assert why.evidence == ("LR_SCALE: original not recorded, replay 1.5",)
    replay_id = str(result.replay_run_id)
    recorded = json.loads(artifact(tracker, replay_id, "explanations.json") or b"[]")
    assert [e["kind"] for e in recorded] == [e.kind for e in result.explanations]
    assert tracker.runs[replay_id].tags["envlock.explanation"] == why.title
    assert tracker.runs[replay_id].tags["envlock.verdict"] == "not reproduced"
    assert result.to_dict()["explanations"][0]["kind"] == "env"
    _reported(tracker, result)


def test_a_cluster_replay_that_reproduces_has_a_report_and_no_explanations(cluster):
    tracker, job = cluster
    result = replay(tracker, {})
    assert result.comparison is not None and result.comparison.reproduced
    assert result.explanations == () and not job["deleted"]
    assert artifact(tracker, str(result.replay_run_id), "explanations.json") is None
    _reported(tracker, result)


def _reported(tracker: FakeTracker, result: kube.KubeReplayResult) -> None:
    """The HTML page on the replay run, as a local replay logs it (or the warning that
    says why not, without matplotlib)."""
    from envlock.operations.report import plotting_available

    page = artifact(tracker, str(result.replay_run_id), "report.html")
    if plotting_available():
        assert page is not None and page.startswith(b"<!DOCTYPE html>"), page and page[:80]
        assert result.original_run_id.encode() in page
        for explanation in result.explanations:
            assert html.escape(explanation.title).encode() in page
    else:
        assert page is None and any("matplotlib" in w for w in result.warnings)


def test_a_detached_replay_concluded_later_is_explained_from_what_its_job_was_given(
        cluster):
    """`replay --on kubernetes --detach` then `verify --replay`: the second process has
    no spec; the explanations come from the original's lock and what submit recorded of
    the Job (its --env, a secret-named variable left out)."""
    from envlock.model.lockfile import dumps
    from tests.factories import make_lock

    tracker, job = cluster
    job["loss"] = [(0, 1.0), (1, 0.75)]
    run_id = tracker.add_run(name="train", tags={"envlock.image": IMAGE,
                                                 "envlock.lock_digest": "sha256:" + "0" * 64},
                             history={"loss": [(0, 1.0), (1, 0.5)]})
    lock = make_lock(runtime={"env": {}, "command": "python train.py"})
    tracker.runs[run_id].artifacts["envlock/envlock.lock.yaml"] = dumps(lock).encode()
    spec = ReplaySpec(run_id=run_id, image=IMAGE,
                      env={**BASE_ENV, "LR_SCALE": "1.5", "HF_TOKEN": "hf_x"})
    context = Context(run=tracker.run(run_id), original_command="python train.py",
                      locked={"gpu": {}, "frameworks": {}, "host": {}, "runtime": {"env": {}}})
    replay_id, _job, _verdict = kube.submit(spec, context, tracker=tracker,
                                            options=kube.KubeOptions(), api=object())
    given = json.loads(artifact(tracker, replay_id, "replay-given.json") or b"{}")
    assert given == {"command": None, "env": {"LR_SCALE": "1.5"}}
    result = kube.conclude_replay(replay_id, tracker=tracker, api=object(),
                                  output=lambda chunk: None)
    assert result.comparison is not None and not result.comparison.reproduced
    [why] = [e for e in result.explanations if e.kind == "env"]
    assert why.evidence == ("LR_SCALE: original not recorded, replay 1.5",)
    assert tracker.runs[replay_id].tags["envlock.explanation"] == why.title
    _reported(tracker, result)
