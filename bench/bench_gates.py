#!/usr/bin/env python3
"""Benchmark the CI gates and the archives against the tools they stand beside.

Not a test: run it by hand, from the repository root, with the test infrastructure
(``scripts/infra.sh`` and ``tests/registry.py``, started by ``benchlib.infra_env()``)::

    .venv/bin/python bench/bench_gates.py [--rounds 5] [--json FILE] [--workdir DIR]

One experiment (examples/minimal in a fresh ``/usr/bin/python3`` venv with mlflow-skinny,
sqlalchemy and alembic; SQLite store) is trained and captured to the open registry. Then,
each pair timed in alternating order, medians over ``--rounds``:

1. ``envlock check --lock L --python VENV --junit F --markdown F``  vs  ``pip freeze`` of
   the same venv (the cheapest way a pipeline can look at an environment).
2. ``envlock verify RUN --junit F --markdown F``  vs  ``envlock replay RUN``: what the gate
   adds to a replay.
3. ``envlock export RUN``  vs  ``docker save`` of the same image; ``envlock import`` into the
   engine (from a fresh store) vs ``docker load`` of the ``docker save`` tar.
   3b. the same export for a second run captured ``--no-push`` (a local-only image: envlock
   reads ``docker save`` and gzips the layers) vs ``docker save | gzip``, the like-for-like
   baseline; plus one plain ``docker save`` of it for its size.
4. Once each (they provision every wheel from the index, so they are slow and noisy):
   ``envlock build --from-run RUN --no-cache --env-only --no-push``  vs  ``envlock build
   LOCK --no-cache --env-only --no-push`` on the same lock read from a local file: what
   reading the lock from the tracking store adds to a rebuild.

Images created are removed at the end (never the base). See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import bench_replay  # the experiment set-up (this folder is on sys.path as a script runs)
import benchlib as lib


def alternate(rounds: int, first: list[str], second: list[str], *, cwd: Path, env: dict,
              before=None) -> tuple[list[float], list[float]]:
    a_times: list[float] = []
    b_times: list[float] = []
    for index in range(rounds):
        pair = [(first, a_times), (second, b_times)]
        for cmd, times in (pair if index % 2 == 0 else pair[::-1]):
            if before:
                before(cmd)
            times.append(lib.run(cmd, cwd=cwd, env=env)[0])
    return a_times, b_times


def ratio(a: list[float], b: list[float]) -> float:
    return (lib.med(a) or 0) / (lib.med(b) or 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()

    infra = lib.infra_env()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="envlock-bench-gates-"))
    exp = workdir / "exp"
    envlock = str(Path(sys.executable).with_name("envlock"))
    stamp = time.strftime("%H%M%S")
    env = {**os.environ, **infra, "MLFLOW_TRACKING_URI": f"sqlite:///{exp}/mlflow.db",
           "CI": "1", "ENVLOCK_CACHE": str(workdir / "cache")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    bench_replay.make_experiment(exp, env)
    bench_replay.train(exp, env)
    repository = f"{infra['ENVLOCK_TEST_REGISTRY']}/envlock-bench/gates-{stamp}"
    _, proc = lib.run([envlock, "capture", "--python", ".venv/bin/python", "--command",
                      bench_replay.COMMAND, "--base-image", infra["ENVLOCK_TEST_BASE_IMAGE"],
                      "--registry", repository, "--json"], cwd=exp, env=env)
    captured = lib.result_of(proc, "capture")
    run_id, image = captured["run_id"], captured["image"]
    created = [captured["built"]["image"], captured["built"]["env_image"]]
    lock = captured["lockfile"]
    reports = workdir / "reports"
    results: dict = {"machine": platform.node(), "cpus": os.cpu_count(), "rounds": args.rounds,
                     "run_id": run_id, "image": image}
    try:
        lib.log("1. check gate vs pip freeze")
        check, freeze = alternate(
            args.rounds, [envlock, "check", "--lock", lock, "--python", ".venv/bin/python",
                          "--junit", str(reports / "check.xml"), "--markdown",
                          str(reports / "check.md")],
            [".venv/bin/python", "-m", "pip", "freeze", "--disable-pip-version-check"],
            cwd=exp, env=env)
        results["check"] = {"check_s": lib.med(check), "pip_freeze_s": lib.med(freeze),
                            "ratio": ratio(check, freeze), "samples": [check, freeze]}

        lib.log("2. verify gate vs replay")
        verify, replay = alternate(
            args.rounds, [envlock, "verify", run_id, "--junit", str(reports / "v.xml"),
                          "--markdown", str(reports / "v.md")],
            [envlock, "replay", run_id], cwd=exp, env=env)
        results["verify"] = {"verify_s": lib.med(verify), "replay_s": lib.med(replay),
                             "ratio": ratio(verify, replay), "samples": [verify, replay]}

        lib.log("3. export vs docker save; import vs docker load")
        archive, saved = workdir / "run.tar", workdir / "saved.tar"
        export, save = alternate(
            args.rounds, [envlock, "export", run_id, "-o", str(archive)],
            ["docker", "save", "-o", str(saved), image], cwd=exp, env=env)
        sizes = {"archive_bytes": archive.stat().st_size, "docker_save_bytes":
                 saved.stat().st_size}
        stores = iter(range(10_000))

        def fresh_store(cmd: list[str]) -> None:
            if cmd[1:2] == ["import"]:  # each import into a store of its own
                env["MLFLOW_TRACKING_URI"] = f"sqlite:///{workdir}/import-{next(stores)}.db"

        imported, loaded = alternate(
            args.rounds, [envlock, "import", str(archive)],
            ["docker", "load", "-q", "-i", str(saved)], cwd=exp, env=env, before=fresh_store)
        env["MLFLOW_TRACKING_URI"] = f"sqlite:///{exp}/mlflow.db"
        results["archive"] = {"export_s": lib.med(export), "docker_save_s": lib.med(save),
                              "export_ratio": ratio(export, save), "import_s": lib.med(imported),
                              "docker_load_s": lib.med(loaded),
                              "import_ratio": ratio(imported, loaded), **sizes,
                              "samples": [export, save, imported, loaded]}

        lib.log("3b. export of a local-only run (layers gzipped) vs docker save")
        bench_replay.train(exp, env)
        _, proc = lib.run([envlock, "capture", "--python", ".venv/bin/python", "--command",
                          bench_replay.COMMAND, "--base-image",
                          infra["ENVLOCK_TEST_BASE_IMAGE"], "--no-push", "--json"],
                          cwd=exp, env=env)
        local = lib.result_of(proc, "capture")
        created.append(local["built"]["image"])
        local_archive, local_saved = workdir / "local.tar", workdir / "local-saved.tar.gz"
        export_local, save_local = alternate(
            args.rounds, [envlock, "export", local["run_id"], "-o", str(local_archive)],
            ["sh", "-c", f"docker save {local['image']} | gzip -c > {local_saved}"],
            cwd=exp, env=env)
        plain_s, _ = lib.run(["docker", "save", "-o", str(saved), local["image"]], env=env)
        results["local_archive"] = {
            "export_s": lib.med(export_local), "docker_save_gzip_s": lib.med(save_local),
            "ratio": ratio(export_local, save_local), "docker_save_once_s": plain_s,
            "archive_bytes": local_archive.stat().st_size,
            "docker_save_gzip_bytes": local_saved.stat().st_size,
            "docker_save_bytes": saved.stat().st_size,
            "samples": [export_local, save_local]}

        lib.log("4. rebuild from the run vs from the local lock (no cache, once each)")
        shutil.rmtree(workdir / "cache", ignore_errors=True)
        from_run, _ = lib.run([envlock, "build", "--from-run", run_id, "--no-cache",
                              "--env-only", "--no-push", "--json"], cwd=exp, env=env)
        shutil.rmtree(workdir / "cache", ignore_errors=True)
        from_lock, proc = lib.run([envlock, "build", lock, "--no-cache", "--env-only",
                                  "--no-push", "--base-image",
                                  infra["ENVLOCK_TEST_BASE_IMAGE"], "--json"], cwd=exp, env=env)
        fidelity = lib.result_of(proc, "build")["fidelity"]
        results["rebuild"] = {"from_run_s": from_run, "from_lock_s": from_lock,
                              "ratio": from_run / from_lock, "fidelity": fidelity}
    finally:
        for ref in created:
            lib.run(["docker", "rmi", "-f", ref], env=env, check=False)

    c, v, a, r = (results[k] for k in ("check", "verify", "archive", "rebuild"))
    print(f"check gate        {lib.fmt(c['check_s'])} vs pip freeze {lib.fmt(c['pip_freeze_s'])}"
          f"  ({c['ratio']:.2f}x)")
    print(f"verify gate       {lib.fmt(v['verify_s'])} vs replay {lib.fmt(v['replay_s'])}"
          f"  ({v['ratio']:.2f}x)")
    print(f"export            {lib.fmt(a['export_s'])} vs docker save {lib.fmt(a['docker_save_s'])}"
          f"  ({a['export_ratio']:.2f}x; {a['archive_bytes'] / 2**20:.1f} MiB vs "
          f"{a['docker_save_bytes'] / 2**20:.1f} MiB)")
    loc = results["local_archive"]
    print(f"export, local     {lib.fmt(loc['export_s'])} vs docker save | gzip "
          f"{lib.fmt(loc['docker_save_gzip_s'])}  ({loc['ratio']:.2f}x; "
          f"{loc['archive_bytes'] / 2**20:.1f} MiB vs {loc['docker_save_gzip_bytes'] / 2**20:.1f}"
          f" MiB; docker save alone {lib.fmt(loc['docker_save_once_s'])}, "
          f"{loc['docker_save_bytes'] / 2**20:.1f} MiB)")
    print(f"import (engine)   {lib.fmt(a['import_s'])} vs docker load {lib.fmt(a['docker_load_s'])}"
          f"  ({a['import_ratio']:.2f}x)")
    print(f"rebuild from run  {lib.fmt(r['from_run_s'])} vs from lock file "
          f"{lib.fmt(r['from_lock_s'])}  ({r['ratio']:.2f}x; verified "
          f"{r['fidelity']['packages']} packages, {r['fidelity']['files_verified']} files)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except lib.BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        sys.exit(1)
