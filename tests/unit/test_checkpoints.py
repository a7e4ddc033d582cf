"""Checkpoints compared tensor by tensor, apart from their metadata: safetensors read from
their documented layout, PyTorch / Lightning checkpoints in torch's zip format read without
torch (files saved by real torch 2.13 in tests/fixtures/checkpoints, made by
tests/fixtures/checkpoints/make.py), the legacy format with torch when it is importable
(the reason says so when it is not)."""

from __future__ import annotations

import io
import json
import pickle
import struct
import zipfile
from pathlib import Path

import pytest

from envlock.model.checkpoints import compare_states, explain, flatten, is_checkpoint, read_torch
from tests.conftest import optional_module

numpy = optional_module("numpy")
pytestmark = pytest.mark.extra("numpy")


def safetensors(tensors: dict, metadata: dict[str, str]) -> bytes:
    """A safetensors file, written from its specification."""
    header: dict = {"__metadata__": metadata} if metadata else {}
    body, offset = b"", 0
    for name, array in tensors.items():
        data = array.astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(data)]}
        body, offset = body + data, offset + len(data)
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + body


WEIGHTS = {"layer.weight": numpy.arange(6, dtype="float32").reshape(2, 3),
           "layer.bias": numpy.zeros(2, dtype="float32")} if numpy else {}


def test_safetensors_with_identical_weights_and_other_metadata_says_exactly_that():
    a = safetensors(WEIGHTS, {"run_id": "abc", "path": "/home/a/ckpt"})
    b = safetensors(WEIGHTS, {"run_id": "def", "path": "/home/a/ckpt"})
    assert explain("model.safetensors", a, b) == (
        "identical weights (2 tensors); only metadata differs: __metadata__.run_id")


def test_safetensors_tensors_that_differ_are_named_with_the_largest_delta():
    changed = {**WEIGHTS, "layer.bias": numpy.array([0.0, 0.25], dtype="float32")}
    reason = explain("m.safetensors", safetensors(WEIGHTS, {}), safetensors(changed, {}))
    assert reason == "1 of 2 tensors differ: layer.bias (max |Δ| 0.25)"
    extra = {**WEIGHTS, "head.weight": numpy.ones(1, dtype="float32")}
    reason = explain("m.safetensors", safetensors(WEIGHTS, {}), safetensors(extra, {}))
    assert reason == "tensors on one side only: head.weight"
    assert explain("m.safetensors", b"junk", b"junk2") == (
        "not a safetensors file: compared by sha256 only")


def test_a_lightning_like_checkpoint_with_callback_paths_is_identical_weights():
    original = {"state_dict": dict(WEIGHTS), "epoch": 3,
                "callbacks": {"ModelCheckpoint": {"dirpath": "/runs/abc/checkpoints",
                                                  "best_model_score": 0.5}}}
    replay = {"state_dict": {k: v.copy() for k, v in WEIGHTS.items()}, "epoch": 3,
              "callbacks": {"ModelCheckpoint": {"dirpath": "/runs/def/checkpoints",
                                                "best_model_score": 0.5}}}
    assert compare_states(flatten(original), flatten(replay)) == (
        "identical weights (2 tensors); only metadata differs: "
        "callbacks.ModelCheckpoint.dirpath")
    assert compare_states(flatten(original), flatten(original)) == (
        "identical weights (2 tensors); the same metadata; only the file's encoding differs")


def lightning_state(folder: str, run_id: str) -> dict:
    """A checkpoint laid out as PyTorch Lightning 2.x saves it: ModelCheckpoint's state
    under its long state key, its scores as tensors, ``best_k_models`` keyed by path."""
    best, score = f"{folder}/epoch=0-step=1.ckpt", numpy.array(0.5, dtype="float32")
    key = "ModelCheckpoint{'monitor': 'val_loss', 'mode': 'min', 'every_n_epochs': 1}"
    return {"state_dict": {k: v.copy() for k, v in WEIGHTS.items()}, "epoch": 0,
            "loops": {"fit_loop": {"epoch_progress": {"total": {"completed": 1}}}},
            "callbacks": {key: {"dirpath": folder, "best_model_path": best,
                                "best_model_score": score, "best_k_models": {best: score}}},
            "hyper_parameters": {"lr": 0.01, "run_id": run_id}}


def test_lightning_callback_state_is_metadata_even_where_it_holds_tensors_by_path():
    a = flatten(lightning_state("/home/me/proj/checkpoints", "abc"))
    b = flatten(lightning_state("/work/checkpoints", "def"))
    assert compare_states(a, b) == (
        "identical weights (2 tensors); only metadata differs: "
        "callbacks.ModelCheckpoint{…}.best_k_models.<absolute path>, "
        "callbacks.ModelCheckpoint{…}.best_model_path, callbacks.ModelCheckpoint{…}.dirpath, "
        "hyper_parameters.run_id")
    scored = lightning_state("/work/checkpoints", "def")
    scored["callbacks"][next(iter(scored["callbacks"]))]["best_model_score"] = numpy.array(
        0.25, dtype="float32")
    assert compare_states(b, flatten(scored)) == (
        "identical weights (2 tensors); only metadata differs: "
        "callbacks.ModelCheckpoint{…}.best_model_score")


