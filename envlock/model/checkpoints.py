"""Pure: why a checkpoint differs between the original and its replay — tensor by tensor,
by name, apart from its metadata. "Identical weights; only metadata differs: …" is the
answer for a PyTorch Lightning ``.ckpt`` whose callback state holds absolute paths and
the run's id.

safetensors files are read here from their documented layout (an 8-byte little-endian
header length, a JSON header of ``name: {dtype, shape, data_offsets}`` and
``__metadata__``, then the raw data): no library is needed. PyTorch ``.pt`` / ``.pth`` /
``.ckpt`` files in torch's zip format are read from that format (:mod:`envlock.model.torchzip`:
nothing is imported, nothing but tensors and plain containers is built), so envlock needs
no torch to explain them; only the legacy pre-1.6 format needs ``torch.load(weights_only=
True)``, and without torch such a file is compared by sha256 only, and the reason says so.
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Callable, Mapping
from typing import Any

SAFETENSORS = (".safetensors",)
#: top-level keys of a PyTorch Lightning checkpoint that hold training-loop and callback
#: state, not weights: a tensor below them (a ModelCheckpoint's best score, its
#: ``best_k_models`` keyed by absolute path) is metadata
STATE = ("callbacks", "loops", "hyper_parameters", "datamodule_hyper_parameters")
TORCH = (".pt", ".pth", ".ckpt")
MAX_BYTES = 256 << 20  # larger checkpoints: by sha256 only
_SHOWN = 6  # names shown in a reason


def is_checkpoint(path: str) -> bool:
    return path.lower().endswith(SAFETENSORS + TORCH)


def explain(path: str, original: bytes, replay: bytes) -> str:
    """One line: what differs between two versions of the checkpoint ``path``."""
    loader = read_safetensors if path.lower().endswith(SAFETENSORS) else read_torch
    try:
        a, b = loader(original), loader(replay)
    except CheckpointUnreadable as exc:
        return f"{exc}: compared by sha256 only"
    return compare_states(a, b)


class CheckpointUnreadable(Exception):
    """The checkpoint cannot be read here (no torch, not a checkpoint, unsafe objects)."""


def read_safetensors(data: bytes) -> dict[str, Any]:
    """name -> ("tensor", dtype, shape, bytes) for each tensor; ``__metadata__.KEY`` ->
    its value."""
    try:
        (size,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8:8 + size])
    except (struct.error, ValueError) as exc:
        raise CheckpointUnreadable("not a safetensors file") from exc
    body, out = data[8 + size:], {}
    for name, info in header.items():
        if name == "__metadata__":
            out.update({f"__metadata__.{k}": v for k, v in (info or {}).items()})
            continue
        start, end = info["data_offsets"]
        out[name] = Raw(info["dtype"], tuple(info["shape"]), body[start:end])
    return out


class Raw:
    """A safetensors tensor: its dtype, shape and bytes."""

    _NUMPY = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4"}

    def __init__(self, dtype: str, shape: tuple[int, ...], data: bytes) -> None:
        self.dtype, self.shape, self.data = dtype, shape, data

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Raw) and (self.dtype, self.shape, self.data) == (
            other.dtype, other.shape, other.data)

    __hash__ = None  # type: ignore[assignment]

    def max_delta(self, other: Raw) -> float | None:
        kind = self._NUMPY.get(self.dtype)
        if kind is None or other.dtype != self.dtype or other.shape != self.shape:
            return None
        try:
            import numpy
        except ImportError:
            return None
        a = numpy.frombuffer(self.data, dtype=kind).astype("float64")
        b = numpy.frombuffer(other.data, dtype=kind).astype("float64")
        return float(numpy.max(numpy.abs(a - b))) if a.size else 0.0


def read_torch(data: bytes) -> dict[str, Any]:
    """Every leaf of a torch checkpoint by its dotted path (tensors and plain values).
    The zip format of ``torch.save`` (PyTorch ≥ 1.6) is read here without torch
    (:mod:`envlock.model.torchzip`), so the reason does not depend on what is installed
    beside envlock; the legacy format needs torch (``weights_only=True``)."""
    from envlock.model import torchzip

    try:
        return flatten(torchzip.load(data))
    except torchzip.NotTorchZip:
        pass
    except torchzip.Unreadable as exc:
        raise CheckpointUnreadable(str(exc)) from exc
    try:
        import torch
    except ImportError as exc:
        raise CheckpointUnreadable("not a zip checkpoint, and torch is not installed "
                                   "here") from exc
    try:
        loaded = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds for a bad file
        raise CheckpointUnreadable(f"torch could not read it with weights_only "
                                   f"({type(exc).__name__})") from exc
    return flatten(loaded)


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts and lists -> {dotted path: leaf}."""
    if isinstance(value, Mapping) and not getattr(value, "leaf", False):
        items: Any = value.items()
    elif isinstance(value, (list, tuple)):
        items = enumerate(value)
    else:
        return {prefix or "(root)": value}
    out: dict[str, Any] = {}
    for key, item in items:
        out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    return out


