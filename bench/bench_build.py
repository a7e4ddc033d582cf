#!/usr/bin/env python3
"""Benchmark ``envlock build``: the daemonless builder against the Docker-engine builder and
a plain ``docker build``, code-only and no-op rebuilds, reproducibility across builders and
working directories, registry growth and image size.

Not a test: run it by hand, from the repository root, with the test infrastructure
(``scripts/infra.sh`` and ``tests/registry.py``, started by ``benchlib.infra_env()``)::

    .venv/bin/python bench/bench_build.py [--quick] [--rounds N] [--json FILE]

For each environment (the PyTorch CPU one, torch==2.13.0 + numpy, about 1 GB installed;
and a small one, six), from one lock:

a. cold build, ``--rounds`` rounds in rotating order, each of
   * ``envlock build --builder oci`` (daemonless: assembled on the host, pushed by the
     registry client),
   * ``envlock build --builder docker`` (the same, then ``docker load`` into the engine
     and the fidelity probe run inside the image; the environment and code images are
     removed from the engine first, so it loads them afresh),
   * a plain ``docker build --no-cache`` (classic builder) of ``FROM <the same
     digest-pinned base>``, ``COPY`` of the same wheels, ``python3 -m venv`` + ``pip
     install --no-index``.
   Each envlock build gets a new ``ENVLOCK_CACHE`` whose ``wheels/`` is pre-filled
   (hard links) from a warm cache, and pushes to a new repository, so nothing is reused
   but no wheel is downloaded: both sides start from wheels on the local disk. envlock's
   side is the whole command's wall time minus its ``push`` span (a docker build pushes
   nothing); it is also given without ``provision`` (copying the wheels from the cache
   and checking each against the lock). Target: plain / daemonless >= 2.
f. reproducibility: one more daemonless build from another working directory with
   another ``TMPDIR``, umask 077 and another cache; the environment image ID (config
   digest), the environment image's registry digest and the code image's registry
   digest of every cold build are compared (all builds use the run ID ``cold``).
b. no-op rebuild (the last daemonless cold build again): wall time, bytes pushed
   (target 0).
c. code-only change (edit ``train.py``, re-lock, new run ID), with both builders: whole
   command wall time and the ``timings`` breakdown; target < 1 s for the build itself
   (the sum of the timed spans, push included).

g. (``bench_downloads.py``) the parallel wheel downloader against the serial ``pip
download`` provisioning used before, on the same ~250 MB of PyPI wheels in one run
(``--downloads-only`` runs this section alone). Every build result also carries the
phase breakdown (``timings``) and ``transfer`` (image, downloaded, reused, pushed bytes),
the figures of the summary line a build ends with.

Then, once: e. the image size of the Docker-engine builder's code image against base +
site-packages + code; d. registry growth for ``--runs`` runs sharing the small
environment (daemonless builder).

``--quick`` skips the torch environment. ``--cuda`` runs only the CUDA scenario
(``bench_cuda.py``: ``envlock capture`` of torch==2.13.0 with its CUDA wheels downloaded
from the index, the machine's pip configuration bypassed; cold, code-only change, a
second project sharing the wheels; needs 20 GB free and deletes what it made). See
bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import benchlib
from bench_downloads import report_downloads, section_downloads
from benchlib import BenchError, infra_env, log, run

REPO = Path(__file__).resolve().parent.parent
#: Bump when the venv recipes change: invalidates the cached venvs.
RECIPE = 1
SYSTEM_PYTHON = "/usr/bin/python3"  # must match the base image's Python (3.11.2)
ENVS = {
    "torch": ("torch==2.13.0", "numpy"),
    "small": ("six",),
}
BUILDERS = ("oci", "docker", "plain")
TARGETS = {
    "cold_speedup": 2.0,    # plain docker build / daemonless cold build (excl. push)
    "code_s": 1.0,          # code-only rebuild: the build's timed spans
    "noop_bytes": 0,        # nothing changed: bytes pushed
    "code_layers": 1,       # code-only change: layers pushed
    "size_ratio": 1.05,     # image size / (base + site-packages + code)
}
MANIFEST_TYPES = ("application/vnd.oci.image.manifest.v1+json, "
                  "application/vnd.docker.distribution.manifest.v2+json")


def registry_get(registry: str, path: str, accept: str | None = None) -> tuple[bytes, dict]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    req = urllib.request.Request(f"http://{registry}/v2/{path}")
    if accept:
        req.add_header("Accept", accept)
    with opener.open(req, timeout=30) as resp:
        return resp.read(), dict(resp.headers)


def manifest(image: str) -> dict:
    """Registry manifest of ``HOST:PORT/REPO:TAG`` (+ its own size and digest)."""
    host, _, rest = image.partition("/")
    name, _, tag = rest.rpartition(":")
    body, headers = registry_get(host, f"{name}/manifests/{tag}", MANIFEST_TYPES)
    data = json.loads(body)
    data["_size"] = len(body)
    data["_digest"] = headers.get("Docker-Content-Digest") or headers.get(
        "docker-content-digest")
    return data


class BlobStore:
    """The registry's filesystem storage (docker/distribution layout)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs" / "sha256"

    def listing(self) -> dict[str, int]:
        out: dict[str, int] = {}
        if not self.blobs.is_dir():
            return out
        for prefix in self.blobs.iterdir():
            for blob in prefix.iterdir():
                with contextlib.suppress(OSError):
                    out[blob.name] = (blob / "data").stat().st_size
        return out

    def du(self) -> dict[str, int]:
        """``du -sb`` (apparent bytes) and ``du -sB1`` (allocated) of the blob dir."""
        apparent = subprocess.run(["du", "-sb", str(self.blobs)], capture_output=True,
                                  text=True).stdout.split()
        allocated = subprocess.run(["du", "-sB1", str(self.blobs)], capture_output=True,
                                   text=True).stdout.split()
        return {"apparent": int(apparent[0]) if apparent else 0,
                "allocated": int(allocated[0]) if allocated else 0}

    def referenced_by(self, repository: str) -> set[str]:
        """Blob digests linked from one repository (layers, configs, manifests)."""
        repo = self.root / "repositories" / repository
        out: set[str] = set()
        for sub in ("_layers/sha256", "_manifests/revisions/sha256"):
            d = repo / sub
            if d.is_dir():
                out.update(p.name for p in d.iterdir())
        return out


