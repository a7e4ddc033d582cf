"""Real OCI registries for the tests, on free loopback ports, their data in a given folder.

``Registry.start(workdir, auth=...)`` runs Debian's ``docker-registry serve CONFIG`` (open, or
with htpasswd auth for ``AUTH_USER``/``AUTH_PASSWORD``) and returns once ``GET /v2/`` answers
(200 open, 401 auth); ``stop()`` ends it. ``push_base(registry)`` pushes the local base image
that ``scripts/infra.sh up`` builds (root-only) so it has a digest. ``session(workdir)`` does
all three and yields the ``ENVLOCK_TEST_*`` values. Only the standard library and the docker
SDK (imported when pushing): ``python -m tests.registry -- CMD...`` works in a plain venv and
runs CMD with those variables set (the quickstart uses it), then stops the registries.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REGISTRY_BIN = shutil.which("docker-registry") or "/usr/bin/docker-registry"
AUTH_USER = "envlock"
AUTH_PASSWORD = "envlock-test-pw"
BASE_LOCAL = "envlock-test/python:3.11-bookworm"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
PUSH_TIMEOUT = 600

CONFIG = """\
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {data}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:{port}
  secret: envlock-test
"""
AUTH_CONFIG = """\
auth:
  htpasswd:
    realm: envlock-test
    path: {htpasswd}
"""


class RegistryError(RuntimeError):
    """A test registry or the base image could not be set up; the message says why."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def v2_status(address: str) -> int | None:
    """HTTP status of ``GET /v2/`` (no proxy), None when nothing answers."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"http://{address}/v2/", timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return None


def write_htpasswd(path: Path, user: str, password: str) -> Path:
    """A bcrypt htpasswd file (the registry accepts only bcrypt), made by apache2-utils."""
    try:
        out = subprocess.run(["htpasswd", "-Bbn", user, password], capture_output=True,
                             text=True, timeout=30)
    except FileNotFoundError as exc:
        raise RegistryError("no `htpasswd`: install apache2-utils (scripts/infra.sh up does)"
                            ) from exc
    if out.returncode != 0:
        raise RegistryError(f"htpasswd failed: {out.stderr.strip()}")
    path.write_text(out.stdout.strip() + "\n")
    return path


def write_config(workdir: Path, port: int, auth: bool) -> Path:
    text = CONFIG.format(data=workdir / "data", port=port)
    if auth:
        htpasswd = write_htpasswd(workdir / "htpasswd", AUTH_USER, AUTH_PASSWORD)
        text += AUTH_CONFIG.format(htpasswd=htpasswd)
    config = workdir / "config.yml"
    config.write_text(text)
    return config


def _die_with_parent() -> None:
    """In the child: SIGTERM when the test process dies, even by SIGKILL (Linux only)."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class Registry:
    """One running ``docker-registry serve``; ``address`` is ``127.0.0.1:PORT``."""

    address: str
    workdir: Path
    process: subprocess.Popen
    user: str | None = None
    password: str | None = None

    @property
    def log(self) -> Path:
        return self.workdir / "registry.log"

    def log_tail(self, chars: int = 2000) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace")[-chars:]
        return ""

    @classmethod
    def start(cls, workdir: Path, *, auth: bool = False, attempts: int = 3) -> Registry:
        """Start on a free port; retried, as another process may take the port first."""
        errors = []
        for _ in range(attempts):
            registry = cls._spawn(workdir, auth)
            try:
                registry.wait_ready(401 if auth else 200)
                return registry
            except RegistryError as exc:
                registry.stop()
                errors.append(str(exc))
        raise RegistryError("\n".join(errors))

    @classmethod
    def _spawn(cls, workdir: Path, auth: bool) -> Registry:
        workdir.mkdir(parents=True, exist_ok=True)
        port = free_port()
        config = write_config(workdir, port, auth)
        with open(workdir / "registry.log", "wb") as log:  # this attempt's log only
            try:
                process = subprocess.Popen([REGISTRY_BIN, "serve", str(config)],
                                           stdin=subprocess.DEVNULL, stdout=log,
                                           stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
            except FileNotFoundError as exc:
                raise RegistryError(f"no {REGISTRY_BIN}: install docker-registry "
                                    "(scripts/infra.sh up does)") from exc
        creds = (AUTH_USER, AUTH_PASSWORD) if auth else (None, None)
        return cls(f"127.0.0.1:{port}", workdir, process, *creds)

    def wait_ready(self, want: int) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        status = None
        while time.monotonic() < deadline:
            status = v2_status(self.address)
            if status == want:
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        raise RegistryError(f"registry on {self.address} did not answer /v2/ with {want} "
                            f"(last: {status}, exit code: {self.process.poll()}); "
                            f"log {self.log}:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=STOP_TIMEOUT)


def start_tls(workdir: Path, host: str = "127.0.0.1") -> Registry:
    """An open registry served over HTTPS on ``host``, its certificate self-signed
    (``openssl``, ``cert.pem`` in ``workdir``): for clients that speak only HTTPS
    (Charliecloud's ``ch-image``). envlock's own registry client speaks plain HTTP to
    loopback registries, so a capture into it needs a non-loopback ``host`` and the
    certificate trusted (``REQUESTS_CA_BUNDLE``)."""
    import ssl

    workdir.mkdir(parents=True, exist_ok=True)
    cert, key = workdir / "cert.pem", workdir / "key.pem"
    made = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days",
                           "2", "-keyout", str(key), "-out", str(cert), "-subj", f"/CN={host}",
                           "-addext", f"subjectAltName=IP:{host}"],
                          capture_output=True, text=True, timeout=60)
    if made.returncode != 0:
        raise RegistryError(f"openssl could not make a certificate: {made.stderr.strip()}")
    port = free_port()
    config = workdir / "config.yml"
    text = CONFIG.format(data=workdir / "data", port=port).replace("127.0.0.1:", f"{host}:")
    config.write_text(text + f"  tls:\n    certificate: {cert}\n    key: {key}\n")
    with open(workdir / "registry.log", "wb") as log:
        process = subprocess.Popen([REGISTRY_BIN, "serve", str(config)], stdin=subprocess.DEVNULL,
                                   stdout=log, stderr=subprocess.STDOUT,
                                   preexec_fn=_die_with_parent)
    registry = Registry(f"{host}:{port}", workdir, process)
    context = ssl.create_default_context(cafile=str(cert))
    deadline = time.monotonic() + START_TIMEOUT
    while process.poll() is None and time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"https://{registry.address}/v2/", context=context, timeout=2)
            return registry
        except OSError:
            time.sleep(0.1)
    registry.stop()
    raise RegistryError(f"the HTTPS registry on {registry.address} did not answer /v2/; log "
                        f"{registry.log}:\n{registry.log_tail()}")


