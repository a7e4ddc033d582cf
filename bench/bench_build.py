#!/usr/bin/env python3
"""Benchmark ``envlock build``: cold builds, no-op and code-only rebuilds, registry growth,
image size and environment-layer reproducibility.

Not a test: run it by hand, from the repository root, with the test infrastructure
(``scripts/infra.sh`` and ``tests/registry.py``, started by ``benchlib.infra_env()``)::

    .venv/bin/python bench/bench_build.py [--quick] [--json FILE] [--workdir DIR]

Sections (each prints its figures and a PASS/FAIL against its target):

a. cold build of a PyTorch-CPU environment (torch + numpy and what torch needs) with
   ``envlock build --no-cache``, against a plain ``docker build --no-cache`` of a
   Dockerfile (``FROM`` the same base, ``COPY`` the same wheels, ``pip install
   --no-index``). envlock's provisioning (wheel download) is excluded from its side:
   base + env_layer + verify + code_layer from ``result.timings``, with and without
   verify. Target <= 1.0x.
b. rebuild with nothing changed (same lock, same run id): whole-command wall time
   (target <= 2 s) and bytes pushed (target 0).
c. code-only change (edit a file, re-lock, new run id): wall time against the cold
   build (target <= 10 %), only the code layer pushed (layers_pushed == 1).
d. registry growth for N runs (default 20) sharing one small environment (six) with
   different code: registry blob bytes and blob count before/after, against one
   environment layer + N code layers as the registry's manifests list them.
e. image size of the code image against base + installed site-packages + code
   (target <= 1.05x).
f. (stretch) rebuild the same torch lock with ``--no-cache``: is the environment layer
   (its diff id and its pushed digest) the same as the first build's?

``--quick`` skips a and f (the torch parts) and runs b, c and e on the small
environment. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from benchlib import BenchError, infra_env, log, run

REPO = Path(__file__).resolve().parent.parent
#: Bump when the venv recipes change: invalidates the cached venvs.
RECIPE = 1
SYSTEM_PYTHON = "/usr/bin/python3"  # must match the base image's Python (3.11.2)
ENVS = {
    "torch": ("torch==2.13.0", "numpy"),
    "small": ("six",),
}
TARGETS = {
    "cold_ratio": 1.0,      # envlock (excl. provisioning) / plain docker build
    "noop_s": 2.0,          # nothing changed: whole `envlock build` wall time
    "noop_bytes": 0,        # ... and bytes pushed
    "code_frac": 0.10,      # code-only change / cold build wall time
    "code_layers": 1,       # ... layers pushed
    "size_ratio": 1.05,     # image size / (base + site-packages + code)
}
MANIFEST_TYPES = ("application/vnd.docker.distribution.manifest.v2+json, "
                  "application/vnd.oci.image.manifest.v1+json")


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


def top_layer(ref: str) -> str | None:
    info = inspect(ref)
    return info["RootFS"]["Layers"][-1] if info else None


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


# --------------------------------------------------------------------------- envlock


class Envlock:
    def __init__(self, exe: str, env: dict, base: str) -> None:
        self.exe, self.env, self.base = exe, env, base

    def lock(self, venv: Path, proj: Path, out: Path) -> float:
        dt, _ = run([self.exe, "lock", "--python", str(venv / "bin" / "python"), "-o", str(out),
                     "--command", "python train.py"], cwd=proj, env=self.env)
        return dt

    def build(self, lock: Path, proj: Path, repo: str, run_id: str,
              no_cache: bool = False) -> dict:
        cmd = [self.exe, "build", str(lock), "--base-image", self.base, "--registry", repo,
               "--run-id", run_id, "--json"]
        if no_cache:
            cmd.append("--no-cache")
        log(f"envlock build {run_id}{' --no-cache' if no_cache else ''} -> {repo}")
        dt, proc = run(cmd, cwd=proj, env=self.env, check=False)
        try:
            doc = json.loads(proc.stdout)
        except json.JSONDecodeError:
            doc = None
        if proc.returncode != 0 or not doc or not doc.get("ok"):
            raise BenchError(f"exit {proc.returncode}: (cd {proj} && {shlex.join(cmd)})\n"
                             f"stdout: {proc.stdout.strip()[-2000:]}\n"
                             f"stderr: {proc.stderr.strip()[-3000:]}")
        res = doc["result"]
        res["_wall_s"] = round(dt, 3)
        res["_stderr"] = proc.stderr
        log(f"  {dt:.2f}s wall; timings {res.get('timings')}; push {res.get('push_stats')}; "
            f"env_reused={res.get('env_reused')} code_reused={res.get('code_reused')}")
        return res


def brief(res: dict) -> dict:
    """The parts of a build result worth keeping in the JSON."""
    keys = ("image", "image_id", "pinned", "env_image", "env_image_id", "env_reused",
            "code_reused", "push_stats", "timings", "provisioned")
    out = {k: res.get(k) for k in keys}
    out["wall_s"] = res["_wall_s"]
    warnings = [ln for ln in res.get("_stderr", "").splitlines()
                if "warn" in ln.lower() or "error" in ln.lower()]
    if warnings:
        out["stderr_warnings"] = warnings[:20]
    return out


def lock_packages(lock: Path) -> list[dict]:
    import yaml  # envlock depends on it, so it is in the dev venv

    return yaml.safe_load(lock.read_text())["packages"]


# --------------------------------------------------------------------------- sections


def section_a(ctx: dict, cold: dict, lock: Path) -> dict:
    """Plain `docker build --no-cache` from the same wheels and base, against envlock."""
    wd: Path = ctx["workdir"]
    plain = wd / "plain"
    shutil.rmtree(plain, ignore_errors=True)
    wheelhouse = plain / "wheelhouse"
    wheelhouse.mkdir(parents=True)
    cache = Path(ctx["env"]["ENVLOCK_CACHE"]) / "wheels"
    pkgs = lock_packages(lock)
    missing = []
    for p in pkgs:
        key = (p.get("files_digest") or "nodigest").split(":")[-1][:16]
        wheels = sorted((cache / p["name"] / p["version"] / key).glob("*.whl"))
        if wheels:
            shutil.copy2(wheels[0], wheelhouse / wheels[0].name)
        else:
            missing.append(f"{p['name']}=={p['version']}")
    if missing:  # not cached by envlock: download the same pins
        log(f"wheels not in envlock's cache, downloading: {missing}")
        run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary",
             ":all:", "-d", str(wheelhouse), *missing], env=ctx["env"])
    (plain / "requirements.txt").write_text(
        "".join(f"{p['name']}=={p['version']}\n" for p in pkgs))
    shutil.copy2(plain / "requirements.txt", wheelhouse / "requirements.txt")
    (plain / "Dockerfile").write_text(
        f"FROM {ctx['base']}\n"
        "COPY wheelhouse/ wheelhouse/\n"
        "RUN python3 -m venv /opt/venv && /opt/venv/bin/pip install --no-index "
        "--find-links wheelhouse -r wheelhouse/requirements.txt\n")
    tag = f"envlock-bench-plain:{ctx['stamp']}"
    ctx["cleanup"].append(tag)
    log("plain docker build --no-cache ...")
    env = dict(ctx["env"], DOCKER_BUILDKIT="0")
    plain_s, _ = run(["docker", "build", "--no-cache", "-q", "-t", tag, str(plain)], env=env)
    log(f"  {plain_s:.2f}s")
    t = cold["timings"]
    with_verify = sum(t.get(k, 0.0) for k in ("base", "env_layer", "verify", "code_layer"))
    no_verify = with_verify - t.get("verify", 0.0)
    plain_info = inspect(tag) or {}
    return {
        "wheels": len(list(wheelhouse.glob("*.whl"))),
        "wheelhouse_bytes": du_apparent(wheelhouse),
        "wheels_downloaded_for_plain": missing,
        "plain_build_s": round(plain_s, 3),
        "plain_image_size": plain_info.get("Size"),
        "envlock_excl_provision_s": round(with_verify, 3),
        "envlock_excl_provision_no_verify_s": round(no_verify, 3),
        "envlock_cold_wall_s": cold["_wall_s"],
        "envlock_timings": t,
        "ratio": round(with_verify / plain_s, 3),
        "ratio_no_verify": round(no_verify / plain_s, 3),
        "dockerfile": (plain / "Dockerfile").read_text(),
    }


def section_d(ctx: dict, el: Envlock, venv: Path, runs: int) -> dict:
    wd: Path = ctx["workdir"]
    proj = ensure_project(wd, "growth", ctx["env"])
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
        res = el.build(lock, proj, repo, f"g{i:02d}")
        ctx["cleanup"] += [res["image"], res["env_image"]]
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
    expected = env_layer["size"] + sum(code_layers)
    expected_all = expected + env_m["config"]["size"] + env_m["_size"] + code_meta
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
        "expected_blobs": 3 + 3 * runs,  # layer + config + manifest, per image
        "ratio": round(growth / expected, 4) if expected else None,
        "ratio_data": round((sum(after.values()) - sum(before.values())) / expected, 4)
        if expected else None,
        "ratio_ours": round(ours_bytes / expected, 4) if expected else None,
    }


def section_e(ctx: dict, res: dict, venv: Path, proj: Path) -> dict:
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


def section_f(ctx: dict, el: Envlock, first: dict, lock: Path, proj: Path,
              repo: str) -> dict:
    first_env = inspect(first["env_image_id"]) or {}
    first_layer = first_env["RootFS"]["Layers"][-1] if first_env else None
    first_code_layers = (inspect(first["image_id"]) or {}).get("RootFS", {}).get("Layers", [])
    first_pushed = manifest(first["env_image"])["layers"][-1]
    second = el.build(lock, proj, repo, "cold2", no_cache=True)
    ctx["cleanup"] += [second["image"], second["env_image"]]
    second_env = inspect(second["env_image_id"]) or {}
    second_layer = second_env["RootFS"]["Layers"][-1] if second_env else None
    second_code_layers = (inspect(second["image_id"]) or {}).get("RootFS", {}).get("Layers", [])
    second_pushed = manifest(second["env_image"])["layers"][-1]
    return {
        "first_env_image_id": first["env_image_id"], "second_env_image_id": second["env_image_id"],
        "first_env_diff_id": first_layer, "second_env_diff_id": second_layer,
        "first_code_image_env_layer": first_code_layers[-2] if len(first_code_layers) > 1
        else None,
        "second_code_image_env_layer": second_code_layers[-2] if len(second_code_layers) > 1
        else None,
        "first_pushed_digest": first_pushed["digest"], "second_pushed_digest":
            second_pushed["digest"],
        "first_pushed_size": first_pushed["size"], "second_pushed_size": second_pushed["size"],
        "same_diff_id": first_layer == second_layer,
        "same_pushed_digest": first_pushed["digest"] == second_pushed["digest"],
        "same_env_image_id": first["env_image_id"] == second["env_image_id"],
        "second_build": brief(second),
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workdir", default="/var/tmp/envlock-bench-build", type=Path)
    ap.add_argument("--json", type=Path, help="also write the results as JSON here")
    ap.add_argument("--quick", action="store_true",
                    help="skip a and f (the torch parts); b, c, e use the small environment")
    ap.add_argument("--runs", type=int, default=20, help="runs for the registry growth (d)")
    ap.add_argument("--envlock", default=str(Path(sys.prefix) / "bin" / "envlock"),
                    help="envlock executable (default: next to this interpreter)")
    ap.add_argument("--keep-images", action="store_true", help="do not docker rmi at the end")
    args = ap.parse_args()
    t_start = time.perf_counter()
    wd: Path = args.workdir
    wd.mkdir(parents=True, exist_ok=True)

    infra = infra_env()
    env = dict(os.environ)
    env.update(infra)
    env["ENVLOCK_CACHE"] = str(wd / "cache")
    env.setdefault("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    env.pop("ENVLOCK_REGISTRY", None)
    env.pop("ENVLOCK_BASE_IMAGE", None)
    registry = infra["ENVLOCK_TEST_REGISTRY"]
    base = infra["ENVLOCK_TEST_BASE_IMAGE"]
    infra_dir = Path(os.environ.get("ENVLOCK_INFRA_DIR", "/var/tmp/envlock-infra"))
    stamp = time.strftime("%Y%m%d%H%M%S")
    ctx = {"workdir": wd, "env": env, "registry": registry, "base": base, "stamp": stamp,
           "store": BlobStore(infra_dir / "registry-open" / "docker" / "registry" / "v2"),
           "cleanup": []}
    el = Envlock(args.envlock, env, base)
    envlock_version = run([args.envlock, "--version"], env=env)[1].stdout.strip()
    docker_version = run(["docker", "version", "--format", "{{.Server.Version}}"],
                         env=env)[1].stdout.strip()

    results: dict = {"envlock_version": envlock_version, "docker": docker_version,
                     "python": platform.python_version(), "cpus": os.cpu_count(),
                     "quick": args.quick, "registry": registry, "base": base, "stamp": stamp,
                     "errors": {}}
    ids: list[str] = []

    def attempt(name: str, fn, *a):
        try:
            return fn(*a)
        except Exception as exc:  # noqa: BLE001 - a benchmark reports and goes on
            log(f"section {name} failed: {exc}")
            results["errors"][name] = f"{type(exc).__name__}: {exc}"
            return None

    t_setup = time.perf_counter()
    main_name = "small" if args.quick else "torch"
    venvs = {n: ensure_venv(wd, n, env) for n in dict.fromkeys([main_name, "small"])}
    proj = ensure_project(wd, "main", env)
    results["setup_s"] = round(time.perf_counter() - t_setup, 2)
    main_venv = venvs[main_name]
    repo = f"{registry}/envlock-bench/build-{stamp}"
    lock1 = wd / "lock-main.yaml"
    results["lock_s"] = round(el.lock(main_venv, proj, lock1), 3)
    results["main_env"] = {"name": main_name, "packages": len(lock_packages(lock1)),
                           "site_packages_bytes": du_apparent(site_packages(main_venv))}

    # cold build (a's envlock side; the reference for c)
    cold = attempt("cold", el.build, lock1, proj, repo, "cold", True)
    if cold:
        ctx["cleanup"] += [cold["image"], cold["env_image"]]
        ids += [cold["image_id"], cold["env_image_id"]]
        results["cold"] = brief(cold)
        if not args.quick:
            results["a"] = attempt("a", section_a, ctx, cold, lock1)
        # b: nothing changed
        noop = attempt("b", el.build, lock1, proj, repo, "cold")
        if noop:
            results["b"] = brief(noop)
        # c: code-only change
        (proj / "train.py").write_text(TRAIN + f"# tweak {stamp}\n")
        lock2 = wd / "lock-main-code.yaml"
        el.lock(main_venv, proj, lock2)
        code = attempt("c", el.build, lock2, proj, repo, "code1")
        if code:
            ctx["cleanup"] += [code["image"]]
            ids.append(code["image_id"])
            results["c"] = brief(code)
            results["c"]["fraction_of_cold"] = round(code["_wall_s"] / cold["_wall_s"], 4)
        (proj / "train.py").write_text(TRAIN)
        # e: image size (the cold image; code as committed)
        results["e"] = attempt("e", section_e, ctx, cold, main_venv, proj)
        # f: env layer reproducibility
        if not args.quick:
            results["f"] = attempt("f", section_f, ctx, el, cold, lock1, proj, repo)
    # d: registry growth
    results["d"] = attempt("d", section_d, ctx, el, venvs["small"], args.runs)

    if not args.keep_images:
        log("cleaning up images")
        results["cleanup_errors"] = cleanup(ctx["cleanup"], ids)
    results["total_s"] = round(time.perf_counter() - t_start, 1)
    results["targets"] = report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
        print(f"JSON written to {args.json}")
    return 0 if not results["errors"] else 1


def _mb(n: int | None) -> str:
    return "n/a" if n is None else f"{n / 1e6:.1f} MB"


def report(r: dict) -> dict:
    print()
    print(f"envlock build benchmark ({r['envlock_version']}, docker {r['docker']}, "
          f"{r['cpus']} CPUs{', --quick' if r['quick'] else ''})")
    me = r["main_env"]
    print(f"main environment: {me['name']} ({me['packages']} packages, site-packages "
          f"{_mb(me['site_packages_bytes'])}); base {r['base']}")
    cold = r.get("cold")
    if cold:
        print(f"cold  envlock build --no-cache: {cold['wall_s']:.2f}s wall; timings "
              f"{cold['timings']}; push {cold['push_stats']}")
    a = r.get("a")
    if a:
        print(f"a     plain docker build --no-cache: {a['plain_build_s']:.2f}s ({a['wheels']} "
              f"wheels, {_mb(a['wheelhouse_bytes'])}); envlock excl. provisioning "
              f"{a['envlock_excl_provision_s']:.2f}s, without verify "
              f"{a['envlock_excl_provision_no_verify_s']:.2f}s; image {_mb(a['plain_image_size'])}"
              f" (plain)")
    b = r.get("b")
    if b:
        print(f"b     no-op rebuild: {b['wall_s']:.2f}s wall; push {b['push_stats']}; env_reused="
              f"{b['env_reused']} code_reused={b['code_reused']}; timings {b['timings']}")
    c = r.get("c")
    if c:
        print(f"c     code-only change: {c['wall_s']:.2f}s wall "
              f"({c['fraction_of_cold'] * 100:.1f}% of cold); push {c['push_stats']}; "
              f"env_reused={c['env_reused']}; timings {c['timings']}")
    d = r.get("d")
    if d:
        print(f"d     {d['runs']} runs on one env: {d['total_s']:.1f}s (build mean "
              f"{sum(d['build_wall_s']) / len(d['build_wall_s']):.2f}s, lock mean "
              f"{d['lock_s_mean']:.2f}s); layers pushed {d['layers_pushed']}")
        print(f"      registry blob dir +{_mb(d['growth_bytes'])} (du -sb; blob files "
              f"+{_mb(d['growth_data_bytes'])}; {d['blobs_added']} blobs; "
              f"{d['blobs_added_ours']} ours = {_mb(d['bytes_added_ours'])}, "
              f"{d['blobs_added_other']} from others); expected env layer "
              f"{_mb(d['env_layer_bytes'])} + {d['runs']} code layers "
              f"{_mb(sum(d['code_layer_bytes']))} = {_mb(d['expected_bytes'])} "
              f"({_mb(d['expected_bytes_with_configs_manifests'])} with configs+manifests; "
              f"{d['expected_blobs']} blobs)")
    e = r.get("e")
    if e:
        print(f"e     image {_mb(e['image_size'])} = base {_mb(e['base_size'])} + env layer "
              f"{_mb(e['env_layer_size'])} + code layer {e['code_layer_size']} B; expected base + "
              f"site-packages {_mb(e['site_packages_bytes'])} + code {e['code_bytes']} B = "
              f"{_mb(e['expected'])} (whole venv {_mb(e['venv_bytes'])})")
    f = r.get("f")
    if f:
        print(f"f     --no-cache rebuild: env layer diff id "
              f"{'SAME' if f['same_diff_id'] else 'DIFFERENT'} ({f['first_env_diff_id'][:19]} vs "
              f"{f['second_env_diff_id'][:19]}); pushed digest "
              f"{'SAME' if f['same_pushed_digest'] else 'DIFFERENT'}; env image id "
              f"{'SAME' if f['same_env_image_id'] else 'DIFFERENT'}; second build "
              f"{f['second_build']['wall_s']:.2f}s, push {f['second_build']['push_stats']}")
    rows = []
    if a:
        rows.append(("a cold vs plain docker build (excl. provision)",
                     f"{a['ratio']:.2f}x", f"<= {TARGETS['cold_ratio']:.1f}x",
                     a["ratio"] <= TARGETS["cold_ratio"]))
        rows.append(("a   same, without verify", f"{a['ratio_no_verify']:.2f}x",
                     f"<= {TARGETS['cold_ratio']:.1f}x",
                     a["ratio_no_verify"] <= TARGETS["cold_ratio"]))
    if b:
        rows.append(("b no-op rebuild wall time", f"{b['wall_s']:.2f}s",
                     f"<= {TARGETS['noop_s']:.0f}s", b["wall_s"] <= TARGETS["noop_s"]))
        pushed = b["push_stats"].get("bytes_pushed")
        rows.append(("b no-op rebuild bytes pushed", f"{pushed}", "0",
                     pushed == TARGETS["noop_bytes"]))
    if c:
        rows.append(("c code-only change / cold wall", f"{c['fraction_of_cold'] * 100:.1f}%",
                     f"<= {TARGETS['code_frac'] * 100:.0f}%",
                     c["fraction_of_cold"] <= TARGETS["code_frac"]))
        lp = c["push_stats"].get("layers_pushed")
        rows.append(("c code-only change layers pushed", f"{lp}", "== 1",
                     lp == TARGETS["code_layers"]))
    if d:
        rows.append((f"d registry growth / (env + {d['runs']} code layers)",
                     f"{d['ratio']:.3f}x", "~1.0x (info)", None))
        rows.append(("d   blob files only (no dirs)", f"{d['ratio_data']:.3f}x",
                     "~1.0x (info)", None))
        rows.append(("d   counting only this run's blobs", f"{d['ratio_ours']:.3f}x",
                     "~1.0x (info)", None))
        rows.append(("d blobs added (ours/expected)",
                     f"{d['blobs_added_ours']}/{d['expected_blobs']}", "(info)", None))
    if e:
        rows.append(("e image size / (base + site-packages + code)", f"{e['ratio']:.3f}x",
                     f"<= {TARGETS['size_ratio']:.2f}x", e["ratio"] <= TARGETS["size_ratio"]))
    if f:
        rows.append(("f env layer reproducible across --no-cache",
                     "same" if f["same_diff_id"] else "different", "same (stretch)",
                     f["same_diff_id"]))
        rows.append(("f   env image id and pushed digest too",
                     "same" if f["same_env_image_id"] and f["same_pushed_digest"]
                     else "different", "same (stretch)",
                     f["same_env_image_id"] and f["same_pushed_digest"]))
    print()
    print(f"{'':7}{'metric':<50} {'value':>12}  {'target':<15}")
    for name, value, target, ok in rows:
        verdict = "INFO" if ok is None else ("PASS" if ok else "FAIL")
        print(f"  [{verdict}] {name:<50} {value:>12}  {target:<15}")
    for name, err in r["errors"].items():
        print(f"\nERROR in {name}: {err}")
    if r.get("cleanup_errors"):
        print("\ncleanup: " + "; ".join(r["cleanup_errors"]))
    print(f"\ntotal {r['total_s']:.0f}s (setup {r['setup_s']:.0f}s)")
    return {name: {"value": value, "target": target, "pass": ok}
            for name, value, target, ok in rows}


if __name__ == "__main__":
    sys.exit(main())
