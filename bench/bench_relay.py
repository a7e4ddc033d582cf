"""Benchmark: the replay's run-tree relay and its artifact comparison.

A sweep (tests/experiments/sweep.py: a parent, 5 child runs with metric histories and
files, a figure, a dataset input, an MLflow 3 logged model and a 50 MB checkpoint) is
logged to a file store at one path, moved (as the replay container's store is read on
the host), and relayed into a fresh replay run of the embedded SQLite store, ``--rounds``
times. Each round also compares the replay's tree and every artifact by sha256 with the
first relay's (what ``envlock replay --compare-artifacts`` does).

Baselines in the same run, on the same bytes: MLflow's own ``log_artifacts`` of the
store's artifact directories into a fresh run (the floor for any relay into that store),
and hashing the same files with hashlib (the floor for a comparison by hash).

    .venv/bin/python bench/bench_relay.py [--rounds 5] [--artifact-mb 50] [--json FILE]

Targets (issue #10): relay under 5 s, comparison under 1 s more.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from benchlib import REPO, fmt, log, med, run

SWEEP = REPO / "tests" / "experiments" / "sweep.py"


def make_store(work: Path, children: int, artifact_mb: int) -> tuple[Path, str]:
    seen = work / "container" / "store"
    env = {**os.environ, "MLFLOW_TRACKING_URI": seen.as_uri(), "MLFLOW_ALLOW_FILE_STORE": "true"}
    run([sys.executable, str(SWEEP), "--children", str(children), "--artifact-mb",
         str(artifact_mb), "--model"], cwd=work, env=env)
    host = work / "host" / "store"
    host.parent.mkdir(parents=True)
    shutil.move(seen, host)
    return host, str(seen)


def artifact_dirs(store: Path) -> list[Path]:
    return sorted(p for p in store.glob("0/*/artifacts") if p.is_dir()) + sorted(
        p for p in store.glob("0/models/*/artifacts") if p.is_dir())


def hash_files(dirs: list[Path]) -> int:
    total = 0
    for directory in dirs:
        for root, _d, names in os.walk(directory):
            for name in names:
                with open(os.path.join(root, name), "rb") as handle:
                    digest = hashlib.sha256()
                    for block in iter(lambda h=handle: h.read(1 << 20), b""):
                        digest.update(block)
                total += 1
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--children", type=int, default=5)
    parser.add_argument("--artifact-mb", type=int, default=50)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    from envlock.adapters.tracking import Tracker
    from envlock.model.compare import compare_artifacts, compare_tree

    with tempfile.TemporaryDirectory(prefix="envlock-bench-relay-") as tmp:
        work = Path(tmp)
        log(f"logging the sweep: {args.children} children, {args.artifact_mb} MB artifact")
        store, seen = make_store(work, args.children, args.artifact_mb)
        dirs = artifact_dirs(store)
        size = sum(f.stat().st_size for d in dirs for f in d.rglob("*") if f.is_file())
        tracker = Tracker(f"sqlite:///{work}/host.db")
        first = tracker.create_run("0", "first", {})
        report = tracker.relay_file_store(store, first, seen)
        assert report.complete, report.missing
        relay_s, compare_s, upload_s, hash_s = [], [], [], []
        for i in range(args.rounds):
            replay = tracker.create_run("0", f"replay {i}", {})
            t0 = time.perf_counter()
            report = tracker.relay_file_store(store, replay, seen)
            relay_s.append(time.perf_counter() - t0)
            assert report.complete, report.missing
            t0 = time.perf_counter()
            comparison = compare_tree(tracker.run_tree(first), tracker.run_tree(replay))
            pairs = [("", first, replay)] + [(r.name, r.original_id, r.replay_id)
                                             for r in comparison.runs]
            digests = tracker.artifact_digests_of([str(i) for _n, a, b in pairs
                                                   for i in (a, b)])
            rows = compare_artifacts((n, digests[str(a)], digests[str(b)])
                                     for n, a, b in pairs)
            compare_s.append(time.perf_counter() - t0)
            assert comparison.reproduced and rows
            floor = tracker.create_run("0", f"floor {i}", {})
            t0 = time.perf_counter()
            for directory in dirs:
                tracker.client.log_artifacts(floor, str(directory), directory.parent.name)
            upload_s.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            hash_files(dirs)
            hash_files(dirs)  # both sides of a comparison
            hash_s.append(time.perf_counter() - t0)
            log(f"round {i + 1}: relay {relay_s[-1]:.2f} s, compare {compare_s[-1]:.2f} s, "
                f"log_artifacts {upload_s[-1]:.2f} s, sha256 x2 {hash_s[-1]:.2f} s")
    result = {
        "runs": report.runs, "metric_points": report.metric_points, "models": report.models,
        "artifact_files": report.artifacts, "artifact_mb": round(size / 1e6, 1),
        "artifacts_compared": len(rows), "rounds": args.rounds,
        "relay_s": med(relay_s), "compare_s": med(compare_s),
        "baseline_log_artifacts_s": med(upload_s), "baseline_sha256_both_sides_s": med(hash_s),
    }
    result["relay_vs_log_artifacts"] = result["relay_s"] / result["baseline_log_artifacts_s"]
    result["compare_vs_sha256"] = result["compare_s"] / result["baseline_sha256_both_sides_s"]
    print(f"relay of {result['runs']} runs, {result['metric_points']} metric points, "
          f"{result['models']} model, {result['artifact_files']} files "
          f"({result['artifact_mb']} MB); medians of {args.rounds} rounds")
    print(f"  relay                     {fmt(result['relay_s'])}  (target < 5 s)  "
          f"{result['relay_vs_log_artifacts']:.2f}x MLflow's log_artifacts of the same files "
          f"({fmt(result['baseline_log_artifacts_s'])})")
    print(f"  compare tree + artifacts  {fmt(result['compare_s'])}  (target < 1 s)  "
          f"{result['compare_vs_sha256']:.2f}x hashlib over both sides "
          f"({fmt(result['baseline_sha256_both_sides_s'])})")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
