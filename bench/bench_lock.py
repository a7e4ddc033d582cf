#!/usr/bin/env python3
"""Benchmark ``envlock lock`` against ``pip freeze`` and ``uv pip freeze``.

Not a test: run it by hand, from the repository root::

    .venv/bin/python bench/bench_lock.py [--workdir DIR] [--rounds 7] [--json FILE]

It builds (once, cached under ``--workdir``) two throwaway virtualenvs holding about
100 and about 500 *really installed* distributions: locally generated, valid pure-Python
wheels (real modules, METADATA/WHEEL/RECORD with correct sha256 hashes, dependencies,
console scripts, a few installed from a wheel path so that they carry a PEP 610
``direct_url.json``) plus a handful of real packages from the configured index, and real
environments installed as users install them (``REAL_ENVS``: mlflow + scikit-learn +
pandas from the index, ~90 distributions with large RECORDs; a pinned CPU torch from a
local wheel). Then it times, alternated in rounds on the same venv:

* ``envlock lock --python VENV/bin/python -o TMPFILE`` (envlock runs from the dev venv,
  not from the target venv; cwd is a small git repository with a modified file);
* ``VENV/bin/python -m pip freeze`` (the venv's own pip);
* ``uv pip freeze --python VENV/bin/python`` (when uv can be found or installed);
* ``envlock --help`` and ``envlock --version`` (startup time).

See bench/README.md.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import csv
import glob
import hashlib
import io
import json
import os
import platform
import random
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
#: Bump when the generated wheels or the venv recipe change: invalidates the cache.
RECIPE = 3
SIZES = (100, 500)
#: Real packages from the configured index (with their dependencies); optional.
REAL_PACKAGES = ("requests", "attrs", "six", "packaging", "pyyaml", "click", "wheel")
DIRECT_URL_EVERY = 20  # every 20th generated package is installed from its wheel path
#: Real environments, installed as users install them (large RECORDs, compiled extensions).
#: "torch" installs a pinned CPU wheel from a local file (never an unpinned torch: GBs).
REAL_ENVS = {
    "mlflow": ("mlflow", "scikit-learn", "pandas"),
    "torch": ("{torch_wheel}", "numpy"),
}
TORCH_WHEEL_GLOB = "/opt/wheels/torch-2.13.0+cpu-cp{py}-cp{py}-*.whl"

TARGETS = {
    "lock_100_s": 0.25,         # envlock lock <= 0.25 s at ~100 dists
    "speedup_vs_pip": 3.0,      # >= 3x faster than pip freeze
    "help_s": 0.3,              # envlock --help <= 0.3 s
}

ADJECTIVES = ("fast", "tiny", "deep", "quiet", "bright", "lazy", "sharp", "solid", "rapid",
              "smart", "neat", "open", "blue", "cold", "wild", "young", "prime", "clear")
NOUNS = ("tensor", "loader", "cache", "graph", "token", "vision", "metric", "sched", "shard",
         "kernel", "batch", "audio", "frame", "vector", "config", "logger", "router", "store")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- wheels


def _record_hash(data: bytes) -> str:
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _project(i: int) -> dict:
    """Deterministic description of generated project number ``i``."""
    rng = random.Random(i * 7919 + RECIPE)
    adj, noun = ADJECTIVES[i % len(ADJECTIVES)], NOUNS[(i // len(ADJECTIVES)) % len(NOUNS)]
    style = i % 4
    if style == 0:
        name = f"{adj}-{noun}-{i:04d}"
    elif style == 1:
        name = f"{adj.capitalize()}_{noun.capitalize()}{i:04d}"
    elif style == 2:
        name = f"{adj}.{noun}.{i:04d}"
    else:
        name = f"py{adj}{noun}{i:04d}"
    version = f"{rng.randint(0, 3)}.{rng.randint(0, 30)}.{rng.randint(0, 9)}"
    if i % 11 == 0:
        version += "rc1"
    elif i % 13 == 0:
        version += ".post1"
    deps = sorted(rng.sample(range(i), k=min(i, rng.randint(0, 3)))) if i else []
    return {"i": i, "name": name, "version": version,
            "module": f"{adj}_{noun}_{i:04d}", "deps": deps,
            "console": i % 10 == 3, "subpkg": i % 5 == 1}


def _escaped(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _modules(p: dict) -> dict[str, str]:
    mod = p["module"]
    files = {
        f"{mod}/__init__.py": (
            f'"""{p["name"]}: generated for the envlock benchmark."""\n\n'
            f"from {mod}._version import __version__\n"
            f"from {mod}.core import Engine, run\n"
            f"from {mod}.utils import chunked, flatten\n\n"
            f'__all__ = ["Engine", "run", "chunked", "flatten", "__version__"]\n'),
        f"{mod}/_version.py": f'__version__ = "{p["version"]}"\n',
        f"{mod}/core.py": (
            '"""Core engine."""\n\nfrom __future__ import annotations\n\n'
            "import dataclasses\nimport logging\n\n"
            f"from {mod}.utils import chunked\n\n"
            "log = logging.getLogger(__name__)\n\n\n"
            "@dataclasses.dataclass\nclass Engine:\n"
            "    batch_size: int = 32\n    seed: int = 0\n\n"
            "    def step(self, items):\n"
            "        total = 0\n"
            "        for chunk in chunked(items, self.batch_size):\n"
            "            total += sum(hash(x) & 0xFF for x in chunk)\n"
            "        log.debug('step done: %s', total)\n"
            "        return total\n\n\n"
            "def run(items, batch_size: int = 32) -> int:\n"
            "    return Engine(batch_size=batch_size).step(list(items))\n"),
        f"{mod}/utils.py": (
            '"""Small helpers."""\n\nfrom __future__ import annotations\n\n'
            "import itertools\n\n\n"
            "def chunked(items, size):\n"
            "    it = iter(items)\n"
            "    while chunk := list(itertools.islice(it, size)):\n"
            "        yield chunk\n\n\n"
            "def flatten(nested):\n"
            "    return [x for sub in nested for x in sub]\n"),
    }
    if p["subpkg"]:
        files[f"{mod}/ext/__init__.py"] = '"""Optional extensions."""\n'
        files[f"{mod}/ext/io.py"] = (
            "import json\n\n\ndef dump(obj, path):\n"
            "    with open(path, 'w', encoding='utf-8') as fh:\n"
            "        json.dump(obj, fh)\n")
    if p["console"]:
        files[f"{mod}/cli.py"] = (
            "import sys\n\n\ndef main(argv=None):\n"
            "    print(' '.join(argv or sys.argv[1:]))\n    return 0\n")
    return files


def build_wheel(p: dict, projects: list[dict], outdir: Path) -> Path:
    name, version, esc = p["name"], p["version"], _escaped(p["name"])
    dist_info = f"{esc}-{version}.dist-info"
    meta = [
        "Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}",
        f"Summary: Generated package {p['i']} for the envlock benchmark",
        f"Home-page: https://example.invalid/{esc}", "Author: envlock bench",
        "Author-email: bench@example.invalid", "License: Apache-2.0",
        "Classifier: Programming Language :: Python :: 3",
        "Classifier: License :: OSI Approved :: Apache Software License",
        "Requires-Python: >=3.8",
    ]
    for d in p["deps"]:
        dep = projects[d]
        meta.append(f"Requires-Dist: {dep['name']}>={dep['version']}")
    meta.append('Requires-Dist: pytest>=7; extra == "test"')
    meta.append("Provides-Extra: test")
    meta.append("Description-Content-Type: text/markdown")
    meta_text = "\n".join(meta) + f"\n\n# {name}\n\nA generated package.\n"
    files = dict(_modules(p))
    files[f"{dist_info}/METADATA"] = meta_text
    files[f"{dist_info}/WHEEL"] = ("Wheel-Version: 1.0\nGenerator: envlock-bench\n"
                                   "Root-Is-Purelib: true\nTag: py3-none-any\n")
    files[f"{dist_info}/top_level.txt"] = p["module"] + "\n"
    if p["console"]:
        script = esc.replace("_", "-")
        files[f"{dist_info}/entry_points.txt"] = (
            f"[console_scripts]\n{script} = {p['module']}.cli:main\n")
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    path = outdir / f"{esc}-{version}-py3-none-any.whl"
    tmp = path.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for arc, text in files.items():
            data = text.encode()
            zf.writestr(arc, data)
            writer.writerow([arc, _record_hash(data), len(data)])
        writer.writerow([f"{dist_info}/RECORD", "", ""])
        zf.writestr(f"{dist_info}/RECORD", record.getvalue())
    tmp.replace(path)
    return path


def ensure_wheels(workdir: Path, count: int) -> tuple[list[dict], dict[int, Path]]:
    outdir = workdir / "wheels"
    marker = outdir / ".done.json"
    projects = [_project(i) for i in range(count)]
    want = {"recipe": RECIPE, "count": count}
    paths = {p["i"]: outdir / f"{_escaped(p['name'])}-{p['version']}-py3-none-any.whl"
             for p in projects}
    if marker.is_file() and json.loads(marker.read_text()) == want and all(
            x.is_file() for x in paths.values()):
        return projects, paths
    shutil.rmtree(outdir, ignore_errors=True)
    outdir.mkdir(parents=True)
    t0 = time.perf_counter()
    for p in projects:
        build_wheel(p, projects, outdir)
    marker.write_text(json.dumps(want))
    log(f"generated {count} wheels in {time.perf_counter() - t0:.1f}s -> {outdir}")
    return projects, paths


def ensure_real_wheels(workdir: Path, py: str) -> tuple[Path | None, list[str]]:
    """Download a few real packages (and deps) from the configured index; optional."""
    outdir = workdir / "real-wheels"
    marker = outdir / ".done.json"
    want = {"recipe": RECIPE, "packages": list(REAL_PACKAGES)}
    if marker.is_file() and json.loads(marker.read_text()) == want:
        return outdir, list(REAL_PACKAGES)
    shutil.rmtree(outdir, ignore_errors=True)
    outdir.mkdir(parents=True)
    cmd = [py, "-m", "pip", "download", "-q", "--only-binary", ":all:", "-d", str(outdir),
           *REAL_PACKAGES]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        log(f"note: could not download real packages ({proc.stderr.strip()[-300:]}); "
            "using generated wheels only")
        shutil.rmtree(outdir, ignore_errors=True)
        return None, []
    marker.write_text(json.dumps(want))
    return outdir, list(REAL_PACKAGES)


# --------------------------------------------------------------------------- venvs


def pip_list_count(venv_py: Path, env: dict) -> int:
    out = subprocess.run([str(venv_py), "-m", "pip", "list", "--format=json"], env=env,
                         capture_output=True, text=True, check=True).stdout
    return len(json.loads(out))


def _cached(venv: Path, marker: Path, key: dict) -> dict | None:
    """The venv's recorded build info when it was built from the same ``key``."""
    if not marker.is_file():
        return None
    info = json.loads(marker.read_text())
    if info.get("key") != key or not (venv / "bin" / "python").exists():
        return None
    return {**info, "cached": True}