def test_torch_checkpoints_are_read_when_torch_is_importable():
    try:
        import torch
    except ImportError:  # torch is optional: then the reason says why only sha256
        assert explain("model.pt", b"PK..", b"PK.,") == (
            "not a zip checkpoint, and torch is not installed here: compared by sha256 only")
        return
    state = {"w": torch.arange(4.0), "b": torch.zeros(2)}

    def saved(obj) -> bytes:
        buffer = io.BytesIO()
        torch.save(obj, buffer)
        return buffer.getvalue()

    a = saved({"state_dict": state, "hparams": {"run": "x"}})
    b = saved({"state_dict": {k: v.clone() for k, v in state.items()}, "hparams": {"run": "y"}})
    assert explain("last.ckpt", a, b) == (
        "identical weights (2 tensors); only metadata differs: hparams.run")
    c = saved({"state_dict": {"w": torch.arange(4.0) + 1e-3, "b": torch.zeros(2)},
               "hparams": {"run": "x"}})
    assert explain("model.pt", a, c).startswith(
        "1 of 2 tensors differ: state_dict.w (max |Δ| 0.001")


def test_which_files_are_checkpoints():
    assert all(map(is_checkpoint, ("a/model.safetensors", "last.ckpt", "m.PT", "w.pth")))
    assert not is_checkpoint("model.bin") and not is_checkpoint("metrics.json")


# ------------------------------------------------------------------ images, pixel by pixel
def png(pixels: dict[tuple[int, int], tuple[int, int, int]], size=(8, 6), **info) -> bytes:
    from PIL import Image, PngImagePlugin

    image = Image.new("RGB", size, (255, 255, 255))
    for xy, colour in pixels.items():
        image.putpixel(xy, colour)
    meta = PngImagePlugin.PngInfo()
    for key, value in info.items():
        meta.add_text(key, value)
    out = io.BytesIO()
    image.save(out, format="PNG", pnginfo=meta)
    return out.getvalue()


@pytest.mark.extra("PIL")
def test_images_are_compared_pixel_by_pixel():
    from envlock.model.imagediff import explain as explain_image
    from envlock.model.imagediff import is_image

    assert is_image("plots/loss.PNG") and not is_image("model.pt")
    same = explain_image("a.png", png({}, created="monday"), png({}, created="tuesday"))
    assert same == "the same pixels (8x6); only the file's encoding or metadata differs"
    changed = explain_image("a.png", png({}), png({(2, 1): (255, 0, 0), (3, 4): (250, 255, 255)}))
    assert changed == ("2 of 48 pixels differ (4.2%), largest channel difference 255/255, "
                       "within x 2..3, y 1..4")
    assert explain_image("a.png", png({}), png({}, size=(9, 6))) == "size differs: 8x6 -> 9x6"
    assert explain_image("a.png", b"x", b"y") == (
        "not an image Pillow can read: compared by sha256 only")


SAVED = Path(__file__).parents[1] / "fixtures" / "checkpoints"


def saved(name: str) -> bytes:
    return (SAVED / name).read_bytes()


def test_torch_zip_checkpoints_are_read_without_torch_tensor_by_tensor():
    a, b, c = saved("a.pt"), saved("b.pt"), saved("c.pt")
    assert a != b  # torch writes a random serialization id into every file
    assert explain("last.ckpt", a, b) == (
        "identical weights (9 tensors); only metadata differs: hyper_parameters.run_id")
    assert explain("last.ckpt", a, c).startswith(
        "1 of 9 tensors differ: state_dict.0.weight (max |Δ| 0.5)")
    assert explain("last.ckpt", a, a) == (
        "identical weights (9 tensors); the same metadata; only the file's encoding differs")


def test_torch_zip_tensors_are_their_values_in_c_order_whatever_their_storage_view():
    state = read_torch(saved("a.pt"))
    base = numpy.arange(12, dtype="<f8").reshape(3, 4)
    transposed = state["extra.transposed"]  # a strided view of a shared storage
    assert (transposed.dtype, transposed.shape) == ("F64", (4, 3))
    assert transposed.data == base.T.tobytes()
    assert state["extra.shared"].data == base[1].tobytes()  # an offset into it
    assert state["extra.half"].data == numpy.array([1.5, -2.0], dtype="<f2").tobytes()
    assert (state["extra.steps"].dtype, state["extra.flag"].data) == ("I64", b"\x01")
    assert state["hyper_parameters.run_id"] == "abc" and state["epoch"] == 1
    assert "torch.device" in repr(state["extra.device"])  # another class: one inert value


def test_the_legacy_format_needs_torch_and_says_so():
    try:
        import torch  # noqa: F401
    except ImportError:
        assert explain("old.pt", saved("legacy.pt"), saved("a.pt")) == (
            "not a zip checkpoint, and torch is not installed here: compared by sha256 only")


def test_a_pickle_naming_any_other_callable_builds_an_inert_value_and_runs_nothing(tmp_path):
    marker = tmp_path / "ran"

    class Call:
        def __reduce__(self):
            return (__import__("os").system, (f"touch {marker}",))

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({"x": Call()}, protocol=2))
        archive.writestr("archive/byteorder", "little")
    state = read_torch(buffer.getvalue())
    assert not marker.exists()
    assert "system" in repr(state["x"]) and f"touch {marker}" in repr(state["x"])
