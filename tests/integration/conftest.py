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

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
import venv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.cluster import BUILD_WAIT, GATEWAY, Cluster, ClusterError
from tests.conftest import ROOT, git, init_repo, run_envlock
from tests.registry import AUTH_PASSWORD, AUTH_USER, Registry, RegistryError, push_base, untag_base

PYPROJECT = """[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "{name}"
version = "{version}"

[tool.setuptools]
packages = ["{module}"]
"""


def local_project(root: Path, name: str, version: str, repo: bool = False) -> Path:
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


def system_venv(venv_dir: Path, *pip_args: str) -> Path:
    """A venv of the system Python 3.11 (= the test base image's) at ``venv_dir`` with
    ``pip install PIP_ARGS``; its interpreter."""
    subprocess.run([SYSTEM_PYTHON, "-m", "venv", str(venv_dir)], check=True)
    python = venv_dir / "bin" / "python"
    pip(python, "install", *pip_args)
    return python


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
    editpkg = local_project(src, "editpkg", "0.3.0", repo=True)
    pip(python, "install", "--no-build-isolation", "-e", str(editpkg))
    (editpkg / "editpkg" / "__init__.py").write_text("VERSION = '0.3.0'\nPATCHED = True\n")
    vcspkg = local_project(src, "vcspkg", "1.2.0", repo=True)
    git(vcspkg, "tag", "v1.2.0")
    commit = git(vcspkg, "rev-parse", "HEAD")
    pip(python, "install", "--no-build-isolation", f"git+file://{vcspkg}@v1.2.0")
    wheel_src = local_project(src, "wheelpkg", "2.0.0")
    wheels = root / "wheels"
    pip(python, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(wheel_src))
    wheel_file = next(wheels.glob("wheelpkg-*.whl"))
    pip(python, "install", str(wheel_file))
    localtag = local_project(src, "localtag", "1.0.0+cu121")
    pip(python, "install", "--no-build-isolation", str(localtag))
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


# ---------------------------------------------------------------- Docker and registries

@dataclass(frozen=True)
class Infra:
    registry: str
    auth_registry: str
    auth_user: str
    auth_password: str
    base_image: str
    base_python: str


@pytest.fixture(scope="session")
def open_registry(tmp_path_factory) -> Iterator[Registry]:
    """A real open registry on a free loopback port for the whole session."""
    yield from _registry(tmp_path_factory.mktemp("registry-open"), auth=False)


@pytest.fixture(scope="session")
def auth_registry(tmp_path_factory) -> Iterator[Registry]:
    """A real htpasswd registry (``AUTH_USER``/``AUTH_PASSWORD``) on a free loopback port."""
    yield from _registry(tmp_path_factory.mktemp("registry-auth"), auth=True)


def _registry(workdir: Path, auth: bool) -> Iterator[Registry]:
    try:
        registry = Registry.start(workdir, auth=auth)
    except RegistryError as exc:
        pytest.fail(f"test registry did not start: {exc}", pytrace=False)
    yield registry
    registry.stop()


@pytest.fixture(scope="session")
def pushed_base(open_registry) -> Iterator[tuple[str, str]]:
    """The local base image (built by `scripts/infra.sh up`) pushed to the open registry:
    ``(REG/envlock-test/python@sha256:…, its Python version)``; untagged at the end."""
    try:
        pushed = push_base(open_registry)
    except RegistryError as exc:
        untag_base(open_registry)
        pytest.fail(str(exc), pytrace=False)
    yield pushed
    untag_base(open_registry)


@pytest.fixture(scope="session")
def infra(open_registry, auth_registry, pushed_base) -> Infra:
    """The real engine and registries. Missing infrastructure FAILS the tests, never skips."""
    return Infra(registry=open_registry.address, auth_registry=auth_registry.address,
                 auth_user=AUTH_USER, auth_password=AUTH_PASSWORD,
                 base_image=pushed_base[0], base_python=pushed_base[1])


@pytest.fixture(scope="session")
def docker_client(infra):
    import docker

    client = docker.from_env()
    client.ping()
    return client


