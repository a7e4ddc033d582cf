"""Transfers report bytes done of the total, the rate and the time left: a plain line
every EVERY seconds in CI logs (one more at the end of a long one), the live status on a
terminal; silent with no Reporter in use. Pushes, pulls and downloads report through it."""

from __future__ import annotations

import io

from envlock import progress
from envlock.progress import Reporter, Transfer, counting, size


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_plain_lines_in_logs_say_bytes_total_rate_and_time_left():
    stream, clock = io.StringIO(), Clock()
    reporter = Reporter("envlock capture", stream=stream, live=False)
    moving = Transfer(reporter, "pushing sha256:abc", 1_000_000_000, clock=clock)
    for _ in range(10):  # 100 MB every 4 s: 25 MB/s
        clock.now += 4
        moving.advance(100_000_000)
    moving.close()
    lines = stream.getvalue().splitlines()
    assert lines[0] == ("envlock capture:           pushing sha256:abc: 300.0 MB / 1.0 GB "
                        "(30%), 25.0 MB/s, 28s left")
    assert len(lines) == 4  # every 10 s of 40, then the end
    assert lines[-1].endswith("pushing sha256:abc: 1.0 GB in 40s (25.0 MB/s)")


def test_a_short_transfer_prints_nothing_in_logs():
    stream, clock = io.StringIO(), Clock()
    with Transfer(Reporter(stream=stream, live=False), "x", 10, clock=clock) as moving:
        clock.now = 1
        moving.advance(10)
    assert stream.getvalue() == ""


def test_the_live_status_shows_the_same_line_on_a_terminal():
    stream = io.StringIO()
    reporter = Reporter("envlock", stream=stream, live=True)
    with reporter:
        reporter.step("pushing the image")
        clock = Clock()
        moving = Transfer(reporter, "pushing sha256:abc", 2_000_000, clock=clock)
        clock.now = 1
        moving.advance(1_000_000)
        assert reporter._status is not None
        assert "1.0 MB / 2.0 MB (50%), 1.0 MB/s, 1s left" in str(reporter._status.status)


def test_counting_reports_to_the_reporter_in_use_and_is_transparent_without_one():
    data = io.BytesIO(b"x" * 100)
    assert counting(data, "x", 100) is data  # no Reporter in use
    with Reporter(stream=io.StringIO(), live=False):
        wrapped = counting(io.BytesIO(b"x" * 100), "pushing", 100)
        assert wrapped.read(60) == b"x" * 60 and wrapped.read() == b"x" * 40
        assert wrapped.progress.done == 100 and wrapped.progress._closed
    assert progress._active is None


def test_a_pull_reports_the_layers_bytes_and_returns_the_engine_error():
    from envlock.adapters.engine import pull_progress

    events = [{"status": "Pulling fs layer", "id": "a"},
              {"status": "Downloading", "id": "a", "progressDetail": {"current": 5, "total": 10}},
              {"status": "Downloading", "id": "b", "progressDetail": {"current": 20, "total": 30}},
              {"status": "Downloading", "id": "a", "progressDetail": {"current": 10, "total": 10}}]
    with Reporter(stream=io.StringIO(), live=False):
        assert pull_progress(iter(events), "pulling x") is None
        assert pull_progress(iter([{"error": "manifest unknown"}]), "x") == "manifest unknown"


def test_sizes_for_people():
    assert [size(n) for n in (999, 1_500, 2_000_000, 3_100_000_000)] == [
        "999 B", "1.5 kB", "2.0 MB", "3.1 GB"]


def test_installs_and_layer_writes_report_their_bytes(tmp_path, monkeypatch):
    """Staging real wheels and writing the layer from them: each a transfer whose bytes
    reach its total (the wheels' sizes; the files' sizes), in plain lines in CI logs."""
    from envlock.adapters.ocistore import Store
    from envlock.image.layer import LayerWriter
    from envlock.operations.build import assemble, stage
    from tests.unit.test_stage_splice import FACTS, _lock, _noise, _wheel

    monkeypatch.setattr(progress, "EVERY", 0.0)  # every advance makes a line
    wheels = [_wheel(tmp_path, "aaa", {"aaa/__init__.py": _noise(3000, 1)}),
              _wheel(tmp_path, "bbb", {"bbb/data.txt": _noise(5000, 2)})]
    stream, root = io.StringIO(), tmp_path / "root"
    with Reporter("envlock build", stream=stream, live=False):
        members = stage.stage(_lock(), wheels, FACTS, root)  # type: ignore[arg-type]
        layer = assemble.write_layer(Store(tmp_path / "store"), lambda w: (
            stage.fill_environment(w, root, FACTS, members)), "writing the environment layer")
    writer, seen = LayerWriter(io.BytesIO()), []
    stage.fill_environment(writer, root, FACTS, members)
    total = writer.content_size()
    assert writer.close(seen.append) == layer  # the same layer, reported or not
    assert total == sum(seen) and total > 8000  # the files, every one counted once
    lines = stream.getvalue().splitlines()
    wheel_bytes = size(sum(w.stat().st_size for w in wheels))
    assert any(f"installing 2 wheels: {wheel_bytes} / {wheel_bytes} (100%)," in line
               for line in lines), lines
    assert any(f"writing the environment layer: {size(total)} / {size(total)} (100%)" in line
               for line in lines), lines