# --------------------------------------------------------------------------- docker


def inspect(ref: str) -> dict | None:
    proc = subprocess.run(["docker", "image", "inspect", ref], capture_output=True, text=True)
    if proc.returncode != 0:
        return None
    return json.loads(proc.stdout)[0]


# --------------------------------------------------------------------------- fixtures


def ensure_venv(workdir: Path, name: str, env: dict) -> Path:
    """``/usr/bin/python3 -m venv`` + ``pip install`` of ENVS[name]; cached under workdir."""
    venv = workdir / f"venv-{name}"
    marker = venv / ".envlock-bench.json"
    key = {"recipe": RECIPE, "packages": list(ENVS[name]),
           "python": subprocess.run([SYSTEM_PYTHON, "-c", "import platform;"
                                     "print(platform.python_version())"],
                                    capture_output=True, text=True).stdout.strip()}
    if marker.is_file() and json.loads(marker.read_text()) == key and \
            (venv / "bin" / "python").exists():
        return venv
    log(f"creating venv-{name} ({' '.join(ENVS[name])}) ...")
    t0 = time.perf_counter()
    shutil.rmtree(venv, ignore_errors=True)
    run([SYSTEM_PYTHON, "-m", "venv", str(venv)], env=env)
    run([str(venv / "bin" / "pip"), "install", "-q", *ENVS[name]], env=env)
    marker.write_text(json.dumps(key))
    log(f"venv-{name} ready in {time.perf_counter() - t0:.1f}s")
    return venv


TRAIN = "import sys\n\nprint('training', sys.argv[1:])\n"
CONFIG = "lr: 0.001\nbatch_size: 32\nepochs: 3\n"


def ensure_project(workdir: Path, name: str, env: dict) -> Path:
    """A small git repository (committed, then reset to its committed content)."""
    proj = workdir / f"project-{name}"
    if not (proj / ".git").is_dir():
        shutil.rmtree(proj, ignore_errors=True)
        (proj / "src").mkdir(parents=True)
        (proj / "train.py").write_text(TRAIN)
        (proj / "config.yaml").write_text(CONFIG)
        (proj / "README.md").write_text(f"# bench project {name}\n")
        (proj / "src" / "model.py").write_text(
            "def model(x):\n    return [v * 2 for v in x]\n" * 20)
        git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.invalid",
               "-c", "init.defaultBranch=main", "-c", "commit.gpgsign=false"]
        run([*git, "init", "-q"], cwd=proj, env=env)
        run([*git, "add", "."], cwd=proj, env=env)
        run([*git, "commit", "-q", "-m", "initial"], cwd=proj, env=env)
    (proj / "train.py").write_text(TRAIN)  # back to the committed state
    for extra in proj.glob("run_*.txt"):
        extra.unlink()
    return proj


def code_bytes(proj: Path) -> int:
    total = 0
    for path in proj.rglob("*"):
        if ".git" in path.relative_to(proj).parts:
            continue
        if path.is_file() and not path.is_symlink():
            total += path.stat().st_size
    return total


def du_apparent(path: Path) -> int:
    out = subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True).stdout
    return int(out.split()[0]) if out else 0


def site_packages(venv: Path) -> Path:
    return next((venv / "lib").glob("python3*/site-packages"))


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def prefill(cache: Path, warm: Path) -> Path:
    """A new ``ENVLOCK_CACHE`` holding only the warm cache's wheels (hard links)."""
    shutil.rmtree(cache, ignore_errors=True)
    cache.mkdir(parents=True)
    if (warm / "wheels").is_dir():
        def link(src: str, dst: str) -> None:
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)

        shutil.copytree(warm / "wheels", cache / "wheels", copy_function=link)
    return cache


# --------------------------------------------------------------------------- envlock


class Envlock:
    def __init__(self, exe: str, env: dict, base: str) -> None:
        self.exe, self.env, self.base = exe, env, base

    def lock(self, venv: Path, proj: Path, out: Path) -> float:
        dt, _ = run([self.exe, "lock", "--python", str(venv / "bin" / "python"), "-o", str(out),
                     "--command", "python train.py"], cwd=proj, env=self.env)
        return dt

    def build(self, lock: Path, cwd: Path, repo: str | None, run_id: str, *, builder: str,
              cache: Path, no_cache: bool = False, push: bool = True,
              tmpdir: Path | None = None, umask: str | None = None,
              exe: str | None = None, staging: Path | None = None) -> dict:
        cmd = [exe or self.exe, "build", str(lock), "--base-image", self.base, "--builder", builder,
               "--run-id", run_id, "--json"]
        if repo:
            cmd += ["--registry", repo]
        if no_cache:
            cmd.append("--no-cache")
        if not push:
            cmd.append("--no-push")
        env = dict(self.env, ENVLOCK_CACHE=str(cache))
        if staging:  # where the environment is staged (default: /dev/shm when it has room)
            env["ENVLOCK_STAGING_DIR"] = str(staging)
        if tmpdir:
            tmpdir.mkdir(parents=True, exist_ok=True)
            env["TMPDIR"] = str(tmpdir)
        shown = shlex.join(cmd)
        if umask:  # the shell sets it, then becomes envlock
            cmd = ["sh", "-c", f'umask {umask} && exec "$@"', "sh", *cmd]
        load = load_average()
        log(f"envlock build --builder {builder} {run_id}{' --no-cache' if no_cache else ''}"
            f" -> {repo or 'local store'} (load {load})")
        dt, proc = run(cmd, cwd=cwd, env=env, check=False)
        try:
            doc = json.loads(proc.stdout)
        except json.JSONDecodeError:
            doc = None
        if proc.returncode != 0 or not doc or not doc.get("ok"):
            raise BenchError(f"exit {proc.returncode}: (cd {cwd} && ENVLOCK_CACHE={cache} "
                             f"{shown})\nstdout: {proc.stdout.strip()[-2000:]}\n"
                             f"stderr: {proc.stderr.strip()[-3000:]}")
        res = doc["result"]
        res["_wall_s"] = round(dt, 3)
        res["_stderr"] = proc.stderr
        res["_load"] = load
        res["_repo"] = repo
        res["_cache"] = str(cache)
        log(f"  {dt:.2f}s wall; timings {res.get('timings')}; push {res.get('push_stats')}; "
            f"env_reused={res.get('env_reused')} code_reused={res.get('code_reused')}")
        return res