def ensure_venv(workdir: Path, target: int, projects: list[dict], paths: dict[int, Path],
                real_dir: Path | None, real: list[str], env: dict) -> dict:
    venv = workdir / f"venv-{target}"
    marker = venv / ".envlock-bench.json"
    key = {"recipe": RECIPE, "target": target, "real": real,
           "base_python": platform.python_version()}
    cached = _cached(venv, marker, key)
    if cached is not None:
        return cached
    log(f"building venv-{target} ...")
    t0 = time.perf_counter()
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=env)
    py = venv / "bin" / "python"
    base = pip_list_count(py, env)
    real_count = 0
    if real_dir is not None:
        subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-index", "--find-links",
                        str(real_dir), *real], check=True, env=env)
        real_count = pip_list_count(py, env) - base
    n_gen = max(0, target - base - real_count)
    chosen = projects[:n_gen]
    reqs = [str(paths[p["i"]]) if p["i"] % DIRECT_URL_EVERY == 7 else p["name"] for p in chosen]
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as fh:
        fh.write("\n".join(reqs) + "\n")
        req_file = fh.name
    try:
        subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-index", "--find-links",
                        str(paths[0].parent), "-r", req_file], check=True, env=env)
    finally:
        os.unlink(req_file)
    subprocess.run([str(py), "-m", "compileall", "-q", "-j", "0",
                    str(venv / "lib")], env=env, check=False)
    total = pip_list_count(py, env)
    info = {"key": key, "venv": str(venv), "python": str(py), "dists": total,
            "generated": n_gen, "real": real_count, "baseline": base,
            "direct_url": sum(1 for p in chosen if p["i"] % DIRECT_URL_EVERY == 7),
            "build_s": round(time.perf_counter() - t0, 2)}
    marker.write_text(json.dumps(info, indent=1))
    log(f"built venv-{target}: {total} dists in {info['build_s']:.1f}s")
    info["cached"] = False
    return info


