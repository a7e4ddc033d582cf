"""envlock pins and envlock sbom on real components: a real venv of small PyPI packages
exported and reinstalled by pip (--require-hashes) and uv (pylock.toml) into fresh venvs,
which `envlock check` finds identical to the original; the zoo's VCS, editable, directory
and archive packages exported as the formats allow; an SBOM of a lock on the test base
image, its OS packages read from the real registry. (The SBOM capture attaches is tested
with the capture in test_capture_replay.py.)"""

from __future__ import annotations

import json
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tests.conftest import run_envlock
from tests.integration.conftest import SYSTEM_PYTHON, pip, system_venv

SMALL = ("six==1.16.0", "idna==3.7", "attrs==23.2.0")


@pytest.fixture(scope="module")
def small_env(tmp_path_factory) -> tuple[Path, Path]:
    """A real venv with a few small packages from PyPI, and its lock."""
    root = tmp_path_factory.mktemp("small")
    venv.EnvBuilder(with_pip=True).create(root / "venv")
    python = root / "venv" / "bin" / "python"
    pip(python, "install", *SMALL)
    lock = root / "envlock.lock.yaml"
    run_envlock("lock", "--python", str(python), "-o", str(lock), "--no-gpu", "--no-git",
                check=True)
    return python, lock


def fresh(path: Path, with_pip: bool = True) -> Path:
    venv.EnvBuilder(with_pip=with_pip).create(path)
    return path / "bin" / "python"


def uv() -> str:
    return str(Path(sys.executable).with_name("uv"))


def test_requirements_with_hashes_reinstall_the_locked_set_with_pip(small_env, tmp_path):
    _python, lock = small_env
    out = tmp_path / "requirements.txt"
    result = run_envlock("pins", str(lock), "--format", "requirements", "-o", str(out), "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    payload = json.loads(result.stdout)["result"]
    assert payload["hashed"] == payload["packages"] and payload["companion"] is None
    assert out.read_text().count("--hash=sha256:") == payload["packages"]
    target = fresh(tmp_path / "fresh")
    pip(target, "install", "--no-deps", "--require-hashes", "-r", str(out))
    check = run_envlock("check", "--lock", str(lock), "--python", str(target))
    assert check.returncode == 0, check.stdout[-2000:]


def test_pylock_reinstalls_the_locked_set_with_uv(small_env, tmp_path):
    _python, lock = small_env
    out = tmp_path / "pylock.toml"
    # --all: the venv made without pip gets the locked pip and setuptools from the export
    result = run_envlock("pins", str(lock), "--format", "pylock", "-o", str(out), "--all")
    assert result.returncode == 0, result.stderr[-2000:]
    target = fresh(tmp_path / "fresh", with_pip=False)
    installed = subprocess.run([uv(), "pip", "install", "--python", str(target), "-r", str(out)],
                               capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr[-2000:]
    check = run_envlock("check", "--lock", str(lock), "--python", str(target))
    assert check.returncode == 0, check.stdout[-2000:]


def test_a_tampered_hash_is_refused_by_pip(small_env, tmp_path):
    """The hashes are the real ones: pip refuses a wheel whose sha256 differs."""
    _python, lock = small_env
    out = tmp_path / "requirements.txt"
    run_envlock("pins", str(lock), "--format", "requirements", "-o", str(out), check=True)
    text = out.read_text()
    line = next(ln for ln in text.splitlines() if "--hash=sha256:" in ln)
    out.write_text(text.replace(line, line[:-4] + "0000"))
    refused = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps",
                              "--require-hashes", "-d", str(tmp_path / "dl"), "-r", str(out)],
                             capture_output=True, text=True, timeout=300)
    assert refused.returncode != 0 and "THESE PACKAGES DO NOT MATCH THE HASHES" in \
        refused.stderr


