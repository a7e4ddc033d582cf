#!/usr/bin/env python3
"""Benchmark pinning a run's inputs: hashing throughput, and an unchanged re-capture.

Not a test: run it by hand, from the repository root, with the dev venv::

    .venv/bin/python bench/bench_inputs.py [--file-mib 1024] [--dir-mib 2048]
        [--files 10000] [--rounds 5] [--workdir /var/tmp/envlock-bench-inputs] [--json F]

1. sha256 of one large file (``--file-mib``, in the page cache after a warm-up read) by
   ``envlock.snapshot.inputs.sha256_file`` against the baseline ``hashlib.sha256`` fed
   1 MiB reads, in one process on one core; medians over ``--rounds``. Target: ≥ 1 GB/s.
2. ``envlock.operations.inputs.pin`` of a directory of ``--files`` files (``--dir-mib`` in
   all) declared as an input: cold (an empty stat cache: every file hashed) against an
   unchanged re-capture (the stat cache from the cold run: a walk and a stat per file).
   Target: the re-capture under 1 s.

Results are ratios in one run, on the same machine; see bench/README.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def make_file(path: Path, mib: int) -> None:
    if path.is_file() and path.stat().st_size == mib << 20:
        return
    block = os.urandom(1 << 20)
    with path.open("wb") as handle:
        for _ in range(mib):
            handle.write(block)


def make_dir(root: Path, files: int, mib: int) -> None:
    size = (mib << 20) // files
    marker = root.parent / (root.name + ".made")
    if marker.is_file() and marker.read_text() == f"{files} {size}":
        return
    block = os.urandom(size)
    for n in range(files):
        sub = root / f"shard-{n % 100:03d}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"sample-{n:05d}.bin").write_bytes(n.to_bytes(8, "big") + block[8:])
    marker.write_text(f"{files} {size}")


def baseline_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def timed(func, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_hash(work: Path, mib: int, rounds: int) -> dict:
    from envlock.snapshot.inputs import sha256_file

    path = work / f"large-{mib}m.bin"
    make_file(path, mib)
    assert sha256_file(path) == baseline_sha256(path)  # warm-up: the page cache
    ours, base = timed(lambda: sha256_file(path), rounds), \
        timed(lambda: baseline_sha256(path), rounds)
    size = mib << 20
    return {"bytes": size, "envlock_s": ours, "hashlib_s": base,
            "envlock_gb_per_s": size / ours / 1e9, "hashlib_gb_per_s": size / base / 1e9,
            "ratio_envlock_over_hashlib": ours / base}


def bench_recapture(work: Path, files: int, mib: int, rounds: int) -> dict:
    from envlock.operations import inputs as ops

    project = work / "project"
    make_dir(project / "dataset", files, mib)
    stat = work / "cache" / "inputs" / "stat.json"
    os.environ["ENVLOCK_CACHE"] = str(work / "cache")
    sources = ops.Sources(declared=["dataset"])

    def cold() -> None:
        stat.unlink(missing_ok=True)
        ops.pin(project, sources, 1 << 40, False)

    def warm() -> None:
        ops.pin(project, sources, 1 << 40, False)

    cold_s = timed(cold, max(1, rounds // 2))
    warm_s = timed(warm, rounds)
    pinned = ops.pin(project, sources, 1 << 40, False).inputs[0]
    return {"files": len(pinned.files), "bytes": pinned.size, "cold_s": cold_s,
            "unchanged_recapture_s": warm_s, "ratio_recapture_over_cold": warm_s / cold_s}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file-mib", type=int, default=1024)
    parser.add_argument("--dir-mib", type=int, default=2048)
    parser.add_argument("--files", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workdir", type=Path, default=Path("/var/tmp/envlock-bench-inputs"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    hashing = bench_hash(args.workdir, args.file_mib, args.rounds)
    print(f"sha256 of {hashing['bytes'] >> 20} MiB: envlock {hashing['envlock_gb_per_s']:.2f} "
          f"GB/s, hashlib 1 MiB reads {hashing['hashlib_gb_per_s']:.2f} GB/s, ratio "
          f"{hashing['ratio_envlock_over_hashlib']:.2f} (target ≥ 1 GB/s)")
    recapture = bench_recapture(args.workdir, args.files, args.dir_mib, args.rounds)
    print(f"pin {recapture['files']} files, {recapture['bytes'] >> 20} MiB: cold "
          f"{recapture['cold_s']:.2f} s, unchanged re-capture "
          f"{recapture['unchanged_recapture_s']:.3f} s, ratio "
          f"{recapture['ratio_recapture_over_cold']:.3f} (target < 1 s)")
    if args.json:
        args.json.write_text(json.dumps({"hashing": hashing, "recapture": recapture},
                                        indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
