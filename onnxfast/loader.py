"""Model loading: path / bytes / ModelProto -> a checked ModelProto plus its initializers as
numpy arrays.

External data is memory-mapped and resolved relative to the model's folder; a location that
leaves that folder (by a relative path or an absolute one) is refused. A large model file is
streamed (see "streaming load" below): its weights go from the file straight into numpy arrays,
never through protobuf, so loading holds one copy of them. Otherwise, once an initializer is a
numpy array the protobuf's copy of its bytes is dropped (for protos we parsed ourselves), and
build_model re-parses the weight-free proto so the parser's memory goes too.
"""

from __future__ import annotations

import mmap
import os
from typing import Any

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import TensorProto, numpy_helper

from . import dtypes
from .errors import ExternalDataError, InvalidModel, InvalidProtobufModel, ModelFileNotFound

# Initializers up to this size keep their protobuf copy (shape inference reads their values).
_KEEP_BYTES = 16384

# Element types whose raw bytes are laid out exactly as the numpy array (no packing).
_PACKED = {TensorProto.INT4, TensorProto.UINT4, 23, 25, 26}


class ExternalData:
    """Resolves and memory-maps the external data files of one model."""

    def __init__(self, base_dir: str | None):
        self.base_dir = base_dir
        self._maps: dict[str, Any] = {}
        self._files: dict[str, Any] = {}  # the model file, for initializers streamed from it

    def resolve(self, location: str, tensor_name: str) -> str:
        if self.base_dir is None:
            raise ExternalDataError(
                f"initializer '{tensor_name}' stores its data in the external file '{location}', but the model "
                "was not loaded from a path; set the session config entry "
                "'session.model_external_initializers_file_folder_path' to the folder holding it"
            )
        if os.path.isabs(location) or location.startswith(("/", "\\")):
            raise ExternalDataError(
                f"initializer '{tensor_name}': external data location '{location}' is an absolute path; "
                "external data must live inside the model's folder"
            )
        base = os.path.realpath(self.base_dir)
        path = os.path.realpath(os.path.join(base, location))
        if os.path.commonpath([base, path]) != base:
            raise ExternalDataError(
                f"initializer '{tensor_name}': external data location '{location}' points outside the model's "
                f"folder '{self.base_dir}'"
            )
        if not os.path.isfile(path):
            raise ModelFileNotFound(
                f"initializer '{tensor_name}': external data file '{location}' not found in '{self.base_dir}'"
            )
        return path

    def _read_inline(self, t: TensorProto, path: str, offset: int, length: int) -> np.ndarray:
        """A raw_data field the streaming loader left in the model file: read into a new array."""
        if t.data_type in _PACKED or t.data_type in (TensorProto.STRING, TensorProto.UNDEFINED):
            raise InvalidModel(f"tensor '{t.name}': raw data of type {t.data_type} cannot be read")
        dt, shape = _raw_layout(t, length)
        arr = np.empty(shape, dt)
        f = self._files.get(path)
        if f is None:
            f = self._files[path] = open(path, "rb")
        f.seek(offset)
        if length and f.readinto(memoryview(arr.reshape(-1)).cast("B")) != length:
            raise InvalidModel(f"tensor '{t.name}': the model file ends inside its raw data")
        return arr

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()

    def buffer(self, path: str):
        m = self._maps.get(path)
        if m is None:
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
            self._maps[path] = m
        return m

    def read(self, t: TensorProto) -> np.ndarray:
        info = {e.key: e.value for e in t.external_data}
        location = info.get("location")
        if not location:
            raise ExternalDataError(f"initializer '{t.name}' is marked external but has no location")
        if info.get(INLINE_KEY) == _INLINE_TOKEN:
            return self._read_inline(t, location, int(info["offset"]), int(info["length"]))
        path = self.resolve(location, t.name)
        buf = self.buffer(path)
        try:
            offset = int(info.get("offset", 0))
            length = int(info["length"]) if "length" in info else len(buf) - offset
        except ValueError:
            raise ExternalDataError(f"initializer '{t.name}': bad offset/length in its external data entry") from None
        shape = tuple(int(d) for d in t.dims)
        dt = dtypes.np_dtype(t.data_type)
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if t.data_type in _PACKED:
            bits = 2 if t.data_type in (25, 26) else 4
            need = (count * bits + 7) // 8
        else:
            need = count * dt.itemsize
        if offset < 0 or length < need or offset + length > len(buf):
            raise ExternalDataError(
                f"initializer '{t.name}': external file '{location}' is truncated or the entry is inconsistent "
                f"(needs {need} bytes at offset {offset}, file has {len(buf)})"
            )
        if t.data_type in _PACKED or t.data_type == TensorProto.STRING:
            tmp = TensorProto()
            tmp.CopyFrom(t)
            tmp.ClearField("external_data")
            tmp.data_location = TensorProto.DEFAULT
            tmp.raw_data = bytes(buf[offset : offset + need])
            return numpy_helper.to_array(tmp)
        arr = np.frombuffer(buf, dtype=dt, count=count, offset=offset).reshape(shape)
        return arr


