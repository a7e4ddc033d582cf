"""The daemon-free proof (issue #25): the probe run by a real OCI runtime (runc) in the base
image's extracted file system with the staged environment over it catches a broken staged
file, as the in-engine proof (the image loaded into the real Docker engine) does."""

from __future__ import annotations

import shutil

import pytest

from envlock.adapters import ociruntime
from envlock.adapters.engine.errors import BuildError
from envlock.model import lockfile
from envlock.operations.build import BuildOptions, build, stage, verify_fidelity


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """The module's envlock cache: the base extracted once for both tests; the images the
    first test builds (a tampered environment) are removed from it."""
    return tmp_path_factory.mktemp("rootfs-proof-cache")


@pytest.fixture
def broken_six(monkeypatch):
    """Every staged tree of this test gets ``six.py`` edited after the install, and the
    layer carries the edited file (not the wheel's member)."""
    real = stage.Installs.finish

    def staged(self):
        members = real(self)
        path = self.root / self.scheme["purelib"].strip("/") / "six.py"
        path.write_text(path.read_text() + "\nTAMPERED = True\n")
        return {k: v for k, v in members.items() if not k.endswith("/six.py")}

    monkeypatch.setattr(stage.Installs, "finish", staged)


def test_the_daemon_free_proof_catches_a_broken_staged_file_as_the_engine_does(
        project, infra, docker_client, created_images, broken_six, cache, tmp_path,
        monkeypatch):
    from envlock.adapters.engine import Engine

    assert ociruntime.runtime() is not None, "no OCI runtime: scripts/infra.sh installs runc"
    monkeypatch.setenv("ENVLOCK_CACHE", str(cache))  # no tampered image kept elsewhere
    monkeypatch.setenv("ENVLOCK_LOCK_DIR", str(tmp_path / "locks"))
    lock = lockfile.load(project.lock())
    options = BuildOptions(base_image=infra.base_image, code_dir=project.root, env_only=True,
                           builder="oci", run_id="tampered")
    with pytest.raises(BuildError) as daemon_free:
        build(lock, options, None)
    assert "image's file system (OCI runtime, no engine) does not match the lock" in \
        daemon_free.value.message
    assert "six: modified" in daemon_free.value.message

    unverified = BuildOptions(base_image=infra.base_image, code_dir=project.root,
                              env_only=True, builder="docker", verify=False, run_id="tampered")
    result = build(lock, unverified, Engine(docker_client))
    created_images.add(result.env_image)
    with pytest.raises(BuildError) as in_engine:
        verify_fidelity(Engine(docker_client), result.env_image_id, lock)
    problems = daemon_free.value.message.split("does not match the lock: ")[1]
    assert in_engine.value.message.split("does not match the lock: ")[1] == problems
    shutil.rmtree(cache / "oci", ignore_errors=True)


def test_the_daemon_free_proof_runs_the_images_own_interpreter_without_network(
        infra, cache, tmp_path, monkeypatch):
    from envlock.adapters.imagefs import extract_rootfs, open_image

    monkeypatch.setenv("ENVLOCK_LOCK_DIR", str(tmp_path / "locks"))
    rootfs = extract_rootfs(open_image(infra.base_image), cache)
    assert rootfs.parent == cache / "rootfs" and rootfs.stat().st_mode & 0o777 == 0o755
    code, out, err = ociruntime.run(rootfs, [
        "/usr/bin/python3", "-c", "import os, platform, socket; print(platform.python_version(),"
        " os.getuid(), [n for _, n in socket.if_nameindex()])"], user=(1000, 1000))
    assert code == 0, err
    assert out.decode().split() == [infra.base_python, "1000", "['lo']"]