def brief(res: dict) -> dict:
    """The parts of a build result worth keeping in the JSON."""
    keys = ("image", "image_id", "pinned", "manifest_digest", "builder", "env_image",
            "env_image_id", "env_reused", "code_reused", "push_stats", "timings")
    out = {k: res.get(k) for k in keys}
    out["wall_s"] = res["_wall_s"]
    out["load_average"] = res.get("_load")
    out["spans_s"] = round(sum(res.get("timings", {}).values()), 3)
    out["wall_excl_push_s"] = round(res["_wall_s"] - res.get("timings", {}).get("push", 0.0), 3)
    out["wall_excl_push_provision_s"] = round(
        out["wall_excl_push_s"] - res.get("timings", {}).get("provision", 0.0), 3)
    warnings = [ln for ln in res.get("_stderr", "").splitlines()
                if "warn" in ln.lower() or "error" in ln.lower()]
    if warnings:
        out["stderr_warnings"] = warnings[:20]
    return out


def lock_packages(lock: Path) -> list[dict]:
    import yaml  # envlock depends on it, so it is in the dev venv

    return yaml.safe_load(lock.read_text())["packages"]


def env_registry_digest(res: dict) -> str | None:
    """The environment image's manifest digest, as the registry serves it."""
    if not res.get("_repo"):
        return None
    return manifest(res["env_image"])["_digest"]


def remove_from_engine(ids: list[str]) -> None:
    """Untag and remove these images (code image first), so the next Docker-engine build
    loads its images afresh; ``docker rmi`` without ``-f`` never touches a used image."""
    for image_id in dict.fromkeys(i for i in ids if i):
        info = inspect(image_id)
        if info is None:
            continue
        for ref in info.get("RepoTags") or []:
            subprocess.run(["docker", "rmi", "--no-prune", ref], capture_output=True)
        if inspect(image_id) is not None:
            subprocess.run(["docker", "rmi", image_id], capture_output=True)


# --------------------------------------------------------------------------- sections


def wheelhouse_for(ctx: dict, name: str, lock: Path, warm: Path) -> Path:
    """The plain build's context: the same wheels (from the warm cache; any missing one
    downloaded at the same pin), a requirements.txt of every locked pin, a Dockerfile."""
    plain = ctx["workdir"] / f"plain-{name}"
    shutil.rmtree(plain, ignore_errors=True)
    wheelhouse = plain / "wheelhouse"
    wheelhouse.mkdir(parents=True)
    pkgs = lock_packages(lock)
    missing = []
    for p in pkgs:
        key = (p.get("files_digest") or "nodigest").split(":")[-1][:16]
        wheels = sorted((warm / "wheels" / p["name"] / p["version"] / key).glob("*.whl"))
        if wheels:
            shutil.copy2(wheels[0], wheelhouse / wheels[0].name)
        else:
            missing.append(f"{p['name']}=={p['version']}")
    if missing:
        log(f"wheels not in the warm cache, downloading: {missing}")
        run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary",
             ":all:", "-d", str(wheelhouse), *missing], env=ctx["env"])
    (wheelhouse / "requirements.txt").write_text(
        "".join(f"{p['name']}=={p['version']}\n" for p in pkgs))
    (plain / "Dockerfile").write_text(
        f"FROM {ctx['base']}\n"
        "COPY wheelhouse/ wheelhouse/\n"
        "RUN python3 -m venv /opt/venv && /opt/venv/bin/pip install --no-index "
        "--find-links wheelhouse -r wheelhouse/requirements.txt\n")
    ctx.setdefault("plain_missing", {})[name] = missing
    return plain


def plain_build(ctx: dict, plain: Path, tag: str, remote: str) -> dict:
    """``docker build --no-cache`` (timed), then, informational, ``docker push`` of the
    result to a new repository (timed on its own: the engine compresses at push time)."""
    ctx["cleanup"] += [tag, remote]
    load = load_average()
    log(f"plain docker build --no-cache -> {tag} (load {load})")
    env = dict(ctx["env"], DOCKER_BUILDKIT="0")
    dt, _ = run(["docker", "build", "--no-cache", "--force-rm", "-q", "-t", tag, str(plain)],
                env=env)
    info = inspect(tag) or {}
    ctx["ids"].append(info.get("Id"))
    run(["docker", "tag", tag, remote], env=env)
    push_s, _ = run(["docker", "push", "-q", remote], env=env)
    log(f"  {dt:.2f}s; docker push {push_s:.2f}s")
    return {"wall_s": round(dt, 3), "push_s": round(push_s, 3), "load_average": load,
            "image_size": info.get("Size")}


def section_cold(ctx: dict, el: Envlock, name: str, lock: Path, proj: Path, warm: Path,
                 known_ids: list[str], rounds: int) -> dict:
    """a: ``rounds`` rounds of (daemonless, Docker-engine builder, plain docker build and,
    with ``--baseline-envlock``, the baseline's daemonless build), in rotating order."""
    wd: Path = ctx["workdir"]
    plain = wheelhouse_for(ctx, name, lock, warm)
    builders = BUILDERS + ("oci-disk",) + (("oci-base",) if ctx.get("baseline") else ())
    samples: dict[str, list] = {b: [] for b in builders}
    engine_ids = list(known_ids)
    for r in range(rounds):
        order = builders[r % len(builders):] + builders[:r % len(builders)]
        for builder in order:
            tag = f"{name}-{builder}-r{r + 1}"
            if builder == "plain":
                samples["plain"].append(plain_build(
                    ctx, plain, f"envlock-bench-plain:{ctx['stamp']}-{tag}",
                    f"{ctx['registry']}/envlock-bench/plain-{ctx['stamp']}-{tag}:latest"))
                continue
            if builder == "docker":
                remove_from_engine(engine_ids)
            cache = prefill(wd / "caches" / f"{ctx['stamp']}-{tag}", warm)
            repo = f"{ctx['registry']}/envlock-bench/build-{ctx['stamp']}-{tag}"
            res = el.build(lock, proj, repo, "cold", builder=builder.split("-")[0], cache=cache,
                           exe=ctx["baseline"] if builder == "oci-base" else None,
                           staging=Path(tempfile.gettempdir()) if builder == "oci-disk"
                           else None)
            res["_env_registry_digest"] = env_registry_digest(res)
            if builder == "docker":
                engine_ids += [res["image_id"], res["env_image_id"]]
                ctx["cleanup"] += [res["image"], res["env_image"]]
            ctx["ids"] += [res["image_id"], res["env_image_id"]]
            samples[builder].append(res)
    return {"samples": samples, "wheels": len(list((plain / "wheelhouse").glob("*.whl"))),
            "wheelhouse_bytes": du_apparent(plain / "wheelhouse"),
            "wheels_downloaded_for_plain": ctx["plain_missing"][name],
            "dockerfile": (plain / "Dockerfile").read_text()}


