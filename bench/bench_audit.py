#!/usr/bin/env python3
"""Benchmark ``envlock audit`` offline, and the content scan for secrets.

Not a test: run it by hand, from the repository root, with the dev venv::

    .venv/bin/python bench/bench_audit.py [--rounds 5] [--records 20000] [--json FILE]

1. The audit of a 100-package lock (the first 100 packages of a lock of this very venv,
   written with envlock's own writer) against an OSV dump of ``--records`` records in a
   zip laid out as OSV's ``PyPI/all.zip``: the 14 real records of
   ``tests/fixtures/osv`` plus synthetic ones made from them (other package names, and
   one in ten for a locked package at versions it does not have, so they are parsed and
   matched). Timed as ``envlock audit LOCK --advisories dump.zip --json`` against
   ``envlock show LOCK --json`` on the same lock (the baseline: start-up and lock
   loading), alternating, medians over ``--rounds``; the same audit from the unzipped
   directory too. Each audit is timed cold (an empty envlock cache: every record is read
   and the dump's index is made) and warm (the index cached by an earlier audit of the
   same dump: only the locked packages' records are read). Target: under 2 s.
2. The content scan of every file this repository tracks (``snapshot.secrets.Scan``, as
   the code layer runs it), in-process, against reading and hashing the same files (what
   packing them costs anyway), medians over ``--rounds``, after one warm-up run that
   loads detect-secrets and fills the pattern cache.

See bench/README.md.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import replace
from pathlib import Path

import benchlib as lib

FIXTURES = lib.REPO / "tests" / "fixtures" / "osv"
ENVLOCK = [sys.executable, "-m", "envlock"]


def make_lock(workdir: Path) -> Path:
    """A 100-package lock: this venv's lock, cut to its first 100 packages."""
    from envlock.model import lockfile

    full = workdir / "full.lock.yaml"
    lib.run([*ENVLOCK, "lock", "--no-gpu", "--no-git", "-o", str(full)], cwd=workdir)
    lock = lockfile.load(full)
    if len(lock.packages) < 100:
        raise lib.BenchError(f"this venv has {len(lock.packages)} packages, 100 are needed")
    return lockfile.write(replace(lock, packages=lock.packages[:100]),
                          workdir / "envlock.lock.yaml")


def make_dump(workdir: Path, records: int, locked: list[str]) -> tuple[Path, Path]:
    """``all.zip`` and the same records as a directory: the real fixtures, then synthetic
    copies (every tenth one naming a locked package, at versions it does not have)."""
    real = [json.loads(p.read_text()) for p in sorted(FIXTURES.glob("*.json"))]
    directory = workdir / "dump"
    directory.mkdir(exist_ok=True)
    archive = workdir / "all.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
        for index in range(records):
            record = copy.deepcopy(real[index % len(real)])
            if index >= len(real):
                record["id"] = f"SYNTH-{index:06d}"
                record["aliases"] = [f"CVE-2099-{index:06d}"]
                name = locked[index % len(locked)] if index % 10 == 0 else f"synthetic-{index}"
                for entry in record["affected"]:
                    entry["package"]["name"] = name
                    entry["ranges"] = [{"type": "ECOSYSTEM", "events": [
                        {"introduced": "0"}, {"fixed": "0.0.1"}]}]
                    entry["versions"] = ["0.0.0"]
            text = json.dumps(record, indent=2)
            (directory / f"{record['id']}.json").write_text(text)
            zipped.writestr(f"{record['id']}.json", text)
    return archive, directory


def alternate(rounds: int, commands: dict[str, list[str]], cwd: Path) -> dict[str, list[float]]:
    """Each command once a round, the order rotating; a command named ``… cold`` runs with
    an empty envlock cache, the others with the bench's warm one."""
    import os
    import shutil

    times: dict[str, list[float]] = {name: [] for name in commands}
    names = list(commands)
    warm, cold = cwd / "cache-warm", cwd / "cache-cold"
    for index in range(rounds):
        order = names[index % len(names):] + names[:index % len(names)]
        for name in order:
            shutil.rmtree(cold, ignore_errors=True)
            env = {**os.environ, "ENVLOCK_CACHE": str(cold if name.endswith("cold") else warm)}
            env.pop("ENVLOCK_DEBUG", None)
            dt, proc = lib.run(commands[name], cwd=cwd, env=env, check=False)
            if proc.returncode not in (0, 1):
                raise lib.BenchError(f"{name}: exit {proc.returncode}: {proc.stderr[-1500:]}")
            times[name].append(dt)
    return times


