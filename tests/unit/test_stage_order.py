"""Wheels installed into the staged tree as they arrive, several at once: the tree, the
layer's bytes and its digest are those of installing them one by one in the lock's order,
whatever order they arrive in. On real zip files, real installs by ``installer``, real
byte-compiling processes and a real layer."""

from __future__ import annotations

import base64
import hashlib
import io
import platform
import random
import sys
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from envlock.image.layer import SPLICE_MIN, LayerWriter
from envlock.operations.build import stage
from envlock.operations.build.stage import BaseFacts, StageError

FACTS = BaseFacts(digest="sha256:b", python=platform.python_version(),
                  interpreter="/usr/bin/python3", executable="/usr/bin/python3.11",
                  passwd="root:x:0:0::/root:/bin/sh\n", group="root:x:0:\n")
LOCK = SimpleNamespace(python={"version": platform.python_version()})


def _digest(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).decode().rstrip("=")


def _noise(size: int, seed: int) -> bytes:
    rng = random.Random(seed)
    words = [bytes(rng.choices(b"abcdefghij", k=rng.randint(2, 9))) for _ in range(300)]
    return b" ".join(rng.choice(words) for _ in range(size // 5))[:size]


def _wheel(directory: Path, name: str, files: dict[str, tuple[bytes, bool]],
           scripts: str = "") -> Path:
    """A valid wheel: ``files`` path -> (bytes, executable); ``scripts``: console scripts."""
    dist = f"{name}-1.0.dist-info"
    every = dict(files)
    every[f"{dist}/METADATA"] = (f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n"
                                 .encode(), False)
    every[f"{dist}/WHEEL"] = (b"Wheel-Version: 1.0\nGenerator: t\nRoot-Is-Purelib: true\n"
                              b"Tag: py3-none-any\n", False)
    if scripts:
        every[f"{dist}/entry_points.txt"] = (f"[console_scripts]\n{scripts}\n".encode(), False)
    record = "".join(f"{path},{_digest(data)},{len(data)}\n"
                     for path, (data, _x) in every.items()) + f"{dist}/RECORD,,\n"
    wheel = directory / f"{name}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, (data, executable) in every.items():
            info = zipfile.ZipInfo(path, (2020, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (0o755 if executable else 0o644) << 16
            archive.writestr(info, data)
        archive.writestr(f"{dist}/RECORD", record)
    return wheel


def _wheels(directory: Path) -> list[Path]:
    """Four wheels of which three write the same namespace files with other bytes (a big
    one the layer would carry as its member), one script name twice, one file's mode
    differing between two of them: every path whose result depends on the order."""
    big = 2 * SPLICE_MIN
    wheels = []
    for i in range(4):
        files = {f"own{i}/__init__.py": (f"VALUE = {i}\n".encode(), False),
                 f"own{i}/data.bin": (_noise(big, 10 + i), False)}
        for j in range(30):
            files[f"own{i}/m{j}.py"] = (f"def f():\n    return {{'a{i}', 'b{j}'}}\n".encode(),
                                        False)
        if i != 1:
            files["nvidia/__init__.py"] = (f"# from wheel {i}\n".encode(), False)
            files["nvidia/shared.bin"] = (_noise(big, i), False)
            files["nvidia/tool.sh"] = (f"#!/bin/sh\necho {i}\n".encode(), i == 2)
        scripts = f"tool = own{i}:main" if i in (0, 3) else ""
        wheels.append(_wheel(directory, f"pkg{i}", files, scripts))
    return wheels


def _layer(root: Path, members: dict) -> tuple[bytes, str]:
    out = io.BytesIO()
    writer = LayerWriter(out)
    stage.fill_environment(writer, root, FACTS, members)
    return out.getvalue(), writer.close().digest


def _installed(root: Path, wheels: list[Path], arrival: list[int] | None, workers: int
               ) -> tuple[bytes, str]:
    """The layer of ``wheels`` installed as they arrive in ``arrival`` (None: ``stage()``,
    one by one in order), byte-compiled beside it."""
    order = [w.name for w in wheels]
    with stage.Compiler(sys.executable, root, LOCK, workers=2) as compiler:  # type: ignore[arg-type]
        if arrival is None:
            members = stage.stage(LOCK, wheels, FACTS, root, compiler)  # type: ignore[arg-type]
        else:
            with stage.Installs(LOCK, FACTS, root, order, compiler, workers) as installs:  # type: ignore[arg-type]
                for index in arrival:
                    installs.add(wheels[index].name, wheels[index])
                members = installs.finish()
        compiler.finish()
    return _layer(root, members)


def test_any_arrival_order_and_concurrency_give_the_lock_orders_layer(tmp_path):
    wheels = _wheels(tmp_path)
    sequential = _installed(tmp_path / "seq", wheels, None, workers=1)
    reversed_ = _installed(tmp_path / "rev", wheels, [3, 2, 1, 0], workers=1)
    shuffled = _installed(tmp_path / "mix", wheels, [2, 0, 3, 1], workers=4)
    assert sequential[1] == reversed_[1] == shuffled[1]
    assert sequential[0] == reversed_[0] == shuffled[0]
    site = tmp_path / "rev" / stage.site_packages(LOCK).strip("/")  # type: ignore[arg-type]
    assert len(list(site.glob("own*/__pycache__/m*.pyc"))) == 120  # byte-code, in the layer
    assert (site / "nvidia" / "__init__.py").read_bytes() == b"# from wheel 3\n"
    assert (site / "nvidia" / "shared.bin").read_bytes() == _noise(2 * SPLICE_MIN, 3)
    assert not (site / "nvidia" / "tool.sh").stat().st_mode & 0o111  # wheel 3's mode
    assert b"own3" in (tmp_path / "rev" / "opt/envlock/venv/bin/tool").read_bytes()
    assert list(site.glob("nvidia/__pycache__/__init__.*.pyc"))
    for i in range(4):  # each wheel's RECORD lists its own bytes, as installed in order
        record = (site / f"pkg{i}-1.0.dist-info" / "RECORD").read_text()
        if i != 1:
            assert _digest(f"# from wheel {i}\n".encode()) in record


def test_a_broken_wheel_fails_the_installs_whatever_arrives_after_it(tmp_path):
    good = _wheels(tmp_path)[:2]
    bad = tmp_path / "bad"
    bad.mkdir()
    broken = _wheel(bad, "broken", {"broken/__init__.py": (b"x = 1\n", False)})
    with zipfile.ZipFile(broken, "a") as archive:  # a file RECORD does not list
        archive.writestr("broken/extra.py", b"y = 2\n")
    order = [w.name for w in [*good, broken]]
    with stage.Installs(LOCK, FACTS, tmp_path / "root", order, workers=2) as installs:  # type: ignore[arg-type]
        installs.add(broken.name, broken)
        for wheel in good:
            installs.add(wheel.name, wheel)
        with pytest.raises(StageError, match="broken"):
            installs.finish()
