"""Section g of ``bench_build.py``: envlock's parallel wheel downloader against the serial
``pip download`` provisioning used before (issue #25), on the same wheels in one run.

The wheels come from PyPI with the machine's pip configuration bypassed (as
``../shared/TEST-ENVIRONMENT.md`` shows: ``env -u PIP_FIND_LINKS PIP_CONFIG_FILE=/dev/null``),
so both sides cross the network; pip's HTTP cache is off and each side writes into a new,
empty directory. Rounds alternate the order. Timed, per round:

* ``pip download --no-deps`` of every wheel at once (pip fetches one at a time): what
  ``provision`` ran before;
* envlock: its resolution (each wheel's URL and sha256 from PyPI's listings, picked for
  the image's tags, in parallel, nothing downloaded), then the wheels fetched by
  ``adapters.download.WheelCache`` with ``ENVLOCK_DOWNLOADS`` threads (8), each
  hash-checked while it streams;
* the same downloader with one thread (the parallelism alone, without pip's overheads);
* the envlock path again into the now warm cache: a second project sharing the wheels
  (bytes downloaded, target 0).

Runs alone with ``bench_build.py --downloads-only``.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchlib import log, run

#: About 250 MB of wheels from PyPI, for CPython 3.11 on manylinux x86_64.
WHEELS = ("numpy==2.1.3", "pandas==2.2.3", "scipy==1.14.1", "pyarrow==18.1.0",
          "scikit-learn==1.5.2", "matplotlib==3.9.2", "pillow==11.0.0", "sympy==1.13.3",
          "networkx==3.4.2", "fonttools==4.55.0", "kiwisolver==1.4.7", "contourpy==1.3.1",
          "joblib==1.4.2", "threadpoolctl==3.5.0", "python-dateutil==2.9.0.post0",
          "pytz==2024.2", "tzdata==2024.2", "mpmath==1.3.0", "packaging==24.2",
          "pyparsing==3.2.0", "cycler==0.12.1", "six==1.16.0")
PIP_TARGET = ["--only-binary=:all:", "--python-version", "3.11", "--implementation", "cp",
              "--abi", "cp311", "--platform", "manylinux_2_17_x86_64",
              "--platform", "manylinux2014_x86_64"]


def pypi_env(env: dict) -> dict:
    """The environment with the machine's pip configuration bypassed (PyPI only)."""
    out = {k: v for k, v in env.items() if k != "PIP_FIND_LINKS"}
    out["PIP_CONFIG_FILE"] = "/dev/null"
    return out


def pip_serial(env: dict, dest: Path) -> float:
    dt, _ = run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-cache-dir",
                 "--progress-bar", "off", "-q", "-d", str(dest), *PIP_TARGET, *WHEELS],
                env=pypi_env(env), timeout=1800)
    return dt


def resolve(env: dict, cache_root: Path) -> tuple[float, list]:
    """envlock's resolution: each wheel's URL and sha256 from PyPI's listings, picked for
    the image's tags (``provision._resolve``: parallel, nothing downloaded)."""
    from types import SimpleNamespace

    from envlock.model.lockfile import Package, Source
    from envlock.operations.build import provision

    packages = [Package(name=r.split("==")[0], version=r.split("==")[1],
                        source=Source(kind="index")) for r in WHEELS]
    lock = SimpleNamespace(index={}, python={"version": "3.11.2",
                                             "platform_tag": "manylinux_2_17_x86_64"})
    jobs = [SimpleNamespace(pkg=p, cache=cache_root) for p in packages]
    saved = {k: os.environ.get(k) for k in ("PIP_FIND_LINKS", "PIP_CONFIG_FILE")}
    os.environ.pop("PIP_FIND_LINKS", None)
    os.environ["PIP_CONFIG_FILE"] = "/dev/null"  # PyPI only, as pip's side
    try:
        t0 = time.perf_counter()
        wanted = provision._resolve(lock, jobs, lambda _: None)  # type: ignore[arg-type]
        dt = time.perf_counter() - t0
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    if len(wanted) != len(WHEELS):
        raise RuntimeError(f"resolved {len(wanted)} of {len(WHEELS)} wheels")
    return dt, list(wanted.values())