def find_torch_wheel() -> str | None:
    """The local CPU torch 2.13.0 wheel for this Python, if there is one."""
    py = f"{sys.version_info[0]}{sys.version_info[1]}"
    found = sorted(glob.glob(TORCH_WHEEL_GLOB.format(py=py)))
    return found[0] if found else None


def ensure_real_env(workdir: Path, name: str, env: dict, torch_wheel: str | None) -> dict | None:
    """A venv with a real environment from REAL_ENVS (cached); None when it cannot be built."""
    requirements = [r.format(torch_wheel=torch_wheel) for r in REAL_ENVS[name]]
    if any("{torch_wheel}" in r for r in REAL_ENVS[name]) and not torch_wheel:
        log(f"note: no local torch wheel ({TORCH_WHEEL_GLOB}): skipping venv-{name}")
        return None
    venv = workdir / f"venv-{name}"
    marker = venv / ".envlock-bench.json"
    key = {"recipe": RECIPE, "requirements": requirements,
           "base_python": platform.python_version()}
    cached = _cached(venv, marker, key)
    if cached is not None:
        return cached
    log(f"building venv-{name} (pip install {' '.join(requirements)}) ...")
    t0 = time.perf_counter()
    shutil.rmtree(venv, ignore_errors=True)
    py = venv / "bin" / "python"
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=env)
        subprocess.run([str(py), "-m", "pip", "install", "-q", *requirements], check=True,
                       env=env, timeout=1800, capture_output=True, text=True)
    except (subprocess.SubprocessError, OSError) as exc:
        tail = (getattr(exc, "stderr", None) or "").strip()[-500:]
        log(f"note: could not build venv-{name} ({exc}; {tail}): skipping it")
        shutil.rmtree(venv, ignore_errors=True)
        return None
    subprocess.run([str(py), "-m", "compileall", "-q", "-j", "0", str(venv / "lib")],
                   env=env, check=False, capture_output=True)
    records = list((venv / "lib").glob("python*/site-packages/*.dist-info/RECORD"))
    info = {"key": key, "venv": str(venv), "python": str(py), "dists": pip_list_count(py, env),
            "generated": 0, "real": len(records), "baseline": 0, "direct_url": 0,
            "record_rows": sum(len(r.read_text().splitlines()) for r in records),
            "build_s": round(time.perf_counter() - t0, 2)}
    marker.write_text(json.dumps(info, indent=1))
    log(f"built venv-{name}: {info['dists']} dists in {info['build_s']:.1f}s")
    info["cached"] = False
    return info


