"""The CUDA scenario of ``bench_build.py --cuda`` (issue #25): ``envlock capture`` of a
CUDA PyTorch environment (``torch==2.13.0``'s Linux wheel and its ``nvidia-*`` CUDA
wheels, about 5 GB installed), downloading from the package index.

The machine's pip configuration (a local wheel folder serving a CPU build of the same
torch version) is bypassed for the venv *and* for every envlock command, as
``../shared/TEST-ENVIRONMENT.md`` shows: ``env -u PIP_FIND_LINKS PIP_CONFIG_FILE=/dev/null``.

1. a venv of ``/usr/bin/python3`` with the CUDA torch, MLflow and its SQLite store
   (timed: pip's own serial download + install, for reference), and a git project whose
   ``train.py`` imports torch and logs a tiny MLflow run;
2. cold capture: a fresh ``$ENVLOCK_CACHE``, a new repository in the bench's registry;
   the phase table from the capture's own ``timings`` (``buildsummary`` words) and its
   summary line, wall time, capture minus download (target: cold <= 120 s, or capture
   minus download <= 60 s when the network alone is slower);
3. code-only change: ``train.py`` edited and committed, trained again, captured again
   with the same cache (target <= 3 s);
4. a second project (its own git repository, MLflow store and registry repository) on the
   same venv, with its own ``$ENVLOCK_CACHE`` holding only the first cache's ``wheels/``
   (hard links): its environment layer is built again from the shared wheels (target: 0
   bytes downloaded). (The 2026-12-06 run pushed it to the first project's repository,
   where the environment image was found and reused: 0 bytes downloaded, but the wheel
   cache was not read.)
5. optional ``docker build`` baseline of the same wheels (skipped when the disk is short);
6. clean-up: the venv, projects, caches, wheelhouse, the registry's blobs and the images
   loaded into the engine are deleted and the free space checked again.

The captures use the default builder (``auto``): after the push, the images load into the
engine in the background; the bench waits for that load (timed, reported) before the next
step, so it does not compete with the next measurement.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import benchlib
from benchlib import BenchError, log, result_of, run

REPO = Path(__file__).resolve().parent.parent
SYSTEM_PYTHON = "/usr/bin/python3"
TORCH = "torch==2.13.0"
MIN_FREE = 20 * 10**9  # bytes free on the workdir's filesystem to start
BASELINE_FREE = 25 * 10**9  # bytes free needed for the docker build baseline
TARGETS = {"cold_s": 120.0, "cold_minus_download_s": 60.0, "code_s": 3.0,
           "shared_downloaded_bytes": 0}
GIT = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.invalid",
       "-c", "init.defaultBranch=main", "-c", "commit.gpgsign=false"]
TRAIN = """import mlflow
import torch

