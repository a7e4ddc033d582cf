"""Pins: requirements.txt with --hash lines and its unhashed companion, PEP 751 pylock.toml
validated by packaging.pylock, pip's installation report, and the verification of the
wheel behind each hash (orchestration on fakes; real installs are integration tests)."""

import hashlib
import json
from pathlib import Path

import pytest

from envlock.errors import EnvlockError
from envlock.model import pins
from envlock.model.pins import Wheel
from envlock.operations import pins as operation
from tests.factories import make_lock, package

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "pins"
H = {name: hashlib.sha256(name.encode()).hexdigest() for name in ("numpy", "torch")}


def lock_with_every_source():
    return make_lock(packages=(
        package("editpkg", "0.3.0", "editable", path="/src/editpkg"),
        package("localtag", "1.0.0+cu121", "directory", path="/src/localtag"),
        package("mkl", "2024.0", "conda"),
        package("numpy", "2.1.0"),
        package("torch", "2.3.1+cu121", url="https://download.pytorch.org/whl/cu121"),
        package("vcspkg", "1.2.0", "vcs", url="https://github.com/acme/vcspkg", vcs="git",
                commit="f" * 40, subdirectory="python"),
        package("wheelpkg", "2.0.0", "archive", path="/w/wheelpkg-2.0.0-py3-none-any.whl",
                hash="sha256:" + "d" * 64),
    ))


def wheels():
    return {
        "numpy": Wheel("numpy", "numpy-2.1.0-cp311-cp311-manylinux_2_17_x86_64.whl", H["numpy"],
                       "https://files.example/numpy-2.1.0-cp311-cp311-manylinux_2_17_x86_64.whl",
                       100, "https://pypi.org/simple"),
        "torch": Wheel("torch", "torch-2.3.1+cu121-cp311-cp311-linux_x86_64.whl", H["torch"],
                       "https://download.pytorch.org/whl/cu121/torch-2.3.1%2Bcu121-cp311-cp311"
                       "-linux_x86_64.whl", 200, "https://download.pytorch.org/whl/cu121"),
    }


def test_requirements_hash_pin_index_and_archive_packages_and_set_the_rest_apart():
    export = pins.requirements(lock_with_every_source(), wheels(), "requirements.txt")
    assert f"numpy==2.1.0 \\\n    --hash=sha256:{H['numpy']}" in export.text
    assert f"torch==2.3.1+cu121 \\\n    --hash=sha256:{H['torch']}" in export.text
    assert "wheelpkg @ file:///w/wheelpkg-2.0.0-py3-none-any.whl \\\n    --hash=sha256:" + \
        "d" * 64 in export.text
    assert "--extra-index-url https://download.pytorch.org/whl/cu121" in export.text
    assert "pip install --no-deps --require-hashes -r requirements.txt" in export.text
    assert export.unhashed is not None and "--hash" not in export.unhashed
    for line in ("-e /src/editpkg", "localtag @ file:///src/localtag",
                 "vcspkg @ git+https://github.com/acme/vcspkg@" + "f" * 40 +
                 "#subdirectory=python", "mkl==2024.0"):
        assert line in export.unhashed.splitlines() and line not in export.text
    assert (export.hashed, export.unhashed_count) == (3, 4)
    assert len(export.warnings) == 4 and all("requirements.unhashed.txt" in w
                                             for w in export.warnings)
    assert pins.unhashed_path(Path("/x/reqs.txt")) == Path("/x/reqs.unhashed.txt")


def test_a_lock_of_index_packages_needs_no_companion():
    lock = make_lock(packages=(package("numpy", "2.1.0"),))
    export = pins.requirements(lock, wheels())
    assert export.unhashed is None and export.warnings == () and "then:" not in export.text


def test_pylock_validates_with_packaging_and_keeps_what_the_format_allows():
    from packaging.pylock import Pylock

    export = pins.pylock(lock_with_every_source(), wheels())
    document = Pylock.from_dict(tomllib.loads(export.text))
    by_name = {p.name: p for p in document.packages}
    assert "mkl" not in by_name  # conda: no form in the format, said in a warning
    assert by_name["numpy"].wheels[0].hashes == {"sha256": H["numpy"]}
    assert by_name["numpy"].index == "https://pypi.org/simple"
    assert str(by_name["torch"].version) == "2.3.1+cu121"
    assert by_name["wheelpkg"].archive.path == "/w/wheelpkg-2.0.0-py3-none-any.whl"
    assert by_name["vcspkg"].vcs.commit_id == "f" * 40 and by_name["vcspkg"].version is None
    assert by_name["editpkg"].directory.editable is True
    assert by_name["localtag"].directory.path == "/src/localtag"
    assert str(document.requires_python) == "==3.11.*"
    assert [str(m) for m in document.environments] == \
        ['sys_platform == "linux" and platform_machine == "x86_64"']
    assert len(export.warnings) == 4 and any("left out" in w for w in export.warnings)
    assert pins.pylock(lock_with_every_source(), wheels()).text == export.text


