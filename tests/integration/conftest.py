"""A real virtualenv with every kind of package source, built once per test session.

zoo venv contents (all real pip installs):
  six            from the package index
  wheel          from the package index (needed to build the local projects)
  editpkg        editable install (PEP 660) of a local git repo with uncommitted changes
  vcspkg         ``git+file://`` install of a tagged commit of a local git repo
  wheelpkg       a local wheel file (archive source with its sha256)
  localtag       a version with a local tag, ``1.0.0+cu121``, from a local directory
and a stale ``six-1.15.0.egg-info`` left in site-packages, as old setuptools leaves them.
"""

from __future__ import annotations

import subprocess
import sys
import venv
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import git, init_repo

PYPROJECT = """[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "{name}"
version = "{version}"

[tool.setuptools]
packages = ["{module}"]
"""


def project(root: Path, name: str, version: str, repo: bool = False) -> Path:
    module = name.replace("-", "_")
    files = {"pyproject.toml": PYPROJECT.format(name=name, version=version, module=module),
             f"{module}/__init__.py": f"VERSION = {version!r}\n"}
    path = root / name
    if repo:
        return init_repo(path, files)
    for rel, text in files.items():
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_text(text)
    return path


def pip(python: Path, *args: str) -> None:
    result = subprocess.run([str(python), "-m", "pip", "--disable-pip-version-check", "-q",
                             *args], capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise RuntimeError(f"pip {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")


@dataclass
class Zoo:
    root: Path
    python: Path
    site: Path
    editpkg: Path
    vcspkg: Path
    vcs_commit: str
    wheel_file: Path


@pytest.fixture(scope="session")
def zoo(tmp_path_factory) -> Zoo:
    root = tmp_path_factory.mktemp("zoo")
    env_dir = root / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig;"
                                "print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    src = root / "src"
    pip(python, "install", "six==1.16.0", "wheel", "setuptools>=64")
    editpkg = project(src, "editpkg", "0.3.0", repo=True)
    pip(python, "install", "--no-build-isolation", "-e", str(editpkg))
    (editpkg / "editpkg" / "__init__.py").write_text("VERSION = '0.3.0'\nPATCHED = True\n")
    vcspkg = project(src, "vcspkg", "1.2.0", repo=True)
    git(vcspkg, "tag", "v1.2.0")
    commit = git(vcspkg, "rev-parse", "HEAD")
    pip(python, "install", "--no-build-isolation", f"git+file://{vcspkg}@v1.2.0")
    wheel_src = project(src, "wheelpkg", "2.0.0")
    wheels = root / "wheels"
    pip(python, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(wheel_src))
    wheel_file = next(wheels.glob("wheelpkg-*.whl"))
    pip(python, "install", str(wheel_file))
    pip(python, "install", "--no-build-isolation", str(project(src, "localtag", "1.0.0+cu121")))
    stale = site / "six-1.15.0.egg-info"
    stale.mkdir()
    (stale / "PKG-INFO").write_text("Metadata-Version: 1.1\nName: six\nVersion: 1.15.0\n")
    return Zoo(root=root, python=python, site=site, editpkg=editpkg, vcspkg=vcspkg,
               vcs_commit=commit, wheel_file=wheel_file)


@pytest.fixture
def fresh_venv(tmp_path) -> Path:
    """An empty real venv (pip only), for tests that change what is installed."""
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    return env_dir / "bin" / "python"


def interpreter() -> str:
    return sys.executable