def summarize_cold(cold: dict) -> dict:
    s = cold["samples"]

    def median(xs: list[float]) -> float:
        return round(statistics.median(xs), 3)

    out = {}
    for builder in [b for b in ("oci", "docker", "oci-disk", "oci-base") if b in s]:
        rs = s[builder]
        spans = {k for r in rs for k in r["timings"]}
        out[builder] = {
            "wall_s": median([r["_wall_s"] for r in rs]),
            "excl_push_s": median([brief(r)["wall_excl_push_s"] for r in rs]),
            "excl_push_provision_s": median([brief(r)["wall_excl_push_provision_s"]
                                             for r in rs]),
            "timings_median": {k: median([r["timings"].get(k, 0.0) for r in rs])
                               for k in sorted(spans)},
            "rounds": [brief(r) for r in rs],
        }
    out["plain"] = {"wall_s": median([p["wall_s"] for p in s["plain"]]), "rounds": s["plain"],
                    "push_s": median([p["push_s"] for p in s["plain"]]),
                    "image_size": s["plain"][-1]["image_size"]}
    plain = out["plain"]["wall_s"]
    out["speedup_plain_over_oci"] = round(plain / out["oci"]["excl_push_s"], 3)
    out["speedup_plain_over_docker"] = round(plain / out["docker"]["excl_push_s"], 3)
    out["speedup_docker_over_oci"] = round(out["docker"]["excl_push_s"] /
                                           out["oci"]["excl_push_s"], 3)
    out["speedup_plain_over_oci_excl_provision"] = round(
        plain / out["oci"]["excl_push_provision_s"], 3)
    out["speedup_plain_over_docker_excl_provision"] = round(
        plain / out["docker"]["excl_push_provision_s"], 3)
    out["speedup_plain_with_push_over_oci_with_push"] = round(
        (plain + out["plain"]["push_s"]) / out["oci"]["wall_s"], 3)
    out["speedup_plain_over_oci_disk"] = round(plain / out["oci-disk"]["excl_push_s"], 3)
    if "oci-base" in out:
        out["speedup_oci_over_baseline"] = round(out["oci-base"]["excl_push_s"] /
                                                 out["oci"]["excl_push_s"], 3)
    return out


def section_repro(ctx: dict, el: Envlock, name: str, lock: Path, warm: Path,
                  cold: dict) -> dict:
    """f: one more daemonless build elsewhere; every cold build's digests compared."""
    wd: Path = ctx["workdir"]
    elsewhere = wd / f"elsewhere-{ctx['stamp']}-{name}"
    elsewhere.mkdir(parents=True, exist_ok=True)
    cache = prefill(wd / "caches" / f"{ctx['stamp']}-{name}-elsewhere", warm)
    repo = f"{ctx['registry']}/envlock-bench/build-{ctx['stamp']}-{name}-elsewhere"
    res = el.build(lock, elsewhere, repo, "cold", builder="oci", cache=cache,
                   tmpdir=wd / f"tmp-{ctx['stamp']}-{name}", umask="077")
    res["_env_registry_digest"] = env_registry_digest(res)
    ctx["ids"] += [res["image_id"], res["env_image_id"]]
    builds = [(f"{b} r{i + 1}", r) for b in ("oci", "docker", "oci-disk")
              for i, r in enumerate(cold["samples"][b])] + [("oci elsewhere", res)]
    base_ids = {r["env_image_id"] for r in cold["samples"].get("oci-base", [])}
    rows = [{"build": label, "env_image_id": r["env_image_id"],
             "env_registry_digest": r["_env_registry_digest"],
             "code_image_id": r["image_id"], "code_registry_digest": r["manifest_digest"],
             "pinned": r["pinned"]} for label, r in builds]

    def same(key: str) -> bool:
        return len({row[key] for row in rows}) == 1

    return {"builds": rows, "elsewhere": {"cwd": str(elsewhere), "umask": "077",
                                         "tmpdir": str(wd / f"tmp-{ctx['stamp']}-{name}"),
                                         "cache": str(cache)},
            "elsewhere_build": brief(res),
            "same_env_image_id": same("env_image_id"),
            "same_env_registry_digest": same("env_registry_digest"),
            "same_code_image_id": same("code_image_id"),
            "same_code_registry_digest": same("code_registry_digest"),
            "baseline_env_image_ids": sorted(base_ids)}


def section_noop(el: Envlock, lock: Path, proj: Path, last_oci: dict) -> dict:
    """b: the last daemonless cold build again: same lock, run ID, cache and repository."""
    res = el.build(lock, proj, last_oci["_repo"], "cold", builder="oci",
                   cache=Path(last_oci["_cache"]))
    return brief(res)


