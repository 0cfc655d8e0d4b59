"""Tensors between the Open Inference Protocol v2 and numpy / ONNX Runtime.

Pure functions, no gRPC: the wire format (a datatype string, a shape, and either raw
little-endian bytes or typed ``contents``) is decoded into numpy arrays, and numpy
results are encoded back into raw bytes. Decoding raw contents is zero-copy
(``np.frombuffer`` over the message's bytes); typed contents necessarily copy.

BYTES tensors: on the wire each element is a 4-byte little-endian length followed by
the bytes. ONNX Runtime's string tensors hold UTF-8 text (it calls ``str()`` on a
Python ``bytes`` object, so ``b"x"`` would arrive as the text ``"b'x'"``), so elements
are decoded as strict UTF-8 on the way in and encoded as UTF-8 on the way out: a
valid UTF-8 byte string round-trips byte-exact, and one that is not valid UTF-8 is
refused with INVALID_ARGUMENT rather than silently altered.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from idn.protocol.status import InvalidInput, echo

# v2 datatype -> numpy dtype (little-endian, as the wire format requires).
DTYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "INT8": np.dtype("<i1"), "INT16": np.dtype("<i2"), "INT32": np.dtype("<i4"), "INT64": np.dtype("<i8"),
    "UINT8": np.dtype("<u1"), "UINT16": np.dtype("<u2"), "UINT32": np.dtype("<u4"), "UINT64": np.dtype("<u8"),
    "FP16": np.dtype("<f2"), "FP32": np.dtype("<f4"), "FP64": np.dtype("<f8"),
    "BYTES": np.dtype(object),
}

# ONNX Runtime's type strings -> v2 datatype.
ORT_TYPES: dict[str, str] = {
    "tensor(bool)": "BOOL",
    "tensor(int8)": "INT8", "tensor(int16)": "INT16", "tensor(int32)": "INT32", "tensor(int64)": "INT64",
    "tensor(uint8)": "UINT8", "tensor(uint16)": "UINT16", "tensor(uint32)": "UINT32", "tensor(uint64)": "UINT64",
    "tensor(float16)": "FP16", "tensor(float)": "FP32", "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}

_NUMPY_TO_V2 = {v: k for k, v in DTYPES.items() if k != "BYTES"}

# Which typed `contents` field carries each datatype (FP16 has none: raw only).
CONTENTS_FIELD: dict[str, str] = {
    "BOOL": "bool_contents",
    "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents", "INT64": "int64_contents",
    "UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents", "UINT64": "uint64_contents",
    "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents",
}

_LEN = struct.Struct("<I")


@dataclass(frozen=True, slots=True)
class TensorMeta:
    """A model's declared tensor: v2 datatype and shape with -1 for dynamic dimensions."""

    name: str
    datatype: str
    shape: tuple[int, ...]


def datatype_of(array: np.ndarray) -> str:
    if array.dtype.kind in "OUS":
        return "BYTES"
    try:
        return _NUMPY_TO_V2[array.dtype.newbyteorder("<") if array.dtype.byteorder == ">" else array.dtype]
    except KeyError:
        raise InvalidInput(f"numpy dtype {array.dtype} has no Open Inference Protocol datatype") from None


def element_count(name: str, shape: Any, max_elements: int) -> int:
    """Number of elements of a shape, refusing negative or absurd dimensions."""
    n = 1
    for d in shape:
        if d < 0:
            raise InvalidInput(f"input '{echo(name)}': shape {echo(list(shape))} has a negative dimension")
        n *= d
        if n > max_elements:
            raise InvalidInput(
                f"input '{echo(name)}': shape {echo(list(shape))} has more than {max_elements} elements "
                "(the node's limit)")
    return n


