"""The one line a capture or build ends with: phase times in order, sizes for people."""

from __future__ import annotations

from envlock.model.buildsummary import phases, summary_line


def test_the_phases_come_in_build_order_then_any_other():
    timings = {"push": 15.04, "provision": 86.0, "install": 39.26, "weird": 1.0, "code": 0.2}
    assert phases(timings) == "code 0.2s, download 86.0s, install 39.3s, push 15.0s, weird 1.0s"
    assert phases({}) == "nothing built"


def test_the_summary_names_the_image_size_and_the_bytes_moved():
    line = summary_line({"provision": 2.5, "env_layer": 1.25},
                        {"image_bytes": 5 << 30, "downloaded_bytes": 3 << 20,
                         "reused_bytes": 1536, "pushed_bytes": 0})
    assert line == ("download 2.5s, layer 1.2s; image 5 GiB; downloaded 3 MiB, reused from "
                    "the wheel cache 1.5 KiB, pushed 0 B")
    assert "image -;" in summary_line({}, {})
