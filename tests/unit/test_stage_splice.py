"""Wheels installed in one read, and their deflate streams carried into the layer as they are:
on real zip files written by ``zipfile``, real installs by ``installer`` and real gzip."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import platform
import random
import sys
import tarfile
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from envlock.image.layer import SPLICE_MIN, LayerError, LayerWriter, Member
from envlock.operations.build import stage
from envlock.operations.build.stage import BaseFacts, StageError

FACTS = BaseFacts(digest="sha256:b", python="3.11.7", interpreter="/usr/bin/python3",
                  executable="/usr/bin/python3.11", passwd="root:x:0:0::/root:/bin/sh\n",
                  group="root:x:0:\n")


def _digest(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).decode().rstrip("=")


def _noise(size: int, seed: int) -> bytes:
    """Compressible but not trivially so: words drawn at random."""
    rng = random.Random(seed)
    words = [bytes(rng.choices(b"abcdefghij", k=rng.randint(2, 9))) for _ in range(500)]
    out = bytearray()
    while len(out) < size:
        out += rng.choice(words) + b" "
    return bytes(out[:size])


def _wheel(directory: Path, name: str, files: dict[str, bytes], *, lie: str | None = None,
           stored: tuple[str, ...] = ()) -> Path:
    """A valid wheel (RECORD with real hashes, unless ``lie`` names a file)."""
    dist = f"{name}-1.0.dist-info"
    meta = {f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n".encode(),
            f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: t\nRoot-Is-Purelib: true\n"
                             b"Tag: py3-none-any\n"}
    every = {**files, **meta}
    record = "".join(f"{path},{_digest(b'x' if path == lie else data)},{len(data)}\n"
                     for path, data in every.items()) + f"{dist}/RECORD,,\n"
    wheel = directory / f"{name}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, data in every.items():
            archive.writestr(path, data, zipfile.ZIP_STORED if path in stored
                             else zipfile.ZIP_DEFLATED)
        archive.writestr(f"{dist}/RECORD", record)
    return wheel


def _lock() -> SimpleNamespace:
    return SimpleNamespace(python={"version": platform.python_version()})


def _site(lock: SimpleNamespace) -> str:
    return stage.site_packages(lock).strip("/")  # type: ignore[arg-type]


def _layer(root: Path, members: dict[str, Member] | None) -> tuple[bytes, object]:
    out = io.BytesIO()
    writer = LayerWriter(out)
    stage.fill_environment(writer, root, FACTS, members)
    layer = writer.close()
    return out.getvalue(), layer


def test_unchanged_deflated_members_are_carried_as_the_wheel_compressed_them(tmp_path):
    big, small = _noise(3 * SPLICE_MIN, 1), b"x = 1\n"
    stored_big = _noise(2 * SPLICE_MIN, 2)
    wheel = _wheel(tmp_path, "pkg", {"pkg/__init__.py": small, "pkg/data.bin": big,
                                     "pkg/raw.bin": stored_big},
                   stored=("pkg/raw.bin",))
    lock = _lock()
    members = stage.stage(lock, [wheel], FACTS, tmp_path / "root")  # type: ignore[arg-type]
    site = _site(lock)
    assert set(members) == {f"{site}/pkg/data.bin", f"{site}/pkg/__init__.py",
                            f"{site}/pkg-1.0.dist-info/METADATA",
                            f"{site}/pkg-1.0.dist-info/WHEEL"}  # not the stored one, not RECORD
    spliced, layer = _layer(tmp_path / "root", members)
    plain, same = _layer(tmp_path / "root", None)
    # one tar, whichever way it is compressed; the layer's diff_id is the tar's
    assert gzip.decompress(spliced) == gzip.decompress(plain)
    assert layer.diff_id == same.diff_id != layer.digest  # type: ignore[attr-defined]
    assert layer.digest == "sha256:" + hashlib.sha256(spliced).hexdigest()  # type: ignore[attr-defined]
    with zipfile.ZipFile(wheel) as archive:
        info = archive.getinfo("pkg/data.bin")
        with open(wheel, "rb") as handle:
            handle.seek(info.header_offset + 30 + len(info.filename) + len(info.extra))
            deflated = handle.read(info.compress_size)
    assert deflated in spliced and deflated not in plain  # carried byte for byte
    with tarfile.open(fileobj=io.BytesIO(spliced)) as tar:
        assert tar.extractfile(f"{site}/pkg/data.bin").read() == big  # type: ignore[union-attr]
    assert _layer(tmp_path / "root", members)[0] == spliced  # the same bytes again


def test_a_file_that_is_not_its_member_any_more_is_refused(tmp_path):
    wheel = _wheel(tmp_path, "pkg", {"pkg/data.bin": _noise(2 * SPLICE_MIN, 3)})
    lock = _lock()
    members = stage.stage(lock, [wheel], FACTS, tmp_path / "root")  # type: ignore[arg-type]
    path = tmp_path / "root" / _site(lock) / "pkg" / "data.bin"
    data = bytearray(path.read_bytes())
    data[100] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(LayerError, match="not the member of pkg-1.0-py3-none-any.whl"):
        _layer(tmp_path / "root", members)


def test_a_large_member_whose_record_lies_is_refused_by_name(tmp_path):
    wheel = _wheel(tmp_path, "liar", {"liar/data.bin": _noise(2 * SPLICE_MIN, 4)},
                   lie="liar/data.bin")
    with pytest.raises(StageError, match="liar/data.bin didn't match RECORD"):
        stage.stage(_lock(), [wheel], FACTS, tmp_path / "root")  # type: ignore[arg-type]


def test_a_script_installer_rewrites_is_checked_against_its_member_and_not_carried(tmp_path):
    script = b"#!python\nprint('hi')\n" + b"#" * (2 * SPLICE_MIN) + b"\n"
    wheel = _wheel(tmp_path, "tool", {"tool.py": b"", "tool-1.0.data/scripts/tool": script})
    lock = _lock()
    members = stage.stage(lock, [wheel], FACTS, tmp_path / "root")  # type: ignore[arg-type]
    written = tmp_path / "root" / "opt/envlock/venv/bin/tool"
    assert written.read_bytes().startswith(b"#!/opt/envlock/venv/bin/python\n")
    assert "opt/envlock/venv/bin/tool" not in members
    liar = _wheel(tmp_path / "..", "tool", {"tool.py": b"",
                                           "tool-1.0.data/scripts/tool": script},
                  lie="tool-1.0.data/scripts/tool")
    with pytest.raises(StageError, match="scripts/tool didn't match RECORD"):
        stage.stage(lock, [liar], FACTS, tmp_path / "again")  # type: ignore[arg-type]


def test_a_later_wheel_replacing_a_file_wins_in_the_layer_and_in_its_byte_code(tmp_path):
    earlier = b"WHO = 'first'\n# " + _noise(SPLICE_MIN, 5)
    first = _wheel(tmp_path, "aaa", {"ns/__init__.py": earlier})
    (tmp_path / "b").mkdir()
    later = b"WHO = 'second'\n# " + _noise(SPLICE_MIN, 6)
    second = _wheel(tmp_path / "b", "bbb", {"ns/__init__.py": later})
    lock = _lock()
    root = tmp_path / "root"
    with stage.Compiler(sys.executable, root, lock, 2) as compiler:  # type: ignore[arg-type]
        members = stage.stage(lock, [first, second], FACTS, root, compiler)  # type: ignore[arg-type]
        compiler.finish()
    site = _site(lock)
    assert members[f"{site}/ns/__init__.py"].archive == str(second)  # written last
    blob, _ = _layer(root, members)
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        assert tar.extractfile(f"{site}/ns/__init__.py").read() == later  # type: ignore[union-attr]
    pyc = (root / site / "ns" / "__pycache__" /
           f"__init__.{sys.implementation.cache_tag}.pyc").read_bytes()
    assert pyc[8:16] == __import__("importlib.util").util.source_hash(later)


def test_byte_code_fed_during_the_installs_equals_byte_code_compiled_after_them(tmp_path):
    files = {f"p{i % 5}/m{i}.py": f"X = {{'a', 'b', {i}}}\n".encode() for i in range(150)}
    wheels = []
    for n in range(3):
        (tmp_path / f"w{n}").mkdir()
        part = {k: v for i, (k, v) in enumerate(files.items()) if i % 3 == n}
        wheels.append(_wheel(tmp_path / f"w{n}", f"w{n}", part))
    lock = _lock()
    with stage.Compiler(sys.executable, tmp_path / "fed", lock, 3) as compiler:  # type: ignore[arg-type]
        stage.stage(lock, wheels, FACTS, tmp_path / "fed", compiler)  # type: ignore[arg-type]
        compiler.finish()
    stage.stage(lock, wheels, FACTS, tmp_path / "after")  # type: ignore[arg-type]
    stage.compile_bytecode(sys.executable, tmp_path / "after", lock, workers=1)  # type: ignore[arg-type]

    def pycs(root: Path) -> dict[str, bytes]:
        site = root / _site(lock)
        return {str(p.relative_to(site)): p.read_bytes() for p in sorted(site.rglob("*.pyc"))}

    fed, after = pycs(tmp_path / "fed"), pycs(tmp_path / "after")
    assert len(fed) == 150 and fed == after


def test_a_compiler_that_dies_is_reported(tmp_path):
    lock = _lock()
    compiler = stage.Compiler("/bin/false", tmp_path, lock, 1)  # type: ignore[arg-type]
    with compiler, pytest.raises(StageError, match="byte-compiling the environment failed"):
        compiler.send([("a.py", 1)])
        compiler.finish()


def test_envlock_reads_files_back_out_of_a_layer_of_several_gzip_members(tmp_path):
    from envlock.adapters.imagefs import read_files
    from tests.unit.test_layer import _Image

    big = _noise(2 * SPLICE_MIN, 7)
    wheel = _wheel(tmp_path, "pkg", {"pkg/__init__.py": b"", "pkg/data.bin": big})
    lock = _lock()
    members = stage.stage(lock, [wheel], FACTS, tmp_path / "root")  # type: ignore[arg-type]
    blob, _ = _layer(tmp_path / "root", members)
    assert blob.count(b"\x1f\x8b\x08\x00\x00\x00\x00\x00") >= 3  # ours, the wheel's, ours
    site = _site(lock)
    files = read_files(_Image([blob]), [f"{site}/pkg/data.bin", "etc/passwd"])  # type: ignore[arg-type]
    assert files[f"{site}/pkg/data.bin"] == big
    assert files["etc/passwd"].startswith(b"root:x:0:0:")  # type: ignore[union-attr]