def bench_audit(workdir: Path, rounds: int, records: int) -> dict:
    from envlock.model import lockfile

    lock = make_lock(workdir)
    names = [p.name for p in lockfile.load(lock).packages]
    lib.log(f"writing a dump of {records} records")
    archive, directory = make_dump(workdir, records, names)
    audit_zip = [*ENVLOCK, "audit", str(lock), "--advisories", str(archive), "--json"]
    audit_dir = [*ENVLOCK, "audit", str(lock), "--advisories", str(directory), "--json"]
    commands = {"envlock show": [*ENVLOCK, "show", str(lock), "--json"],
                "audit zip cold": audit_zip, "audit zip warm": audit_zip,
                "audit directory cold": audit_dir, "audit directory warm": audit_dir}
    times = alternate(1, commands, workdir)  # warm-up round: fills the warm cache
    _, proc = lib.run(audit_zip, cwd=workdir, check=False)
    audited = json.loads(proc.stdout)["result"]
    times = alternate(rounds, commands, workdir)
    medians = {name: lib.med(values) for name, values in times.items()}
    show = medians["envlock show"] or 1
    return {"lock_packages": 100, "records": records,
            "zip_mb": round(archive.stat().st_size / 1e6, 1),
            "findings": len(audited["findings"]),
            "records_in_dump": audited["sources"][0]["records"],
            "medians_s": medians,
            "ratios_vs_show": {name: (value or 0) / show for name, value in medians.items()
                               if name != "envlock show"},
            "target_met": all((v or 99) < 2.0 for k, v in medians.items() if "audit" in k)}


def bench_scan(rounds: int) -> dict:
    from envlock.snapshot.secrets import Scan

    files = [f for f in subprocess.run(["git", "ls-files"], cwd=lib.REPO, capture_output=True,
                                       text=True, check=True).stdout.splitlines()
             if (lib.REPO / f).is_file() and not (lib.REPO / f).is_symlink()]
    size = sum((lib.REPO / f).stat().st_size for f in files)

    def scan() -> int:
        checker = Scan()
        return sum(1 for f in files if checker.file(lib.REPO / f, f))

    def hashed() -> int:
        return len({hashlib.sha256((lib.REPO / f).read_bytes()).digest() for f in files})

    flagged = scan()  # warm-up: detect-secrets loaded, pattern cache filled
    timings: dict[str, list[float]] = {"scan": [], "read+hash": []}
    for index in range(rounds):
        for name, func in ((("scan", scan), ("read+hash", hashed))[::1 if index % 2 else -1]):
            start = time.perf_counter()
            func()
            timings[name].append(time.perf_counter() - start)
    medians = {name: lib.med(values) for name, values in timings.items()}
    return {"files": len(files), "mb": round(size / 1e6, 2), "flagged": flagged,
            "medians_s": medians, "ratio_scan_vs_hash": medians["scan"] / medians["read+hash"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--records", type=int, default=20000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    sys.path.insert(0, str(lib.REPO))
    with tempfile.TemporaryDirectory(prefix="envlock-bench-audit-") as tmp:
        audit = bench_audit(Path(tmp), args.rounds, args.records)
    scan = bench_scan(args.rounds)
    print(f"audit of a {audit['lock_packages']}-package lock against {audit['records']} OSV "
          f"records ({audit['zip_mb']} MB zip), {args.rounds} rounds, medians:")
    for name, value in audit["medians_s"].items():
        ratio = audit["ratios_vs_show"].get(name)
        print(f"  {name:28s} {lib.fmt(value)}" + (f"  ({ratio:.2f}x show)" if ratio else ""))
    print(f"  target < 2 s for every audit: {'met' if audit['target_met'] else 'NOT met'}")
    print(f"secret scan of {scan['files']} tracked files ({scan['mb']} MB), "
          f"{scan['flagged']} flagged, medians:")
    for name, value in scan["medians_s"].items():
        print(f"  {name:28s} {lib.fmt(value)}")
    print(f"  scan/read+hash {scan['ratio_scan_vs_hash']:.1f}x")
    if args.json:
        args.json.write_text(json.dumps({"audit": audit, "scan": scan}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
