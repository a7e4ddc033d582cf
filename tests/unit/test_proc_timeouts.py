"""A command that hangs (nvidia-smi on a wedged GPU, nvcc on a dead filesystem) is stopped
and becomes a recorded "timed out" probe, never a traceback."""

import os
import stat
import subprocess
import sys

import pytest

from envlock.adapters import proc
from envlock.errors import CommandTimeout, EnvlockError
from envlock.snapshot import gpu
from tests.conftest import run_envlock


def hanging(tmp_path, name):
    path = tmp_path / "bin" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text("#!/bin/sh\nexec sleep 30\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def test_a_timeout_is_an_envlock_error_and_a_timeout_error():
    with pytest.raises(CommandTimeout) as caught:
        proc.run(["sleep", "5"], timeout=0.2)
    assert isinstance(caught.value, TimeoutError) and isinstance(caught.value, EnvlockError)
    assert caught.value.message == "`sleep 5` did not finish within 0.2 s and was stopped"
    assert not isinstance(caught.value, subprocess.TimeoutExpired)


def test_a_hung_nvidia_smi_is_recorded_as_timed_out(tmp_path, monkeypatch):
    hanging(tmp_path, "nvidia-smi")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    monkeypatch.setenv("ENVLOCK_PROBE_TIMEOUT", "0.3")
    raw = gpu.read_nvidia_smi()
    assert raw["timed_out"] is True and "timed out" in raw["error"]
    section = gpu.gpu_section(raw)
    assert section["status"] == "timed out" and section["devices"] == []


def test_a_hung_nvcc_is_recorded_as_timed_out(tmp_path, monkeypatch):
    nvcc = hanging(tmp_path, "nvcc")
    monkeypatch.setenv("ENVLOCK_PROBE_TIMEOUT", "0.3")
    assert gpu._nvcc_toolkit(str(nvcc)) == {"version": None, "path": str(tmp_path),
                                            "from": "nvcc", "status": "timed out"}


def test_envlock_lock_still_writes_the_lock_with_a_hung_nvcc(tmp_path):
    hanging(tmp_path, "nvcc")  # CUDA_HOME/bin/nvcc: the first toolkit the probe asks
    out = tmp_path / "l.yaml"
    env = {"ENVLOCK_PROBE_TIMEOUT": "0.5", "CUDA_HOME": str(tmp_path)}
    result = run_envlock("lock", "--python", sys.executable, "-o", str(out), "--no-git",
                         cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    from envlock.model import lockfile

    assert lockfile.load(out).gpu["cuda_toolkit"]["status"] == "timed out"