def section_code(ctx: dict, el: Envlock, name: str, venv: Path, proj: Path,
                 cold: dict) -> dict:
    """c: edit train.py, re-lock (not timed), build with a new run ID, with each builder."""
    (proj / "train.py").write_text(TRAIN + f"# tweak {ctx['stamp']}\n")
    try:
        lock2 = ctx["workdir"] / f"lock-{name}-code.yaml"
        lock_s = el.lock(venv, proj, lock2)
        out: dict = {"lock_s": round(lock_s, 3)}
        for builder in ("oci", "docker"):
            last = cold["samples"][builder][-1]
            res = el.build(lock2, proj, last["_repo"], "code1", builder=builder,
                           cache=Path(last["_cache"]))
            ctx["ids"].append(res["image_id"])
            if builder == "docker":
                ctx["cleanup"].append(res["image"])
            b = brief(res)
            code_layer = manifest(res["image"])["layers"][-1]
            b["code_layer_bytes"] = code_layer["size"]
            b["env_unchanged"] = res["env_image_id"] == last["env_image_id"]
            out[builder] = b
        return out
    finally:
        (proj / "train.py").write_text(TRAIN)


def section_d(ctx: dict, el: Envlock, venv: Path, warm: Path, runs: int) -> dict:
    """Registry growth: ``runs`` daemonless builds of one environment with different code."""
    wd: Path = ctx["workdir"]
    proj = ensure_project(wd, "growth", ctx["env"])
    cache = prefill(wd / "caches" / f"{ctx['stamp']}-growth", warm)
    repo_path = f"envlock-bench/growth-{ctx['stamp']}"
    repo = f"{ctx['registry']}/{repo_path}"
    store: BlobStore = ctx["store"]
    before, du_before = store.listing(), store.du()
    builds, lock_s = [], []
    t0 = time.perf_counter()
    for i in range(1, runs + 1):
        (proj / "train.py").write_text(TRAIN + f"# run {i}: lr sweep point {i * 0.0001:.4f}\n")
        lock = wd / "lock-growth.yaml"
        lock_s.append(el.lock(venv, proj, lock))
        res = el.build(lock, proj, repo, f"g{i:02d}", builder="oci", cache=cache)
        builds.append(res)
    total_s = time.perf_counter() - t0
    (proj / "train.py").write_text(TRAIN)  # back to the committed state
    after, du_after = store.listing(), store.du()
    new = set(after) - set(before)
    ours = store.referenced_by(repo_path)
    env_m = manifest(builds[0]["env_image"])
    env_layer = env_m["layers"][-1]
    code_layers, code_meta = [], 0
    for res in builds:
        m = manifest(res["image"])
        if m["layers"][-2]["digest"] != env_layer["digest"]:
            raise BenchError(f"{res['image']} is not built on {builds[0]['env_image']}")
        code_layers.append(m["layers"][-1]["size"])
        code_meta += m["config"]["size"] + m["_size"]
    # The environment's blobs are new only if no earlier build (a cold build of the same
    # lock, on any repository of this registry) stored the same bytes.
    env_blobs = {env_layer["digest"]: env_layer["size"],
                 env_m["config"]["digest"]: env_m["config"]["size"],
                 env_m["_digest"]: env_m["_size"]}
    env_new = {d: size for d, size in env_blobs.items() if d.split(":")[-1] not in before}
    expected = env_new.get(env_layer["digest"], 0) + sum(code_layers)
    expected_all = expected + sum(size for d, size in env_new.items()
                                  if d != env_layer["digest"]) + code_meta
    growth = du_after["apparent"] - du_before["apparent"]
    ours_new = new & ours
    ours_bytes = sum(after[d] for d in ours_new)
    return {
        "runs": runs, "repository": repo, "total_s": round(total_s, 2),
        "build_wall_s": [r["_wall_s"] for r in builds],
        "lock_s_mean": round(sum(lock_s) / len(lock_s), 3),
        "layers_pushed": [r["push_stats"].get("layers_pushed") for r in builds],
        "env_reused": [r["env_reused"] for r in builds],
        "du_before": du_before, "du_after": du_after,
        "growth_bytes": growth,
        "growth_data_bytes": sum(after.values()) - sum(before.values()),
        "growth_allocated_bytes": du_after["allocated"] - du_before["allocated"],
        "blobs_added": len(new),
        "blobs_added_ours": len(ours_new),
        "blobs_added_other": len(new - ours),
        "bytes_added_ours": ours_bytes,
        "env_layer_bytes": env_layer["size"],
        "code_layer_bytes": code_layers,
        "expected_bytes": expected,
        "expected_bytes_with_configs_manifests": expected_all,
        "env_blobs_in_registry_before": len(env_blobs) - len(env_new),
        "expected_blobs": len(env_new) + 3 * runs,  # layer + config + manifest, per image
        # against everything new this run should have stored (configs and manifests too)
        "ratio": round(growth / expected_all, 4) if expected_all else None,
        "ratio_data": round((sum(after.values()) - sum(before.values())) / expected_all, 4)
        if expected_all else None,
        "ratio_ours": round(ours_bytes / expected_all, 4) if expected_all else None,
    }


def section_e(ctx: dict, res: dict, venv: Path, proj: Path) -> dict:
    """Image size: the Docker-engine builder's code image as the engine reports it."""
    image = inspect(res["image"]) or {}
    env = inspect(res["env_image"]) or {}
    base = inspect(ctx["base"]) or {}
    site = du_apparent(site_packages(venv))
    venv_total = du_apparent(venv)
    code = code_bytes(proj)
    expected = base.get("Size", 0) + site + code
    return {
        "image": res["image"], "image_size": image.get("Size"),
        "env_image_size": env.get("Size"), "base_size": base.get("Size"),
        "env_layer_size": (env.get("Size") or 0) - (base.get("Size") or 0),
        "code_layer_size": (image.get("Size") or 0) - (env.get("Size") or 0),
        "site_packages_bytes": site, "venv_bytes": venv_total, "code_bytes": code,
        "expected": expected,
        "ratio": round(image.get("Size", 0) / expected, 4) if expected else None,
    }


# --------------------------------------------------------------------------- main


def cleanup(refs: list[str], ids: list[str]) -> list[str]:
    """docker rmi what this run created (tags first, then leftover ids); never the base."""
    errors = []
    tags = list(dict.fromkeys(r for r in refs if r))
    for ref in tags:
        proc = subprocess.run(["docker", "rmi", ref], capture_output=True, text=True)
        if proc.returncode != 0 and "No such image" not in proc.stderr:
            errors.append(f"docker rmi {ref}: {proc.stderr.strip()}")
    for image_id in dict.fromkeys(i for i in ids if i):
        if inspect(image_id) is None:
            continue
        proc = subprocess.run(["docker", "rmi", image_id], capture_output=True, text=True)
        if proc.returncode != 0 and "No such image" not in proc.stderr:
            errors.append(f"docker rmi {image_id}: {proc.stderr.strip()}")
    return errors


