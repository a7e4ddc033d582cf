"""Ranked explanations of a replay that did not reproduce, each with its evidence: a
changed input (the hook), another command or image, environment variables, threads, GPU,
driver, CPU instruction set, and nondeterminism from --repeat."""

from __future__ import annotations

from envlock.model.compare import MetricPolicy, compare_tree
from envlock.model.explanations import Explanation, Facts, explain
from envlock.model.repeat import classify
from envlock.model.runtree import RunNode
from envlock.snapshot.runtime import DEFAULT_ALLOW

HOST = {"cpu": {"model": "AMD EPYC", "isa_level": "x86-64-v3", "flags": ["avx2", "fma"],
                "usable_cores": 8}}
GPU = {"driver_version": "550.54", "cuda_driver_version": "12.4",
       "devices": [{"name": "NVIDIA H100"}]}


def facts(**changes):
    base = {"original_host": HOST, "replay_host": HOST, "original_gpu": GPU, "replay_gpu": GPU,
            "recorded_env": {"CUBLAS_WORKSPACE_CONFIG": ":4096:8"},
            "replay_env": {"CUBLAS_WORKSPACE_CONFIG": ":4096:8"},
            "original_command": "python train.py", "numerics": DEFAULT_ALLOW,
            "run_tags": {"envlock.env_digest": "sha256:aa"},
            "image_labels": {"envlock.env_digest": "sha256:aa"}}
    return Facts(**{**base, **changes})


def test_the_same_host_image_and_environment_explain_nothing():
    assert explain(facts()) == ()


def test_each_difference_is_explained_with_its_evidence_most_likely_first():
    other_host = {"cpu": {"model": "Intel Xeon", "isa_level": "x86-64-v4",
                          "flags": ["avx2", "avx512f", "fma"], "usable_cores": 2}}
    found = explain(facts(
        replay_host=other_host,
        replay_gpu={**GPU, "driver_version": "535.1", "devices": [{"name": "NVIDIA A100"}]},
        replay_env={"OMP_NUM_THREADS": "8", "DATA_SHIFT": "0.5",
                    "CUBLAS_WORKSPACE_CONFIG": ":16:8"},
        image_labels={"envlock.env_digest": "sha256:bb"},
        inputs=(("data/train.csv", "sha256:11", "sha256:22"), ("data/val.csv", "x", "x"))))
    assert [e.kind for e in found] == ["inputs", "image", "numerics-env", "env", "gpu",
                                       "threads", "driver", "isa", "cpu"]
    by_kind = {e.kind: e for e in found}
    assert by_kind["inputs"].evidence == ("data/train.csv: sha256:11 -> sha256:22",)
    assert by_kind["image"].evidence == (
        "envlock.env_digest: run sha256:aa, image sha256:bb",)
    assert by_kind["numerics-env"].evidence == (
        "CUBLAS_WORKSPACE_CONFIG: original :4096:8, replay :16:8",)
    assert by_kind["env"].evidence == ("DATA_SHIFT: original not recorded, replay 0.5",)
    assert by_kind["gpu"].evidence == ("original: NVIDIA H100", "replay: NVIDIA A100")
    assert by_kind["driver"].evidence == ("driver_version: original 550.54, replay 535.1",)
    assert by_kind["threads"].evidence == ("usable cores: original 8, replay 2",
                                           "OMP_NUM_THREADS: original unset, replay 8")
    assert by_kind["isa"].evidence[0] == "ISA level: original x86-64-v3, replay x86-64-v4"
    assert "only on the replay: avx512f" in by_kind["isa"].evidence[1]
    assert found[0].to_dict()["score"] == 100


def test_another_command_and_unknown_sides_are_handled():
    found = explain(facts(replay_command="python train.py --lr 1", replay_host=None,
                          replay_gpu=None, image_labels=None))
    assert [e.kind for e in found] == ["command"]
    assert found[0].evidence == ("original: python train.py",
                                 "replay: python train.py --lr 1")


def test_repeat_nondeterminism_ranks_high_drift_says_it_is_not_noise():
    def run(run_id, loss):
        return RunNode(run_id, "t", {}, {"loss": loss}, 0, status="FINISHED")

    original = run("o", 0.9)
    noisy = [run("a", 0.5), run("b", 0.52), run("c", 0.51)]
    repeat = classify(original, [(compare_tree(original, r), r) for r in noisy],
                      MetricPolicy())
    found = explain(facts(repeat=repeat, replay_env={"DATA_SHIFT": "1"}))
    assert found[0].kind == "nondeterminism" and "3 replays differ" in found[0].title
    assert "OUTSIDE" in found[0].evidence[0]
    drifted = [run("a", 0.5), run("b", 0.5)]
    repeat = classify(original, [(compare_tree(original, r), r) for r in drifted],
                      MetricPolicy())
    [found_drift] = explain(facts(repeat=repeat))
    assert found_drift.kind == "drift" and "not noise" in found_drift.title


def test_an_explainer_can_be_added():
    def inputs_from_elsewhere(f):
        yield Explanation("inputs", 100, "dataset v2 replaced v1", ("sha256:1 -> sha256:2",))

    found = explain(facts(), explainers=(inputs_from_elsewhere,))
    assert found[0].title == "dataset v2 replaced v1"