torch.manual_seed(0)
x = torch.randn(64, 4)
w = torch.zeros(4, requires_grad=True)
opt = torch.optim.SGD([w], lr=0.1)
with mlflow.start_run():
    for step in range(10):
        loss = ((x @ w - 1.0) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        mlflow.log_metric("loss", loss.item(), step=step)
    mlflow.log_param("torch", torch.__version__)
    print("trained", torch.__version__, loss.item())
"""


def bypass_pip_config(env: dict) -> dict:
    """The environment with the machine's pip configuration bypassed (PyPI only)."""
    out = {k: v for k, v in env.items() if k != "PIP_FIND_LINKS"}
    out["PIP_CONFIG_FILE"] = os.devnull
    return out


def free_bytes(path: Path) -> int:
    return shutil.disk_usage(path).free


def check_space(wd: Path) -> int:
    free = free_bytes(wd)
    if free < MIN_FREE:
        raise BenchError(f"only {free / 1e9:.1f} GB free on {wd}'s filesystem; the CUDA "
                         f"scenario needs {MIN_FREE / 1e9:.0f} GB (a 5 GB venv, its wheels, "
                         "the environment layer, the registry's copy): free some space or "
                         "pass --workdir on a bigger disk")
    return free


def make_venv(wd: Path, env: dict) -> dict:
    """The CUDA venv (reused when its marker matches: it takes minutes to download)."""
    venv = wd / "venv-cuda"
    marker = venv / ".envlock-bench.json"
    key = {"packages": [TORCH, *mlflow_pins()]}
    if marker.is_file():
        made = json.loads(marker.read_text())
        if made.get("packages") == key["packages"]:
            log(f"venv-cuda reused (made in {made.get('venv_s')}s)")
            return {"venv": venv, "venv_s": made.get("venv_s"), "venv_reused": True}
    shutil.rmtree(venv, ignore_errors=True)
    log(f"creating venv-cuda ({' '.join(key['packages'])}, pip configuration bypassed) ...")
    t0 = time.perf_counter()
    run([SYSTEM_PYTHON, "-m", "venv", str(venv)], env=env)
    run([str(venv / "bin" / "pip"), "install", "-q", "--no-cache-dir", *key["packages"]],
        env=env, timeout=3600)
    dt = time.perf_counter() - t0
    marker.write_text(json.dumps(dict(key, venv_s=round(dt, 1))))
    log(f"venv-cuda ready in {dt:.1f}s")
    return {"venv": venv, "venv_s": round(dt, 1), "venv_reused": False}


def mlflow_pins() -> list[str]:
    """The experiment's MLflow is the one envlock reads its store with."""
    import importlib.metadata

    return [f"mlflow-skinny=={importlib.metadata.version('mlflow-skinny')}", "sqlalchemy",
            "alembic"]


def make_project(wd: Path, name: str, env: dict) -> Path:
    proj = wd / f"project-{name}"
    shutil.rmtree(proj, ignore_errors=True)
    proj.mkdir(parents=True)
    (proj / "train.py").write_text(TRAIN + f"# project {name}\n")
    (proj / ".gitignore").write_text("mlflow.db\nmlruns/\n.envlock/\n")
    run([*GIT, "init", "-q"], cwd=proj, env=env)
    run([*GIT, "add", "-A"], cwd=proj, env=env)
    run([*GIT, "commit", "-qm", "experiment"], cwd=proj, env=env)
    return proj


def train(proj: Path, venv: Path, env: dict) -> float:
    return run([str(venv / "bin" / "python"), "train.py"], cwd=proj, env=env)[0]


def capture(ctx: dict, proj: Path, cache: Path, label: str, repository: str) -> dict:
    """``envlock capture --json`` of the project's latest run; its figures."""
    env = dict(ctx["env"], ENVLOCK_CACHE=str(cache))
    cmd = [ctx["envlock"], "capture", "--python", str(ctx["venv"] / "bin" / "python"),
           "--command", "python train.py", "--base-image", ctx["base"],
           "--registry", repository, "--json"]
    log(f"capture ({label}) ENVLOCK_CACHE={cache} (load {benchlib_load()})")
    wall, proc = run(cmd, cwd=proj, env=env, timeout=1800)
    res = result_of(proc, f"capture ({label})")
    built = res.get("built") or {}
    ctx["images"] += [t for t in (built.get("image"), built.get("env_image"),
                                  built.get("image_id"), built.get("env_image_id")) if t]
    timings = {k: float(v) for k, v in (built.get("timings") or {}).items()}
    summary = [ln for ln in proc.stderr.splitlines() if "reused from the wheel cache" in ln]
    out = {"wall_s": round(wall, 2), "timings": timings, "transfer": built.get("transfer"),
           "summary": built.get("summary"), "summary_line_printed": summary[-1:] or None,
           "push_stats": built.get("push_stats"), "env_reused": built.get("env_reused"),
           "code_reused": built.get("code_reused"), "builder": built.get("builder"),
           "run_id": res.get("run_id"), "image": res.get("image"),
           "steps": [ln for ln in proc.stderr.splitlines() if "s]" in ln][-60:]}
    out["download_s"] = round(timings.get("provision", 0.0), 2)
    out["wall_minus_download_s"] = round(wall - out["download_s"], 2)
    log(f"  {wall:.1f}s: {built.get('summary')}")
    out["background_load_s"] = wait_background_load(cache)
    return out


def benchlib_load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def wait_background_load(cache: Path, limit: float = 600) -> float | None:
    """Wait for the background ``docker load`` the capture started (its log in the
    cache) to end, so it does not compete with the next step; seconds waited."""
    logfile = cache / "oci" / "load.log"
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < limit:
        if not logfile.is_file():
            return None  # nothing loads in the background (no engine, or it proved in-engine)
        if not background_running():
            waited = time.perf_counter() - t0
            log(f"  background load done after {waited:.1f}s more: "
                f"{logfile.read_text(errors='replace').strip().splitlines()[-1:]}")
            return round(waited, 1)
        time.sleep(1)
    raise BenchError(f"the background load is still running after {limit:.0f}s: {logfile}")


def wait_idle(limit: float = 600) -> None:
    """No background load left running (so its images can be removed)."""
    t0 = time.perf_counter()
    while background_running() and time.perf_counter() - t0 < limit:
        time.sleep(2)


#: The interpreter of the envlock under test (its background loads run with it).
ENVLOCK_BIN: list[str] = []


def background_running() -> bool:
    """A background load of this envlock's (not another session's) is running."""
    where = ENVLOCK_BIN[0] if ENVLOCK_BIN else ""
    out = subprocess.run(["pgrep", "-f", f"^{where}.*-m envlock.operations.build.background"],
                         capture_output=True, text=True)
    return out.returncode == 0


def change_code(proj: Path, env: dict) -> None:
    with open(proj / "train.py", "a") as fh:
        fh.write("# a code-only change\n")
    run([*GIT, "commit", "-qam", "code-only change"], cwd=proj, env=env)


def share_wheels(src: Path, dst: Path) -> Path:
    """A new ``$ENVLOCK_CACHE`` holding only ``src``'s wheels (hard links)."""
    def link(a: str, b: str) -> None:
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)

    shutil.rmtree(dst, ignore_errors=True)
    dst.mkdir(parents=True)
    if (src / "wheels").is_dir():
        shutil.copytree(src / "wheels", dst / "wheels", copy_function=link)
    return dst