# No tensor of a model may hold more elements than this (2^62 bytes of the smallest type is far
# beyond any machine; the bound only keeps the element count and byte size in int64).
_MAX_ELEMENTS = 1 << 60


def checked_dims(dims, what: str) -> tuple:
    """``dims`` as a tuple of ints after checking that none is negative and that their product fits
    in int64 (an InvalidModel naming ``what`` otherwise)."""
    shape = tuple(int(d) for d in dims)
    count = 1
    for d in shape:
        if d < 0:
            raise InvalidModel(f"{what} has a negative dimension in its shape {list(shape)}")
        count *= d
    if count > _MAX_ELEMENTS:
        raise InvalidModel(f"{what} declares the shape {list(shape)}, {count} elements, which no machine can hold")
    return shape


def _raw_layout(t: TensorProto, nbytes: int) -> tuple[np.dtype, tuple]:
    """dtype and shape of a tensor whose raw bytes number ``nbytes`` (InvalidModel when they do not fit)."""
    shape = tuple(int(d) for d in t.dims)
    dt = dtypes.np_dtype(t.data_type)
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if nbytes != count * dt.itemsize:
        raise InvalidModel(
            f"tensor '{t.name}': raw data has {nbytes} bytes, shape {list(shape)} of "
            f"{dtypes.type_name(t.data_type)} needs {count * dt.itemsize}"
        )
    return dt, shape


def tensor_to_numpy(t: TensorProto, external: ExternalData | None = None) -> np.ndarray:
    """A TensorProto as a numpy array (ml_dtypes for bfloat16/float8/int4; object array of str for strings)."""
    checked_dims(t.dims, f"tensor '{t.name}'")
    if t.data_location == TensorProto.EXTERNAL:
        return (external or ExternalData(None)).read(t)
    if t.data_type == TensorProto.UNDEFINED:
        raise InvalidModel(f"tensor '{t.name}' has no element type")
    shape = tuple(int(d) for d in t.dims)
    if t.data_type == TensorProto.STRING:
        vals = [s.decode("utf-8", errors="surrogateescape") for s in t.string_data]
        arr = np.empty(len(vals), dtype=object)
        arr[:] = vals
        return arr.reshape(shape)
    if t.HasField("raw_data") and t.data_type not in _PACKED:
        raw = t.raw_data  # one copy out of protobuf (each attribute read makes another)
        dt, shape = _raw_layout(t, len(raw))
        return np.frombuffer(raw, dtype=dt).reshape(shape).copy()
    try:
        arr = numpy_helper.to_array(t)
    except Exception as e:  # inconsistent sizes etc.
        raise InvalidModel(f"tensor '{t.name}' cannot be read: {e}") from None
    if t.data_type != TensorProto.STRING:
        want = dtypes.np_dtype(t.data_type)
        if arr.dtype != want:
            arr = arr.astype(want)
    return arr


