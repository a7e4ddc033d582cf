"""Shared fixtures: run the real CLI, make real git repos and real virtualenvs."""

from __future__ import annotations

import importlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Optional dependencies some tests need (``@pytest.mark.extra(MODULE)``): the module and
#: what installs it. Without it a test is skipped with that reason; in CI (CI=true) it fails.
EXTRAS = {
    "kubernetes": "pip install -e '.[kubernetes]' (envlock replay --on kubernetes)",
    "jsonschema": "pip install 'cyclonedx-python-lib[json-validation]' (in .[test])",
    "matplotlib": "pip install -e '.[report]' (envlock report's plots; brings numpy, PIL)",
    "numpy": "pip install -e '.[report]' (matplotlib brings it)",
    "PIL": "pip install -e '.[report]' (matplotlib brings Pillow)",
}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "extra(module): needs an optional dependency "
                            "(tests/conftest.py EXTRAS): skipped without it, fails when CI=true")


#: Test modules that share a costly one-off import: under pytest-xdist's ``--dist loadfile``
#: (pyproject's addopts) each group runs on one worker, as if it were one file, instead of
#: each worker importing it. jsonschema's format checkers build an IRI grammar on import
#: (~2 s: the CycloneDX validations); matplotlib (~1 s: the HTML report's plots).
SHARED_IMPORTS = {
    "tests/unit/test_hub_inputs.py": "jsonschema", "tests/unit/test_inputs.py": "jsonschema",
    "tests/unit/test_sbom.py": "jsonschema",
    "tests/unit/test_htmlreport.py": "matplotlib",
    "tests/unit/test_replay_on_cluster.py": "matplotlib",
}


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadfile`` with the modules of :data:`SHARED_IMPORTS` grouped."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class SharedImports(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = super()._split_scope(nodeid)
            return SHARED_IMPORTS.get(path, path)

    return SharedImports(config, log)


def pytest_runtest_setup(item: pytest.Item) -> None:
    for mark in item.iter_markers("extra"):
        require_extra(mark.args[0])


def require_extra(module: str) -> None:
    """Skip (locally) or fail (CI=true) when an optional dependency is not installed."""
    if importlib.util.find_spec(module) is not None:
        return
    reason = f"needs the optional {module}: {EXTRAS.get(module, f'pip install {module}')}"
    if os.environ.get("CI", "").lower() in ("true", "1"):
        pytest.fail(f"{reason}; CI=true requires every optional dependency", pytrace=False)
    pytest.skip(reason)


def optional_module(name: str) -> Any:
    """An optional dependency's module for use at module level, None when it is missing
    (the tests that use it carry ``@pytest.mark.extra``, so they never see None)."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def run_envlock(*args: str, cwd: str | Path | None = None, env: dict[str, str] | None = None,
                check: bool = False, stdin: str | None = None
                ) -> subprocess.CompletedProcess[str]:
    """The real CLI in a child process, as a user runs it."""
    full_env = {**os.environ, **(env or {})}
    full_env.pop("ENVLOCK_DEBUG", None)
    result = subprocess.run([sys.executable, "-m", "envlock", *args], cwd=cwd, env=full_env,
                            capture_output=True, text=True, timeout=300, input=stdin,
                            stdin=None if stdin is not None else subprocess.DEVNULL)
    if check and result.returncode != 0:
        raise AssertionError(f"envlock {' '.join(args)} exited {result.returncode}:\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True,
                          text=True).stdout.strip()


def init_repo(path: Path, files: dict[str, str | bytes]) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    for name, content in files.items():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content)
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "initial")
    return path


@pytest.fixture
def envlock_cli():
    return run_envlock