def test_pins_of_a_debian_venv_install_with_require_hashes(tmp_path):
    """`python3 -m venv` on Debian installs Debian's rebuilds of pip and setuptools
    (/usr/share/python-wheels): the lock names them as rebuilds; pins leaves them out by
    default, and with --all pins the index's builds, saying so; both install with pip's
    hash-checking mode into a fresh Debian venv."""
    python = system_venv(tmp_path / "debian", "six==1.16.0")
    lock = tmp_path / "envlock.lock.yaml"
    run_envlock("lock", "--python", str(python), "-o", str(lock), "--no-gpu", "--no-git",
                check=True)
    text = lock.read_text()
    assert "origin: /usr/share/python-wheels/pip-" in text
    assert "origin: /usr/share/python-wheels/setuptools-" in text
    out = tmp_path / "requirements.txt"
    result = run_envlock("pins", str(lock), "--format", "requirements", "-o", str(out),
                         "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    payload = json.loads(result.stdout)["result"]
    assert [name.split()[0] for name in payload["left_out"]] == ["pip", "setuptools"]
    assert (payload["packages"], payload["hashed"]) == (1, 1) and payload["warnings"] == []
    fresh_python = system_venv(tmp_path / "fresh", "--no-deps", "--require-hashes", "-r",
                               str(out))
    check = run_envlock("check", "--lock", str(lock), "--python", str(fresh_python))
    assert check.returncode == 0, check.stdout[-2000:]
    pylock = tmp_path / "pylock.toml"  # and for uv: `uv pip sync` installs exactly that
    run_envlock("pins", str(lock), "--format", "pylock", "-o", str(pylock), check=True)
    synced = fresh(tmp_path / "synced", with_pip=False)
    done = subprocess.run([uv(), "pip", "sync", "--python", str(synced), str(pylock)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "+ six==1.16.0" in done.stderr, done.stderr[-2000:]

    every = tmp_path / "requirements-all.txt"
    result = run_envlock("pins", str(lock), "--format", "requirements", "-o", str(every),
                         "--all", "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    payload = json.loads(result.stdout)["result"]
    assert (payload["packages"], payload["hashed"]) == (3, 3) and payload["left_out"] == []
    assert sorted(w.split()[0] for w in payload["warnings"]) == ["pip", "setuptools"]
    assert all("/usr/share/python-wheels/" in w for w in payload["warnings"])
    subprocess.run([SYSTEM_PYTHON, "-m", "venv", str(tmp_path / "again")], check=True)
    again = tmp_path / "again" / "bin" / "python"
    pip(again, "install", "--no-deps", "--require-hashes", "--force-reinstall", "-r",
        str(every))  # downloads the index's pip and setuptools, checking their hashes
    relock = tmp_path / "again.lock.yaml"
    run_envlock("lock", "--python", str(again), "-o", str(relock), "--no-gpu", "--no-git",
                check=True)
    assert "origin:" not in relock.read_text()  # the index's builds now, not Debian's


def test_vcs_editable_and_directory_packages_are_pinned_as_the_formats_allow(zoo, tmp_path):
    lock = tmp_path / "zoo.lock.yaml"
    run_envlock("lock", "--python", str(zoo.python), "-o", str(lock), "--no-gpu", "--no-git",
                check=True)
    out = tmp_path / "requirements.txt"
    result = run_envlock("pins", str(lock), "--format", "requirements", "-o", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    warnings = [ln for ln in result.stderr.splitlines() if "cannot be hash-pinned" in ln]
    assert {w.split()[2] for w in warnings} == {"editpkg", "vcspkg", "localtag"}
    hashed, unhashed = out.read_text(), (tmp_path / "requirements.unhashed.txt").read_text()
    assert f"wheelpkg @ {zoo.wheel_file.as_uri()} \\\n    --hash=sha256:" in hashed
    assert f"vcspkg @ git+file://{zoo.vcspkg}@{zoo.vcs_commit}" in unhashed
    assert f"-e {zoo.editpkg}" in unhashed and "--hash" not in unhashed
    pylock = tmp_path / "pylock.toml"
    run_envlock("pins", str(lock), "--format", "pylock", "-o", str(pylock), check=True)
    target = fresh(tmp_path / "fresh", with_pip=False)
    planned = subprocess.run([uv(), "pip", "install", "--dry-run", "--python", str(target),
                              "-r", str(pylock)], capture_output=True, text=True, timeout=300)
    assert planned.returncode == 0, planned.stderr[-2000:]
    for name in ("vcspkg", "editpkg", "wheelpkg", "localtag", "six"):
        assert f" + {name}==" in planned.stderr or f" + {name} @ " in planned.stderr


def test_a_bad_pylock_name_and_a_missing_lock_are_one_line_errors(small_env, tmp_path):
    _python, lock = small_env
    bad = run_envlock("pins", str(lock), "--format", "pylock", "-o", str(tmp_path / "x.toml"))
    assert bad.returncode == 2 and "pylock.toml or pylock.NAME.toml" in bad.stderr
    missing = run_envlock("sbom", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2 and "no such lockfile" in missing.stderr
    assert not list(tmp_path.iterdir())


def test_sbom_of_a_lock_reads_the_base_images_os_packages_from_the_registry(small_env, infra,
                                                                          tmp_path):
    from spdx_tools.spdx.parser.parse_anything import parse_file
    from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

    _python, lock = small_env
    env = {"ENVLOCK_CACHE": str(tmp_path / "cache"), "SOURCE_DATE_EPOCH": "1700000000"}
    paths = [tmp_path / "a.cdx.json", tmp_path / "b.cdx.json"]
    for path in paths:  # the second from the cache: the same bytes
        made = run_envlock("sbom", str(lock), "--base-image", infra.base_image, "-o", str(path),
                           env=env)
        assert made.returncode == 0, made.stderr[-2000:]
        assert "OS packages of " + infra.base_image in made.stdout
    assert paths[0].read_bytes() == paths[1].read_bytes()
    bom = json.loads(paths[0].read_bytes())
    purls = [c.get("purl", "") for c in bom["components"]]
    assert any(p.startswith("pkg:deb/debian/python3.11@") and "distro=debian-12" in p
               for p in purls)
    assert "pkg:pypi/six@1.16.0" in purls
    assert bom["metadata"]["timestamp"].startswith("2023-11-14T22:13:20")
    spdx = tmp_path / "env.spdx.json"
    run_envlock("sbom", str(lock), "--base-image", infra.base_image, "--format", "spdx-json",
                "-o", str(spdx), env=env, check=True)
    document = parse_file(str(spdx))
    assert validate_full_spdx_document(document) == []
    assert any(p.name == "libc6" for p in document.packages)
