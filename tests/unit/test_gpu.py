"""GPU parsing on real recorded outputs (tests/fixtures/recorded, see PROVENANCE.md)."""

import shutil
from pathlib import Path

import pytest

from envlock.snapshot import gpu

RECORDED = Path(__file__).parents[1] / "fixtures" / "recorded"


def recorded(name):
    return (RECORDED / name).read_text()


@pytest.mark.parametrize("fixture, driver, names, caps, mib", [
    ("nvidia-smi-query-h100.csv", "580.82.07", ["NVIDIA H100 80GB HBM3"], ["9.0"], [81559]),
    ("nvidia-smi-query-t4.csv", "615.71.09", ["Tesla T4"], ["7.5"], [15360]),
    ("nvidia-smi-query-v100x2.csv", "570.144", ["Tesla V100-PCIE-32GB"] * 2, ["7.0"] * 2,
     [32768] * 2),
    ("nvidia-smi-query-titanv-rtx5880.csv", "570.86.15",
     ["NVIDIA TITAN V", "NVIDIA RTX 5880 Ada Generation"], ["7.0", "8.9"], [None, None]),
    ("nvidia-smi-query-l40sx2.csv", "575.51.03", ["NVIDIA L40S"] * 2, [None] * 2, [46068] * 2),
])
def test_nvidia_smi_query_csv(fixture, driver, names, caps, mib):
    section = gpu.gpu_section(gpu.parse_nvidia_smi_csv(recorded(fixture)))
    assert section["status"] == "present" and section["driver_version"] == driver
    assert [d["name"] for d in section["devices"]] == names
    assert [d["compute_capability"] for d in section["devices"]] == caps
    assert [d["memory_mib"] for d in section["devices"]] == mib
    assert [d["index"] for d in section["devices"]] == list(range(len(names)))


def test_csv_without_driver_column_is_none_not_an_error():
    section = gpu.gpu_section(gpu.parse_nvidia_smi_csv(
        recorded("nvidia-smi-query-h100nvl-noheader.csv")))
    assert section["status"] == "none" and section["devices"] == []


@pytest.mark.parametrize("fixture, driver, cuda", [
    ("nvidia-smi-a10g.txt", "535.247.01", "12.2"),
    ("nvidia-smi-a100x4.txt", "555.42.02", "12.5"),
    ("nvidia-smi-h100x8.txt", "565.57.01", "12.7"),
    ("nvidia-smi-t4-driver-mismatch.txt", "418.67", "10.1"),
    ("nvidia-smi-rtx3070-wsl.txt", "531.68", "12.1"),
])
def test_nvidia_smi_banner(fixture, driver, cuda):
    assert gpu.parse_nvidia_smi_banner(recorded(fixture)) == \
        {"driver_version": driver, "cuda_driver_version": cuda}


def test_nvml_raw_values_become_the_gpu_section():
    # Values as NVML returns them: CUDA driver version as an int, memory in bytes.
    raw = {"driver_version": "535.104.05", "cuda_driver_version": 12020,
           "devices": [{"index": 0, "name": "NVIDIA A100-SXM4-80GB",
                        "compute_capability": [8, 0], "memory_total_bytes": 85899345920}]}
    section = gpu.gpu_section(raw)
    assert section["cuda_driver_version"] == "12.2"
    assert section["devices"][0] == {"index": 0, "name": "NVIDIA A100-SXM4-80GB",
                                     "compute_capability": "8.0", "memory_mib": 81920}


def test_cuda_version_from_int():
    assert gpu.cuda_version_from_int(12040) == "12.4"
    assert gpu.cuda_version_from_int(11080) == "11.8"
    assert gpu.cuda_version_from_int(0) is None


@pytest.mark.parametrize("fixture, version", [
    ("nvcc-version-12.1.txt", "12.1.105"), ("nvcc-version-11.5.txt", "11.5.119"),
    ("nvcc-version-10.1.txt", "10.1.243"),
])
def test_nvcc_version(fixture, version):
    assert gpu.parse_nvcc_version(recorded(fixture)) == version


def test_toolkit_version_files(tmp_path):
    new, old = tmp_path / "new", tmp_path / "old"
    new.mkdir()
    old.mkdir()
    (new / "version.json").write_text(recorded("cuda-version-11.8.0.json"))
    (old / "version.txt").write_text(recorded("cuda-version-10.2.89.txt"))
    assert gpu.toolkit_version_from_files(new) == "11.8.0"
    assert gpu.toolkit_version_from_files(old) == "10.2.89"
    assert gpu.toolkit_version_from_files(tmp_path) is None


def test_real_probe_on_this_host():
    """Runs the real probes. Without an NVIDIA driver that is 'none', never an error."""
    section = gpu.probe_gpu()
    if gpu.nvidia_driver_present():
        assert section["driver_version"]
    else:
        assert section["status"] == "none" and section["devices"] == []
    toolkit = gpu.probe_cuda_toolkit()
    nvcc = shutil.which("nvcc")
    if nvcc is None and not Path("/usr/local/cuda").exists():
        assert toolkit is None
    elif toolkit is not None:
        assert toolkit["version"][0].isdigit()
