"""Canonical layers and reading files out of image layers (whiteouts), on real bytes."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
from pathlib import Path

from envlock.adapters.imagefs import Link, read_files, resolve_link
from envlock.image.layer import EPOCH, LayerWriter


def _tree(root: Path, umask: int) -> Path:
    old = os.umask(umask)
    try:
        (root / "pkg" / "sub").mkdir(parents=True)
        (root / "pkg" / "a.py").write_text("x = 1\n")
        (root / "pkg" / "sub" / "tool").write_text("#!/bin/sh\n")
        (root / "pkg" / "sub" / "tool").chmod(0o777 & ~umask)
        (root / "pkg" / "link").symlink_to("a.py")
    finally:
        os.umask(old)
    return root



def test_the_same_files_give_the_same_layer_whatever_the_directory_umask_and_times(tmp_path):
    layers = []
    for name, umask in (("one", 0o022), ("two", 0o077)):
        root = _tree(tmp_path / name, umask)
        os.utime(root / "pkg" / "a.py", (1, 1 if name == "one" else 10**9))
        out = io.BytesIO()
        writer = LayerWriter(out)
        writer.add_dir("opt")
        writer.add_tree("opt", root)
        layer = writer.close()
        layers.append((out.getvalue(), layer))
    (first, one), (second, two) = layers
    assert first == second and one == two
    assert one.digest == "sha256:" + hashlib.sha256(first).hexdigest()
    assert one.diff_id == "sha256:" + hashlib.sha256(gzip.decompress(first)).hexdigest()
    assert first[:10] == b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x04\xff"  # no name or time; fastest
    with tarfile.open(fileobj=io.BytesIO(first)) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert list(members) == sorted(members)
    assert {m.mtime for m in members.values()} == {EPOCH}
    assert {(m.uid, m.gid, m.uname, m.gname) for m in members.values()} == {(0, 0, "", "")}
    assert members["opt/pkg/sub/tool"].mode == 0o755 and members["opt/pkg/a.py"].mode == 0o644
    assert members["opt/pkg/sub"].mode == 0o755 and members["opt/pkg/link"].linkname == "a.py"


def test_entries_added_in_any_order_give_the_same_layer():
    def make(order):
        out = io.BytesIO()
        writer = LayerWriter(out)
        for name in order:
            writer.add_bytes(name, name.encode())
        return writer.close()

    assert make(["b", "a/x", "c"]) == make(["c", "b", "a/x"])


class _Image:
    """What read_files needs of a RemoteImage: layers and a registry serving blobs."""

    def __init__(self, layers: list[bytes]) -> None:
        self.blobs = {"sha256:" + hashlib.sha256(b).hexdigest(): b for b in layers}
        self.layers = [{"digest": d} for d in self.blobs]
        self.registry = self
        self.reference = type("R", (), {"repository": "r"})()

    def blob(self, repository: str, digest: str):
        data = self.blobs[digest]
        return iter([data[i:i + 7] for i in range(0, len(data), 7)])  # tiny chunks


def _tar(entries: dict[str, bytes | str | None]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, value in entries.items():
            info = tarfile.TarInfo(name)
            if isinstance(value, str):
                info.type, info.linkname = tarfile.SYMTYPE, value
                tar.addfile(info)
            elif value is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(value)
                tar.addfile(info, io.BytesIO(value))
    return buffer.getvalue()


def test_files_are_read_through_the_layers_with_whiteouts_and_links():
    lower = _tar({"etc/passwd": b"old\n", "usr/bin/python3": "python3.11",
                  "usr/bin/python3.11": b"\x003.11.2\x00", "var/lib/dpkg/status.d/a": b"A",
                  "opt/gone/file": b"x"})
    upper = _tar({"etc/passwd": b"new\n", "var/lib/dpkg/status.d/.wh..wh..opq": b"",
                  "var/lib/dpkg/status.d/b": b"B", "opt/.wh.gone": b""})
    files = read_files(_Image([lower, upper]),  # type: ignore[arg-type]
                       ["etc/passwd", "usr/bin/python3", "usr/bin/python3.11",
                        "opt/gone/file"], directories=["var/lib/dpkg/status.d"])
    assert files["etc/passwd"] == b"new\n"
    assert files["usr/bin/python3"] == Link("python3.11")
    assert resolve_link(files, "usr/bin/python3") == "usr/bin/python3.11"
    assert "opt/gone/file" not in files
    assert {k for k in files if k.startswith("var/")} == {"var/lib/dpkg/status.d/b"}


def test_a_wheel_whose_record_does_not_match_its_files_is_refused_naming_it(tmp_path):
    import zipfile

    import pytest

    from envlock.operations.build.stage import BaseFacts, StageError, stage
    from tests.factories import make_lock

    wheel = tmp_path / "liar-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("liar.py", "x = 1\n")
        archive.writestr("liar-1.0.dist-info/METADATA",
                         "Metadata-Version: 2.1\nName: liar\nVersion: 1.0\n")
        archive.writestr("liar-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: t\n"
                         "Root-Is-Purelib: true\nTag: py3-none-any\n")
        archive.writestr("liar-1.0.dist-info/RECORD",
                         "liar.py,sha256=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA,6\n"
                         "liar-1.0.dist-info/METADATA,,\nliar-1.0.dist-info/WHEEL,,\n"
                         "liar-1.0.dist-info/RECORD,,\n")
    facts = BaseFacts(digest="sha256:b", python="3.11.7", interpreter="/usr/bin/python3",
                      executable="/usr/bin/python3.11", passwd="", group="")
    with pytest.raises(StageError, match="wheel liar-1.0-py3-none-any.whl cannot be installed"
                       ) as caught:
        stage(make_lock(), [wheel], facts, tmp_path / "root")
    assert caught.value.exit_code == 2 and "RECORD" in str(caught.value.hint)


def test_blocks_compressed_side_by_side_give_one_gzip_member_whatever_the_threads():
    from envlock.image.layer import BLOCK, _GzipSink

    words = [f"{i * 7919 % 100003:x}".encode() for i in range(300_000)]
    data = b" ".join(words)[: 2 * BLOCK + 12345]  # three blocks, the last one short
    outputs = []
    for threads, step in ((1, len(data)), (4, 4096), (3, 999_999)):
        out = io.BytesIO()
        sink = _GzipSink(out, 6, threads)
        for i in range(0, len(data), step):
            sink.write(bytearray(data[i:i + step]))
        sink.finish()
        sink.shutdown()
        outputs.append((out.getvalue(), sink.sha.hexdigest(), sink.size))
    assert outputs[0] == outputs[1] == outputs[2]
    blob, sha, size = outputs[0]
    assert gzip.decompress(blob) == data and size == len(blob) < len(data) // 2
    assert sha == hashlib.sha256(blob).hexdigest()


def test_a_layer_cut_short_is_an_error_and_an_uncompressed_one_is_read():
    import pytest

    data = bytes(range(256)) * 4000
    blob = _tar({"etc/passwd": data, "etc/group": b"g\n"})
    with pytest.raises((EOFError, tarfile.ReadError)):
        read_files(_Image([blob[: len(blob) // 2]]), ["etc/passwd"])  # type: ignore[arg-type]
    plain = gzip.decompress(blob)
    files = read_files(_Image([plain]), ["etc/passwd", "etc/group"])  # type: ignore[arg-type]
    assert files == {"etc/passwd": data, "etc/group": b"g\n"}