def load_model(source, external_data_dir: str | None = None) -> tuple[onnx.ModelProto, str | None, bool]:
    """Load a model. Returns (model, base folder for external data, whether we own the proto)."""
    if isinstance(source, onnx.ModelProto):
        return source, external_data_dir, False
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        model = _parse(data, "the model bytes")
        return model, external_data_dir, True
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.exists(path):
            raise ModelFileNotFound(f"model file not found: '{path}'")
        if os.path.isdir(path):
            raise InvalidModel(f"'{path}' is a folder, not an ONNX model file")
        base = external_data_dir or os.path.dirname(os.path.abspath(path))
        if os.path.getsize(path) > STREAM_ABOVE:
            model = _load_streaming(path)
            if model is not None and model.HasField("graph") and model.ir_version != 0:
                return model, base, True
        with open(path, "rb") as f:
            data = f.read()
        model = _parse(data, f"'{path}'")
        del data
        return model, base, True
    raise TypeError(
        f"cannot load a model from {type(source).__name__}: pass a file path, the model's bytes or an onnx.ModelProto"
    )


def _parse(data: bytes, what: str) -> onnx.ModelProto:
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as e:
        raise InvalidProtobufModel(f"{what} is not a valid ONNX model (corrupt or truncated protobuf): {e}") from None
    if not model.HasField("graph") or model.ir_version == 0:
        raise InvalidModel(f"{what} is not a valid ONNX model: it has no graph or no ir_version")
    return model


def load_initializers(graph: onnx.GraphProto, external: ExternalData, release: bool) -> dict[str, np.ndarray]:
    """Initializers of one graph as numpy arrays; with ``release`` the proto's copy is dropped."""
    out: dict[str, np.ndarray] = {}
    for t in graph.initializer:
        try:
            out[t.name] = tensor_to_numpy(t, external)
        except InvalidModel as e:
            if t.name in str(e):
                raise
            raise type(e)(f"initializer '{t.name}': {e}") from None
        # Small tensors (shapes, axes, scalars) keep their bytes: shape inference reads them.
        if release and out[t.name].nbytes > _KEEP_BYTES:
            t.ClearField("raw_data")
            t.ClearField("float_data")
            t.ClearField("int32_data")
            t.ClearField("int64_data")
            t.ClearField("double_data")
            t.ClearField("uint64_data")
    for st in graph.sparse_initializer:
        out[st.values.name] = sparse_to_dense(st, external)
    return out


def sparse_to_dense(st: onnx.SparseTensorProto, external: ExternalData | None = None) -> np.ndarray:
    name = st.values.name
    shape = checked_dims(st.dims, f"sparse initializer '{name}'")
    values = tensor_to_numpy(st.values, external)
    idx = tensor_to_numpy(st.indices, external).astype(np.int64)
    size = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if size * max(values.dtype.itemsize, 1) > (1 << 34):
        raise InvalidModel(f"sparse initializer '{name}' declares the dense shape {list(shape)}, too large to expand")
    n = values.shape[0] if values.ndim else 1
    ok = (idx.ndim == 1 and idx.shape[0] == n) or (idx.ndim == 2 and idx.shape == (n, len(shape)))
    if not ok or values.ndim != 1:
        raise InvalidModel(
            f"sparse initializer '{name}': {n} values with indices of shape {list(idx.shape)} do not fit the "
            f"dense shape {list(shape)}"
        )
    bound = size if idx.ndim == 1 else np.array(shape, dtype=np.int64)
    if idx.size and ((idx < 0).any() or (idx >= bound).any()):
        raise InvalidModel(f"sparse initializer '{name}': an index lies outside the dense shape {list(shape)}")
    dense = np.zeros(shape, dtype=values.dtype)
    if idx.ndim == 1:
        dense.reshape(-1)[idx] = values
    else:
        dense[tuple(idx.T)] = values
    return dense