def test_pips_report_names_each_wheel_its_url_and_sha256():
    report = json.loads((FIXTURES / "pip-report-six-pyyaml.json").read_text())
    found = operation.served(report)
    assert set(found) == {"six", "pyyaml"}
    assert found["six"].filename == "six-1.16.0-py2.py3-none-any.whl"
    assert found["six"].sha256 == \
        "8abb2f1d86890a2dfb989f9a77cfcfd3e47c2a354b01111771326f8aa26e0254"
    assert found["pyyaml"].url.startswith("https://files.pythonhosted.org/")
    assert found["pyyaml"].filename.endswith("manylinux2014_x86_64.whl")


def test_report_urls_lose_their_credentials():
    report = {"install": [{"metadata": {"name": "six"}, "download_info": {
        "url": "https://bot:s3cret@pypi.acme/files/six-1.16.0-py2.py3-none-any.whl",
        "archive_info": {"hash": "sha256=" + "a" * 64}}}]}
    found = operation.served(report)["six"]
    assert "s3cret" not in found.url and found.sha256 == "a" * 64


def test_a_pylock_file_must_be_named_as_pep_751_says(tmp_path):
    with pytest.raises(EnvlockError, match="pylock.toml or pylock.NAME.toml"):
        operation.pins(make_lock(), "pylock", tmp_path / "lock.toml")
    assert not (tmp_path / "lock.toml").exists()


def fake_index(monkeypatch, tmp_path, served_bytes: bytes, verified_bytes: bytes):
    """pip's report says the index serves ``served_bytes``; the wheel that passed the
    files_digest check holds ``verified_bytes``."""
    from envlock.operations.build import provision

    name = "numpy-2.1.0-py3-none-any.whl"

    def report(lock, packages, path, log=None):
        path.write_text(json.dumps({"install": [{"metadata": {"name": "numpy"}, "download_info": {
            "url": f"https://files.example/{name}", "archive_info": {
                "hashes": {"sha256": hashlib.sha256(served_bytes).hexdigest()}}}}]}))
        return True, ""

    def index_wheels(lock, packages, dest, use_cache=True, log=None):
        dest.mkdir(parents=True, exist_ok=True)
        (dest / name).write_bytes(verified_bytes)
        return {"numpy": provision.Provided("numpy", "2.1.0", dest / name, "index")}, {}

    monkeypatch.setattr(provision, "pip_report", report)
    monkeypatch.setattr(provision, "index_wheels", index_wheels)


def test_the_pinned_hash_is_the_verified_wheels(monkeypatch, tmp_path):
    fake_index(monkeypatch, tmp_path, b"wheel", b"wheel")
    lock = make_lock(packages=(package("numpy", "2.1.0"),))
    result = operation.pins(lock, "requirements", tmp_path / "requirements.txt")
    text = (tmp_path / "requirements.txt").read_text()
    assert f"--hash=sha256:{hashlib.sha256(b'wheel').hexdigest()}" in text
    assert result.hashed == 1 and result.companion is None


def test_an_index_serving_other_bytes_than_the_verified_wheel_writes_nothing(monkeypatch,
                                                                            tmp_path):
    fake_index(monkeypatch, tmp_path, b"served", b"verified")
    lock = make_lock(packages=(package("numpy", "2.1.0"),))
    with pytest.raises(EnvlockError, match="cannot pin 1 package.*numpy: the index gives"):
        operation.pins(lock, "requirements", tmp_path / "requirements.txt")
    assert not (tmp_path / "requirements.txt").exists()


# ------------------------------------------------- installer tooling and rebuilds

DEBIAN_PIP = "/usr/share/python-wheels/pip-23.0.1-py3-none-any.whl"


def debian_venv_lock():
    return make_lock(packages=(
        package("pip", "23.0.1", origin=DEBIAN_PIP),
        package("setuptools", "66.1.1", origin=DEBIAN_PIP.replace("pip-23.0.1",
                                                                   "setuptools-66.1.1")),
        package("numpy", "2.1.0")))


def test_installer_tooling_is_left_out_and_named_unless_all_is_asked_for():
    lock = debian_venv_lock()
    skip = frozenset(p.name for p in pins.left_out(lock))
    assert skip == {"pip", "setuptools"} and pins.left_out(lock, keep_all=True) == ()
    export = pins.requirements(lock, wheels(), "requirements.txt", skip)
    assert "pip==" not in export.text and "setuptools==" not in export.text
    assert "# left out: pip 23.0.1, setuptools 66.1.1 (installer tooling" in export.text
    assert export.hashed == 1 and export.warnings == ()
    document = tomllib.loads(pins.pylock(lock, wheels(), skip).text)
    assert [p["name"] for p in document["packages"]] == ["numpy"]
    assert document["tool"]["envlock"]["left_out"] == ["pip", "setuptools"]
    assert "left_out" not in tomllib.loads(pins.pylock(lock, wheels()).text)["tool"]["envlock"]