@pytest.fixture(scope="session")
def created_images(docker_client):
    """Image references tests create; all removed at the end of the session."""
    refs: set[str] = set()
    yield refs
    for ref in sorted(refs, reverse=True):
        with contextlib.suppress(Exception):  # already gone
            docker_client.images.remove(ref, force=True)


SYSTEM_PYTHON = "/usr/bin/python3"

PROJECT_PYPROJECT = PYPROJECT.format(name="mlproj", version="0.1.0", module="mlproj")


@dataclass
class Project:
    root: Path
    python: Path

    def lock(self, *extra: str, name: str = "envlock.lock.yaml") -> Path:
        from tests.conftest import run_envlock

        path = self.root / name
        run_envlock("lock", "--python", str(self.python), "-o", str(path), "--no-gpu",
                    "--command", "python train.py", *extra, cwd=self.root, check=True)
        return path


def make_project(root: Path) -> Project:
    """A git repo with an experiment, its own package installed editable into a venv made
    with the system Python (the test base image has the same Python, 3.11.2)."""
    repo = init_repo(root, {
        "pyproject.toml": PROJECT_PYPROJECT,
        "mlproj/__init__.py": "SCALE = 2\n",
        "train.py": "import six, mlproj\nprint('result', mlproj.SCALE * 21, six.__version__, "
                    "mlproj.__file__)\n",
        ".gitignore": ".venv/\noutputs/\n",
        ".dockerignore": "scratch/\n",
    })
    venv_dir = repo / ".venv"
    subprocess.run([SYSTEM_PYTHON, "-m", "venv", str(venv_dir)], check=True)
    python = venv_dir / "bin" / "python"
    pip(python, "install", "six==1.16.0", "wheel")
    pip(python, "install", "--no-build-isolation", "-e", str(repo))
    (repo / "train.py").write_text((repo / "train.py").read_text() + "# uncommitted edit\n")
    (repo / "notes.md").write_text("untracked notes travel with the code\n")
    (repo / ".env").write_text("WANDB_API_KEY=never-in-an-image\n")
    (repo / "scratch").mkdir()
    (repo / "scratch" / "big.bin").write_bytes(b"x" * 1000)
    return Project(root=repo, python=python)


@pytest.fixture(scope="session")
def project(tmp_path_factory) -> Project:
    return make_project(tmp_path_factory.mktemp("proj") / "mlproj")


# ---------------------------------------------------------------- MLflow experiments
TRAIN = (ROOT / "examples" / "minimal" / "train.py").read_text()
@dataclass
class Experiment:
    root: Path
    python: Path
    store: str

    def env(self, **extra: str) -> dict[str, str]:
        return {"MLFLOW_TRACKING_URI": self.store, "CI": "1", **extra}

    def train(self, *args: str) -> str:
        out = subprocess.run([str(self.python), "train.py", *args], cwd=self.root,
                             env={**os.environ, **self.env()}, capture_output=True, text=True,
                             timeout=300)
        assert out.returncode == 0, out.stderr
        from mlflow.tracking import MlflowClient

        runs = MlflowClient(self.store).search_runs(["0"], order_by=["attributes.start_time DESC"],
                                                    max_results=1)
        return runs[0].info.run_id

    def envlock(self, *args: str, **env: str):
        return run_envlock(*args, cwd=self.root, env=self.env(**env))

    def capture(self, run_id: str, infra: Infra, created: set[str], *where: str,
                command: str = "python train.py") -> dict:
        """``envlock capture --json`` of ``run_id`` on the test base image; ``where`` is
        ``--registry REPO`` or ``--no-push``. The images it builds are removed at the end."""
        result = self.envlock("capture", "--run-id", run_id, "--python", str(self.python),
                              "--command", command, "--base-image", infra.base_image, *where,
                              "--json")
        assert result.returncode == 0, result.stderr[-3000:]
        payload = json.loads(result.stdout)["result"]
        created.update({payload["built"]["image"], payload["built"]["env_image"]})
        if "--no-push" not in where:
            engine_loaded(payload["built"]["image"], payload["built"]["env_image"])
        return payload