def warm_up(ctx: dict, el: Envlock, name: str, lock: Path, proj: Path) -> tuple[Path, dict]:
    """Fill the warm cache's wheels (a daemonless build without push, whose provisioning
    downloads what is missing: reported, not compared), learn the image IDs and warm the
    page cache for every builder alike."""
    warm = ctx["workdir"] / f"warm-cache-{name}"
    shutil.rmtree(warm / "oci", ignore_errors=True)  # built now: its IDs are this envlock's
    res = el.build(lock, proj, None, "cold", builder="oci", cache=warm)
    return warm, brief(res)


def run_env(ctx: dict, el: Envlock, name: str, rounds: int, attempt) -> dict:
    wd: Path = ctx["workdir"]
    venv = ensure_venv(wd, name, ctx["env"])
    proj = ensure_project(wd, name, ctx["env"])
    lock = wd / f"lock-{name}.yaml"
    out: dict = {"lock_s": round(el.lock(venv, proj, lock), 3),
                 "packages": len(lock_packages(lock)),
                 "site_packages_bytes": du_apparent(site_packages(venv))}
    warm = attempt(f"{name}: warm-up", warm_up, ctx, el, name, lock, proj)
    if not warm:
        return out
    warm_cache, out["warm_up"] = warm
    known = [out["warm_up"]["image_id"], out["warm_up"]["env_image_id"]]
    cold = attempt(f"{name}: a", section_cold, ctx, el, name, lock, proj, warm_cache, known,
                   rounds)
    if not cold:
        return out
    out["a"] = summarize_cold(cold)
    out["a"].update({k: cold[k] for k in ("wheels", "wheelhouse_bytes",
                                          "wheels_downloaded_for_plain", "dockerfile")})
    out["f"] = attempt(f"{name}: f", section_repro, ctx, el, name, lock, warm_cache, cold)
    out["b"] = attempt(f"{name}: b", section_noop, el, lock, proj, cold["samples"]["oci"][-1])
    out["c"] = attempt(f"{name}: c", section_code, ctx, el, name, venv, proj, cold)
    out["_last_docker"] = cold["samples"]["docker"][-1]
    out["_venv"], out["_proj"], out["_warm"] = venv, proj, warm_cache
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workdir", default="/var/tmp/envlock-bench-build", type=Path)
    ap.add_argument("--json", type=Path, help="also write the results as JSON here")
    ap.add_argument("--quick", action="store_true", help="skip the torch environment")
    ap.add_argument("--rounds", type=int, default=2,
                    help="cold-build rounds per environment (order rotates), default 2")
    ap.add_argument("--runs", type=int, default=20, help="runs for the registry growth (d)")
    ap.add_argument("--envlock", default=str(Path(sys.prefix) / "bin" / "envlock"),
                    help="envlock executable (default: next to this interpreter)")
    ap.add_argument("--keep-images", action="store_true", help="do not docker rmi at the end")
    ap.add_argument("--baseline-envlock", metavar="PATH",
                    help="another envlock (e.g. main's) whose daemonless cold build joins the "
                         "rotation of a, for before/after figures")
    ap.add_argument("--download-rounds", type=int, default=3,
                    help="rounds of g (parallel downloader vs pip download), default 3")
    ap.add_argument("--downloads-only", action="store_true",
                    help="run only g: no engine, registry or builds needed")
    ap.add_argument("--cuda", action="store_true",
                    help="run only the CUDA scenario: envlock capture of torch==2.13.0 with "
                         "its CUDA wheels from the index (needs 20 GB free; see bench_cuda.py)")
    ap.add_argument("--cuda-no-docker-build", action="store_true",
                    help="with --cuda: skip the docker build baseline")
    ap.add_argument("--cuda-keep-venv", action="store_true",
                    help="with --cuda: keep the 5 GB CUDA venv for the next run")
    args = ap.parse_args()
    t_start = time.perf_counter()
    wd: Path = args.workdir
    wd.mkdir(parents=True, exist_ok=True)
    if args.downloads_only:
        return downloads_only(wd, args)

    infra = infra_env()
    env = dict(os.environ)
    env.update(infra)
    env.setdefault("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    for key in ("ENVLOCK_REGISTRY", "ENVLOCK_BASE_IMAGE", "ENVLOCK_BUILDER", "ENVLOCK_DEBUG",
                "SOURCE_DATE_EPOCH"):
        env.pop(key, None)
    registry = infra["ENVLOCK_TEST_REGISTRY"]
    base = infra["ENVLOCK_TEST_BASE_IMAGE"]
    stamp = time.strftime("%Y%m%d%H%M%S")
    store_root = (benchlib.REGISTRY_WORKDIR or wd) / "open" / "data" / "docker" / "registry" / "v2"
    ctx = {"workdir": wd, "env": env, "registry": registry, "base": base, "stamp": stamp,
           "store": BlobStore(store_root), "cleanup": [], "ids": [],
           "baseline": args.baseline_envlock}
    if args.cuda:
        return cuda_only(ctx, args, t_start)
    el = Envlock(args.envlock, env, base)
    envlock_version = run([args.envlock, "--version"], env=env)[1].stdout.strip()
    docker_version = run(["docker", "version", "--format", "{{.Server.Version}}"],
                         env=env)[1].stdout.strip()
    results: dict = {"envlock_version": envlock_version, "docker": docker_version,
                     "python": platform.python_version(), "cpus": os.cpu_count(),
                     "quick": args.quick, "rounds": args.rounds, "registry": registry,
                     "base": base, "stamp": stamp, "load_average_start": load_average(),
                     "baseline_envlock": args.baseline_envlock,
                     "errors": {}, "envs": {}}

    def attempt(name: str, fn, *a):
        try:
            return fn(*a)
        except Exception as exc:  # noqa: BLE001 - a benchmark reports and goes on
            log(f"section {name} failed: {exc}")
            results["errors"][name] = f"{type(exc).__name__}: {exc}"
            return None

    names = ["small"] if args.quick else ["torch", "small"]
    for name in names:
        results["envs"][name] = run_env(ctx, el, name, args.rounds, attempt)
    results["g"] = attempt("g", section_downloads,
                           {"workdir": wd, "env": env, "stamp": stamp}, args.download_rounds)
    main_env = results["envs"][names[0]]
    if main_env.get("_last_docker"):
        results["e"] = attempt("e", section_e, ctx, main_env["_last_docker"],
                               main_env["_venv"], main_env["_proj"])
    small = results["envs"]["small"]
    if small.get("_warm"):
        results["d"] = attempt("d", section_d, ctx, el, small["_venv"], small["_warm"],
                               args.runs)
    results["load_average_end"] = load_average()
    if not args.keep_images:
        log("cleaning up images")
        results["cleanup_errors"] = cleanup(ctx["cleanup"], ctx["ids"])
    # this run's caches (each holds its environment layer) and scratch directories
    for scratch in [*(wd / "caches").glob(f"{stamp}-*"), *wd.glob(f"elsewhere-{stamp}-*"),
                    *wd.glob(f"tmp-{stamp}-*")]:
        shutil.rmtree(scratch, ignore_errors=True)
    for data in results["envs"].values():
        for key in [k for k in data if k.startswith("_")]:
            del data[key]
    results["total_s"] = round(time.perf_counter() - t_start, 1)
    results["targets"] = report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
        print(f"JSON written to {args.json}")
    return 0 if not results["errors"] else 1