# ---- streaming load ------------------------------------------------------------------------------
# A large model file is not read whole and parsed with its weights: the protobuf wire format is
# scanned (memory-mapped), and the raw bytes of each large initializer of the main graph are left
# out of the bytes handed to protobuf, replaced by an external-data entry that points back into the
# model file itself (marked INLINE_KEY). Those initializers are then read straight from the file
# into their own numpy arrays, so loading holds one copy of the weights, not three (file bytes,
# protobuf, arrays). Anything the scanner does not understand falls back to the plain parse.

STREAM_ABOVE = 16 << 20  # files larger than this are loaded by streaming
# The marker of an entry the scanner wrote: its value is a secret of this process, so a model file
# cannot claim the marker to read files outside its folder (the location is an absolute path).
INLINE_KEY = "onnxfast.inline"
_INLINE_TOKEN = os.urandom(16).hex()


class _WireError(Exception):
    pass


def _varint(buf, pos: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise _WireError("bad varint")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7


def _fields(buf, start: int, end: int):
    """(field number, wire type, value start, value end, field start) of each field in buf[start:end]."""
    pos = start
    while pos < end:
        field_start = pos
        tag, pos = _varint(buf, pos, end)
        field, wire = tag >> 3, tag & 7
        if wire == 0:
            _, pos2 = _varint(buf, pos, end)
        elif wire == 1:
            pos2 = pos + 8
        elif wire == 2:
            n, pos = _varint(buf, pos, end)
            pos2 = pos + n
        elif wire == 5:
            pos2 = pos + 4
        else:
            raise _WireError("unsupported wire type")
        if pos2 > end or field == 0:
            raise _WireError("field runs past its message")
        yield field, wire, pos, pos2, field_start
        pos = pos2


def _encode_varint(v: int) -> bytes:
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _len_field(field: int, payload: bytes) -> bytes:
    return _encode_varint(field << 3 | 2) + _encode_varint(len(payload)) + payload


def _strip_tensor(buf, start: int, end: int, location: str) -> bytes:
    parts, raw = [], None
    for field, wire, a, b, f0 in _fields(buf, start, end):
        if field == 9 and wire == 2:  # raw_data
            raw = (a, b - a)
        elif field in (13, 14):  # external_data / data_location: an inline tensor has none that matter
            if field == 14 and wire == 0 and _varint(buf, a, b)[0] != 0:
                return bytes(buf[start:end])  # already external: leave it alone
        else:
            parts.append(bytes(buf[f0:b]))
    if raw is None or raw[1] <= _KEEP_BYTES:
        return bytes(buf[start:end])
    entry = lambda k, v: _len_field(13, _len_field(1, k.encode()) + _len_field(2, v.encode()))  # noqa: E731
    parts += [_encode_varint(14 << 3) + _encode_varint(1), entry("location", location),
              entry("offset", str(raw[0])), entry("length", str(raw[1])), entry(INLINE_KEY, _INLINE_TOKEN)]
    return b"".join(parts)


def _rewrite(buf, start: int, end: int, field_no: int, rewrite) -> bytes:
    """buf[start:end] with each length-delimited field ``field_no`` replaced by rewrite(start, end)."""
    parts = []
    for field, wire, a, b, f0 in _fields(buf, start, end):
        parts.append(_len_field(field, rewrite(a, b)) if field == field_no and wire == 2 else bytes(buf[f0:b]))
    return b"".join(parts)


def _stripped_model_bytes(buf, location: str) -> bytes:
    # ModelProto.graph (7) -> GraphProto.initializer (5) -> TensorProto
    return _rewrite(buf, 0, len(buf), 7, lambda a, b: _rewrite(
        buf, a, b, 5, lambda c, d: _strip_tensor(buf, c, d, location)))


def _load_streaming(path: str) -> onnx.ModelProto | None:
    """The model with its large main-graph initializers left in the file (see above); None when the
    file is not protobuf the scanner understands (the plain parse then reports what is wrong)."""
    with open(path, "rb") as f:
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            try:
                data = _stripped_model_bytes(buf, os.path.abspath(path))
            except _WireError:
                return None
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError):
        return None
    return model
