#!/usr/bin/env python3
"""Benchmark the overhead of ``envlock replay RUN --on slurm`` over a local replay of the
same run and image (issue #26; target ≤ 5 s).

Not a test: run it by hand, as root, from the repository root, with the test
infrastructure (``benchlib.infra_env()``) and the one-node Slurm of ``scripts/slurm``
(started here; idempotent)::

    .venv/bin/python bench/bench_slurm.py [--rounds 3] [--runtime charliecloud] [--json FILE]

The minimal example is trained and captured (pushed to the test registry); one warm-up
replay each way pulls the image (Docker: local already; Podman: into a storage of this
bench's own). Then ``--rounds`` rounds, order alternating, of ``envlock replay RUN --json``
(the local Docker engine) and ``envlock replay RUN --on slurm --json`` (sbatch, Podman in
the job, the store relayed; with ``--runtime charliecloud``, ``ch-image``/``ch-run``, the run
captured into an HTTPS registry of the bench's own, as Charliecloud pulls only over HTTPS).
Overhead = median(slurm) - median(local); ratio =
median(slurm) / median(local). The pull is one-time and reported separately.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_replay import make_experiment, train
from benchlib import BenchError, fmt, infra_env, log, med, result_of, run

REPO = Path(__file__).resolve().parent.parent
TARGET_S = 5.0


def capture(exp: Path, env: dict, envlock: str, base: str, repository: str) -> str:
    train(exp, env)
    _, proc = run([envlock, "capture", "--python", ".venv/bin/python", "--command",
                   "python train.py", "--base-image", base, "--registry", repository,
                   "--json"], cwd=exp, env=env)
    return str(result_of(proc, "capture")["run_id"])


def replay(envlock: str, run_id: str, exp: Path, env: dict, *on: str) -> float:
    took, proc = run([envlock, "replay", run_id, *on, "--json"], cwd=exp, env=env)
    result = result_of(proc, "replay " + " ".join(on))
    if result["comparison"] is None or result["exit_code"] != 0:
        raise BenchError(f"replay {on} did not reproduce: {proc.stdout[-1000:]}")
    return took


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--envlock", default=str(Path(sys.prefix) / "bin" / "envlock"))
    ap.add_argument("--runtime", choices=("podman", "charliecloud"), default="podman")
    args = ap.parse_args()
    started = subprocess.run(["bash", str(REPO / "scripts" / "slurm" / "start.sh")],
                             capture_output=True, text=True, timeout=900)
    if started.returncode != 0:
        raise BenchError(f"scripts/slurm/start.sh failed: {started.stderr[-2000:]}")
    infra = infra_env()
    wd = Path(tempfile.mkdtemp(prefix="envlock-bench-slurm-", dir="/var/tmp"))
    exp = wd / "experiment"
    env = {**os.environ, **infra, "MLFLOW_TRACKING_URI": f"sqlite:///{exp}/mlflow.db",
           "ENVLOCK_CONFIG": str(wd / "envlock.yaml"),
           "CONTAINERS_STORAGE_CONF": str(wd / "storage.conf"),
           "CH_IMAGE_STORAGE": str(wd / "charliecloud"),
           "PATH": f"/usr/bin:{os.environ['PATH']}"}  # ch-image runs on Debian's python3
    (wd / "envlock.yaml").write_text(f"slurm:\n  job_dir: {wd}/jobs\n  runtime: {args.runtime}\n")
    registry = infra["ENVLOCK_TEST_REGISTRY"]
    if args.runtime == "charliecloud":
        from tests.registry import start_tls

        tls = start_tls(wd / "tls-registry")
        atexit.register(tls.stop)
        registry = tls.address
    (wd / "storage.conf").write_text(f'[storage]\ndriver = "overlay"\ngraphroot = "{wd}/podman"'
                                     f'\nrunroot = "{wd}/podman-run"\n')
    res: dict = {"cpus": os.cpu_count(), "rounds": args.rounds, "target_s": TARGET_S,
                 "runtime": args.runtime}
    try:
        make_experiment(exp, env)
        run_id = capture(exp, env, args.envlock, infra["ENVLOCK_TEST_BASE_IMAGE"],
                         f"{registry}/envlock-bench/slurm")
        res["first_slurm_s"] = replay(args.envlock, run_id, exp, env, "--on", "slurm")
        res["first_local_s"] = replay(args.envlock, run_id, exp, env)
        local, slurm = [], []
        for i in range(args.rounds):
            order = [(local, ()), (slurm, ("--on", "slurm"))]
            for times, on in order if i % 2 == 0 else order[::-1]:
                times.append(replay(args.envlock, run_id, exp, env, *on))
        res.update(local_s=local, slurm_s=slurm, local_median_s=med(local),
                   slurm_median_s=med(slurm))
        res["overhead_s"] = (med(slurm) or 0) - (med(local) or 0)
        res["ratio"] = (med(slurm) or 0) / (med(local) or 1)
    finally:
        subprocess.run(["podman", "system", "reset", "--force"], capture_output=True,
                       env=env, timeout=300)
        shutil.rmtree(wd, ignore_errors=True)
    log(f"local replay   median {fmt(res['local_median_s'])}  {res['local_s']}")
    log(f"slurm replay   median {fmt(res['slurm_median_s'])}  {res['slurm_s']}")
    log(f"first slurm replay ({args.runtime} pull included) {fmt(res['first_slurm_s'])}")
    log(f"overhead {fmt(res['overhead_s'])} (target ≤ {TARGET_S:g} s), ratio "
        f"{res['ratio']:.2f}")
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))
    return 0 if res["overhead_s"] <= TARGET_S else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        log(f"error: {exc}")
        sys.exit(2)
