#!/usr/bin/env python3
"""Benchmark the cost of ``envlock.autolog()``'s audit hook on a run's file reads.

Not a test: run it by hand, from the repository root, with the dev venv::

    .venv/bin/python bench/bench_readlog.py [--opens 20000] [--files 2000] [--rounds 5]

One process opens and reads ``--files`` small files ``--opens`` times in all: first with
no hook (the baseline), then with :class:`envlock.snapshot.readlog.Recorder` recording
(audit hooks cannot be removed, so the baseline runs first); medians over ``--rounds``.
Then :meth:`Recorder.finish` (the sorting and one stat per candidate at the run's end).
Reported as the ratio hooked / baseline per open, and the finish time.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def reads(paths: list[Path], opens: int) -> float:
    started = time.perf_counter()
    for number in range(opens):
        with open(paths[number % len(paths)], "rb") as handle:
            handle.read()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--opens", type=int, default=20000)
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    from envlock.snapshot.readlog import Recorder

    with tempfile.TemporaryDirectory(prefix="bench-readlog-", dir=Path.cwd()) as tmp:
        paths = [Path(tmp, f"f{n}.csv") for n in range(args.files)]
        for path in paths:
            path.write_bytes(b"1,2\n" * 16)
        base = statistics.median(reads(paths, args.opens) for _ in range(args.rounds))
        recorder = Recorder()
        recorder.start()
        hooked = statistics.median(reads(paths, args.opens) for _ in range(args.rounds))
        started = time.perf_counter()
        found, _outputs = recorder.finish(Path(tmp))
        finish = time.perf_counter() - started
    print(f"open+read, no hook:  {base / args.opens * 1e6:8.2f} µs")
    print(f"open+read, recorded: {hooked / args.opens * 1e6:8.2f} µs  "
          f"ratio {hooked / base:.3f}")
    print(f"finish ({len(found)} inputs of {args.files} files): {finish * 1000:.1f} ms")


if __name__ == "__main__":
    main()
