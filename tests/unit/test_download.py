"""The parallel wheel downloader and its shared, content-addressed cache, against a real
HTTP server on 127.0.0.1 (``http.server`` in a thread): an interrupted download resumed
with a Range request, a corrupted wheel refused by its hash, one wheel downloaded once by
two concurrent processes, and provision() fetching an index package through it."""

from __future__ import annotations

import hashlib
import http.server
import json
import multiprocessing
import os
import random
import threading
import time
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from envlock.adapters.download import DownloadError, Wanted, WheelCache


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        self.cut_first = False  # drop the first full response halfway
        self.delay = 0.0  # seconds between chunks


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *_: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        data = self.server.files.get(self.path)
        wanted = self.headers.get("Range")
        self.server.requests.append((self.path, wanted))
        if data is None:
            self.send_error(404)
            return
        start = int(wanted.split("=")[1].split("-")[0]) if wanted else 0
        self.send_response(206 if wanted else 200)
        if wanted:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        body = data[start:]
        if self.server.cut_first and not wanted:
            self.server.cut_first = False
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        for offset in range(0, len(body), 1 << 16):
            self.wfile.write(body[offset:offset + (1 << 16)])
            time.sleep(self.server.delay)


@pytest.fixture
def server():
    httpd = _Server()
    # shutdown() waits for the loop's next poll: 0.5 s by default, at every test's end
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def _locks(tmp_path, monkeypatch):
    monkeypatch.setenv("ENVLOCK_LOCK_DIR", str(tmp_path / "locks"))


def _serve(server: _Server, name: str, data: bytes) -> Wanted:
    server.files[f"/files/{name}"] = data
    host, port = server.server_address[:2]
    return Wanted(url=f"http://{host}:{port}/files/{name}",
                  sha256=hashlib.sha256(data).hexdigest(), filename=name)


def _payload(size: int) -> bytes:
    return random.Random(size).randbytes(size)


def test_a_wheel_is_downloaded_once_then_found_in_the_cache(server, tmp_path):
    data = _payload(300_000)
    want = _serve(server, "a-1.0-py3-none-any.whl", data)
    cache = WheelCache(tmp_path / "cache")
    first = cache.fetch(want)
    again = cache.fetch(want)
    assert first.path.read_bytes() == data
    assert (first.downloaded, first.reused) == (len(data), False)
    assert (again.path, again.downloaded, again.reused) == (first.path, 0, True)
    assert first.path == tmp_path / "cache" / "sha256" / want.sha256[:2] / want.sha256 / \
        want.filename
    assert len(server.requests) == 1


def test_an_interrupted_download_resumes_with_a_range_request(server, tmp_path):
    data = _payload(1_000_000)
    want = _serve(server, "big-1.0-py3-none-any.whl", data)
    server.cut_first = True
    fetched = WheelCache(tmp_path / "cache").fetch(want)
    assert fetched.path.read_bytes() == data
    (_, first), (_, second) = server.requests
    resumed_at = int(second.removeprefix("bytes=").removesuffix("-"))
    assert first is None and len(data) // 2 - (1 << 16) < resumed_at <= len(data) // 2
    assert fetched.downloaded == len(data)  # what was kept is not downloaded again


