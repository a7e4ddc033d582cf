#!/usr/bin/env python3
"""Benchmark ``envlock replay`` overhead and the lock / build / push / record split of
``envlock capture``, on the minimal example (MLflow's SQLite store).

Not a test: run it by hand, from the repository root, with the test infrastructure
(``scripts/infra.sh`` and ``tests/registry.py``, started by ``benchlib.infra_env()``)::

    .venv/bin/python bench/bench_replay.py [--rounds 5] [--json FILE] [--workdir DIR]

1. Capture, cold then warm. A fresh experiment (git repo with examples/minimal/train.py,
   a new ``/usr/bin/python3`` venv with mlflow-skinny, sqlalchemy and alembic) is
   trained, locked (``envlock lock``, timed on its own) and captured with
   ``envlock capture --registry REG/envlock-bench/replay-STAMP --json`` and an empty
   ``ENVLOCK_CACHE`` (cold). Then train.py changes (committed), it is trained, locked
   and captured again (warm: same venv, warm wheel cache, env image present). build and
   push come from ``result.built.timings``; record = capture wall - lock - build - push.
2. Replay overhead. The warm run's image is local. In ``--rounds`` rounds (order
   alternating) ``envlock replay RUN_ID --json`` and a plain
   ``docker run --rm --network none --user 1000:1000 -e ... IMAGE`` (the container's own
   run time) are timed; overhead = median(replay) - median(docker run). Target <= 1.5 s.
   A docker run with envlock's hardening flags is timed too (informational).
3. Where the overhead goes: ``envlock --version``, ``python -c pass`` and
   ``python -c 'import mlflow'`` in envlock's venv, one ``python -X importtime -m envlock
   replay``, and a few replays under a phase timer (wrappers around Engine/Tracker/replay
   functions, installed before the CLI runs; names that no longer exist are skipped).

Images created (both captures' tags) are removed at the end (never the base); pushed
blobs stay in the test registry. See bench/README.md.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import BenchError, fmt, infra_env, log, med, result_of, run

REPO = Path(__file__).resolve().parent.parent
SYSTEM_PYTHON = "/usr/bin/python3"  # must match the base image's Python (3.11.2)
#: The experiment's MLflow is the one envlock reads its store with (a newer one's schema is
#: refused by an older client).
PACKAGES = (f"mlflow-skinny=={importlib.metadata.version('mlflow-skinny')}", "sqlalchemy",
            "alembic")
COMMAND = "python train.py"
TARGETS = {"replay_overhead_s": 1.5}
DOCKER_ENV = ("MLFLOW_TRACKING_URI=file:///tmp/mlruns/store", "MLFLOW_ALLOW_FILE_STORE=true",
              "GIT_PYTHON_REFRESH=quiet")

# Runs in envlock's venv: times the phases of one CLI invocation, writes them as JSON to
# $BENCH_PHASES. Each entry: [label, start, end] in seconds since the driver started.
PHASE_DRIVER = r'''
import atexit, importlib, inspect, json, os, sys, time
T0 = time.perf_counter()
marks = []

def wrap(modname, owner, attr, label):
    try:
        mod = importlib.import_module(modname)
    except Exception:
        return
    obj = getattr(mod, owner) if owner else mod
    raw = inspect.getattr_static(obj, attr, None)
    if raw is None:
        return
    func = getattr(obj, attr)
    def timed(*a, **k):
        s = time.perf_counter()
        try:
            return func(*a, **k)
        finally:
            marks.append([label, s - T0, time.perf_counter() - T0])
    if isinstance(raw, (classmethod, staticmethod)):
        timed = staticmethod(timed)
    setattr(obj, attr, timed)

def dump():
    marks.append(["(driver end)", time.perf_counter() - T0, time.perf_counter() - T0])
    with open(os.environ["BENCH_PHASES"], "w") as fh:
        json.dump(marks, fh)

atexit.register(dump)
s = time.perf_counter()
import envlock.cli.main as cli_main
marks.append(["import envlock CLI (typer, commands)", s - T0, time.perf_counter() - T0])
s = time.perf_counter()
for spec in [
    ("envlock.adapters.engine", "Engine", "connect", "Engine.connect (import docker, ping)"),
    ("envlock.adapters.tracking", "Tracker", "__init__", "Tracker() (import mlflow, client)"),
    ("envlock.operations.replay", None, "replay", "replay()"),
    ("envlock.adapters.tracking", "Tracker", "run", "tracker.run (get_run)"),
    ("envlock.adapters.tracking", "Tracker", "download", "tracker.download (lockfile)"),
    ("envlock.model.lockfile", None, "load", "lockfile.load"),
    ("envlock.snapshot.gpu", None, "probe_gpu", "probe_gpu"),
    ("envlock.model.compat", None, "preflight", "compat.preflight"),
    ("envlock.operations.replay", None, "ensure_image", "ensure_image"),
    ("envlock.adapters.engine", "Engine", "image", "engine.image (inspect)"),
    ("envlock.adapters.engine", "Engine", "pull", "engine.pull"),
    ("envlock.adapters.tracking", "Tracker", "create_run", "tracker.create_run"),
    ("envlock.adapters.engine", "Engine", "run_experiment", "engine.run_experiment (container)"),
    ("envlock.operations.replay", None, "conclude", "conclude (compare + tag)"),
    ("envlock.adapters.tracking", "Tracker", "relay_file_store", "tracker.relay_file_store"),
    ("envlock.adapters.tracking", "Tracker", "set_tags", "tracker.set_tags"),
    ("envlock.adapters.tracking", "Tracker", "finish", "tracker.finish"),
]:
    wrap(*spec)
marks.append(["(bench) import modules to wrap", s - T0, time.perf_counter() - T0])
sys.argv = ["envlock", *sys.argv[1:]]
cli_main.run()
'''


# --------------------------------------------------------------------------- experiment


GIT = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.invalid",
       "-c", "init.defaultBranch=main", "-c", "commit.gpgsign=false"]


def make_experiment(exp: Path, env: dict) -> None:
    """A git repo with the minimal example and a fresh venv of the system Python."""
    exp.mkdir(parents=True)
    shutil.copy(REPO / "examples" / "minimal" / "train.py", exp / "train.py")
    (exp / ".gitignore").write_text("mlflow.db\n.envlock/\n.venv/\n")
    run([*GIT, "init", "-q"], cwd=exp, env=env)
    run([*GIT, "add", "-A"], cwd=exp, env=env)
    run([*GIT, "commit", "-qm", "experiment"], cwd=exp, env=env)
    t0 = time.perf_counter()
    run([SYSTEM_PYTHON, "-m", "venv", ".venv"], cwd=exp, env=env)
    run([".venv/bin/python", "-m", "pip", "install", "-q", "--disable-pip-version-check",
         *PACKAGES], cwd=exp, env=env)
    log(f"venv ready in {time.perf_counter() - t0:.1f}s ({' '.join(PACKAGES)})")


def change_code(exp: Path, env: dict, n: int) -> None:
    with open(exp / "train.py", "a") as fh:
        fh.write(f"# bench change {n}\n")
    run([*GIT, "commit", "-qam", f"change {n}"], cwd=exp, env=env)


def train(exp: Path, env: dict) -> None:
    run([".venv/bin/python", "train.py"], cwd=exp, env=env)


# --------------------------------------------------------------------------- capture


def first_stamp(stderr: str) -> float | None:
    """The first ``[  2.3s]`` progress stamp of capture: lock + run resolution done."""
    for line in stderr.splitlines():
        if "[" in line and "s]" in line:
            inner = line.split("[", 1)[1].split("s]", 1)[0].strip()
            try:
                return float(inner)
            except ValueError:
                continue
    return None


def capture_once(label: str, ctx: dict, lock_rounds: int) -> dict:
    exp: Path = ctx["exp"]
    env: dict = ctx["env"]
    el: str = ctx["envlock"]
    lock_cmd = [el, "lock", "--python", ".venv/bin/python", "--command", COMMAND,
                "-o", str(ctx["workdir"] / f"lock-{label}.yaml")]
    lock_s = [run(lock_cmd, cwd=exp, env=env)[0] for _ in range(lock_rounds)]
    cmd = [el, "capture", "--python", ".venv/bin/python", "--command", COMMAND,
           "--base-image", ctx["base"], "--registry", ctx["repository"], "--json"]
    log(f"capture ({label}): {shlex.join(cmd)}")
    wall, proc = run(cmd, cwd=exp, env=env)
    res = result_of(proc, f"capture ({label})")
    built = res.get("built") or {}
    ctx["tags"].extend(t for t in (built.get("image"), built.get("env_image"),
                                   res.get("image")) if t)
    ctx["ids"].extend(i for i in (built.get("image_id"), built.get("env_image_id")) if i)
    timings = dict(built.get("timings") or {})
    push = float(timings.get("push", 0.0))
    build = sum(float(v) for k, v in timings.items() if k != "push")
    lock = med(lock_s)
    out = {"wall_s": wall, "lock_s": lock, "lock_samples": lock_s, "build_s": build,
           "push_s": push, "record_s": wall - lock - build - push, "timings": timings,
           "push_stats": built.get("push_stats"), "env_reused": built.get("env_reused"),
           "code_reused": built.get("code_reused"), "run_id": res["run_id"],
           "image": res.get("image"), "prebuild_stamp_s": first_stamp(proc.stderr)}
    log(f"capture ({label}) {wall:.1f}s: lock {lock:.2f} build {build:.2f} push {push:.2f} "
        f"record {out['record_s']:.2f}; timings {timings}")
    return out


# --------------------------------------------------------------------------- replay


def parse_importtime(stderr: str) -> dict:
    """A ``-X importtime`` log: total of the top-level cumulative times, and the self
    time summed per top-level package (additive, so the biggest packages stand out)."""
    total = 0
    pkgs: dict[str, int] = {}
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        parts = line.split("|")
        if len(parts) != 3:
            continue
        field = parts[2][1:] if parts[2].startswith(" ") else parts[2]
        try:
            self_us, cum_us = int(parts[0].split(":", 1)[1]), int(parts[1])
        except ValueError:
            continue
        if not field.startswith(" "):
            total += cum_us
        pkg = field.strip().split(".")[0]
        pkgs[pkg] = pkgs.get(pkg, 0) + self_us
    biggest = sorted(pkgs.items(), key=lambda kv: -kv[1])[:8]
    return {"total_s": total / 1e6, "self_by_package": [[n, us / 1e6] for n, us in biggest]}


def phase_tree(marks: list) -> list[tuple[str, float, float]]:
    """(path, start, duration) per mark; path = the labels of the marks containing it."""
    marks = [m for m in marks if m[0] != "(driver end)"]
    out = []
    for label, s, e in marks:
        parents = [m for m in marks if m[1] <= s and e <= m[2] and
                   (m[1], m[2]) != (s, e)]
        parents.sort(key=lambda m: m[1])
        path = " > ".join([p[0] for p in parents] + [label])
        out.append((path, s, e - s))
    return out


def replay_section(ctx: dict, rounds: int, phase_runs: int) -> dict:
    exp, env, el = ctx["exp"], ctx["env"], ctx["envlock"]
    run_id, image = ctx["replay_run"], ctx["replay_image"]
    replay_cmd = [el, "replay", run_id, "--json"]
    env_flags = [a for kv in DOCKER_ENV for a in ("-e", kv)]
    docker_cmd = ["docker", "run", "--rm", "--network", "none", "--user", "1000:1000",
                  *env_flags, image]
    hardened_cmd = ["docker", "run", "--rm", "--network", "none", "--user", "1000:1000",
                    "--security-opt", "no-new-privileges", "--cap-drop", "ALL", "--read-only",
                    "--tmpfs", "/tmp:rw,nosuid,nodev,size=2g", "-v", "/workspace",
                    "-e", "HOME=/workspace", *env_flags, image]
    samples: dict[str, list[float]] = {"replay": [], "docker": [], "docker_hardened": []}
    cmds = {"replay": replay_cmd, "docker": docker_cmd, "docker_hardened": hardened_cmd}
    verdicts = []

    def one(name: str, keep: bool) -> None:
        dt, proc = run(cmds[name], cwd=exp, env=env)
        if name == "replay":
            res = result_of(proc, "replay")
            verdicts.append((res.get("comparison") or {}).get("reproduced"))
        if keep:
            samples[name].append(dt)

    log(f"replay: {shlex.join(replay_cmd)}")
    log(f"direct: {shlex.join(docker_cmd)}")
    for name in cmds:  # warm-up, not measured
        one(name, False)
    order = list(cmds)
    for r in range(rounds):
        for name in (order if r % 2 == 0 else order[::-1]):
            one(name, True)
    log("replay rounds: " + ", ".join(f"{k} {[round(x, 2) for x in v]}"
                                      for k, v in samples.items()))

    # ---- breakdown
    py = str(Path(el).parent / "python")
    startup = {"envlock --version": [el, "--version"], "python -c pass": [py, "-c", "pass"],
               "import docker": [py, "-c", "import docker"],
               "import envlock.cli.main": [py, "-c", "import envlock.cli.main"]}
    startup_s = {k: med([run(c, cwd=exp, env=env)[0] for _ in range(5)])
                 for k, c in startup.items()}
    # wall and in-process time of the MLflow client import (+ a get_run on the SQLite store)
    timer = ("import sys, time; t = time.perf_counter(); {stmt}; "
             "sys.stdout.write('BENCH %f' % (time.perf_counter() - t))")
    client = "from mlflow.tracking import MlflowClient"
    probes = {
        "MlflowClient import, envlock venv (mlflow)": (py, client),
        "MlflowClient import, experiment venv (mlflow-skinny)":
            (str(exp / ".venv" / "bin" / "python"), client),
        "import + MlflowClient().get_run (SQLite), envlock venv":
            (py, f"{client}; MlflowClient().get_run({run_id!r})"),
    }
    mlflow_probe = {}
    for name, (python, stmt) in probes.items():
        walls, inner = [], []
        for _ in range(5):
            dt, proc = run([python, "-c", timer.format(stmt=stmt)], cwd=exp, env=env)
            walls.append(dt)
            inner.append(float(proc.stdout.rsplit("BENCH ", 1)[1]))
        mlflow_probe[name] = {"wall_s": med(walls), "in_process_s": med(inner)}
    _, proc = run([py, "-X", "importtime", "-m", "envlock", "replay", run_id, "--json"],
                  cwd=exp, env=env)
    importtime = parse_importtime(proc.stderr)
    phase_runs_out = []
    with tempfile.TemporaryDirectory(prefix="bench-phases-") as tmp:
        penv = dict(env, BENCH_PHASES=str(Path(tmp) / "phases.json"))
        for _ in range(phase_runs):
            dt, proc = run([py, "-c", PHASE_DRIVER, "replay", run_id, "--json"], cwd=exp,
                           env=penv)
            result_of(proc, "replay (phase timer)")
            marks = json.loads((Path(tmp) / "phases.json").read_text())
            end = next((m[2] for m in marks if m[0] == "(driver end)"), None)
            phase_runs_out.append({"wall_s": dt, "in_process_s": end, "marks": marks})
    # aggregate by path: median over runs of the per-run sum
    per_path: dict[str, list[float]] = {}
    first_start: dict[str, float] = {}
    for pr in phase_runs_out:
        sums: dict[str, float] = {}
        for path, start, dur in phase_tree(pr["marks"]):
            sums[path] = sums.get(path, 0.0) + dur
            first_start[path] = min(first_start.get(path, start), start)
        for path, v in sums.items():
            per_path.setdefault(path, []).append(v)
    phases = [{"path": p, "median_s": med(v), "runs": len(v)}
              for p, v in sorted(per_path.items(), key=lambda kv: first_start[kv[0]])]
    wall_p = med([p["wall_s"] for p in phase_runs_out])
    inproc = med([p["in_process_s"] for p in phase_runs_out if p["in_process_s"]])
    return {"replay_cmd": replay_cmd, "docker_cmd": docker_cmd, "hardened_cmd": hardened_cmd,
            "samples": samples, "reproduced": verdicts,
            "median": {k: med(v) for k, v in samples.items()},
            "startup_s": startup_s, "mlflow_probe": mlflow_probe, "importtime": importtime,
            "phase_runs": phase_runs_out, "phases": phases,
            "phase_wall_s": wall_p, "phase_in_process_s": inproc}


# --------------------------------------------------------------------------- report


def report(res: dict) -> None:
    print(f"envlock replay/capture benchmark — {res['envlock_version']}, docker "
          f"{res['docker']}, {res['cpus']} CPUs, python {res['python']}, "
          f"stamp {res['stamp']}")
    rows: list[tuple[str, str, str, str]] = []
    rp = res.get("replay")
    if rp:
        m = rp["median"]
        overhead = m["replay"] - m["docker"]
        frac = overhead / m["replay"] if m["replay"] else None
        ok = overhead <= TARGETS["replay_overhead_s"]
        n = len(rp["samples"]["replay"])
        res["replay"]["overhead_s"], res["replay"]["overhead_frac"] = overhead, frac
        res["verdicts"]["replay_overhead"] = ok
        rows += [
            (f"envlock replay (median of {n})", fmt(m["replay"]), "", ""),
            (f"docker run, same image (median of {n})", fmt(m["docker"]), "", ""),
            ("replay overhead", fmt(overhead), f"<= {TARGETS['replay_overhead_s']} s",
             "PASS" if ok else "FAIL"),
            ("overhead / replay total", f"{100 * frac:.0f} %" if frac is not None else "n/a",
             "", "info"),
            ("docker run + envlock's hardening flags", fmt(m["docker_hardened"]), "", "info"),
        ]
    for label in ("cold", "warm"):
        c = res.get("capture", {}).get(label)
        if not c:
            continue
        rows.append((f"capture {label}: total wall", fmt(c["wall_s"]), "", "info"))
        rows.append(("  lock / build / push / record (derived)",
                     f"{c['lock_s']:.2f} / {c['build_s']:.2f} / {c['push_s']:.2f} / "
                     f"{c['record_s']:.2f} s", "", "info"))
    w1 = max(len(r[0]) for r in rows) if rows else 10
    w2 = max([len(r[1]) for r in rows] + [8])
    print(f"{'measure':<{w1}}  {'value':>{w2}}  {'target':<9} verdict")
    for a, b, c, d in rows:
        print(f"{a:<{w1}}  {b:>{w2}}  {c:<9} {d}")

    for label in ("cold", "warm"):
        c = res.get("capture", {}).get(label)
        if not c:
            continue
        t = c["timings"]
        ps = c.get("push_stats") or {}
        stamp = c["prebuild_stamp_s"]
        print(f"capture {label}: timings " + " ".join(f"{k}={v:.2f}" for k, v in t.items()) +
              f"; pushed {ps.get('layers_pushed')} layer(s) "
              f"{(ps.get('bytes_pushed') or 0) / 1e6:.1f} MB, {ps.get('layers_existing')} "
              f"existing; env_reused={c['env_reused']}; lock samples "
              f"{[round(x, 2) for x in c['lock_samples']]}")
        if stamp is not None:
            print(f"  first progress stamp {stamp:.2f} s (in-capture lock + MLflow import + run"
                  f" lookup): so ~{stamp - c['lock_s']:.2f} s of record is MLflow import + "
                  f"lookup, ~{c['record_s'] - (stamp - c['lock_s']):.2f} s artifacts + tags + "
                  "exit")
    if rp:
        s = rp["startup_s"]
        print("overhead breakdown (medians of 5 unless noted):")
        print("  startup: " + ", ".join(f"{k} {fmt(v)}" for k, v in s.items()))
        for name, v in rp["mlflow_probe"].items():
            print(f"  {name}: wall {fmt(v['wall_s'])} (in-process {fmt(v['in_process_s'])},"
                  f" interpreter start+exit {fmt(v['wall_s'] - v['in_process_s'])})")
        it = rp["importtime"]
        print(f"  -X importtime (1 replay): imports {it['total_s']:.2f} s; self time by "
              "package: " + ", ".join(f"{n} {v:.2f}" for n, v in it["self_by_package"]))
        n = len(rp["phase_runs"])
        print(f"  phase timer ({n} replays, median wall {fmt(rp['phase_wall_s'])}, in-process "
              f"{fmt(rp['phase_in_process_s'])}; interpreter start + shutdown "
              f"{fmt((rp['phase_wall_s'] or 0) - (rp['phase_in_process_s'] or 0))}):")
        for ph in rp["phases"]:
            depth = ph["path"].count(" > ")
            if depth > 2:
                continue
            name = ph["path"].rsplit(" > ", 1)[-1]
            print(f"    {'  ' * depth}{name:<{44 - 2 * depth}} {fmt(ph['median_s'])}")
        run_exp = next((p["median_s"] for p in rp["phases"]
                        if p["path"].endswith("engine.run_experiment (container)")), None)
        if run_exp is not None:
            print(f"  container via envlock (run_experiment) - plain docker run: "
                  f"{run_exp - rp['median']['docker']:+.2f} s")
        print(f"  reproduced verdicts: {rp['reproduced']}")
    for name, err in res["errors"].items():
        print(f"ERROR in {name}: {err}")


# --------------------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workdir", default="/var/tmp/envlock-bench-replay", type=Path)
    ap.add_argument("--rounds", type=int, default=5, help="replay/docker rounds (default 5)")
    ap.add_argument("--phase-runs", type=int, default=3,
                    help="replays under the phase timer (default 3)")
    ap.add_argument("--json", type=Path, help="also write the results as JSON here")
    ap.add_argument("--envlock", default=str(Path(sys.prefix) / "bin" / "envlock"),
                    help="envlock executable (default: next to this interpreter)")
    ap.add_argument("--keep-images", action="store_true", help="do not docker rmi at the end")
    ap.add_argument("--keep-workdir", action="store_true",
                    help="keep this run's experiment, venv, MLflow store and wheel cache")
    args = ap.parse_args()

    infra = infra_env()
    stamp = time.strftime("%Y%m%d%H%M%S")
    args.workdir.mkdir(parents=True, exist_ok=True)
    wd = Path(tempfile.mkdtemp(prefix=f"run-{stamp}-", dir=args.workdir))
    exp = wd / "experiment"
    env = dict(os.environ)
    env.update(infra)
    for key in ("ENVLOCK_DEBUG", "ENVLOCK_REGISTRY", "ENVLOCK_BASE_IMAGE", "MLFLOW_RUN_ID",
                "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "PYTHONDONTWRITEBYTECODE"):
        env.pop(key, None)
    env["ENVLOCK_CACHE"] = str(wd / "cache")  # empty: the first capture is cold
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{exp}/mlflow.db"
    registry = infra["ENVLOCK_TEST_REGISTRY"]
    ctx = {"workdir": wd, "exp": exp, "env": env, "envlock": args.envlock,
           "base": infra["ENVLOCK_TEST_BASE_IMAGE"],
           "repository": f"{registry}/envlock-bench/replay-{stamp}", "tags": [], "ids": []}
    res: dict = {"stamp": stamp, "workdir": str(wd), "cpus": os.cpu_count(),
                 "python": platform.python_version(), "registry": registry,
                 "base": ctx["base"], "repository": ctx["repository"], "targets": TARGETS,
                 "capture": {}, "verdicts": {}, "errors": {}}
    res["envlock_version"] = run([args.envlock, "--version"], env=env)[1].stdout.strip()
    res["docker"] = run(["docker", "version", "--format", "{{.Server.Version}}"],
                        env=env)[1].stdout.strip()
    t_start = time.perf_counter()
    try:
        try:
            log(f"experiment in {exp}")
            make_experiment(exp, env)
            train(exp, env)
            res["capture"]["cold"] = capture_once("cold", ctx, lock_rounds=1)
            change_code(exp, env, 1)
            train(exp, env)
            res["capture"]["warm"] = capture_once("warm", ctx, lock_rounds=3)
        except BenchError as exc:
            res["errors"]["capture"] = str(exc)
        warm = res["capture"].get("warm") or res["capture"].get("cold")
        if warm and warm.get("image"):
            ctx["replay_run"], ctx["replay_image"] = warm["run_id"], warm["image"]
            try:
                res["replay"] = replay_section(ctx, args.rounds, args.phase_runs)
            except BenchError as exc:
                res["errors"]["replay"] = str(exc)
    finally:
        if not args.keep_images:
            left = []
            for ref in dict.fromkeys(ctx["tags"] + ctx["ids"]):
                proc = subprocess.run(["docker", "rmi", ref], capture_output=True, text=True)
                if proc.returncode != 0 and "No such image" not in proc.stderr:
                    left.append(f"{ref}: {proc.stderr.strip()}")
            res["cleanup_left"] = left
            for msg in left:
                log(f"cleanup: {msg}")
    res["bench_wall_s"] = time.perf_counter() - t_start
    report(res)
    if args.keep_workdir:
        print(f"(bench wall {res['bench_wall_s']:.0f} s; experiment and MLflow store kept in "
              f"{wd})")
    else:
        shutil.rmtree(wd, ignore_errors=True)
        print(f"(bench wall {res['bench_wall_s']:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2, default=str))
    return 1 if res["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
