"""Pure: a checkpoint written by ``torch.save`` (its zip format, PyTorch ≥ 1.6) read
without torch, so that envlock explains a differing ``.pt`` / ``.ckpt`` wherever it runs.

The format: a zip whose one top folder holds ``data.pkl`` (the object, pickled) and
``data/<key>`` (each storage's raw bytes, in the order ``byteorder`` names; little-endian
unless it says ``big``). In the pickle a storage is a persistent id ``("storage",
<torch.XStorage>, key, location, numel)`` and a tensor the call
``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, …)``. Here the unpickler
imports nothing: it knows those names, containers (``collections.OrderedDict``) and
builds anything else as an inert mapping named after its class (a Lightning
``AttributeDict`` and the like), so nothing in a file can run code. Tensors become
:class:`~envlock.model.checkpoints.Raw` (dtype, shape, their own bytes in C order).
"""

from __future__ import annotations

import io
import pickle
import struct
import zipfile
from itertools import product
from typing import Any

from envlock.model.checkpoints import Raw

#: torch's storage classes: the dtype (safetensors' names) and its item size.
STORAGES = {"FloatStorage": ("F32", 4), "DoubleStorage": ("F64", 8),
            "HalfStorage": ("F16", 2), "BFloat16Storage": ("BF16", 2),
            "LongStorage": ("I64", 8), "IntStorage": ("I32", 4), "ShortStorage": ("I16", 2),
            "CharStorage": ("I8", 1), "ByteStorage": ("U8", 1), "BoolStorage": ("BOOL", 1)}
_TENSOR = ("torch._utils", "_rebuild_tensor_v2")
_PARAMETER = ("torch._utils", "_rebuild_parameter")


class NotTorchZip(Exception):
    """Not torch's zip format (perhaps its legacy format)."""


class Unreadable(Exception):
    """Torch's zip format, but not readable here (what it holds is named)."""


def load(data: bytes) -> Any:
    """The object a ``torch.save`` zip holds, tensors as ``Raw``."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        names = archive.namelist()
    except (zipfile.BadZipFile, ValueError) as exc:
        raise NotTorchZip(str(exc)) from exc
    pickled = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(pickled) != 1:
        raise NotTorchZip("no data.pkl")
    top = pickled[0][:-len("data.pkl")]
    order = archive.read(top + "byteorder").decode().strip() if (
        top + "byteorder") in names else "little"
    try:
        return _Unpickler(archive, top, order).load()
    except (pickle.UnpicklingError, KeyError, TypeError, ValueError, AttributeError,
            EOFError, IndexError, struct.error) as exc:
        raise Unreadable(f"its pickle could not be read without torch ({exc})") from exc


class _Storage:
    def __init__(self, dtype: str, size: int, data: bytes) -> None:
        self.dtype, self.size, self.data = dtype, size, data

    def __repr__(self) -> str:  # compared by value, when something else holds one
        return f"storage({self.dtype}, {self.data.hex()})"


class _Ordered(dict[Any, Any]):
    """An ``OrderedDict``; its attributes (a ``state_dict``'s ``_metadata``: module
    versions) are not data and are dropped, as ``flatten`` would not see them."""

    def __setstate__(self, state: Any) -> None:
        del state


class Opaque(dict[str, Any]):
    """Any other class in the pickle: an inert mapping of what it was built with."""

    name = "?"

    #: Built by a call (``torch.device("cpu")``): one value, not a mapping of fields.
    leaf = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()
        if args or kwargs:
            self["__args__"] = (args, kwargs)
            self.leaf = True

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, dict):
            self.update(state)
        else:
            self["__state__"] = state

    def __repr__(self) -> str:
        return f"{self.name}({dict.__repr__(self)})"


class _Unpickler(pickle.Unpickler):
    def __init__(self, archive: zipfile.ZipFile, top: str, order: str) -> None:
        super().__init__(io.BytesIO(archive.read(top + "data.pkl")))
        self.archive, self.top, self.order = archive, top, order
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == _TENSOR:
            return self.tensor
        if (module, name) == _PARAMETER:
            return _parameter
        if module == "torch" and name in STORAGES:
            return STORAGES[name]
        if (module, name) == ("collections", "OrderedDict"):
            return _Ordered
        return type(name, (Opaque,), {"name": f"{module}.{name}"})

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unknown persistent id {pid!r:.60}")
        _tag, kind, key, _location, _numel = pid
        if not isinstance(kind, tuple):
            raise pickle.UnpicklingError(f"storage of an unknown type {kind!r:.60}")
        if key not in self.storages:
            data = self.archive.read(f"{self.top}data/{key}")
            self.storages[key] = _Storage(kind[0], kind[1], data)
        return self.storages[key]

    def tensor(self, storage: _Storage, offset: int, size: Any, stride: Any,
               *_rest: Any) -> Raw:
        return Raw(storage.dtype, tuple(size),
                   _gather(storage, offset, tuple(size), tuple(stride), self.order))


def _parameter(data: Any, *_rest: Any) -> Any:
    return data


def _gather(storage: _Storage, offset: int, shape: tuple[int, ...],
            stride: tuple[int, ...], order: str) -> bytes:
    """A tensor's elements in C order, little-endian, from its storage view."""
    item, data = storage.size, storage.data
    if _contiguous(shape, stride):
        count = 1
        for n in shape:
            count *= n
        out = data[offset * item:(offset + count) * item]
    else:
        out = b"".join(data[(offset + sum(i * s for i, s in zip(index, stride, strict=True)))
                            * item:][:item] for index in product(*(range(n) for n in shape)))
    if order == "big" and item > 1:
        out = b"".join(out[i:i + item][::-1] for i in range(0, len(out), item))
    return out


def _contiguous(shape: tuple[int, ...], stride: tuple[int, ...]) -> bool:
    expected = 1
    for n, s in zip(reversed(shape), reversed(stride), strict=True):
        if n != 1 and s != expected:
            return False
        expected *= n
    return True
