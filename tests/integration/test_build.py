"""`envlock build` on the real Docker engine and the real registry on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import docker.errors
import pytest

from envlock.model import lockfile
from tests.conftest import git, run_envlock

#: A repository of its own per test session: the registry outlives test runs.
REPO = f"tests/mlproj-{uuid.uuid4().hex[:8]}"


def build(lock, infra, *extra, registry=True, repo=None, env=None, stdin=None):
    args = ["build", str(lock), "--base-image", infra.base_image, "--json", *extra]
    if registry:
        args += ["--registry", f"{infra.registry}/{repo or REPO}"]
    result = run_envlock(*args, env={"CI": "1", **(env or {})}, stdin=stdin)
    payload = json.loads(result.stdout) if result.stdout.strip() else None
    return result, payload


def track(created, payload):
    res = payload["result"]
    created.update({res["image"], res["env_image"]})
    return res


def run_image(client, ref, command=None):
    return client.containers.run(ref, command, remove=True, network_disabled=True).decode()


@pytest.fixture(scope="module")
def first(project, infra, created_images):
    lock = project.lock()
    result, payload = build(lock, infra, "--run-id", "run-1")
    assert result.returncode == 0, result.stderr
    return lock, track(created_images, payload), result


def test_build_pushes_and_pins_by_digest(first, infra, docker_client):
    _, res, result = first
    assert res["pushed"] is True
    assert res["pinned"].startswith(f"{infra.registry}/{REPO}@sha256:")
    assert result.stdout.rstrip().endswith("}")  # --json: the whole stdout is the result
    human = run_envlock("build", str(first[0]), "--base-image", infra.base_image, "--registry",
                        f"{infra.registry}/{REPO}", "--run-id", "run-1")
    assert human.stdout.strip().splitlines()[-1] == res["pinned"]
    assert res["base"] == infra.base_image
    assert res["env_reused"] is None and res["fidelity"]["ok"] is True
    assert res["fidelity"]["files_verified"] > 100


def test_the_image_runs_the_locked_code_in_the_locked_environment(first, docker_client):
    _, res, _ = first
    out = run_image(docker_client, res["pinned"])  # the image's CMD is the locked command
    assert out.strip() == "result 42 1.16.0 /workspace/mlproj/__init__.py"


def test_image_layout_user_labels_and_contents(first, docker_client):
    _, res, _ = first
    image = docker_client.images.get(res["pinned"])
    config = image.attrs["Config"]
    assert config["User"] == "1000:1000" and config["WorkingDir"] == "/workspace"
    labels = config["Labels"]
    lock = lockfile.load(first[0])
    assert labels["envlock.env_digest"] == lock.env_digest
    assert labels["envlock.lock_digest"] == lock.lock_digest
    assert labels["envlock.run_id"] == "run-1"
    assert labels["org.opencontainers.image.revision"] == lock.git["commit"]
    assert labels["org.opencontainers.image.created"]
    listing = run_image(docker_client, res["pinned"], [
        "sh", "-c", "id -u; ls -A /workspace; tail -1 train.py; "
        "ls /tmp; ls -d /root/.cache 2>/dev/null; "
        "ls /opt/envlock/venv/lib/python3.11/site-packages | grep -c dist-info"])
    lines = listing.split("\n")
    assert lines[0] == "1000"
    workspace = set(lines[1:lines.index("# uncommitted edit")])
    assert {"train.py", "mlproj", "notes.md", "pyproject.toml", ".gitignore"} <= workspace
    assert not {".git", ".env", "scratch", ".venv", "envlock.lock.yaml"} & workspace
    assert "envlock-wheelhouse" not in listing and "/root/.cache" not in listing
    assert lines[-2] == str(len(lock.packages))  # nothing installed that the lock lacks


def test_rebuild_with_nothing_changed_builds_and_pushes_nothing(first, infra, created_images):
    lock, res, _ = first
    started = time.perf_counter()
    result, payload = build(lock, infra, "--run-id", "run-1")
    elapsed = time.perf_counter() - started
    again = track(created_images, payload)
    assert again["env_reused"] == "local" and again["code_reused"] is True
    assert again["push_stats"] == {"layers_pushed": 0, "layers_existing": 0, "layers_mounted": 0,
                                   "layers_copied": 0, "bytes_pushed": 0}
    assert again["pinned"] == res["pinned"]
    assert elapsed < 30  # generous: the figure itself is measured in bench/


def test_code_change_reuses_the_environment_layer(first, project, infra, created_images):
    _, res, _ = first
    (project.root / "mlproj" / "__init__.py").write_text("SCALE = 3\n")
    try:
        lock = project.lock(name="second.lock.yaml")
        result, payload = build(lock, infra, "--run-id", "run-2")
        assert result.returncode == 0, result.stderr
        second = track(created_images, payload)
        assert second["env_image_id"] == res["env_image_id"]
        assert second["env_reused"] == "local" and second["code_reused"] is False
        assert second["push_stats"]["layers_pushed"] == 1  # only the code layer
        assert second["pinned"] != res["pinned"]
    finally:
        git(project.root, "checkout", "mlproj/__init__.py")


def test_stock_pull_of_the_pinned_reference_gives_the_same_image(first, docker_client):
    _, res, _ = first
    for tag in docker_client.images.get(res["image_id"]).tags:
        docker_client.images.remove(tag, force=True)
    with pytest.raises(Exception):  # noqa: B017 - gone from the engine
        docker_client.images.get(res["image_id"])
    pulled = docker_client.images.pull(res["pinned"])
    assert pulled.id == res["image_id"]


def test_environment_image_is_reused_from_the_registry(first, infra, docker_client,
                                                       created_images, tmp_path):
    """Another host (an empty local store, an engine without the image) pulls the
    environment image instead of building it."""
    lock, res, _ = first
    for ref in (res["env_image"], res["image"], res["image_id"]):
        with contextlib.suppress(Exception):
            docker_client.images.remove(ref, force=True)
    result, payload = build(lock, infra, "--run-id", "run-1",
                            env={"ENVLOCK_CACHE": str(tmp_path / "other-host")})
    again = track(created_images, payload)
    assert again["env_reused"] == "registry"
    assert again["env_image_id"] == res["env_image_id"]


def test_a_no_cache_rebuild_gives_the_same_environment_image(first, infra, docker_client,
                                                            created_images):
    """Every wheel provisioned again, installed again in a new container, in another
    repository: the same image id (the sha256 of a config naming the sha256 of every
    layer's bytes) and, once pushed, the same registry digest."""
    lock, res, _ = first
    repo = f"{REPO}-rebuilt"
    result, payload = build(lock, infra, "--env-only", "--no-cache", repo=repo)
    assert result.returncode == 0, result.stderr
    again = track(created_images, payload)
    assert again["env_reused"] is None and again["provisioned"]  # really built again
    assert again["env_image_id"] == res["env_image_id"]
    original = docker_client.images.get_registry_data(res["env_image"])
    assert again["pinned"] == f"{infra.registry}/{repo}@{original.id}"
    config = docker_client.images.get(again["env_image_id"]).attrs
    assert config["Created"] == "1980-01-01T00:00:00Z" and not config["Container"]


def test_no_push_keeps_the_image_local(project, infra, docker_client, created_images):
    lock = project.lock(name="local.lock.yaml")
    tag = f"local-{uuid.uuid4().hex[:8]}"
    result, payload = build(lock, infra, "--tag", tag, "--no-push")
    res = track(created_images, payload)
    assert res["pushed"] is False and res["pinned"] == res["image_id"]
    assert res["pinned"].startswith("sha256:")
    url = f"http://{infra.registry}/v2/{REPO}/manifests/{tag}"
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(url)


def test_dry_run_prints_the_recipe_and_touches_nothing(first):
    result = run_envlock("build", str(first[0]), "--dry-run", "--base-image", "base@sha256:" +
                         "0" * 64, env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[5].startswith("FROM base@sha256:")
    assert "RUN set -e; export SOURCE_DATE_EPOCH=315532800 PYTHONDONTWRITEBYTECODE=1; " \
        "python3 -m venv --without-pip /opt/envlock/venv" in result.stdout
    assert "USER 1000:1000" in result.stdout


def test_the_published_recipe_states_the_config_of_the_built_image(first, infra, docker_client):
    """What `build --dry-run` publishes (and capture uploads as the run's Dockerfile) is
    what was built: entrypoint, command, environment, workdir, user and labels."""
    from tests.recipe_config import config, stages

    lock, res, _ = first
    dry = run_envlock("build", str(lock), "--dry-run", "--base-image", infra.base_image,
                      "--registry", f"{infra.registry}/{REPO}", "--run-id", "run-1")
    assert dry.returncode == 0, dry.stderr
    text = stages(dry.stdout)
    stated = config([*text["env"], *text["code"]])
    import docker

    try:  # earlier tests remove the local copy; the pin brings back the same image
        built = docker_client.images.get(res["pinned"]).attrs["Config"]
    except docker.errors.ImageNotFound:
        built = docker_client.images.pull(res["pinned"]).attrs["Config"]
    assert stated["Cmd"] == built["Cmd"] == ["/bin/sh", "-c", "python train.py"]
    assert stated["Entrypoint"] == [] and not built["Entrypoint"]
    assert (stated["WorkingDir"], stated["User"]) == (built["WorkingDir"], built["User"])
    assert {f"{k}={v}" for k, v in stated["Env"].items()} <= set(built["Env"])
    assert set(stated["Labels"]) == set(built["Labels"])


def test_two_builds_of_the_same_new_environment_at_once_both_succeed(project, infra,
                                                                      created_images):
    """Parallel sweeps capture runs of one environment at the same moment: one builds
    its image, the other waits and reuses it (before, it failed: 'not in the engine')."""
    lock = project.lock(name="parallel.lock.yaml")
    repo = f"{infra.registry}/{REPO}-parallel"
    procs = [subprocess.Popen(
        [sys.executable, "-m", "envlock", "build", str(lock), "--base-image", infra.base_image,
         "--registry", repo, "--no-push", "--run-id", f"par-{i}", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "CI": "1"}) for i in range(2)]
    outs = [p.communicate(timeout=900) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-1500:] for _, err in outs]
    results = [json.loads(out)["result"] for out, _ in outs]
    for res in results:
        track(created_images, {"result": res})
    assert results[0]["env_image_id"] == results[1]["env_image_id"]
    assert sorted(str(r["env_reused"]) for r in results) == ["None", "local"]


# ---------------------------------------------------------------- bad input and faults

def assert_error(result, *needles):
    assert result.returncode == 2, result.stdout + result.stderr
    message = [line for line in result.stderr.splitlines() if line.startswith("envlock: error:")]
    assert len(message) == 1, result.stderr
    for needle in needles:
        assert needle in message[0], message[0]


def test_engine_not_running_names_docker_host_for_the_docker_builder(first, infra):
    result, _ = build(first[0], infra, "--builder", "docker",
                      env={"DOCKER_HOST": "unix:///tmp/no-engine.sock"})
    assert_error(result, "cannot reach the Docker engine at unix:///tmp/no-engine.sock",
                 "DOCKER_HOST")


def test_without_an_engine_the_default_builder_is_daemonless_and_gives_the_same_image(
        first, infra, tmp_path):
    """No daemon answers (a Kubernetes pod, a CI runner): `auto` assembles and pushes the
    very image the engine-backed build made, from an empty store in another directory."""
    lock, res, _ = first
    result, payload = build(lock, infra, "--run-id", "run-1", env={
        "DOCKER_HOST": "unix:///tmp/no-engine.sock", "ENVLOCK_CACHE": str(tmp_path / "c"),
        "TMPDIR": str(_mkdir(tmp_path / "tmp"))})
    assert result.returncode == 0, result.stderr
    again = payload["result"]
    assert again["builder"] == "oci" and again["env_reused"] == "registry"
    assert (again["pinned"], again["env_image_id"]) == (res["pinned"], res["env_image_id"])


def _mkdir(path):
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_both_builders_in_two_working_directories_give_one_digest(first, infra, tmp_path,
                                                                  created_images):
    """The same lock and base, built from scratch (--no-cache: every wheel provisioned
    again) by the daemonless builder under another umask, TMPDIR and cache, and by the
    engine-backed builder: one environment digest, one code-image digest."""
    lock, res, _ = first
    pins = {}
    for builder, umask in (("oci", "077"), ("docker", "022")):
        where = _mkdir(tmp_path / builder)
        result = subprocess.run(
            ["sh", "-c", f'umask {umask} && cd "$1" && shift && exec "$@"', "sh", str(where),
             sys.executable, "-m", "envlock", "build", str(lock), "--base-image",
             infra.base_image, "--registry", f"{infra.registry}/{REPO}-{builder}",
             "--run-id", "run-1", "--no-cache", "--builder", builder, "--json"],
            capture_output=True, text=True, timeout=900,
            env={**os.environ, "CI": "1", "ENVLOCK_CACHE": str(where / "cache"),
                 "TMPDIR": str(_mkdir(where / "tmp"))})
        assert result.returncode == 0, result.stderr[-2000:]
        out = track(created_images, json.loads(result.stdout))
        assert out["env_reused"] is None and out["builder"] == builder
        pins[builder] = (out["env_image_id"], out["pinned"].split("@")[1])
    assert pins["oci"] == pins["docker"] == (res["env_image_id"], res["pinned"].split("@")[1])


def test_an_image_built_without_a_run_takes_its_time_from_the_commit(first, infra, tmp_path,
                                                                     project):
    """`build LOCK --tag T` twice with nothing changed: one digest (before, the clock went
    into the code image); SOURCE_DATE_EPOCH, when set, is the time instead."""
    lock = first[0]
    digests = []
    for attempt in range(2):
        result, payload = build(lock, infra, "--tag", "no-run", "--builder", "oci",
                                env={"ENVLOCK_CACHE": str(tmp_path / f"c{attempt}")})
        assert result.returncode == 0, result.stderr
        digests.append(payload["result"]["pinned"])
    assert digests[0] == digests[1]
    stamped, payload = build(lock, infra, "--tag", "no-run-sde", "--builder", "oci",
                             "--no-push", env={"SOURCE_DATE_EPOCH": "1700000000",
                                               "ENVLOCK_CACHE": str(tmp_path / "c0")})
    assert stamped.returncode == 0, stamped.stderr
    from envlock.adapters.ocistore import Store

    store = Store(tmp_path / "c0" / "oci")
    image = payload["result"]["image"]
    config = json.loads(store.read(json.loads(store.read(store.lookup(image)))["config"]
                                   ["digest"]))
    assert config["created"] == "2023-11-14T22:13:20Z"


def test_registry_unreachable(first, infra):
    result = run_envlock("build", str(first[0]), "--base-image", infra.base_image,
                         "--registry", f"127.0.0.1:5999/{REPO}", "--run-id", "run-1")
    assert_error(result, "127.0.0.1:5999", "unreachable")
    assert "@sha256:" not in result.stdout


def test_registry_refusing_credentials_records_nothing(first, infra):
    env = {"DOCKER_CONFIG": str(first[0].parent / "no-docker-config")}
    result = run_envlock("build", str(first[0]), "--base-image", infra.base_image,
                         "--registry", f"{infra.auth_registry}/{REPO}", "--run-id",
                         "run-1", env=env)
    assert_error(result, infra.auth_registry, "refused the credentials")
    assert "@sha256:" not in result.stdout


def _edited_lock(path, out, **changes):
    from dataclasses import replace

    lock = lockfile.load(path)
    packages = tuple(replace(p, **changes) if p.name == "six" else p for p in lock.packages)
    return lockfile.write(replace(lock, packages=packages), out)


def test_a_wheel_that_cannot_be_found_is_named(first, infra, tmp_path):
    lock = _edited_lock(first[0], tmp_path / "l.yaml", version="0.0.0.1")
    result, _ = build(lock, infra, "--no-cache", registry=False)
    assert_error(result, "six==0.0.0.1", "not on the package index")


def test_a_wheel_whose_hash_differs_is_refused(first, infra, tmp_path):
    lock = _edited_lock(first[0], tmp_path / "l.yaml", files_digest="sha256:" + "0" * 64)
    result, _ = build(lock, infra, "--no-cache", registry=False)
    assert_error(result, "six==1.16.0", "differs from the locked files")


def test_a_base_image_with_the_wrong_python(infra, tmp_path):
    from tests.conftest import init_repo

    repo = init_repo(tmp_path / "p", {"t.py": "print(1)\n"})
    lock = repo / "envlock.lock.yaml"
    run_envlock("lock", "--python", sys.executable, "-o", str(lock), "--project", str(repo),
                "--no-gpu", check=True)
    wanted = lockfile.load(lock).python["version"]
    assert wanted != infra.base_python
    result, _ = build(lock, infra, registry=False)
    assert_error(result, f"has Python {infra.base_python}, the lock needs {wanted}",
                 "--base-image")


def _default_signals():
    """As a terminal's foreground job: a CI runner that started the suite in the background
    passes SIGINT down ignored, and envlock (like any program) keeps an ignored signal
    ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def interrupted_build(marker, *args, sig=signal.SIGINT):
    """Run `envlock build ARGS` and send ``sig`` once ``marker`` shows in its progress."""
    proc = subprocess.Popen([sys.executable, "-m", "envlock", "build", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "CI": "1"}, preexec_fn=_default_signals)
    seen = ""
    while marker not in seen:
        line = proc.stderr.readline()
        assert line, f"build ended early: {seen}"
        seen += line
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    return proc, out, err


def test_interrupt_mid_build_leaves_no_image_claimed(project, infra, docker_client):
    lock = project.lock(name="int.lock.yaml")
    tag = f"int-{uuid.uuid4().hex[:8]}"
    proc, out, err = interrupted_build(
        "installing them into the staged environment", str(lock), "--base-image",
        infra.base_image, "--registry", f"{infra.registry}/tests/interrupt", "--tag", tag,
        "--no-cache")
    assert proc.returncode == 130, err
    assert "@sha256:" not in out
    names = [t for image in docker_client.images.list() for t in image.tags]
    assert not [t for t in names if t.endswith(f"tests/interrupt:{tag}")]
    for scratch in (Path(tempfile.gettempdir()), Path("/dev/shm")):  # wheelhouse, staged tree
        assert not list(scratch.glob("envlock-build-*"))  # removed


def test_sigterm_mid_build_cleans_up_like_ctrl_c(project, infra, docker_client):
    """A CI runner cancelling the job sends SIGTERM: the same cleanup as Ctrl-C, one line."""
    lock = project.lock(name="term.lock.yaml")
    repo = f"tests/sigterm-{uuid.uuid4().hex[:8]}"
    proc, out, err = interrupted_build(
        "installing them into the staged environment", str(lock), "--base-image",
        infra.base_image, "--registry", f"{infra.registry}/{repo}", "--no-cache",
        sig=signal.SIGTERM)
    assert proc.returncode == 143, err
    assert "@sha256:" not in out
    lines = [line for line in err.splitlines() if "interrupted" in line]
    assert len(lines) == 1 and lines[0].startswith(
        "envlock: interrupted (SIGTERM) while installing them into the staged environment"), err
    assert lines[0].endswith("; nothing was recorded")
    names = [t for image in docker_client.images.list() for t in image.tags]
    assert not [t for t in names if repo in t]


def test_interrupt_mid_push_never_reports_an_unpushed_image(project, infra, docker_client,
                                                           created_images):
    lock = project.lock(name="push.lock.yaml")
    tag = f"push-{uuid.uuid4().hex[:8]}"
    repo = f"{infra.registry}/tests/push-{uuid.uuid4().hex[:6]}"
    proc, out, _ = interrupted_build("pushing", str(lock), "--base-image", infra.base_image,
                                     "--registry", repo, "--tag", tag)
    created_images.update({f"{repo}:{tag}"})
    import urllib.error
    import urllib.request

    path = repo.split("/", 1)[1]
    try:
        urllib.request.urlopen(urllib.request.Request(
            f"http://{infra.registry}/v2/{path}/manifests/{tag}",
            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}))
        in_registry = True
    except urllib.error.HTTPError:
        in_registry = False
    if proc.returncode == 0:  # the push won the race: then it must really be there
        assert in_registry and out.strip().endswith(tuple("0123456789abcdef"))
    else:
        assert proc.returncode == 130 and "@sha256:" not in out


def test_registry_credentials_come_from_the_docker_config(first, infra, tmp_path,
                                                          created_images):
    import base64

    config = tmp_path / "docker-config"
    config.mkdir()
    token = base64.b64encode(f"{infra.auth_user}:{infra.auth_password}".encode()).decode()
    (config / "config.json").write_text(json.dumps({"auths": {infra.auth_registry: {
        "auth": token}}}))
    result, payload = build(first[0], infra, "--run-id", "auth-1", "--registry",
                            f"{infra.auth_registry}/{REPO}", env={"DOCKER_CONFIG": str(config)},
                            registry=False)
    assert result.returncode == 0, result.stderr
    res = track(created_images, payload)
    assert res["pushed"] and res["pinned"].startswith(f"{infra.auth_registry}/{REPO}@sha256:")
    assert infra.auth_password not in result.stdout + result.stderr


def _auth_registry_has(infra, repository, tag):
    import base64
    import urllib.error
    import urllib.request

    token = base64.b64encode(f"{infra.auth_user}:{infra.auth_password}".encode()).decode()
    request = urllib.request.Request(
        f"http://{infra.auth_registry}/v2/{repository}/manifests/{tag}", method="HEAD",
        headers={"Authorization": f"Basic {token}",
                 "Accept": "application/vnd.oci.image.manifest.v1+json"})
    try:
        with urllib.request.urlopen(request, timeout=10):
            return True
    except urllib.error.HTTPError as exc:
        assert exc.code == 404, exc
        return False


def test_credentials_from_stdin_push_and_pull_without_a_login_step(first, infra, tmp_path,
                                                                   created_images,
                                                                   docker_client):
    """--registry-username + --registry-password-stdin: no docker login, no Docker config."""
    repo = f"{REPO}-stdin"
    no_config = {"DOCKER_CONFIG": str(tmp_path / "empty-docker-config")}
    creds = ("--registry-username", infra.auth_user, "--registry-password-stdin")
    result, payload = build(first[0], infra, "--run-id", "stdin-1", *creds, "--registry",
                            f"{infra.auth_registry}/{repo}", env=no_config, registry=False,
                            stdin=infra.auth_password + "\n")
    assert result.returncode == 0, result.stderr
    res = track(created_images, payload)
    assert res["pushed"] and res["pinned"].startswith(f"{infra.auth_registry}/{repo}@sha256:")
    assert _auth_registry_has(infra, repo, "stdin-1")
    assert infra.auth_password not in result.stdout + result.stderr
    # Pull: from another host (an empty store, the image gone from the engine), the next
    # build reuses the environment from the authenticated registry instead of rebuilding it.
    # (The engine loads a pushed image in the background: it may not be there yet.)
    with contextlib.suppress(docker.errors.ImageNotFound):
        docker_client.images.remove(res["env_image"], force=True)
    again, payload = build(first[0], infra, "--run-id", "stdin-2", *creds, "--registry",
                           f"{infra.auth_registry}/{repo}", registry=False,
                           env={**no_config, "ENVLOCK_CACHE": str(tmp_path / "other-host")},
                           stdin=infra.auth_password + "\n")
    assert again.returncode == 0, again.stderr
    assert track(created_images, payload)["env_reused"] == "registry"


def test_wrong_or_half_given_credentials_fail_before_anything_is_built(first, infra, tmp_path):
    repo = f"{REPO}-badauth"
    no_config = {"DOCKER_CONFIG": str(tmp_path / "empty-docker-config")}
    wrong = run_envlock("build", str(first[0]), "--base-image", infra.base_image, "--registry",
                        f"{infra.auth_registry}/{repo}", "--run-id", "bad-1",
                        "--registry-username", infra.auth_user, "--registry-password-stdin",
                        env=no_config, stdin="not-the-password\n")
    assert_error(wrong, infra.auth_registry, "refused the credentials")
    assert "not-the-password" not in wrong.stdout + wrong.stderr
    assert not _auth_registry_has(infra, repo, "bad-1")
    half = run_envlock("build", str(first[0]), "--registry", f"{infra.auth_registry}/{repo}",
                       "--registry-username", infra.auth_user, env=no_config)
    assert_error(half, "--registry-username and --registry-password-stdin go together")
    empty = run_envlock("build", str(first[0]), "--registry", f"{infra.auth_registry}/{repo}",
                        "--registry-username", infra.auth_user, "--registry-password-stdin",
                        env=no_config, stdin="")
    assert_error(empty, "read an empty password")


def test_a_base_that_cannot_be_pinned(first, infra):
    result = run_envlock("build", str(first[0]), "--base-image", "python:3.11.2-slim-bookworm",
                         "--no-push", "--tag", "unpinnable")
    assert_error(result, "base image python:3.11.2-slim-bookworm cannot be read from its "
                 "registry", "registry-1.docker.io", "--base-image REGISTRY/NAME@sha256:")
