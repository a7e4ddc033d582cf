"""Byte-code of the staged environment, compiled by real interpreter processes: the same
bytes whatever the number of processes, hash-checked, with the image's paths, and never
with hash randomization on."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

from envlock.operations.build import stage

LOCK = SimpleNamespace(python={"version": platform.python_version()})


def _site(root: Path) -> Path:
    site = root / stage.site_packages(LOCK).strip("/")  # type: ignore[arg-type]
    for i in range(200):  # enough for three slices of _PER_PROCESS files
        package = site / f"pkg{i % 7}"
        package.mkdir(parents=True, exist_ok=True)
        (package / f"mod{i}.py").write_text(
            f"def f(x):\n    return x in {{'alpha', 'beta', 'gamma', 'delta{i}'}}\n")
    (site / "pkg0" / "__pycache__").mkdir(exist_ok=True)
    (site / "pkg0" / "__pycache__" / "stale.py").write_text("x = 1\n")
    return site


def _pycs(site: Path) -> dict[str, bytes]:
    return {str(p.relative_to(site)): p.read_bytes() for p in sorted(site.rglob("*.pyc"))}


def test_any_number_of_processes_gives_the_same_hash_checked_pyc_files(tmp_path):
    one, three = _site(tmp_path / "one"), _site(tmp_path / "three")
    stage.compile_bytecode(sys.executable, tmp_path / "one", LOCK, workers=1)  # type: ignore[arg-type]
    stage.compile_bytecode(sys.executable, tmp_path / "three", LOCK, workers=3)  # type: ignore[arg-type]
    first, second = _pycs(one), _pycs(three)
    assert len(first) == 200 and first == second
    assert not any("stale" in name for name in first)
    pyc = first[f"pkg0/__pycache__/mod0.{sys.implementation.cache_tag}.pyc"]
    assert int.from_bytes(pyc[4:8], "little") == 0b11  # checked hash, not a timestamp
    assert f"{stage.site_packages(LOCK)}/pkg0/mod0.py".encode() in pyc  # type: ignore[arg-type]
    assert str(tmp_path).encode() not in pyc


def test_the_compiler_refuses_to_run_with_hash_randomization(tmp_path):
    site = _site(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    out = subprocess.run([sys.executable, "-s", "-c", stage._COMPILE, str(site), "/x"],
                         input=b"pkg0/mod0.py", env=env, capture_output=True, timeout=60)
    assert out.returncode != 0 and b"PYTHONHASHSEED=0" in out.stderr
    assert not list(site.rglob("*.pyc"))