def ensure_git_project(workdir: Path, env: dict) -> Path:
    proj = workdir / "project"
    if (proj / ".git").is_dir():
        (proj / "train.py").write_text("print('training, edited')\n")  # keep it modified
        return proj
    shutil.rmtree(proj, ignore_errors=True)
    proj.mkdir(parents=True)
    (proj / "train.py").write_text("print('training')\n")
    (proj / "README.md").write_text("# experiment\n")
    (proj / "config.yaml").write_text("lr: 0.001\nbatch_size: 32\n")
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.invalid",
           "-c", "init.defaultBranch=main", "-c", "commit.gpgsign=false"]
    subprocess.run([*git, "init", "-q"], cwd=proj, check=True, env=env)
    subprocess.run([*git, "add", "."], cwd=proj, check=True, env=env)
    subprocess.run([*git, "commit", "-q", "-m", "initial"], cwd=proj, check=True, env=env)
    (proj / "config.yaml").write_text("lr: 0.001\nbatch_size: 32\n")
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "second"], cwd=proj,
                   check=True, env=env)
    (proj / "train.py").write_text("print('training, edited')\n")
    return proj


def find_uv(workdir: Path, env: dict) -> str | None:
    candidates = [REPO / ".venv" / "bin" / "uv", Path(sys.prefix) / "bin" / "uv",
                  workdir / "tools" / "bin" / "uv"]
    for c in candidates:
        if c.exists():
            return str(c)
    found = shutil.which("uv")
    if found:
        return found
    tools = workdir / "tools"
    log("uv not found: installing it from PyPI into " + str(tools))
    try:
        subprocess.run([sys.executable, "-m", "venv", str(tools)], check=True, env=env)
        subprocess.run([str(tools / "bin" / "python"), "-m", "pip", "install", "-q", "uv"],
                       check=True, env=env, timeout=300)
    except (subprocess.SubprocessError, OSError) as exc:
        log(f"uv unavailable: {exc}")
        return None
    uv = tools / "bin" / "uv"
    return str(uv) if uv.exists() else None


# --------------------------------------------------------------------------- timing


def cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(cmd: list[str], cwd: Path, env: dict) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    return dt, proc


def cpu_timed(cmd: list[str], cwd: Path, env: dict) -> tuple[float, float]:
    """Wall time and CPU time (user + system, the command and its children)."""
    cpu0 = cpu_of_children()
    dt, _ = timed(cmd, cwd, env)
    return dt, cpu_of_children() - cpu0