def fetch(wanted: list, root: Path, workers: int) -> tuple[float, int, int]:
    """Seconds, bytes downloaded, wheels reused."""
    from envlock.adapters.download import WheelCache

    cache = WheelCache(root, connections=workers)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        got = list(pool.map(cache.fetch, wanted))
    return time.perf_counter() - t0, sum(f.downloaded for f in got), \
        sum(f.reused for f in got)


def section_downloads(ctx: dict, rounds: int) -> dict:
    env, base = ctx["env"], Path(ctx["workdir"]) / f"downloads-{ctx['stamp']}"
    os.environ["ENVLOCK_LOCK_DIR"] = str(base / "locks")
    rows: list[dict] = []
    try:
        for index in range(rounds):
            scratch = Path(tempfile.mkdtemp(prefix=f"round{index}-", dir=_mk(base)))
            order = ("pip", "envlock") if index % 2 == 0 else ("envlock", "pip")
            row: dict = {"order": order}
            for side in order:
                if side == "pip":
                    row["pip_serial_s"] = round(pip_serial(env, _mk(scratch / "pip")), 2)
                else:
                    resolve_s, wanted = resolve(env, scratch / "cache8")
                    fetch_s, downloaded, _ = fetch(wanted, scratch / "cache8", 8)
                    row.update(resolve_s=round(resolve_s, 2), fetch8_s=round(fetch_s, 2),
                               envlock_s=round(resolve_s + fetch_s, 2), bytes=downloaded,
                               wheels=len(wanted))
            row["fetch1_s"] = round(fetch(wanted, scratch / "cache1", 1)[0], 2)
            if index % 2:  # 1 thread then 8 on fresh caches: neither goes first each time
                row["fetch8_s"] = round(fetch(wanted, scratch / "cache8b", 8)[0], 2)
            again_s, again_bytes, reused = fetch(wanted, scratch / "cache8", 8)
            row.update(shared_s=round(again_s, 3), shared_bytes=again_bytes, shared_reused=reused)
            log(f"downloads round {index}: {row}")
            rows.append(row)
            shutil.rmtree(scratch, ignore_errors=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return summarize(rows)


def _mk(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def summarize(rows: list[dict]) -> dict:
    def med(key: str) -> float:
        return round(statistics.median(r[key] for r in rows), 2)

    out = {"rounds": rows, "wheels": rows[0]["wheels"], "mb": round(rows[0]["bytes"] / 1e6, 1),
           **{f"{k}_median": med(k) for k in ("pip_serial_s", "resolve_s", "fetch8_s",
                                              "envlock_s", "fetch1_s")},
           "shared_bytes": max(r["shared_bytes"] for r in rows)}
    out["speedup_vs_pip"] = round(out["pip_serial_s_median"] / out["envlock_s_median"], 2)
    out["speedup_8_vs_1_threads"] = round(out["fetch1_s_median"] / out["fetch8_s_median"], 2)
    out["mb_per_s_8"] = round(out["mb"] / out["fetch8_s_median"], 1)
    out["mb_per_s_pip"] = round(out["mb"] / out["pip_serial_s_median"], 1)
    return out


def report_downloads(d: dict) -> None:
    print(f"\ng. wheel downloads from PyPI: {d['wheels']} wheels, {d['mb']} MB, "
          f"{len(d['rounds'])} rounds (medians)")
    print(f"  pip download (serial, before)         {d['pip_serial_s_median']:8.2f} s  "
          f"{d['mb_per_s_pip']} MB/s")
    print(f"  envlock: resolve {d['resolve_s_median']:.2f} s + 8 threads "
          f"{d['fetch8_s_median']:.2f} s = {d['envlock_s_median']:8.2f} s  "
          f"({d['mb_per_s_8']} MB/s while fetching)")
    print(f"  envlock downloader, 1 thread          {d['fetch1_s_median']:8.2f} s")
    print(f"  speed-up vs pip download: {d['speedup_vs_pip']}x; 8 vs 1 thread: "
          f"{d['speedup_8_vs_1_threads']}x; a second project sharing them downloads "
          f"{d['shared_bytes']} bytes")