def cuda_only(ctx: dict, args: argparse.Namespace, t_start: float) -> int:
    """The CUDA scenario alone (``bench_cuda``): its phase table and targets."""
    from bench_cuda import report_cuda, section_cuda

    c = section_cuda(ctx, args.envlock, docker_build=not args.cuda_no_docker_build,
                     keep_venv=args.cuda_keep_venv)
    envlock_version = run([args.envlock, "--version"], env=ctx["env"])[1].stdout.strip()
    print(f"\nenvlock capture, CUDA scenario ({envlock_version}, {os.cpu_count()} CPUs, "
          f"load average {load_average()} at the end)")
    rows = report_cuda(c)
    print(f"\n{'':9}{'metric':<56} {'value':>12}  {'target':<15}")
    for name, value, target, ok in rows:
        verdict = "INFO" if ok is None else ("PASS" if ok else "FAIL")
        print(f"  [{verdict}] {name:<56} {value:>12}  {target:<15}")
    total = time.perf_counter() - t_start
    print(f"\ntotal {total:.0f}s")
    if args.json:
        args.json.write_text(json.dumps({"cuda": c, "total_s": round(total, 1),
                                         "envlock_version": envlock_version},
                                        indent=2, default=str) + "\n")
        print(f"JSON written to {args.json}")
    return 1 if c.get("error") or c["cleanup"]["errors"] else 0


def downloads_only(wd: Path, args: argparse.Namespace) -> int:
    """Section g alone: the parallel downloader against ``pip download`` (no engine)."""
    d = section_downloads({"workdir": wd, "env": dict(os.environ),
                           "stamp": time.strftime("%Y%m%d%H%M%S")}, args.download_rounds)
    report_downloads(d)
    if args.json:
        args.json.write_text(json.dumps({"g": d}, indent=2) + "\n")
        print(f"JSON written to {args.json}")
    return 0


def _mb(n: int | None) -> str:
    if n is None:
        return "n/a"
    return f"{n / 1e6:.1f} MB" if abs(n) >= 100_000 else f"{n / 1e3:.1f} kB"


def _spans(t: dict) -> str:
    return ", ".join(f"{k} {v:.2f}" for k, v in t.items())