def engine_loaded(*references: str, timeout: float = 300) -> None:
    """Wait for a pushed capture's background engine load (issue #25) to put ``references``
    in the local engine: a test that then removes them, or expects them gone, would race
    with a load still under way (it removes nothing, and the load brings them back)."""
    import docker

    client = docker.from_env()
    deadline = time.monotonic() + timeout
    missing = list(references)
    while missing and time.monotonic() < deadline:
        missing = [ref for ref in missing if not _present(client, ref)]
        if missing:
            time.sleep(0.5)
    assert not missing, f"the background engine load did not bring {missing} in {timeout:.0f} s"


def _present(client, reference: str) -> bool:
    import docker

    try:
        client.images.get(reference)
    except docker.errors.ImageNotFound:
        return False
    return True


@pytest.fixture(scope="session")
def experiment_venv(tmp_path_factory) -> Path:
    """The experiment's own interpreter: system Python 3.11 (= the test base image) with
    MLflow's client and the SQLite store's dependencies."""
    return system_venv(tmp_path_factory.mktemp("mlvenv") / "venv",
                       *same_mlflow("mlflow-skinny"), "sqlalchemy", "alembic")


#: The registry repository of every capture from ``torch_venv``: one environment image.
TORCH_REPO = f"tests/torch-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def torch_venv(tmp_path_factory) -> Path:
    """A venv of ``examples/pytorch/requirements.txt`` (torch 2.13.0, the CPU build) and
    ``tests/experiments/requirements-real.txt`` (transformers, accelerate, Lightning, with
    torch held by a constraint), outside any project, shared by the session's PyTorch
    experiments: installing it takes a minute or more, and the same venv gives their
    captures one environment image, which the later ones find in the registry instead of
    building 1.3 GB again."""
    work = tmp_path_factory.mktemp("torchvenv")
    (work / "constraints.txt").write_text("torch==2.13.0\n")
    return system_venv(work / "venv", "-r",
                       str(ROOT / "examples" / "pytorch" / "requirements.txt"), "-r",
                       str(ROOT / "tests" / "experiments" / "requirements-real.txt"),
                       "-c", str(work / "constraints.txt"), *same_mlflow("mlflow-skinny"))


#: The registry repository of every capture from ``search_venv``: one environment image.
SEARCH_REPO = f"tests/search-{uuid.uuid4().hex[:8]}"