def docker_build_baseline(ctx: dict, lock: Path, cache: Path) -> dict:
    """``docker build --no-cache`` of the same wheels (bench_build's plain build), only
    when the disk has room for its context, the engine's copy and the image."""
    import bench_build

    free = free_bytes(ctx["workdir"])
    if free < BASELINE_FREE:
        log(f"docker build baseline skipped: {free / 1e9:.1f} GB free, it needs "
            f"{BASELINE_FREE / 1e9:.0f} GB")
        return {"skipped": f"{free / 1e9:.1f} GB free < {BASELINE_FREE / 1e9:.0f} GB"}
    bctx = {"workdir": ctx["workdir"], "env": ctx["env"], "base": ctx["base"],
            "cleanup": ctx["images"], "ids": ctx["images"]}
    plain = bench_build.wheelhouse_for(bctx, "cuda", lock, cache)
    tag = f"envlock-bench/cuda-plain:{ctx['stamp']}"
    out = bench_build.plain_build(bctx, plain, tag, f"{ctx['repository']}-plain:latest")
    shutil.rmtree(plain, ignore_errors=True)
    return out


def steps(ctx: dict) -> dict:
    """Cold capture, code-only re-capture, a second project sharing the wheels."""
    wd, env, venv = ctx["workdir"], ctx["env"], ctx["venv"]
    out: dict = {}
    proj = make_project(wd, "cuda", env)
    ctx["made"].append(proj)
    out["train_s"] = round(train(proj, venv, env), 2)
    cache = wd / f"cache-{ctx['stamp']}"
    shutil.rmtree(cache, ignore_errors=True)
    ctx["made"].append(cache)
    out["cold"] = capture(ctx, proj, cache, "cold", ctx["repository"])
    change_code(proj, env)
    train(proj, venv, env)
    out["code"] = capture(ctx, proj, cache, "code-only", ctx["repository"])
    other = make_project(wd, "cuda-b", env)
    ctx["made"].append(other)
    train(other, venv, env)
    cache_b = share_wheels(cache, wd / f"cache-b-{ctx['stamp']}")
    ctx["made"].append(cache_b)
    # its own repository too: in the first one the environment image would be found and
    # reused (env_reused "registry"), and the shared wheels would not be read at all
    out["shared"] = capture(ctx, other, cache_b, "second project, shared wheels",
                            ctx["repository"] + "-b")
    lock = wd / "lock-cuda.yaml"
    run([ctx["envlock"], "lock", "--python", str(venv / "bin" / "python"), "-o", str(lock),
         "--command", "python train.py"], cwd=proj, env=env)
    ctx["made"].append(lock)
    out["packages"] = len(benchlib_packages(lock))
    out["site_packages_bytes"] = du_bytes(next((venv / "lib").glob("python3*/site-packages")))
    out["wheels_bytes"] = du_bytes(cache / "wheels")
    if ctx["docker_build"]:
        out["docker_build"] = docker_build_baseline(ctx, lock, cache)
    else:
        out["docker_build"] = {"skipped": "--cuda-no-docker-build"}
    return out