def decode_raw(name: str, datatype: str, shape: tuple[int, ...], raw: bytes, max_elements: int) -> np.ndarray:
    """Raw wire bytes -> array (zero-copy, read-only view of ``raw`` for fixed-size types)."""
    count = element_count(name, shape, max_elements)
    if datatype == "BYTES":
        return _decode_bytes_raw(name, shape, raw, count)
    dtype = DTYPES[datatype]
    expected = count * dtype.itemsize
    if len(raw) != expected:
        raise InvalidInput(
            f"input '{echo(name)}': raw content has {len(raw)} bytes but shape {echo(list(shape))} x {datatype} "
            f"needs {expected}")
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


def _decode_bytes_raw(name: str, shape: tuple[int, ...], raw: bytes, count: int) -> np.ndarray:
    items: list[str] = []
    pos, end = 0, len(raw)
    view = memoryview(raw)
    while pos < end:
        if pos + 4 > end:
            raise InvalidInput(f"input '{echo(name)}': BYTES raw content is truncated inside an element length")
        (n,) = _LEN.unpack_from(raw, pos)
        pos += 4
        if pos + n > end:
            raise InvalidInput(f"input '{echo(name)}': BYTES element {len(items)} claims {n} bytes, "
                               f"only {end - pos} remain")
        items.append(_utf8(name, len(items), view[pos:pos + n]))
        pos += n
    if len(items) != count:
        raise InvalidInput(f"input '{echo(name)}': BYTES raw content holds {len(items)} elements, "
                           f"shape {echo(list(shape))} needs {count}")
    out = np.empty(count, dtype=object)
    out[:] = items
    return out.reshape(shape)


def _utf8(name: str, index: int, data: bytes | memoryview) -> str:
    try:
        return bytes(data).decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidInput(f"input '{echo(name)}': BYTES element {index} is not valid UTF-8 ({e.reason} at byte "
                           f"{e.start}); ONNX Runtime string tensors hold UTF-8 text") from None


def decode_contents(name: str, datatype: str, shape: tuple[int, ...], contents: Any, max_elements: int) -> np.ndarray:
    """Typed ``InferTensorContents`` -> array, checking count and integer ranges."""
    count = element_count(name, shape, max_elements)
    fld = CONTENTS_FIELD.get(datatype)
    if fld is None:
        raise InvalidInput(f"input '{echo(name)}': {datatype} has no typed contents field; "
                           "send it in raw_input_contents")
    values = getattr(contents, fld)
    if len(values) != count:
        raise InvalidInput(f"input '{echo(name)}': {fld} holds {len(values)} values, "
                           f"shape {echo(list(shape))} needs {count}")
    for other in CONTENTS_FIELD.values():
        if other != fld and len(getattr(contents, other)):
            raise InvalidInput(f"input '{echo(name)}': datatype {datatype} goes in {fld}, but {other} is set")
    if datatype == "BYTES":
        out = np.empty(count, dtype=object)
        out[:] = [_utf8(name, i, b) for i, b in enumerate(values)]
        return out.reshape(shape)
    dtype = DTYPES[datatype]
    if dtype.kind in "iu" and dtype.itemsize < 4:
        wide = np.array(values, dtype=np.int64)
        info = np.iinfo(dtype)
        if wide.size and (wide.min() < info.min or wide.max() > info.max):
            raise InvalidInput(f"input '{echo(name)}': {datatype} values must lie in [{info.min}, {info.max}]")
        return wide.astype(dtype).reshape(shape)
    return np.array(values, dtype=dtype).reshape(shape)


def encode_raw(array: np.ndarray) -> bytes:
    """Array -> raw wire bytes (row-major, little-endian; BYTES length-prefixed UTF-8)."""
    if array.dtype.kind in "OUS":
        parts = []
        for item in array.reshape(-1):
            b = item.encode("utf-8") if isinstance(item, str) else bytes(item)
            parts.append(_LEN.pack(len(b)))
            parts.append(b)
        return b"".join(parts)
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
    return array.tobytes()  # C order, copies once into the message


def to_wire_shape(shape: Any) -> list[int]:
    """A declared ONNX shape -> v2 metadata shape: symbolic or unknown dimensions become -1."""
    return [d if isinstance(d, int) and d >= 0 else -1 for d in (shape or [])]