def captured_search(work: Path, script: str, python: Path, infra: Infra,
                    created: set[str]) -> tuple[Experiment, str]:
    """``tests/experiments/SCRIPT`` trained on the host in a git project of its own under
    ``work`` and captured with no run id (capture must pick the search's parent run, not
    its last child) into the session's search repository ``SEARCH_REPO``."""
    root = init_repo(work / "search", {
        "train.py": (ROOT / "tests" / "experiments" / script).read_text(),
        ".gitignore": "mlflow.db\n.envlock/\n.venv/\nmlruns/\n"})
    exp = Experiment(root=root, python=python, store=f"sqlite:///{work}/search.db")
    exp.train()
    result = exp.envlock("capture", "--python", str(exp.python), "--command",
                         "python train.py", "--base-image", infra.base_image, "--registry",
                         f"{infra.registry}/{SEARCH_REPO}", "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    payload = json.loads(result.stdout)["result"]
    created.update({payload["built"]["image"], payload["built"]["env_image"]})
    return exp, payload["run_id"]


@pytest.fixture(scope="session")
def search_venv(tmp_path_factory) -> Path:
    """Full MLflow with scikit-learn, matplotlib and Optuna, outside any project, shared
    by the session's searches (an autologged grid search, one with a training curve, an
    Optuna study): one install of a few hundred MB instead of one per test module, and
    their captures (to ``SEARCH_REPO``) one environment image, built by the first."""
    return system_venv(tmp_path_factory.mktemp("searchvenv") / "venv",
                       *same_mlflow("mlflow"), "scikit-learn", "matplotlib", "optuna")


def same_mlflow(*names: str) -> list[str]:
    """``NAME==VERSION`` of the MLflow these tests read the experiments' stores with: a
    store written by a newer MLflow has a schema an older client refuses to open (mlflow
    3.18.0 on the index while the test venv resolved 3.17.2)."""
    from importlib.metadata import version

    return [f"{name}=={version('mlflow-skinny')}" for name in names]


def make_experiment(root: Path, python: Path, store: str) -> Experiment:
    init_repo(root, {"train.py": TRAIN, ".gitignore": "mlflow.db\nmlruns/\n.envlock/\n"})
    return Experiment(root=root, python=python, store=store)


# ---------------------------------------------------------------- a tracking server

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real `mlflow server` on loopback (about 25 s to answer on 2 cores)."""
    yield from _mlflow_server(tmp_path_factory.mktemp("server"), "127.0.0.1")


def _mlflow_server(work: Path, host: str) -> Iterator[str]:
    port = free_port()
    mlflow = Path(sys.executable).with_name("mlflow")
    log = open(work / "server.log", "w")  # noqa: SIM115 - open for the server's lifetime
    proc = subprocess.Popen([str(mlflow), "server", "--host", host, "--port", str(port),
                             "--backend-store-uri", f"sqlite:///{work}/server.db",
                             "--artifacts-destination", str(work / "artifacts"),
                             "--workers", "1"],
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://{host}:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{url}/health", timeout=2)
            break
        except OSError:
            assert proc.poll() is None, (work / "server.log").read_text()[-2000:]
            time.sleep(1)
    else:
        proc.kill()
        pytest.fail(f"mlflow server did not answer: {(work / 'server.log').read_text()[-2000:]}")
    yield url
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


# ---------------------------------------------------------------- the live Kubernetes

@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The live-cluster tests last (in their own order), so that the Kubernetes build
    scripts/test.sh runs in the background has the rest of the suite's time; the first of
    them, whose setup starts the cluster and may wait for that build, gets the wait on top
    of its timeout."""
    live = [item for item in items if "cluster" in getattr(item, "fixturenames", ())]
    if not live:
        return
    chosen = set(map(id, live))
    items[:] = [item for item in items if id(item) not in chosen] + live
    live[0].add_marker(pytest.mark.timeout(float(live[0].config.getini("timeout") or 600)
                                           + BUILD_WAIT))


@pytest.fixture(scope="session")
def cluster(open_registry, auth_registry) -> Iterator[Cluster]:
    """The one-node Kubernetes of scripts/k8s, started for the session (KUBECONFIG set),
    pulling from both test registries; stopped at the end. Missing binaries, a failed start
    or a cluster held by another session FAIL the tests, never skip them."""
    try:
        live = Cluster.start()
    except ClusterError as exc:
        pytest.fail(f"test cluster did not start: {exc}", pytrace=False)
    try:
        for registry in (open_registry, auth_registry):
            live.allow_registry(registry.address)
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("KUBECONFIG", live.kubeconfig)
            yield live
    finally:
        live.stop()


@pytest.fixture(scope="session")
def cluster_mlflow(tmp_path_factory, cluster) -> Iterator[str]:
    """An `mlflow server` on the pods' bridge gateway (10.244.0.1), reachable from pods
    and from this host alike."""
    yield from _mlflow_server(tmp_path_factory.mktemp("cluster-server"), GATEWAY)


def strict_differences(verified) -> set[str]:
    """The metrics a failed ``envlock verify RUN --strict`` names on its ``differ:`` line,
    after checking it failed as --strict says (exit 1, every metric gated)."""
    assert verified.returncode == 1, verified.stdout[-3000:] + verified.stderr[-3000:]
    text = verified.stdout
    assert text.startswith("NOT REPRODUCED") and "--strict: every metric gates" in text
    [differ] = [line for line in text.splitlines() if line.startswith("differ: ")]
    return {part.split(" (")[0] for part in differ.removeprefix("differ: ").split(", ")}