def benchlib_packages(lock: Path) -> list[dict]:
    import yaml

    return yaml.safe_load(lock.read_text())["packages"]


def du_bytes(path: Path) -> int:
    text = subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True).stdout
    return int(text.split()[0]) if text else 0


def clean(ctx: dict, keep_venv: bool) -> dict:
    """Delete everything the scenario made; the free space before and after."""
    before = free_bytes(ctx["workdir"])
    errors = []
    for ref in dict.fromkeys(ctx["images"]):
        proc = subprocess.run(["docker", "rmi", ref], capture_output=True, text=True)
        if proc.returncode != 0 and "No such image" not in proc.stderr:
            errors.append(f"docker rmi {ref}: {proc.stderr.strip()[:200]}")
    made = list(ctx["made"]) + ([] if keep_venv else [ctx["venv"]])
    for path in made:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    if benchlib.REGISTRY_WORKDIR:  # this run's registry: its blobs go with it
        shutil.rmtree(benchlib.REGISTRY_WORKDIR / "open" / "data" / "docker",
                      ignore_errors=True)
    after = free_bytes(ctx["workdir"])
    log(f"clean-up: {before / 1e9:.1f} GB free before, {after / 1e9:.1f} GB after")
    return {"free_before_cleanup": before, "free_after_cleanup": after, "errors": errors}


def section_cuda(base_ctx: dict, envlock: str, *, docker_build: bool,
                 keep_venv: bool) -> dict:
    """The whole CUDA scenario; cleans up even when a step fails."""
    wd: Path = base_ctx["workdir"]
    wd.mkdir(parents=True, exist_ok=True)
    free_start = check_space(wd)
    ENVLOCK_BIN[:] = [str(Path(envlock).parent)]
    env = bypass_pip_config(base_ctx["env"])
    made = make_venv(wd, env)
    ctx = {"workdir": wd, "env": env, "envlock": envlock, "base": base_ctx["base"],
           "stamp": base_ctx["stamp"], "venv": made["venv"], "images": [], "made": [],
           "docker_build": docker_build,
           "repository": f"{base_ctx['registry']}/envlock-bench/cuda-{base_ctx['stamp']}"}
    out: dict = {"free_start": free_start, "venv_s": made["venv_s"], "torch": TORCH,
                 "venv_reused": made["venv_reused"]}
    try:
        out.update(steps(ctx))
    except Exception as exc:  # noqa: BLE001 - report what was measured, then clean up
        out["error"] = f"{type(exc).__name__}: {exc}"
        log(f"CUDA scenario failed: {exc}")
    finally:
        wait_idle()
        out["cleanup"] = clean(ctx, keep_venv)
    return out


def _gb(n: int | None) -> str:
    return "n/a" if n is None else f"{n / 1e9:.2f} GB"


PHASE_ROWS = (("provision", "download (provision: fetch + hash-check into the wheel cache; "
                            "each wheel installed beside it as it arrives)"),
              ("install", "install into the staged tree: what is left after the last download"),
              ("bytecode", "bytecode"),
              ("verify", "verify (daemon-free proof, beside the layer write)"),
              ("env_layer", "environment layer"), ("interpreter", "interpreter"),
              ("code", "code"), ("code_layer", "code layer"), ("base", "base"),
              ("load", "load into the engine"), ("verify_image", "in-engine proof"),
              ("push", "push"))


