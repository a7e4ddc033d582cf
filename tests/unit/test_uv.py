"""uv projects: a recorded `uv run …` command as the image (which has no uv) runs it, and a
uv.lock beside the locked environment (recorded with its sha256; disagreements named)."""

import hashlib

import pytest

from envlock.image.render import render
from envlock.model import uvlock
from envlock.model.lockfile import dumps, loads
from envlock.model.uvrun import replay_command
from envlock.snapshot.uvproject import uv_lock_section
from tests.factories import make_lock, package


@pytest.mark.parametrize(("recorded", "replayed"), [
    ("uv run train.py", "python train.py"),
    ("uv run train.py --lr 0.1 --name 'a b'", "python train.py --lr 0.1 --name 'a b'"),
    ("uv run python train.py", "python train.py"),
    ("uv run --frozen train.py", "python train.py"),
    ("uv run --frozen --extra gpu --group dev -p 3.11 python3 train.py", "python3 train.py"),
    ("uv run --python=3.11 --locked -- python train.py --x", "python train.py --x"),
    ("uv run -m pkg.train --epochs 2", "python -m pkg.train --epochs 2"),
    ("uv run --module=pkg.train", "python -m pkg.train"),
    ("uv run torchrun --nproc-per-node 2 train.py", "torchrun --nproc-per-node 2 train.py"),
    ("uv run --directory 'my src' train.py", "cd 'my src' && python train.py"),
    ("CUDA_VISIBLE_DEVICES=0 SEED=1 uv run train.py",
     "CUDA_VISIBLE_DEVICES=0 SEED=1 python train.py"),
    ("/home/me/.local/bin/uv run --no-sync scripts/train.pyw", "python scripts/train.pyw"),
])
def test_uv_run_commands_run_the_command_in_the_images_environment(recorded, replayed):
    assert replay_command(recorded) == replayed


@pytest.mark.parametrize("command", [
    None, "", "python train.py", "uvx ruff check", "uv pip list", "uv run",
    "uv run --frozen", "uv sync && uv run train.py", "uv run train.py; echo done",
    "uv run 'unbalanced", "torchrun uv run",
])
def test_anything_else_is_left_as_it_was(command):
    assert replay_command(command) == command


def test_the_code_images_default_command_is_the_translated_one():
    lock = make_lock(runtime={"env": {}, "command": "uv run --frozen train.py"})
    recipe = render(lock, "base@sha256:" + "0" * 64, "repo", "code")
    assert 'CMD ["/bin/sh", "-c", "python train.py"]' in recipe.code_changes
    plain = make_lock(runtime={"env": {}, "command": "python train.py"})
    assert 'CMD ["/bin/sh", "-c", "python train.py"]' in \
        render(plain, "base@sha256:" + "0" * 64, "repo", "code").code_changes


UV_LOCK = """version = 1
requires-python = ">=3.11"

[[package]]
name = "demo"
version = "0.1.0"
source = { virtual = "." }
dependencies = [{ name = "six" }]

[[package]]
name = "six"
version = "1.16.0"
source = { registry = "https://pypi.org/simple" }

[[package]]
name = "Typing_Extensions"
version = "4.12.2"
source = { registry = "https://pypi.org/simple" }

[[package]]
name = "numpy"
version = "2.1.0"
source = { registry = "https://pypi.org/simple" }
resolution-markers = ["python_version >= '3.12'"]

[[package]]
name = "numpy"
version = "1.26.4"
source = { registry = "https://pypi.org/simple" }
"""


def test_uv_lock_resolutions_and_disagreements():
    locked = uvlock.resolved(UV_LOCK)
    assert locked == {"demo": {"0.1.0"}, "six": {"1.16.0"},
                      "typing-extensions": {"4.12.2"}, "numpy": {"2.1.0", "1.26.4"}}
    installed = [package("six", "1.16.0"), package("numpy", "1.26.4"),
                 package("typing-extensions", "4.11.0"), package("pip", "24.0")]
    assert uvlock.disagreements(installed, locked) == [
        "typing-extensions 4.11.0 (uv.lock: 4.12.2)", "pip 24.0 (not in uv.lock)"]


def test_a_project_with_a_uv_lock_records_it_and_says_where_it_disagrees(tmp_path):
    (tmp_path / "uv.lock").write_text(UV_LOCK)
    agreeing = uv_lock_section(tmp_path, [package("six", "1.16.0")])
    digest = hashlib.sha256(UV_LOCK.encode()).hexdigest()
    assert agreeing == {"path": "uv.lock", "sha256": f"sha256:{digest}"}
    section = uv_lock_section(tmp_path, [package("six", "1.15.0")])
    lock = make_lock(index={"index_url": "https://pypi.org/simple", "uv_lock": section})
    (warning,) = uvlock.warnings(loads(dumps(lock)))
    assert "six 1.15.0 (uv.lock: 1.16.0)" in warning and "uv sync --frozen" in warning
    assert uvlock.warnings(make_lock()) == []
    assert uv_lock_section(tmp_path / "absent", []) is None
    assert uv_lock_section(None, []) is None
    (tmp_path / "uv.lock").write_text("not [toml")
    (problem,) = uv_lock_section(tmp_path, [])["disagree"]
    assert "cannot be read as TOML" in problem
