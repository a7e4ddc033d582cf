#!/usr/bin/env python3
"""Benchmark ``envlock sbom`` on a 100-distribution lock against baselines in the same run.

Not a test: run it by hand, from the repository root, with the dev venv::

    .venv/bin/python bench/bench_sbom.py [--rounds 9] [--json FILE] [--workdir DIR]
                                         [--with-base]

The 100-distribution venv is bench_lock.py's ``venv-100`` (generated wheels plus a few real
packages, cached under ``--workdir``); it is locked once. Then, each command timed as a
child process from a cold interpreter, in alternating order, medians over ``--rounds``:

* ``pip freeze`` of that venv and ``envlock show LOCK`` (baselines: the cheapest look at
  the environment, and envlock reading the same lock);
* ``envlock sbom LOCK -o F`` (CycloneDX) and ``envlock sbom LOCK --format spdx-json -o F``;
* with ``--with-base``: the test registries are started (``benchlib.infra_env``) and
  ``envlock sbom LOCK --base-image BASE`` is timed cold (an empty ``ENVLOCK_CACHE``: the
  base's layers read from the registry) and warm (its OS packages from the cache).

Also the in-process time of rendering the document alone (``envlock.model.sbomdoc.render``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_lock  # noqa: E402  (bench/ is on sys.path when run as a script)
from benchlib import REPO, fmt, infra_env, log, med, run  # noqa: E402


def venv_100(workdir: Path, env: dict) -> dict:
    projects, paths = bench_lock.ensure_wheels(workdir, 500)
    real_dir, real = bench_lock.ensure_real_wheels(workdir, sys.executable)
    return bench_lock.ensure_venv(workdir, 100, projects, paths, real_dir, real, env)


def in_process(lock_path: Path, rounds: int) -> dict[str, float]:
    from envlock.model import lockfile
    from envlock.model.sbom import SbomInput
    from envlock.model.sbomdoc import render

    lock = lockfile.load(lock_path)
    out = {}
    for fmt_name in ("cyclonedx-json", "spdx-json"):
        render(SbomInput(lock=lock), fmt_name)  # imports
        times = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            render(SbomInput(lock=lock), fmt_name)
            times.append(time.perf_counter() - t0)
        out[fmt_name] = statistics.median(times)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--workdir", type=Path, default=Path("/var/tmp/envlock-bench"))
    parser.add_argument("--with-base", action="store_true")
    args = parser.parse_args()
    env = {**os.environ, "CI": "1"}
    envlock = str(Path(sys.executable).with_name("envlock"))
    info = venv_100(args.workdir, env)
    work = Path(tempfile.mkdtemp(prefix="envlock-bench-sbom-"))
    lock = work / "envlock.lock.yaml"
    run([envlock, "lock", "--python", info["python"], "-o", str(lock), "--no-gpu", "--no-git"],
        env=env)
    commands: dict[str, list[str]] = {
        "pip freeze": [info["python"], "-m", "pip", "freeze"],
        "envlock show": [envlock, "show", str(lock)],
        "sbom cyclonedx": [envlock, "sbom", str(lock), "-o", str(work / "a.cdx.json")],
        "sbom spdx": [envlock, "sbom", str(lock), "--format", "spdx-json", "-o",
                      str(work / "a.spdx.json")],
    }
    caches: dict[str, str | None] = {}  # command -> ENVLOCK_CACHE ("" : a fresh one each time)
    if args.with_base:
        base = infra_env()["ENVLOCK_TEST_BASE_IMAGE"]
        for name, cache in (("sbom +base cold", ""), ("sbom +base warm", str(work / "warm"))):
            commands[name] = [envlock, "sbom", str(lock), "--base-image", base, "-o",
                              str(work / f"{name.split()[-1]}.cdx.json")]
            caches[name] = cache
    times: dict[str, list[float]] = {name: [] for name in commands}
    for index in range(args.rounds):
        order = list(commands) if index % 2 == 0 else list(reversed(commands))
        for name in order:
            run_env = env
            if name in caches:
                cache = caches[name] or tempfile.mkdtemp(prefix="envlock-bench-cold-")
                run_env = {**env, "ENVLOCK_CACHE": cache}
            dt, _ = run(commands[name], env=run_env)
            times[name].append(dt)
    stats = {name: med(values) for name, values in times.items()}
    document = json.loads((work / "a.cdx.json").read_text())
    renders = in_process(lock, args.rounds)
    baseline = stats["pip freeze"]
    print(f"lock: {info['dists']} distributions ({lock}); "
          f"{len(document['components'])} components in the CycloneDX document\n")
    print(f"{'command':<20} {'median':>9} {'× pip freeze':>13} {'× envlock show':>15}")
    for name, value in stats.items():
        print(f"{name:<20} {fmt(value):>9} {value / baseline:>12.2f}× "
              f"{value / stats['envlock show']:>14.2f}×")
    print(f"\nrender alone (in process): cyclonedx {fmt(renders['cyclonedx-json'])}, "
          f"spdx {fmt(renders['spdx-json'])}")
    if args.json:
        args.json.write_text(json.dumps({"dists": info["dists"], "rounds": args.rounds,
                                         "median_s": stats, "render_s": renders,
                                         "components": len(document["components"])},
                                        indent=2))
    log(f"done; outputs under {work}")
    return 0


if __name__ == "__main__":
    os.chdir(REPO)
    sys.exit(main())
