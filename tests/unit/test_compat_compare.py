"""Replay pre-flight (NVIDIA driver table, PyTorch arch lists) and metric comparison."""

import math

import pytest

from envlock.errors import UsageError
from envlock.model.compare import MetricPolicy, Tolerance, compare
from envlock.model.compat import arch_supported, driver_check, preflight
from envlock.model.replayspec import GpuRequest, Mount, parse_gpus, parse_mounts, parse_pairs


@pytest.mark.parametrize("cuda, driver, problems, warnings", [
    ("12.1", "535.104.05", 0, 0),   # A100 host from the recorded nvidia-smi outputs
    ("12.1", "530.30.02", 0, 0),    # exactly NVIDIA's minimum for CUDA 12.1
    ("12.4", "535.247.01", 0, 1),   # older than 550.54.14 but ≥ 525.60.13: minor compat
    ("12.1", "515.65.01", 1, 0),    # the recorded TITAN V host (CUDA 11.7 driver)
    ("11.8", "418.67", 1, 0),       # the recorded T4 host with a 418 driver
    ("13.0", "575.51.03", 1, 0),    # CUDA 13 needs ≥ 580
])
def test_driver_check(cuda, driver, problems, warnings):
    found, warned = driver_check(cuda, driver)
    assert (len(found), len(warned)) == (problems, warnings), (found, warned)


@pytest.mark.parametrize("cuda, capability, ok", [
    ("12.1", "8.0", True), ("12.1", "8.9", True),   # sm_86 SASS runs on 8.9
    ("12.1", "9.0", True), ("12.1", "12.0", False),  # Blackwell needs a cu128 build
    ("12.8", "12.0", True), ("12.4", "10.0", True),  # 9.0+PTX JIT-compiles for newer
    ("12.8", "6.1", False),                          # Pascal dropped from cu128 builds
    ("9.9", "8.0", None),
])
def test_arch_supported(cuda, capability, ok):
    assert arch_supported(cuda, capability) is ok


def test_preflight():
    locked = {"frameworks": {"torch": {"cuda": "12.1"}},
              "gpu": {"devices": [{"name": "NVIDIA A100-SXM4-80GB"}]}}
    host = {"driver_version": "535.104.05",
            "devices": [{"name": "NVIDIA RTX PRO 6000", "compute_capability": "12.0"}]}
    verdict = preflight(locked, host, use_gpus=True)
    assert not verdict.ok and "not in the arch list" in verdict.problems[0]
    assert preflight(locked, {"driver_version": None}, use_gpus=True).ok is False
    assert preflight(locked, {"driver_version": None}, use_gpus=False).ok is True


def test_tolerances_and_comparison():
    assert Tolerance.parse("1e-6") == Tolerance(1e-6, 0)
    assert Tolerance.parse("0.5%") == Tolerance(0, 0.005)
    assert Tolerance.parse("abs=1e-3,rel=0.01") == Tolerance(1e-3, 0.01)
    with pytest.raises(UsageError):
        Tolerance.parse("loose")
    result = compare({"loss": 0.5, "acc": 0.9, "nan": math.nan},
                     {"loss": 0.5000001, "acc": 0.9, "nan": math.nan},
                     MetricPolicy(Tolerance(1e-6, 0)))
    assert result.reproduced and [r.name for r in result.rows] == ["acc", "loss", "nan"]
    exact = compare({"loss": 0.5}, {"loss": 0.5000001})
    assert not exact.reproduced and exact.rows[0].delta == pytest.approx(1e-7)
    missing = compare({"loss": 0.5, "acc": 1.0}, {"loss": 0.5})
    assert not missing.reproduced
    assert compare({"loss": 0.5, "acc": 1.0}, {"loss": 0.5},
                   MetricPolicy(metrics=("loss",))).reproduced
    assert not compare({}, {}).reproduced  # nothing compared is not "reproduced"


def test_gpu_and_pair_options():
    assert parse_gpus("all") == GpuRequest(count=-1)
    assert parse_gpus("2") == GpuRequest(count=2)
    assert parse_gpus("device=0,3") == GpuRequest(ids=("0", "3"))
    assert parse_gpus("none") is None
    with pytest.raises(UsageError):
        parse_gpus("many")
    assert parse_pairs(["/data:/mnt/data"], "--mount", ":") == [("/data", "/mnt/data")]
    with pytest.raises(UsageError):
        parse_pairs(["nodst"], "--mount", ":")
    assert parse_mounts(["/d:/m", "/c:/cache:ro"]) == (Mount("/d", "/m"),
                                                       Mount("/c", "/cache", read_only=True))
    with pytest.raises(UsageError, match="mode"):
        parse_mounts(["/d:/m:rx"])