# ---------------------------------------------------------------- the base image

def docker_client(timeout: int = PUSH_TIMEOUT):
    """The engine's client, or a ``RegistryError`` saying how to start the engine."""
    import docker

    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except docker.errors.DockerException as exc:
        raise RegistryError(f"no Docker engine answers ({exc}): run `bash scripts/infra.sh up`"
                            ) from exc
    return client


def push_base(registry: Registry, client=None) -> tuple[str, str]:
    """Push the local ``BASE_LOCAL`` to ``registry``: ``(REG/…@sha256:…, its Python)``."""
    import docker

    client = client or docker_client()
    repository, tag = f"{registry.address}/{BASE_LOCAL}".rsplit(":", 1)
    try:
        client.images.get(BASE_LOCAL).tag(repository, tag)
        digest = _push(client, repository, tag)
        return f"{repository}@{digest}", _python_version(client, f"{repository}@{digest}")
    except docker.errors.ImageNotFound as exc:
        raise RegistryError(f"no local base image {BASE_LOCAL}: run `bash scripts/infra.sh up`"
                            " (it builds it once per machine)") from exc
    except docker.errors.DockerException as exc:
        raise RegistryError(f"pushing {BASE_LOCAL} to {registry.address}: {exc}") from exc


def _push(client, repository: str, tag: str) -> str:
    digest = None
    for event in client.images.push(repository, tag=tag, stream=True, decode=True):
        if "error" in event:
            raise RegistryError(f"docker push {repository}:{tag}: {event['error']}")
        digest = event.get("aux", {}).get("Digest", digest)
    if not digest:
        raise RegistryError(f"docker push {repository}:{tag} reported no digest")
    return digest


def _python_version(client, reference: str) -> str:
    out = client.containers.run(reference, ["python3", "-c", "import platform;"
                                            "print(platform.python_version())"],
                                network_mode="none", remove=True)
    return out.decode().strip()


def untag_base(registry: Registry, client=None) -> None:
    """Drop this registry's tag (and so its digest reference) from the local base image."""
    import docker

    with contextlib.suppress(docker.errors.DockerException):  # gone already, or no engine
        client = client or docker.from_env()
        client.images.remove(f"{registry.address}/{BASE_LOCAL}", noprune=True)


# ---------------------------------------------------------------- both registries + base

@contextlib.contextmanager
def session(workdir: Path) -> Iterator[dict[str, str]]:
    """Both registries and the pushed base image; yields the ``ENVLOCK_TEST_*`` values."""
    with contextlib.ExitStack() as stack:
        open_reg = Registry.start(workdir / "open")
        stack.callback(open_reg.stop)
        auth_reg = Registry.start(workdir / "auth", auth=True)
        stack.callback(auth_reg.stop)
        stack.callback(untag_base, open_reg)
        base, python = push_base(open_reg)
        yield {"ENVLOCK_TEST_REGISTRY": open_reg.address,
               "ENVLOCK_TEST_AUTH_REGISTRY": auth_reg.address,
               "ENVLOCK_TEST_AUTH_USER": AUTH_USER,
               "ENVLOCK_TEST_AUTH_PASSWORD": AUTH_PASSWORD,
               "ENVLOCK_TEST_BASE_IMAGE": base,
               "ENVLOCK_TEST_BASE_PYTHON": python}


def main(argv: list[str]) -> int:
    """``python -m tests.registry -- CMD...``: run CMD with the registries up, then stop them."""
    import tempfile

    command = argv[1:] if argv[:1] == ["--"] else argv
    if not command:
        print("usage: python -m tests.registry -- CMD [ARGS...]", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="envlock-registries-") as tmp:
        try:
            with session(Path(tmp)) as env:
                return subprocess.run(command, env={**os.environ, **env}).returncode
        except RegistryError as exc:
            print(f"tests.registry: {exc}", file=sys.stderr)
            return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
