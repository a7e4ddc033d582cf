"""The live one-node Kubernetes for the tests (``scripts/k8s``), as a session fixture uses it.

``Cluster.start()`` takes an exclusive lock (the cluster has fixed ports, a bridge and
10.244.0.1: one test session at a time on a machine; a second waits up to LOCK_WAIT), runs
``scripts/k8s/build.sh`` (cached binaries, or waits for the build ``scripts/test.sh``
started in the background), then ``scripts/k8s/start.sh`` (root), and returns once the
node is Ready; ``allow_registry()`` lets pods pull from a loopback registry over plain
HTTP; ``stop()`` runs ``stop.sh`` (every process, mount, bridge, cgroup and kernel setting
undone).
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts" / "k8s"
K8S_DIR = Path(os.environ.get("K8S_DIR", "/var/tmp/envlock-k8s"))
GATEWAY = "10.244.0.1"  # the pods' bridge; servers pods must reach listen here
NODE = "envlock-test-node"
LOCK_WAIT = 420.0  # under the 600 s pytest timeout, which counts fixture setup
#: The longest wait for the binaries: a cold build is 4-6 min on 2 cores. The first test
#: that starts the cluster gets this much more time (tests/integration/conftest.py).
BUILD_WAIT = 900.0


class ClusterError(RuntimeError):
    """The test cluster could not be started; the message says why."""


@dataclass
class Cluster:
    kubeconfig: str
    lock: IO[str]
    started: float = field(default_factory=time.monotonic)

    @classmethod
    def start(cls) -> Cluster:
        # The binaries: cached by build.sh, or being built by the build scripts/test.sh
        # started in the background (build.sh holds a lock while it builds; this one waits
        # for it, then finds them), or built now when neither happened.
        built = _script("build.sh", timeout=BUILD_WAIT)
        if built.returncode != 0 or not (K8S_DIR / "bin" / "kubelet").exists():
            raise ClusterError(f"no Kubernetes binaries in {K8S_DIR}/bin: scripts/k8s/build.sh "
                               f"failed (its log, if scripts/test.sh ran it: {K8S_DIR}/build.log)"
                               f":\n{(built.stdout + built.stderr)[-3000:]}")
        lock = _locked(K8S_DIR / ".session.lock")
        result = _script("start.sh", timeout=300)
        if result.returncode != 0:
            _script("stop.sh", timeout=120)
            lock.close()
            raise ClusterError(f"scripts/k8s/start.sh failed:\n{result.stderr[-3000:]}")
        kubeconfig = result.stdout.strip().rpartition("KUBECONFIG=")[2].strip("'\"")
        return cls(kubeconfig=kubeconfig, lock=lock)

    def allow_registry(self, address: str) -> None:
        _script("registry.sh", address, timeout=30, check=True)

    def stop(self) -> None:
        _script("stop.sh", timeout=120)
        self.lock.close()


def _locked(path: Path) -> IO[str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "w")  # noqa: SIM115 - held for the session
    deadline = time.monotonic() + LOCK_WAIT
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return handle
        except BlockingIOError:
            if time.monotonic() > deadline:
                handle.close()
                raise ClusterError(f"another test session held the cluster for {LOCK_WAIT:.0f} s"
                                   f" ({path})") from None
            time.sleep(2)


def _script(name: str, *args: str, timeout: float, check: bool = False
            ) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "K8S_DIR": str(K8S_DIR)}
    return subprocess.run(["bash", str(SCRIPTS / name), *args], capture_output=True, text=True,
                          timeout=timeout, env=env, check=check, stdin=subprocess.DEVNULL)