def test_a_part_left_by_a_killed_capture_is_resumed_by_the_next(server, tmp_path):
    data = _payload(400_000)
    want = _serve(server, "c-1.0-py3-none-any.whl", data)
    cache = WheelCache(tmp_path / "cache")
    part = cache.path(want.sha256, want.filename).with_name(want.filename + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(data[:123_456])
    fetched = cache.fetch(want)
    assert fetched.path.read_bytes() == data
    assert server.requests == [(f"/files/{want.filename}", "bytes=123456-")]
    assert fetched.downloaded == len(data) - 123_456
    assert not part.exists()


def test_a_corrupted_wheel_is_refused_by_its_hash_and_not_cached(server, tmp_path):
    good = _payload(200_000)
    want = _serve(server, "d-1.0-py3-none-any.whl", good)
    server.files[f"/files/{want.filename}"] = good[:-1] + bytes([good[-1] ^ 1])
    cache = WheelCache(tmp_path / "cache")
    with pytest.raises(DownloadError, match=r"d-1.0-py3-none-any.whl .*has sha256 .*refused"):
        cache.fetch(want)
    assert cache.get(want) is None
    assert not list((tmp_path / "cache").rglob("*.part"))


def test_a_missing_file_names_the_status_without_credentials(server, tmp_path):
    host, port = server.server_address[:2]
    want = Wanted(url=f"http://user:secret@{host}:{port}/files/gone.whl", sha256="0" * 64,
                  filename="gone.whl")
    with pytest.raises(DownloadError) as caught:
        WheelCache(tmp_path / "cache").fetch(want)
    assert "HTTP 404" in caught.value.message and "secret" not in str(caught.value)


def _fetch_in_process(root: str, want: Wanted, out: str) -> None:
    fetched = WheelCache(Path(root)).fetch(want)
    Path(out).write_text(json.dumps([str(fetched.path), fetched.downloaded, fetched.reused]))


def test_two_concurrent_captures_download_a_shared_wheel_once(server, tmp_path):
    data = _payload(2_000_000)
    want = _serve(server, "torch-1.0-py3-none-any.whl", data)
    server.delay = 0.01  # ~0.3 s of streaming: the second process starts meanwhile
    context = multiprocessing.get_context("fork")
    procs = [context.Process(target=_fetch_in_process,
                             args=(str(tmp_path / "cache"), want, str(tmp_path / f"{i}.json")))
             for i in range(2)]
    for process in procs:
        process.start()
    for process in procs:
        process.join(60)
    results = sorted(json.loads((tmp_path / f"{i}.json").read_text()) for i in range(2))
    assert [process.exitcode for process in procs] == [0, 0]
    assert results[0][0] == results[1][0] and Path(results[0][0]).read_bytes() == data
    assert sorted((r[1], r[2]) for r in results) == [(0, True), (len(data), False)]
    assert len(server.requests) == 1


def test_a_local_find_links_wheel_is_copied_and_checked(tmp_path):
    source = tmp_path / "links" / "e-1.0-py3-none-any.whl"
    source.parent.mkdir()
    source.write_bytes(b"wheel bytes")
    want = Wanted(url=source.as_uri(), sha256=hashlib.sha256(b"wheel bytes").hexdigest(),
                  filename=source.name)
    fetched = WheelCache(tmp_path / "cache").fetch(want)
    assert (fetched.path.read_bytes(), fetched.downloaded) == (b"wheel bytes", 0)


# ------------------------------------------------------------- through provision()

def _wheel(directory: Path, name: str, version: str) -> Path:
    import base64

    dist = f"{name}-{version}.dist-info"
    files = {f"{name}/__init__.py": f"VERSION = {version!r}\n".encode(),
             f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\n"
                                 f"Version: {version}\n".encode()}
    rows = [f"{p},sha256={base64.urlsafe_b64encode(hashlib.sha256(d).digest()).decode()}"
            .rstrip("=") + f",{len(d)}" for p, d in files.items()]
    wheel = directory / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
        archive.writestr(f"{dist}/RECORD", "\n".join([*rows, f"{dist}/RECORD,,"]) + "\n")
    return wheel


def test_provision_fetches_index_wheels_in_parallel_into_the_shared_cache(
        server, tmp_path, monkeypatch):
    from envlock.model.lockfile import Package, Source
    from envlock.operations.build import provision
    from envlock.snapshot.rebuilt import wheel_files_digest

    monkeypatch.setenv("ENVLOCK_CACHE", str(tmp_path / "cache"))
    built = tmp_path / "built"
    built.mkdir()
    wheels = [_wheel(built, f"pkg{i}", "1.0") for i in range(4)]
    wanted = [_serve(server, w.name, w.read_bytes()) for w in wheels]
    packages = [Package(name=f"pkg{i}", version="1.0", source=Source(kind="index"),
                        files_digest=wheel_files_digest(w)) for i, w in enumerate(wheels)]
    host, port = server.server_address[:2]
    for index, want in enumerate(wanted):  # a PEP 503 page per project (no JSON here)
        server.files[f"/simple/pkg{index}/"] = (
            f'<html><body><a href="../../files/{want.filename}#sha256={want.sha256}">'
            f'{want.filename}</a><a href="/files/pkg{index}-0.9.tar.gz">pkg{index}-0.9.tar.gz'
            f'</a></body></html>').encode()
    monkeypatch.setattr(provision, "index_sources",
                        lambda lock, pkgs, log=None: ([f"http://{host}:{port}/simple"], []))
    monkeypatch.setattr(provision, "_add_installer", lambda wheelhouse: None)
    lock = SimpleNamespace(packages=packages, project_root=None, index={},
                           python={"version": "3.11.7",
                                   "platform_tag": "manylinux_2_17_x86_64"})
    first = provision.provision(lock, tmp_path / "house1")
    assert [(p.how, p.downloaded) for p in first] == \
        [("index", w.stat().st_size) for w in wheels]
    assert all(p.wheel.read_bytes() == w.read_bytes() for p, w in zip(first, wheels, strict=True))
    assert sorted(path for path, _ in server.requests) == sorted(
        [f"/simple/pkg{i}/" for i in range(4)] + [f"/files/{w.filename}" for w in wanted])
    server.requests.clear()
    second = provision.provision(lock, tmp_path / "house2")  # another project, same wheels
    assert [(p.how, p.downloaded) for p in second] == [("cache", 0)] * 4
    assert server.requests == []  # found by files_digest: not even the index is asked
    os.stat(second[0].wheel)  # a link into the cache, or a copy, but there