def phase_table(c: dict) -> list[str]:
    """Markdown rows: each phase of the captures (cold, code-only, second project)."""
    names = [n for n, _ in PHASE_ROWS]
    seen = [n for n in names if any(n in c[k]["timings"] for k in ("cold", "code", "shared")
                                    if k in c)]
    extra = sorted({n for k in ("cold", "code", "shared") if k in c
                    for n in c[k]["timings"]} - set(names))
    rows = ["| phase | cold | code-only | 2nd project |", "|---|---:|---:|---:|"]
    words = dict(PHASE_ROWS)
    for name in [*seen, *extra]:
        cells = [f"{c[k]['timings'][name]:.2f}" if k in c and name in c[k]["timings"] else "-"
                 for k in ("cold", "code", "shared")]
        rows.append(f"| {words.get(name, name)} | " + " | ".join(cells) + " |")
    cells = [f"{rest(c[k]):.2f}" if k in c else "-" for k in ("cold", "code", "shared")]
    rows.append("| rest: lock, snapshot, MLflow record (wall - phases, verify overlaps) | "
                + " | ".join(cells) + " |")
    cells = [f"**{c[k]['wall_s']:.2f}**" if k in c else "-" for k in ("cold", "code", "shared")]
    rows.append("| **whole capture (wall)** | " + " | ".join(cells) + " |")
    return rows


def rest(cap: dict) -> float:
    """Wall time outside the build's timed phases (``verify`` runs beside ``env_layer``)."""
    return cap["wall_s"] - sum(v for k, v in cap["timings"].items() if k != "verify")


def report_cuda(c: dict) -> list[tuple]:
    """Print the CUDA scenario; its target rows."""
    print(f"\n== CUDA: {c['torch']} + MLflow, {c.get('packages')} packages, site-packages "
          f"{_gb(c.get('site_packages_bytes'))}, wheels {_gb(c.get('wheels_bytes'))}; "
          f"{_gb(c['free_start'])} free at the start")
    if c.get("venv_s"):
        print(f"venv (pip install, serial download, pip config bypassed): {c['venv_s']:.1f}s"
              + (" (an earlier run's, reused)" if c.get("venv_reused") else ""))
    rows: list[tuple] = []
    if "cold" in c:
        print("\n".join(phase_table(c)))
        for key in ("cold", "code", "shared"):
            if key in c:
                print(f"{key}: {c[key]['summary']} (environment reused: "
                      f"{c[key]['env_reused'] or 'no, built'}; background load after it: "
                      f"{c[key]['background_load_s']}s)")
        cold = c["cold"]
        rows.append(("CUDA cold capture (wall)", f"{cold['wall_s']:.1f}s",
                     f"<= {TARGETS['cold_s']:.0f}s", cold["wall_s"] <= TARGETS["cold_s"]))
        rows.append(("CUDA   of it download", f"{cold['download_s']:.1f}s", "(info)", None))
        rows.append(("CUDA   cold capture minus download", f"{cold['wall_minus_download_s']:.1f}s",
                     f"<= {TARGETS['cold_minus_download_s']:.0f}s",
                     cold["wall_minus_download_s"] <= TARGETS["cold_minus_download_s"]))
    if "code" in c:
        rows.append(("CUDA code-only re-capture (wall)", f"{c['code']['wall_s']:.2f}s",
                     f"<= {TARGETS['code_s']:.0f}s", c["code"]["wall_s"] <= TARGETS["code_s"]))
        rows.append(("CUDA   cold / code-only", f"{c['cold']['wall_s'] / c['code']['wall_s']:.0f}x",
                     "(info)", None))
    if "shared" in c:
        got = (c["shared"].get("transfer") or {}).get("downloaded_bytes", 0)  # none: 0
        rows.append(("CUDA second project, bytes downloaded", f"{got}", "0",
                     got == TARGETS["shared_downloaded_bytes"]))
    plain = c.get("docker_build") or {}
    if plain.get("wall_s") and "cold" in c:
        rows.append(("CUDA docker build (local wheels) / capture minus download",
                     f"{plain['wall_s'] / c['cold']['wall_minus_download_s']:.2f}x", "(info)",
                     None))
    elif plain.get("skipped"):
        print(f"docker build baseline skipped: {plain['skipped']}")
    if c.get("error"):
        print(f"ERROR: {c['error']}")
    cl = c["cleanup"]
    print(f"clean-up: {_gb(cl['free_before_cleanup'])} free before, "
          f"{_gb(cl['free_after_cleanup'])} after ({_gb(c['free_start'])} at the start)"
          + (f"; errors: {cl['errors']}" if cl["errors"] else ""))
    return rows