def test_a_rebuild_pinned_to_the_index_wheel_is_said_in_a_warning():
    lock = debian_venv_lock()
    index_pip = Wheel("pip", "pip-23.0.1-py3-none-any.whl", "2" * 64, None, None, None,
                      rebuilt=True)
    export = pins.requirements(lock, {**wheels(), "pip": index_pip}, "r.txt",
                               frozenset({"setuptools"}))
    assert f"pip==23.0.1 \\\n    --hash=sha256:{'2' * 64}" in export.text
    (warning,) = export.warnings
    assert DEBIAN_PIP in warning and "pinned to the index's pip-23.0.1-py3-none-any.whl" \
        in warning


def served_by(monkeypatch, picks: dict[str, bytes], outcomes: dict, downloads: dict[str, bytes]):
    """pip's report serves ``picks`` (name -> wheel bytes); index_wheels settles each name
    with ``outcomes`` (bytes of a verified wheel and how it was had, or a refusal);
    pip download of a single package writes ``downloads[name]``."""
    from envlock.operations.build import provision

    def filename(name):
        return f"{name}-1.0-py3-none-any.whl"

    def report(lock, packages, path, log=None):
        path.write_text(json.dumps({"install": [
            {"metadata": {"name": p.name}, "download_info": {
                "url": f"https://files.example/{filename(p.name)}",
                "archive_info": {"hashes": {"sha256": hashlib.sha256(picks[p.name]).hexdigest()}}}}
            for p in packages]}))
        return True, ""

    calls = []

    def index_wheels(lock, packages, dest, use_cache=True, log=None):
        dest.mkdir(parents=True, exist_ok=True)
        calls.append(([p.name for p in packages], use_cache))
        got, failed = {}, {}
        for pkg in packages:
            outcome = outcomes[pkg.name](use_cache)
            if isinstance(outcome, str):
                failed[pkg.name] = outcome
            else:
                data, how = outcome
                (dest / filename(pkg.name)).write_bytes(data)
                got[pkg.name] = provision.Provided(pkg.name, pkg.version,
                                                   dest / filename(pkg.name), how)
        return got, failed

    def download(lock, packages, dest, log=None):
        (dest / filename(packages[0].name)).write_bytes(downloads[packages[0].name])
        return True, ""

    monkeypatch.setattr(provision, "pip_report", report)
    monkeypatch.setattr(provision, "index_wheels", index_wheels)
    monkeypatch.setattr(provision, "pip_download", download)
    return calls


def test_a_recorded_rebuild_is_pinned_to_the_index_wheel_with_a_warning(monkeypatch, tmp_path):
    from envlock.operations.build.provision import Differs

    served_by(monkeypatch, {"pip": b"index pip", "six": b"six"},
              {"pip": lambda _cache: Differs("index wheel differs from the locked files"),
               "six": lambda _cache: (b"six", "index")},
              {"pip": b"index pip"})
    lock = make_lock(packages=(package("pip", "1.0", origin=DEBIAN_PIP), package("six", "1.0")))
    result = operation.pins(lock, "requirements", tmp_path / "r.txt", keep_all=True)
    text = (tmp_path / "r.txt").read_text()
    assert f"--hash=sha256:{hashlib.sha256(b'index pip').hexdigest()}" in text
    assert result.hashed == 2 and result.left_out == []
    assert len(result.warnings) == 1 and "rebuild" in result.warnings[0]


def test_an_unrecorded_rebuild_is_refused_saying_what_happened(monkeypatch, tmp_path):
    from envlock.operations.build.provision import Differs

    served_by(monkeypatch, {"attrs": b"attrs"},
              {"attrs": lambda _cache: Differs("index wheel differs from the locked files")}, {})
    lock = make_lock(packages=(package("attrs", "1.0"),))
    with pytest.raises(EnvlockError) as caught:
        operation.pins(lock, "requirements", tmp_path / "r.txt")
    assert "attrs: index wheel differs from the locked files" in caught.value.message
    assert "another build than the index's" in caught.value.hint
    assert "reachable" not in caught.value.hint
    assert not (tmp_path / "r.txt").exists()


def test_a_cached_wheel_that_is_not_the_served_file_is_fetched_again(monkeypatch, tmp_path):
    """A wheel packed from the installed files sits in the cache under the index's file
    name: the index's own file is fetched instead of refusing the pin."""
    calls = served_by(monkeypatch, {"six": b"six"},
                      {"six": lambda cache: (b"repacked", "cache") if cache else (b"six", "index")},
                      {})
    lock = make_lock(packages=(package("six", "1.0"),))
    operation.pins(lock, "requirements", tmp_path / "r.txt")
    assert calls == [(["six"], True), (["six"], False)]
    assert hashlib.sha256(b"six").hexdigest() in (tmp_path / "r.txt").read_text()