@contextlib.contextmanager
def cache_for(label: str, env: dict) -> Iterator[dict]:
    """The environment to run ``label`` in: a "cold" run gets an empty ENVLOCK_CACHE."""
    if not label.startswith("cold "):
        yield env
        return
    cache = tempfile.mkdtemp(prefix="envlock-cold-cache-")
    try:
        yield {**env, "ENVLOCK_CACHE": cache}
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def summarize(samples: list[float]) -> dict:
    return {"median_s": round(statistics.median(samples), 4), "min_s": round(min(samples), 4),
            "max_s": round(max(samples), 4), "samples_s": [round(s, 4) for s in samples]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workdir", default="/var/tmp/envlock-bench", type=Path)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--json", type=Path, help="also write the results as JSON here")
    ap.add_argument("--envlock", default=str(Path(sys.prefix) / "bin" / "envlock"),
                    help="envlock executable (default: next to this interpreter)")
    ap.add_argument("--no-uv", action="store_true", help="do not look for / install uv")
    ap.add_argument("--baseline-envlock", metavar="PATH",
                    help="another envlock executable (e.g. from main) to time in the same "
                         "rounds, for before/after ratios")
    ap.add_argument("--real", default=",".join(REAL_ENVS),
                    help="real environments to build and time, comma-separated, from "
                         f"{', '.join(REAL_ENVS)} (empty: none)")
    ap.add_argument("--torch-wheel", default=None,
                    help="local torch wheel for the 'torch' environment (default: "
                         f"{TORCH_WHEEL_GLOB})")
    args = ap.parse_args()
    t_start = time.perf_counter()

    workdir: Path = args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    # What users see: bytecode caches are written and reused.
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("ENVLOCK_DEBUG", None)
    env.setdefault("PIP_DISABLE_PIP_VERSION_CHECK", "1")  # no network from pip freeze
    # envlock's cache (the probe's copy, RECORD digests) lives with the fixtures; the
    # "cold" rows give each run an empty one instead.
    env["ENVLOCK_CACHE"] = str(workdir / "envlock-cache")

    envlock = args.envlock
    if not Path(envlock).exists():
        log(f"envlock executable not found: {envlock}")
        return 2

    # ---- build / reuse fixtures
    t_build = time.perf_counter()
    projects, paths = ensure_wheels(workdir, max(SIZES))
    real_dir, real = ensure_real_wheels(workdir, sys.executable)
    venvs = {str(n): ensure_venv(workdir, n, projects, paths, real_dir, real, env)
             for n in SIZES}
    torch_wheel = args.torch_wheel or find_torch_wheel()
    for name in filter(None, args.real.split(",")):
        info = ensure_real_env(workdir, name, env, torch_wheel)
        if info:
            venvs[name] = info
    project = ensure_git_project(workdir, env)
    uv = None if args.no_uv else find_uv(workdir, env)
    uv_version = None
    if uv:
        uv_version = subprocess.run([uv, "--version"], capture_output=True, text=True,
                                    env=env).stdout.strip()
    # Compile bytecode (envlock, its dev venv, the target venvs); cheap when up to date.
    for target in [REPO / "envlock", Path(sys.prefix) / "lib", *(
            Path(v["venv"]) / "lib" for v in venvs.values())]:
        subprocess.run([sys.executable, "-m", "compileall", "-q", "-j", "0", str(target)],
                       env=env, check=False, capture_output=True)
    setup_s = time.perf_counter() - t_build
    envlock_version = subprocess.run([envlock, "--version"], capture_output=True, text=True,
                                     env=env).stdout.strip()

    outdir = Path(tempfile.mkdtemp(prefix="envlock-bench-out-"))
    tools: dict[str, list[str]] = {}
    for n, v in venvs.items():
        py = v["python"]
        tools[f"envlock lock@{n}"] = [envlock, "lock", "--python", py, "-o",
                                      str(outdir / f"lock-{n}.yaml")]
        if "record_rows" in v:  # informational: a first lock, with an empty cache
            tools[f"cold lock@{n}"] = [envlock, "lock", "--python", py, "-o",
                                       str(outdir / f"lock-{n}-cold.yaml")]
        tools[f"pip freeze@{n}"] = [py, "-m", "pip", "freeze"]
        if uv:
            tools[f"uv pip freeze@{n}"] = [uv, "pip", "freeze", "--python", py]
        if args.baseline_envlock:
            tools[f"baseline lock@{n}"] = [args.baseline_envlock, "lock", "--python", py, "-o",
                                           str(outdir / f"lock-{n}-baseline.yaml")]
    # Informational: the same lock without the git and GPU/CUDA probes (fixed-cost floor).
    small_py = venvs[str(SIZES[0])]["python"]
    tools["envlock lock --no-git --no-gpu"] = [envlock, "lock", "--python", small_py, "--no-git",
                                               "--no-gpu", "-o", str(outdir / "lock-floor.yaml")]
    tools["envlock --help"] = [envlock, "--help"]
    tools["envlock --version"] = [envlock, "--version"]

    # ---- warm-up round (not measured): fills bytecode / page caches, validates output
    checks: dict[str, dict] = {}
    for label, cmd in tools.items():
        with cache_for(label, env) as run_env:
            _, proc = timed(cmd, project, run_env)
        if label.startswith("envlock lock@"):
            n = label.split("@")[1]
            checks[label] = check_lock(proc, outdir / f"lock-{n}.yaml", venvs[n]["dists"])
        elif label.startswith(("pip freeze@", "uv pip freeze@")):
            checks[label] = {"lines": len([x for x in proc.stdout.splitlines() if x.strip()])}

    # ---- measured rounds, order rotated each round to spread position bias
    labels = list(tools)
    samples: dict[str, list[float]] = {label: [] for label in labels}
    cpu_samples: dict[str, list[float]] = {label: [] for label in labels}
    for r in range(args.rounds):
        shift = r % len(labels)
        for label in labels[shift:] + labels[:shift]:
            with cache_for(label, env) as run_env:
                dt, cpu = cpu_timed(tools[label], project, run_env)
            samples[label].append(dt)
            cpu_samples[label].append(cpu)
    for n in venvs if args.baseline_envlock else ():
        checks[f"baseline lock@{n}"] = {"same_bytes": (outdir / f"lock-{n}.yaml").read_bytes()
                                        == (outdir / f"lock-{n}-baseline.yaml").read_bytes()}
    for n in venvs:
        if f"cold lock@{n}" in tools:
            checks[f"cold lock@{n}"] = {"same_bytes": (outdir / f"lock-{n}.yaml").read_bytes()
                                        == (outdir / f"lock-{n}-cold.yaml").read_bytes()}
    shutil.rmtree(outdir, ignore_errors=True)

    stats = {label: summarize(s) for label, s in samples.items()}
    for label, cpu in cpu_samples.items():
        stats[label]["cpu_median_s"] = round(statistics.median(cpu), 4)
    results = report(stats, venvs, checks, args, setup_s, uv, uv_version, envlock_version)
    results["total_s"] = round(time.perf_counter() - t_start, 1)
    print(f"total bench time {results['total_s']:.1f}s (setup {setup_s:.1f}s)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"JSON written to {args.json}")
    return 0


def check_lock(proc: subprocess.CompletedProcess, path: Path, expected: int) -> dict:
    """Sanity checks on one real ``envlock lock`` run: package count, warnings, shadowed."""
    out: dict = {"stderr": proc.stderr.strip(), "stdout": proc.stdout.strip()}
    m = re.search(r"Locked (\d+) packages", proc.stdout + proc.stderr)
    out["packages"] = int(m.group(1)) if m else None
    out["expected"] = expected
    try:
        import yaml  # envlock depends on it, so it is in the dev venv

        data = yaml.safe_load(path.read_text())
        pkgs = data.get("packages") or []
        out["lockfile_packages"] = len(pkgs)
        out["shadowed"] = len(data.get("shadowed") or [])
        kinds: dict[str, int] = {}
        for p in pkgs:
            kind = (p.get("source") or {}).get("kind", "?") if isinstance(p, dict) else "?"
            kinds[kind] = kinds.get(kind, 0) + 1
        out["source_kinds"] = kinds
        out["git_dirty"] = (data.get("git") or {}).get("dirty")
    except Exception as exc:  # noqa: BLE001 - a benchmark reports, it does not fail here
        out["lockfile_error"] = f"{type(exc).__name__}: {exc}"
    return out


def _fmt(x: float | None, unit: str = "s") -> str:
    if x is None:
        return "n/a"
    return f"{x:.3f}{unit}" if unit == "s" else f"{x:.2f}{unit}"


def print_baseline(stats: dict, venvs: dict, baseline: str, checks: dict) -> None:
    """envlock against --baseline-envlock, timed in the same rounds; and whether both
    wrote the same lock bytes."""
    print()
    print(f"baseline: {baseline}")
    for n in venvs:
        b, e = stats[f"baseline lock@{n}"], stats[f"envlock lock@{n}"]
        p = stats[f"pip freeze@{n}"]
        same = checks[f"baseline lock@{n}"]["same_bytes"]
        print(f"{n:>6}  baseline {b['median_s']:.3f}s -> {e['median_s']:.3f}s wall "
              f"(x{b['median_s'] / e['median_s']:.2f}), CPU {b['cpu_median_s']:.3f}s -> "
              f"{e['cpu_median_s']:.3f}s (x{b['cpu_median_s'] / e['cpu_median_s']:.2f}); "
              f"pip/baseline {p['median_s'] / b['median_s']:.2f}x; same lock bytes: {same}")


def print_cold(stats: dict, venvs: dict, checks: dict) -> None:
    """A first lock (empty cache: every RECORD read, the probe compiled) against the
    usual one, on the real environments."""
    cold = [n for n in venvs if f"cold lock@{n}" in stats]
    if not cold:
        return
    print()
    for n in cold:
        c, e = stats[f"cold lock@{n}"], stats[f"envlock lock@{n}"]
        p = stats[f"pip freeze@{n}"]
        print(f"{n:>6}  empty cache {c['median_s']:.3f}s wall, {c['cpu_median_s']:.3f}s CPU "
              f"(pip/envlock {p['median_s'] / c['median_s']:.2f}x wall, "
              f"{p['cpu_median_s'] / c['cpu_median_s']:.2f}x CPU); warm {e['median_s']:.3f}s, "
              f"{e['cpu_median_s']:.3f}s CPU; same lock bytes: "
              f"{checks[f'cold lock@{n}']['same_bytes']}")


def print_cpu_table(stats: dict, venvs: dict) -> None:
    """Median CPU time (user + system, children included): steadier than wall time on a
    shared machine, where another job's load stretches every wall time."""
    print()
    print(f"{'venv':>6}  {'CPU: envlock':>12}  {'pip freeze':>10}  {'uv':>7}  {'pip/envlock':>11}")
    for n in venvs:
        cpu = {tool: stats[f"{tool}@{n}"]["cpu_median_s"] for tool in
               ("envlock lock", "pip freeze", "uv pip freeze") if f"{tool}@{n}" in stats}
        uv = f"{cpu['uv pip freeze']:.3f}s" if "uv pip freeze" in cpu else "n/a"
        print(f"{n:>6}  {cpu['envlock lock']:>11.3f}s  {cpu['pip freeze']:>9.3f}s  {uv:>7}  "
              f"{cpu['pip freeze'] / cpu['envlock lock']:>10.2f}x")


def report(stats: dict, venvs: dict, checks: dict, args, setup_s: float, uv, uv_version,
           envlock_version) -> dict:
    med = {k: v["median_s"] for k, v in stats.items()}
    mins = {k: v["min_s"] for k, v in stats.items()}
    print()
    print(f"envlock lock benchmark  ({platform.python_version()}, {os.cpu_count()} CPUs, "
          f"{args.rounds} rounds alternated, median / min wall time)")
    print(f"{envlock_version or 'envlock ?'}; pip freeze = venv's own pip; "
          f"uv = {uv_version or 'unavailable'}")
    for n, v in venvs.items():
        state = "cached" if v.get("cached") else "built now"
        what = (f"real: {' '.join(Path(r).name for r in v['key']['requirements'])}, "
                f"{v['record_rows']} RECORD rows" if "record_rows" in v else
                f"{v['generated']} generated wheels, {v['real']} real, {v['direct_url']} via "
                "direct URL")
        print(f"venv-{n}: {v['dists']} dists in `pip list` ({what}); build "
              f"{v['build_s']:.1f}s ({state})")
    print()
    header = (f"{'venv':>6}  {'dists':>5}  {'envlock lock':>17}  {'pip freeze':>17}  "
              f"{'uv pip freeze':>17}  {'pip/envlock':>11}  {'uv/envlock':>10}")
    print(header)
    print("-" * len(header))
    out_sizes = {}
    for n, v in venvs.items():
        e, p = f"envlock lock@{n}", f"pip freeze@{n}"
        u = f"uv pip freeze@{n}"
        cell = lambda k: (f"{med[k]:.3f} / {mins[k]:.3f}" if k in med else "unavailable")  # noqa: E731
        pr = med[p] / med[e]
        ur = med[u] / med[e] if u in med else None
        print(f"{n:>6}  {v['dists']:>5}  {cell(e):>17}  {cell(p):>17}  {cell(u):>17}  "
              f"{pr:>10.2f}x  {(f'{ur:.2f}x' if ur else 'n/a'):>10}")
        out_sizes[str(n)] = {"dists": v["dists"], "envlock_lock": stats[e], "pip_freeze": stats[p],
                             "uv_pip_freeze": stats.get(u), "pip_over_envlock": round(pr, 3),
                             "uv_over_envlock": round(ur, 3) if ur else None,
                             "check": checks.get(e), "pip_freeze_lines": checks.get(p),
                             "uv_freeze_lines": checks.get(u),
                             "baseline_lock": stats.get(f"baseline lock@{n}"),
                             "baseline_check": checks.get(f"baseline lock@{n}"),
                             "cold_lock": stats.get(f"cold lock@{n}"),
                             "cold_check": checks.get(f"cold lock@{n}")}
    print_cpu_table(stats, venvs)
    print_cold(stats, venvs, checks)
    if args.baseline_envlock:
        print_baseline(stats, venvs, args.baseline_envlock, checks)
    small, big = (str(n) for n in SIZES)
    e_s, e_b = med[f"envlock lock@{small}"], med[f"envlock lock@{big}"]
    growth = e_b / e_s
    dist_ratio = venvs[big]["dists"] / venvs[small]["dists"]
    per_dist_ms = (e_b - e_s) / (venvs[big]["dists"] - venvs[small]["dists"]) * 1000
    fixed_s = e_s - per_dist_ms / 1000 * venvs[small]["dists"]
    pip_growth = med[f"pip freeze@{big}"] / med[f"pip freeze@{small}"]
    print()
    print(f"growth envlock({big})/envlock({small}) = {growth:.2f}x  vs dists ratio "
          f"{dist_ratio:.2f}x  (pip freeze {pip_growth:.2f}x); marginal {per_dist_ms:.2f} ms/dist,"
          f" fixed ~{fixed_s:.3f}s")
    floor = med["envlock lock --no-git --no-gpu"]
    print(f"envlock lock --no-git --no-gpu @{venvs[small]['dists']}: {floor:.3f}s "
          f"(git+GPU/CUDA probes cost ~{e_s - floor:.3f}s of {e_s:.3f}s)")
    h, ver = med["envlock --help"], med["envlock --version"]
    print(f"envlock --help {h:.3f}s (min {mins['envlock --help']:.3f}s)   "
          f"envlock --version {ver:.3f}s (min {mins['envlock --version']:.3f}s)")
    print()
    worst_speedup = min(med[f"pip freeze@{n}"] / med[f"envlock lock@{n}"] for n in venvs)
    verdicts = [
        (f"envlock lock @{venvs[small]['dists']} dists <= {TARGETS['lock_100_s']}s",
         f"{e_s:.3f}s", e_s <= TARGETS["lock_100_s"]),
        (f">= {TARGETS['speedup_vs_pip']:.0f}x faster than pip freeze (worst venv)",
         f"{worst_speedup:.2f}x", worst_speedup >= TARGETS["speedup_vs_pip"]),
        ("linear growth (envlock ratio <= dists ratio)",
         f"{growth:.2f}x vs {dist_ratio:.2f}x", growth <= dist_ratio),
        (f"envlock --help <= {TARGETS['help_s']}s", f"{h:.3f}s", h <= TARGETS["help_s"]),
    ]
    print("targets:")
    for name, value, ok in verdicts:
        print(f"  [{'PASS' if ok else 'FAIL'}] {name:<52} {value}")
    # Behaviour of envlock lock on these venvs (warm-up run)
    print()
    for n in venvs:
        c = checks.get(f"envlock lock@{n}", {})
        issues = []
        if c.get("packages") != c.get("expected"):
            issues.append(f"locked {c.get('packages')} packages, pip list has {c.get('expected')}")
        if c.get("lockfile_error"):
            issues.append("lockfile unreadable: " + c["lockfile_error"])
        if c.get("shadowed"):
            issues.append(f"{c['shadowed']} shadowed")
        if c.get("stderr"):
            issues.append("stderr: " + " | ".join(c["stderr"].splitlines()[:6]))
        kinds = c.get("source_kinds")
        print(f"lock check @{n}: {c.get('packages')} packages, sources {kinds}, git dirty "
              f"{c.get('git_dirty')}" + ("" if not issues else "; ISSUES: " + "; ".join(issues)))
    return {
        "python": platform.python_version(), "cpus": os.cpu_count(), "rounds": args.rounds,
        "envlock_version": envlock_version, "uv": uv, "uv_version": uv_version,
        "venvs": {str(n): {k: v.get(k) for k in ("dists", "generated", "real", "direct_url",
                                                  "record_rows", "build_s", "cached")}
                  for n, v in venvs.items()},
        "setup_s": round(setup_s, 2), "sizes": out_sizes,
        "growth": {"envlock": round(growth, 3), "dists": round(dist_ratio, 3),
                   "pip_freeze": round(pip_growth, 3), "marginal_ms_per_dist":
                   round(per_dist_ms, 3), "fixed_s": round(fixed_s, 4)},
        "lock_no_git_no_gpu": stats["envlock lock --no-git --no-gpu"],
        "help": stats["envlock --help"], "version": stats["envlock --version"],
        "targets": {name: {"value": value, "pass": ok} for name, value, ok in verdicts},
    }


if __name__ == "__main__":
    sys.exit(main())