def report_env(name: str, e: dict, rows: list) -> None:
    print(f"\n== {name}: {e['packages']} packages, site-packages "
          f"{_mb(e['site_packages_bytes'])}; lock {e['lock_s']:.2f}s")
    w = e.get("warm_up")
    if w:
        print(f"warm-up (fills the warm wheel cache): {w['wall_s']:.2f}s; "
              f"{_spans(w['timings'])}")
    a = e.get("a")
    if a:
        for builder in [b for b in ("oci", "docker", "oci-disk", "oci-base") if b in a]:
            x = a[builder]
            print(f"a  {builder:<8} cold: wall {x['wall_s']:.2f}s, excl. push "
                  f"{x['excl_push_s']:.2f}s, excl. push+provision "
                  f"{x['excl_push_provision_s']:.2f}s (medians of {len(x['rounds'])}); "
                  f"spans {_spans(x['timings_median'])}")
        p = a["plain"]
        print(f"a  plain    docker build --no-cache: {p['wall_s']:.2f}s "
              f"({[r['wall_s'] for r in p['rounds']]}; {a['wheels']} wheels, "
              f"{_mb(a['wheelhouse_bytes'])}; image {_mb(p['image_size'])}); then docker "
              f"push {p['push_s']:.2f}s")
        print(f"   loads: oci {[r['load_average'][0] for r in a['oci']['rounds']]}, docker "
              f"{[r['load_average'][0] for r in a['docker']['rounds']]}, plain "
              f"{[r['load_average'][0] for r in p['rounds']]}")
        rows.append((f"{name}: plain docker build / daemonless (excl. push)",
                     f"{a['speedup_plain_over_oci']:.2f}x",
                     f">= {TARGETS['cold_speedup']:.1f}x",
                     a["speedup_plain_over_oci"] >= TARGETS["cold_speedup"]))
        rows.append((f"{name}:   same, excl. provision too",
                     f"{a['speedup_plain_over_oci_excl_provision']:.2f}x", "(info)", None))
        rows.append((f"{name}:   daemonless staged on disk (ENVLOCK_STAGING_DIR=$TMPDIR)",
                     f"{a['speedup_plain_over_oci_disk']:.2f}x", "(info)", None))
        rows.append((f"{name}: plain docker build / docker builder",
                     f"{a['speedup_plain_over_docker']:.2f}x", "(info)", None))
        rows.append((f"{name}: docker builder / daemonless",
                     f"{a['speedup_docker_over_oci']:.2f}x", "(info)", None))
        rows.append((f"{name}: (docker build + push) / daemonless with push",
                     f"{a['speedup_plain_with_push_over_oci_with_push']:.2f}x", "(info)", None))
        if "speedup_oci_over_baseline" in a:
            rows.append((f"{name}: baseline daemonless / this daemonless",
                         f"{a['speedup_oci_over_baseline']:.2f}x", "(info)", None))
    f = e.get("f")
    if f:
        print(f"f  {len(f['builds'])} cold builds (both builders; last from "
              f"{f['elsewhere']['cwd']}, umask 077, own TMPDIR and cache): env image id "
              f"{'SAME' if f['same_env_image_id'] else 'DIFFERENT'}, env registry digest "
              f"{'SAME' if f['same_env_registry_digest'] else 'DIFFERENT'}, code registry "
              f"digest {'SAME' if f['same_code_registry_digest'] else 'DIFFERENT'} "
              f"({f['builds'][0]['env_image_id'][:19]}…, "
              f"{(f['builds'][0]['env_registry_digest'] or '')[:19]}…)")
        rows.append((f"{name}: same env image id + registry digest",
                     "same" if f["same_env_image_id"] and f["same_env_registry_digest"]
                     else "different", "same",
                     f["same_env_image_id"] and f["same_env_registry_digest"]))
    b = e.get("b")
    if b:
        print(f"b  no-op rebuild: {b['wall_s']:.2f}s wall; push {b['push_stats']}; "
              f"env_reused={b['env_reused']} code_reused={b['code_reused']}; "
              f"spans {_spans(b['timings'])}")
        pushed = b["push_stats"].get("bytes_pushed")
        rows.append((f"{name}: no-op rebuild bytes pushed", f"{pushed}", "0",
                     pushed == TARGETS["noop_bytes"]))
    c = e.get("c")
    if c:
        for builder in ("oci", "docker"):
            x = c.get(builder)
            if not x:
                continue
            print(f"c  code-only ({builder}): wall {x['wall_s']:.2f}s, spans "
                  f"{x['spans_s']:.3f}s ({_spans(x['timings'])}); push {x['push_stats']} "
                  f"(code layer {x['code_layer_bytes']} B); env unchanged "
                  f"{x['env_unchanged']}")
            rows.append((f"{name}: code-only rebuild ({builder}), spans",
                         f"{x['spans_s']:.2f}s", f"< {TARGETS['code_s']:.0f}s",
                         x["spans_s"] < TARGETS["code_s"]))
            rows.append((f"{name}:   whole command wall time", f"{x['wall_s']:.2f}s",
                         "(info)", None))
            rows.append((f"{name}:   layers pushed", f"{x['push_stats'].get('layers_pushed')}",
                         "== 1", x["push_stats"].get("layers_pushed") ==
                         TARGETS["code_layers"]))


def report(r: dict) -> dict:
    print()
    print(f"envlock build benchmark ({r['envlock_version']}, docker {r['docker']}, "
          f"{r['cpus']} CPUs, {r['rounds']} rounds{', --quick' if r['quick'] else ''}); "
          f"base {r['base']}; load average {r['load_average_start']} at the start, "
          f"{r['load_average_end']} at the end")
    rows: list = []
    for name, e in r["envs"].items():
        report_env(name, e, rows)
    print()
    if r.get("g"):
        report_downloads(r["g"])
    d = r.get("d")
    if d:
        print(f"d  {d['runs']} runs on one env: {d['total_s']:.1f}s (build mean "
              f"{sum(d['build_wall_s']) / len(d['build_wall_s']):.2f}s, lock mean "
              f"{d['lock_s_mean']:.2f}s); layers pushed {d['layers_pushed']}")
        print(f"   registry blob dir +{_mb(d['growth_bytes'])} (du -sb; blob files "
              f"+{_mb(d['growth_data_bytes'])}; {d['blobs_added']} blobs; "
              f"{d['blobs_added_ours']} ours = {_mb(d['bytes_added_ours'])}, "
              f"{d['blobs_added_other']} from others); expected env layer "
              f"{_mb(d['env_layer_bytes'])} (0 if already stored: "
              f"{d['env_blobs_in_registry_before']} of its 3 blobs were) + {d['runs']} code layers "
              f"{_mb(sum(d['code_layer_bytes']))} = {_mb(d['expected_bytes'])} "
              f"({_mb(d['expected_bytes_with_configs_manifests'])} with configs+manifests; "
              f"{d['expected_blobs']} blobs)")
        rows.append(("d registry growth (blob files) / expected new blobs",
                     f"{d['ratio_data']:.3f}x", "~1.0x (info)", None))
        rows.append(("d blobs added (ours/expected)",
                     f"{d['blobs_added_ours']}/{d['expected_blobs']}", "(info)", None))
    e = r.get("e")
    if e:
        print(f"e  image {_mb(e['image_size'])} = base {_mb(e['base_size'])} + env layer "
              f"{_mb(e['env_layer_size'])} + code layer {e['code_layer_size']} B; expected "
              f"base + site-packages {_mb(e['site_packages_bytes'])} + code {e['code_bytes']}"
              f" B = {_mb(e['expected'])} (whole venv {_mb(e['venv_bytes'])})")
        rows.append(("e image size / (base + site-packages + code)", f"{e['ratio']:.3f}x",
                      f"<= {TARGETS['size_ratio']:.2f}x", e["ratio"] <= TARGETS["size_ratio"]))
    print()
    print(f"{'':9}{'metric':<56} {'value':>12}  {'target':<15}")
    for name, value, target, ok in rows:
        verdict = "INFO" if ok is None else ("PASS" if ok else "FAIL")
        print(f"  [{verdict}] {name:<56} {value:>12}  {target:<15}")
    for name, err in r["errors"].items():
        print(f"\nERROR in {name}: {err}")
    if r.get("cleanup_errors"):
        print("\ncleanup: " + "; ".join(r["cleanup_errors"]))
    print(f"\ntotal {r['total_s']:.0f}s")
    return {name: {"value": value, "target": target, "pass": ok}
            for name, value, target, ok in rows}


if __name__ == "__main__":
    sys.exit(main())
