"""Framework detection on real recorded build files (tests/fixtures/recorded)."""

from pathlib import Path

import pytest

from envlock.snapshot.frameworks import bundled_libraries, frameworks, parse_assignments, torch_info
from tests.factories import package

RECORDED = Path(__file__).parents[1] / "fixtures" / "recorded"


def by_name(*pkgs):
    return {p.name: p for p in pkgs}


@pytest.mark.parametrize("fixture, version, build, cuda, hip", [
    ("torch-version-2.1.0+cu121.py", "2.1.0+cu121", "cuda", "12.1", None),
    ("torch-version-2.2.1+cu121.py", "2.2.1+cu121", "cuda", "12.1", None),
    ("torch-version-2.4.1+cu118.py", "2.4.1+cu118", "cuda", "11.8", None),
    ("torch-version-2.7.1+cu126.py", "2.7.1+cu126", "cuda", "12.6", None),
    ("torch-version-2.6.0+cpu.py", "2.6.0+cpu", "cpu", None, None),
    ("torch-version-2.4.0-nolocal-cpu.py", "2.4.0", "cpu", None, None),
    ("torch-version-2.3.0.dev20240308+rocm6.0.py", "2.3.0.dev20240308+rocm6.0", "rocm", None,
     "6.0.32830-d62f6a171"),
])
def test_torch_version_files(fixture, version, build, cuda, hip):
    text = (RECORDED / fixture).read_text()
    info = torch_info({"text": text, "libs": []}, by_name(package("torch", version)))
    assert (info["version"], info["build"], info["cuda"], info["hip"]) == \
        (version, build, cuda, hip)
    assert len(info["git_version"]) == 40


def test_cudnn_and_nccl_come_from_the_nvidia_wheels():
    text = (RECORDED / "torch-version-2.2.1+cu121.py").read_text()
    pkgs = by_name(package("torch", "2.2.1+cu121"), package("nvidia-cudnn-cu12", "8.9.2.26"),
                   package("nvidia-nccl-cu12", "2.19.3"))
    info = torch_info({"text": text, "libs": []}, pkgs)
    assert (info["cudnn"], info["nccl"], info["local_tag"]) == ("8.9.2.26", "2.19.3", "cu121")


def test_bundled_libraries_when_no_wheels():
    libs = ["libcudnn.so.8", "libcudnn_ops_infer.so.8", "libnccl.so.2.14.3", "libcudart.so.11.0"]
    assert bundled_libraries(libs) == {"cudnn": "8", "nccl": "2.14.3", "cudart": "11.0"}


def test_tensorflow_build_info():
    text = (RECORDED / "tf-build_info-linux-cuda10.1.py").read_text()
    out = frameworks([package("tensorflow-gpu", "2.3.0")],
                     {"tensorflow": {"text": text}})
    assert out["tensorflow"]["cuda"] == "10.1" and out["tensorflow"]["cudnn"] == "7"
    assert out["tensorflow"]["distribution"] == "tensorflow-gpu"


def test_jax_and_cupy_from_distribution_names():
    out = frameworks([package("jax", "0.4.30"), package("jaxlib", "0.4.30"),
                      package("jax-cuda12-plugin", "0.4.30"), package("cupy-cuda12x", "13.2.0")],
                     {})
    assert out["jax"]["cuda"] == "12" and out["jax"]["jaxlib"] == "0.4.30"
    assert out["cupy"] == {"version": "13.2.0", "distribution": "cupy-cuda12x", "cuda": "12"}


def test_no_frameworks_means_an_empty_section():
    assert frameworks([package("numpy", "2.0.0")], {}) == {}


def test_parse_assignments_ignores_non_literals():
    assert parse_assignments("a = 1\nb: Optional[str] = 'x'\nc = foo()\n") == {"a": 1, "b": "x"}