def _is_tensor(value: Any) -> bool:
    return isinstance(value, Raw) or (hasattr(value, "shape") and hasattr(value, "dtype"))


def same_tensor(a: Any, b: Any) -> bool:
    if isinstance(a, Raw) or isinstance(b, Raw):
        return bool(a == b)
    return (tuple(a.shape) == tuple(b.shape) and str(a.dtype) == str(b.dtype)
            and bool((a == b).all()))


def max_delta(a: Any, b: Any) -> float | None:
    if isinstance(a, Raw):
        return a.max_delta(b) if isinstance(b, Raw) else None
    try:
        return float(abs(a.double() - b.double()).max()) if hasattr(a, "double") else \
            float(abs(a.astype("float64") - b.astype("float64")).max())
    except (RuntimeError, TypeError, ValueError, AttributeError):
        return None


def compare_states(a: Mapping[str, Any], b: Mapping[str, Any],
                   same: Callable[[Any, Any], bool] = same_tensor) -> str:
    """One line: the tensors by name (identical, differing with their largest |Δ|, only
    on one side), then the metadata keys that differ. Tensors of a Lightning
    checkpoint's callback and loop state (:data:`STATE`) count as metadata."""
    keys = a.keys() | b.keys()
    tensors = sorted(k for k in keys if _is_weight(k, a.get(k, b.get(k))))
    meta = sorted(k for k in keys if k not in tensors and not _same_meta(a, b, k, same))
    only = [k for k in tensors if (k in a) != (k in b)]
    differ = [k for k in tensors if k in a and k in b and not same(a[k], b[k])]
    parts = []
    if differ:
        shown = [f"{k}" + (f" (max |Δ| {d:.3g})" if (d := max_delta(a[k], b[k])) is not None
                           else "") for k in differ[:_SHOWN]]
        parts.append(f"{len(differ)} of {len(tensors)} tensors differ: {', '.join(shown)}"
                     + (", …" if len(differ) > _SHOWN else ""))
    if only:
        parts.append(f"tensors on one side only: {_names(only)}")
    if not parts:
        parts.append(f"identical weights ({len(tensors)} tensors)")
    if meta:
        lead = "only metadata differs" if not differ and not only else "metadata differs"
        parts.append(f"{lead}: {_names(_labels(meta))}")
    elif not differ and not only:
        parts.append("the same metadata; only the file's encoding differs")
    return "; ".join(parts)


def _is_weight(key: str, value: Any) -> bool:
    return _is_tensor(value) and key.split(".", 1)[0] not in STATE


def _same_meta(a: Mapping[str, Any], b: Mapping[str, Any], key: str,
               same: Callable[[Any, Any], bool]) -> bool:
    x, y = a.get(key), b.get(key)
    if _is_tensor(x) and _is_tensor(y):
        return bool(same(x, y))
    return bool(_plain(x) == _plain(y))


def _labels(keys: list[str]) -> list[str]:
    """Metadata keys as a person reads them: a Lightning callback's state key
    ``ModelCheckpoint{'monitor': …}`` shortened to ``ModelCheckpoint{…}``, and a dict keyed
    by absolute paths (``best_k_models``) named once, by the dict; in order, no repeats."""
    out: list[str] = []
    for key in keys:
        parts = []
        for part in key.split("."):
            if part.startswith("/"):
                parts.append("<absolute path>")
                break
            parts.append(part.split("{", 1)[0] + "{…}" if "{" in part else part)
        label = ".".join(parts)
        if label not in out:
            out.append(label)
    return out


def _plain(value: Any) -> Any:
    return repr(value) if value is not None else None


def _names(keys: list[str]) -> str:
    more = f" (+{len(keys) - _SHOWN} more)" if len(keys) > _SHOWN else ""
    return ", ".join(keys[:_SHOWN]) + more
