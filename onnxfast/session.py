"""The session API users call: InferenceSession, NodeArg, ModelMetadata, OrtValue, IOBinding.

Shapes and names follow onnxruntime so code switches by changing the import. ``run()`` makes
exactly one call into the native plan, which validates the feed, runs every step with the GIL
released and returns numpy arrays that own their memory.
"""

from __future__ import annotations

import ctypes
import enum
import json
import logging
import os
import threading
import time
import warnings
from typing import Any

import numpy as np
import onnx

from . import _core, dtypes, ir
from .errors import InvalidArgument, InvalidType, NotImplementedFeature, OnnxfastWarning
from .loader import load_model
from .ops._validate import validate_graph
from .optimizer import optimize, parse_disabled
from .options import ExecutionMode, ExecutionOrder, SessionOptions
from .planner import Planner, PlanOptions
from .providers import resolve
from .registry import REGISTRY

log = logging.getLogger("onnxfast")
_LEVELS = {0: logging.DEBUG, 1: logging.INFO, 2: logging.WARNING, 3: logging.ERROR, 4: logging.CRITICAL}


def set_log_severity(level: int) -> None:
    """onnxruntime's severities (0 verbose, 1 info, 2 warning, 3 error, 4 fatal) on the 'onnxfast' logger.
    Verbose and info messages print to stderr, as onnxruntime's do, unless the application configured
    a handler (Python's last-resort handler shows warnings and above only)."""
    if int(level) not in _LEVELS:
        raise InvalidArgument(f"log severity level must be 0..4, got {level}")
    log.setLevel(_LEVELS[int(level)])
    if int(level) <= 1 and not log.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s [onnxfast %(levelname)s] %(message)s"))
        log.addHandler(handler)


class NodeArg:
    """A graph input or output: name, type string ('tensor(float)') and shape (ints, symbolic
    names, None for unknown)."""

    __slots__ = ("name", "type", "shape")

    def __init__(self, name: str, type: str, shape):
        self.name = name
        self.type = type
        self.shape = shape

    def __repr__(self) -> str:
        return f"NodeArg(name='{self.name}', type='{self.type}', shape={self.shape})"


class ModelMetadata:
    __slots__ = ("custom_metadata_map", "description", "domain", "graph_description", "graph_name",
                 "producer_name", "version")

    def __init__(self, m: ir.Model):
        self.custom_metadata_map = dict(m.metadata)
        self.description = m.doc_string
        self.domain = m.domain
        self.graph_description = m.graph_description
        self.graph_name = m.graph.name
        self.producer_name = m.producer_name
        self.version = m.model_version


class _BlasLimit:
    """numpy's BLAS threads must not fight the session's pool: while any run that has numpy-
    implemented steps is in flight, the BLAS libraries numpy loaded (found with threadpoolctl) run
    single-threaded; the first run in saves their thread counts, the last one out restores them.
    About 4 us per run; only sessions with numpy steps pay it.

    Fork-safe: a child forked while another thread was inside (holding the lock, or with runs in
    flight that will never finish in the child) starts with a fresh lock and no runs in flight; the
    thread counts saved by the parent's runs are restored by the child's first run out."""

    _lock = threading.Lock()
    _depth = 0
    _saved: list = []
    _stale: list | None = None  # in a forked child: counts to restore that the parent had saved
    _libs: list | None = None

    @classmethod
    def _after_fork_in_child(cls) -> None:
        cls._lock = threading.Lock()
        if cls._depth > 0:
            cls._stale = list(cls._saved)
        cls._depth = 0

    @classmethod
    def _blas_libs(cls) -> list:
        if cls._libs is None:
            try:
                from threadpoolctl import ThreadpoolController

                cls._libs = [c for c in ThreadpoolController().lib_controllers if c.user_api == "blas"]
            except Exception:  # threadpoolctl missing or unable to inspect: nothing to limit
                cls._libs = []
        return cls._libs

    def __enter__(self):
        with self._lock:
            if _BlasLimit._depth == 0:
                libs = self._blas_libs()
                if _BlasLimit._stale is not None:  # forked mid-run: the parent's saved counts
                    _BlasLimit._saved, _BlasLimit._stale = _BlasLimit._stale, None
                else:
                    _BlasLimit._saved = [c.get_num_threads() for c in libs]
                for c in libs:
                    c.set_num_threads(1)
            _BlasLimit._depth += 1

    def __exit__(self, *exc):
        with self._lock:
            _BlasLimit._depth -= 1
            if _BlasLimit._depth == 0:
                for c, n in zip(self._blas_libs(), _BlasLimit._saved):
                    c.set_num_threads(n)
        return False


_BLAS_LIMIT = _BlasLimit()
# Operators whose numpy kernels reach numpy's BLAS / LAPACK (matrix products, linear algebra); other
# numpy steps run without the limit (control-flow bodies are unknown: limited too).
_BLAS_OPS = frozenset({
    "MatMul", "Gemm", "Conv", "ConvTranspose", "ConvInteger", "MatMulInteger", "QLinearMatMul", "QLinearConv",
    "Einsum", "LSTM", "GRU", "RNN", "Attention", "MultiHeadAttention", "FusedGemm", "FusedMatMul", "FusedConv",
    "FusedAttention", "EmbedLayerNormalization", "Det", "Inverse", "LinearClassifier", "LinearRegressor",
    "SVMClassifier", "SVMRegressor", "DFT", "STFT", "MelWeightMatrix", "DynamicQuantizeMatMul",
    "MatMulIntegerToFloat", "DeformConv", "RoiAlign", "Col2Im"})
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_BlasLimit._after_fork_in_child)


# ---------------------------------------------------------------------------------------------
# Map inputs. onnxruntime's Python API turns a dict into a map by the type of its first key: an int
# (or any number: numpy integers, bool) makes map(int64, float), a str makes map(string, float); the
# other keys are converted the same way (str() for string maps), every value must be a number and
# becomes a float32. The map's type must then be the input's: so only map(int64,tensor(float)) and
# map(string,tensor(float)) inputs can be fed from Python, and onnxfast accepts exactly those dicts.


def _map_spec(vi: ir.ValueInfo):
    """(key type, value element type, type string) of a graph input that is a map of tensors, else None."""
    tp = vi.type
    if tp is None or tp.WhichOneof("value") != "map_type":
        return None
    mt = tp.map_type
    vt = mt.value_type
    elem = vt.tensor_type.elem_type if vt.WhichOneof("value") == "tensor_type" else None
    return mt.key_type, elem, dtypes.type_string(tp)


def _node_arg(vi: ir.ValueInfo, overrides: dict[str, int]) -> NodeArg:
    shape = vi.shape
    if shape is not None:
        shape = [overrides.get(d, d) if isinstance(d, str) else d for d in shape]
    elif vi.type is not None and vi.type.WhichOneof("value") != "tensor_type":
        shape = []
    return NodeArg(vi.name, vi.type_str, shape)


class InferenceSession:
    """Runs an ONNX model. Drop-in for ``onnxruntime.InferenceSession``."""

    def __init__(self, path_or_bytes, sess_options: SessionOptions | None = None, providers=None,
                 provider_options=None, **kwargs):
        t0 = time.perf_counter_ns()
        disabled_optimizers = kwargs.pop("disabled_optimizers", None)
        if kwargs:
            raise InvalidArgument(f"unexpected keyword arguments: {sorted(kwargs)}")
        if sess_options is not None and not isinstance(sess_options, SessionOptions):
            raise InvalidType(f"sess_options must be an onnxfast.SessionOptions, got {type(sess_options).__name__}")
        self._sess_options = sess_options._copy() if sess_options is not None else SessionOptions()
        opts = self._sess_options
        if opts.log_severity_level >= 0:
            set_log_severity(min(int(opts.log_severity_level), 4))
        self._check_options(opts)
        self._model_path = os.fspath(path_or_bytes) if isinstance(path_or_bytes, (str, os.PathLike)) else None
        ext_dir = opts._config.get("session.model_external_initializers_file_folder_path")
        proto, base_dir, owned = load_model(path_or_bytes, ext_dir)
        if not owned:
            copy = onnx.ModelProto()
            copy.CopyFrom(proto)
            proto = copy
        custom = opts._custom_ops
        self._model = ir.build_model(proto, base_dir, release=True,
                                     has_kernel=lambda d, o: (d, o) in custom or REGISTRY.knows(d, o))
        del proto  # build_model keeps a weight-free copy; this one may still hold the parser's memory
        # Every node with a native kernel is checked by that kernel's rules (attributes, declared
        # input ranks) before the optimizer fuses or the planner folds anything (ops/_validate.py).
        validate_graph(self._model)
        # add_initializer's values replace the model's before the optimizer folds anything.
        for name, value in opts._initializers.items():
            arr = value.numpy() if hasattr(value, "numpy") else np.asarray(value)
            if name not in self._model.graph.initializers:
                raise InvalidArgument(f"add_initializer: the model has no initializer named '{name}'")
            self._model.graph.initializers[name] = arr
        disabled = parse_disabled(disabled_optimizers) | parse_disabled(
            opts._config.get("optimization.disable_specified_optimizers", ""))
        # What each pass did, in order (PassRecord: name, main-graph nodes before / after).
        self._optimizations = optimize(self._model, int(opts.graph_optimization_level), disabled)
        if opts.optimized_model_filepath:
            # The optimized graph: folded constants, fused nodes in the onnxfast domain (which
            # onnxfast loads again; other runtimes need the model saved at level basic or below).
            ir.save(self._model, opts.optimized_model_filepath)
        t1 = time.perf_counter_ns()
        self._providers = resolve(providers, provider_options)
        self._build()
        t2 = time.perf_counter_ns()
        self._profiling = bool(opts.enable_profiling)
        self._profile_start_ns = time.time_ns()
        self._profile_perf0 = time.perf_counter_ns()
        self._session_events = [("model_loading", t0, t1 - t0), ("session_initialization", t1, t2 - t1)]
        self._plan.profiling = self._profiling
        log.info("session created in %.1f ms (%d nodes)", (t2 - t0) / 1e6, len(self._model.graph.nodes))

    # -- construction -------------------------------------------------------------------------
    @staticmethod
    def _check_options(opts: SessionOptions) -> None:
        if opts.execution_mode == ExecutionMode.ORT_PARALLEL:
            warnings.warn("ExecutionMode.ORT_PARALLEL is not supported yet; nodes run sequentially",
                          OnnxfastWarning, stacklevel=3)
        if int(opts.execution_order) != int(ExecutionOrder.DEFAULT):
            warnings.warn(f"SessionOptions.execution_order = {ExecutionOrder(int(opts.execution_order)).name} is "
                          "stored but not implemented: nodes run in the graph's topological order",
                          OnnxfastWarning, stacklevel=3)
        if not opts.enable_mem_reuse:
            warnings.warn("SessionOptions.enable_mem_reuse = False is stored but not implemented: kernels that "
                          "may write over an input that dies there still do", OnnxfastWarning, stacklevel=3)
        if opts.intra_op_num_threads < 0 or opts.inter_op_num_threads < 0:
            raise InvalidArgument("thread counts must be >= 0")

    def _plan_options(self) -> PlanOptions:
        cfg = self._sess_options._config
        disabled = {s.strip() for s in cfg.get("onnxfast.disable_kernels", "").split(",") if s.strip()}
        for d in disabled:
            kind = d.split(":", 1)[0]
            if kind not in ("native", "numpy"):
                raise InvalidArgument(f"onnxfast.disable_kernels: '{d}' must start with 'native' or 'numpy'")
        return PlanOptions(
            disabled=disabled,
            allow_prepack=cfg.get("session.disable_prepacking", "0") != "1",
            dim_overrides=dict(self._sess_options._dim_overrides),
            cache_blocks=bool(self._sess_options.enable_cpu_mem_arena),
            mem_pattern=bool(self._sess_options.enable_mem_pattern),
            custom_ops=dict(self._sess_options._custom_ops),
        )

    def _build(self) -> None:
        planner = Planner(self._model, self._providers, self._plan_options())
        self._plan = planner.build()
        cfg = self._sess_options._config
        self._plan.denormal_as_zero = cfg.get("session.set_denormal_as_zero", "0") == "1"
        # Sessions asking for the same number of threads share one pool (no oversubscription).
        threads = int(self._sess_options.intra_op_num_threads) or _core.default_num_threads()
        self._pool = _core.shared_pool(threads)
        if cfg.get("session.intra_op.allow_spinning", "1") == "0":
            self._pool.set_spin_us(0)
        self._plan.pool = self._pool
        self._records = planner.records
        self._numpy_steps = any("numpy" in r.kernel or r.kernel in ("control-flow", "custom") for r in self._records)
        # limiting BLAS costs tens of microseconds a run: only where a numpy step may call BLAS / LAPACK
        self._limit_blas = cfg.get("session.limit_blas_threads", "1") != "0" and any(
            ("numpy" in r.kernel and r.op_type in _BLAS_OPS) or r.kernel == "control-flow" for r in self._records)
        g = self._model.graph
        over = self._sess_options._dim_overrides
        inits = g.initializers
        self._inputs = [_node_arg(vi, over) for vi in g.inputs if vi.name not in inits]
        self._map_inputs = {vi.name: spec for vi in g.inputs if (spec := _map_spec(vi)) is not None}
        self._overridable = [_node_arg(vi, over) for vi in g.inputs if vi.name in inits]
        self._outputs = [_node_arg(vi, over) for vi in g.outputs]

    # -- running -----------------------------------------------------------------------------
    def run(self, output_names, input_feed, run_options=None):
        """Run the model: ``output_names`` (None or [] for all), ``input_feed`` {name: array}."""
        if self._map_inputs and isinstance(input_feed, dict):
            input_feed = self._map_feed(input_feed)
        if self._numpy_steps:
            # numpy kernels must not print floating-point warnings (NaN/inf results are valid data)
            with np.errstate(all="ignore"):
                if self._limit_blas:
                    with _BLAS_LIMIT:
                        return self._plan.run(output_names or None, input_feed, run_options)
                return self._plan.run(output_names or None, input_feed, run_options)
        return self._plan.run(output_names or None, input_feed, run_options)

    def _map_feed(self, feed: dict) -> dict:
        """The feed with its dicts for map inputs checked and converted (``_core.map_feed_value``: keys
        str or int64, sorted as onnxruntime's std::map holds them, values rounded to float32)."""
        out = None
        for name, spec in self._map_inputs.items():
            value = feed.get(name)
            if value is None:
                continue  # absent or None: the plan's own checks answer
            if out is None:
                out = dict(feed)
            key_code, value_code, type_str = spec
            out[name] = _core.map_feed_value(name, key_code, -1 if value_code is None else value_code, type_str, value)
        return feed if out is None else out

    def run_async(self, output_names, input_feed, callback, user_data, run_options=None) -> None:
        """Runs on a new thread and calls ``callback(outputs, user_data, error_text)``: the outputs and ''
        on success, None and the error's text on failure. As in onnxruntime, feed names are checked before it
        returns (InvalidArgument for an unknown or a missing required input)."""
        if not callable(callback):
            raise InvalidType(f"run_async: callback must be callable, got {type(callback).__name__}")
        if not isinstance(input_feed, dict):
            raise InvalidType(f"input_feed must be a dict of input name -> numpy array, got {type(input_feed).__name__}")
        known = {a.name for a in self._inputs} | {a.name for a in self._overridable}
        unknown = [k for k in input_feed if k not in known]
        missing = [a.name for a in self._inputs if a.name not in input_feed]
        if unknown or missing:
            what = f"unknown input names {unknown}" if unknown else f"required inputs {missing} are missing"
            raise InvalidArgument(f"run_async: {what}; the model's inputs are {[a.name for a in self._inputs]}")

        def work() -> None:
            try:
                outputs = self.run(output_names, input_feed, run_options)
            except Exception as e:  # noqa: BLE001 - reported to the callback, as onnxruntime does
                callback(None, user_data, str(e))
                return
            callback(outputs, user_data, "")

        threading.Thread(target=work, name="onnxfast-run-async", daemon=True).start()

    def get_input_memory_infos(self) -> list["OrtMemoryInfo"]:
        """Where each input is expected: host memory for every input of a CPU session."""
        return [OrtMemoryInfo.cpu() for _ in self._inputs]

    def get_output_memory_infos(self) -> list["OrtMemoryInfo"]:
        return [OrtMemoryInfo.cpu() for _ in self._outputs]

    def run_with_ort_values(self, output_names, input_dict_ort_values, run_options=None):
        feed = {k: (v.numpy() if isinstance(v, OrtValue) else v) for k, v in input_dict_ort_values.items()}
        return [OrtValue(x) for x in self.run(output_names, feed, run_options)]

    def io_binding(self) -> "IOBinding":
        return IOBinding(self)

    def run_with_iobinding(self, iobinding: "IOBinding", run_options=None) -> None:
        iobinding._run(run_options)

    # -- introspection -----------------------------------------------------------------------
    def get_inputs(self) -> list[NodeArg]:
        return list(self._inputs)

    def get_outputs(self) -> list[NodeArg]:
        return list(self._outputs)

    def get_overridable_initializers(self) -> list[NodeArg]:
        return list(self._overridable)

    def get_modelmeta(self) -> ModelMetadata:
        return ModelMetadata(self._model)

    def get_providers(self) -> list[str]:
        return [p.name for p in self._providers]

    def get_provider_options(self) -> dict[str, dict[str, str]]:
        return {p.name: dict(p.options) for p in self._providers}

    def set_providers(self, providers=None, provider_options=None) -> None:
        self._providers = resolve(providers, provider_options)
        self._build()
        self._plan.profiling = self._profiling

    def get_session_options(self) -> SessionOptions:
        return self._sess_options

    def kernel_listing(self) -> list[dict[str, str]]:
        """What runs where: one entry per node (and per inserted copy) with its provider and kernel
        ('native', 'native:prepacked', 'native:objects' (a C++ kernel over string tensors or maps, run
        with the GIL held), 'numpy', 'control-flow', 'constant', 'native:copy')."""
        return [dict(r.__dict__) for r in self._records]

    # -- profiling ---------------------------------------------------------------------------
    def get_profiling_start_time_ns(self) -> int:
        return self._profile_start_ns

    def end_profiling(self) -> str:
        """Stop profiling and write a Chrome-trace JSON array; returns its path ('' when off)."""
        if not self._profiling:
            return ""
        events = self._plan.take_profile()
        steps = self._plan.step_info()
        prov = {}
        for r in self._records:
            if not r.subgraph:
                prov[r.node] = r.provider
        base = self._profile_perf0
        pid = os.getpid()
        out: list[dict[str, Any]] = []
        for name, ts, dur in self._session_events:
            out.append({"cat": "Session", "pid": pid, "tid": pid, "dur": max(0, dur // 1000),
                        "ts": max(0, (ts - base) // 1000), "ph": "X", "name": name, "args": {}})
        perf_to_steady = time.perf_counter_ns() - _monotonic_ns()
        for e in events:
            ts = (e["ts_ns"] + perf_to_steady - base) // 1000
            if e["step"] < 0:
                out.append({"cat": "Session", "pid": pid, "tid": e["tid"], "dur": e["dur_ns"] // 1000,
                            "ts": ts, "ph": "X", "name": "model_run", "args": {}})
                continue
            st = steps[e["step"]]
            ins = _type_shapes(e["in_shapes"], e["in_dtypes"])
            outs = _type_shapes(e["out_shapes"], e["out_dtypes"])
            out.append({
                "cat": "Node", "pid": pid, "tid": e["tid"], "dur": e["dur_ns"] // 1000, "ts": ts, "ph": "X",
                "name": f"{st['name']}_kernel_time",
                "args": {
                    "op_name": st["op_type"],
                    "node_name": st["name"],
                    "provider": prov.get(st["name"], "CPUExecutionProvider"),
                    "kernel": st["kernel"],
                    "input_type_shape": ins,
                    "output_type_shape": outs,
                    "activation_size": str(_nbytes(e["in_shapes"], e["in_dtypes"])),
                    "output_size": str(_nbytes(e["out_shapes"], e["out_dtypes"])),
                    "parameter_size": "0",
                },
            })
        out.sort(key=lambda ev: ev["ts"])
        stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
        path = f"{self._sess_options.profile_file_prefix}{stamp}_{os.getpid()}_{id(self) % 10000}.json"
        with open(path, "w") as f:
            json.dump(out, f)
        self._profiling = False
        self._plan.profiling = False
        return path


def _monotonic_ns() -> int:
    # The native clock is steady_clock (CLOCK_MONOTONIC on Linux).
    return time.monotonic_ns()


def _type_shapes(shapes, codes) -> list[dict[str, list[int]]]:
    return [{dtypes.type_name(c) if c else "unknown": list(s)} for s, c in zip(shapes, codes)]


def _nbytes(shapes, codes) -> int:
    total = 0
    for s, c in zip(shapes, codes):
        if c:
            total += int(np.prod(s, dtype=np.int64)) * dtypes.np_dtype(c).itemsize
    return total


# ---------------------------------------------------------------------------------------------
class OrtMemType(enum.IntEnum):
    """onnxruntime's OrtMemType."""

    CPU_INPUT = -2
    CPU_OUTPUT = -1
    DEFAULT = 0


class OrtAllocatorType(enum.IntEnum):
    """onnxruntime's OrtAllocatorType."""

    INVALID = -1
    ORT_DEVICE_ALLOCATOR = 0
    ORT_ARENA_ALLOCATOR = 1


class OrtMemoryInfo:
    """A memory location, as onnxruntime describes one: name ('Cpu'), allocator type, device id, memory type."""

    def __init__(self, name: str, allocator_type, device_id: int, mem_type):
        self.name = str(name)
        self.allocator_type = OrtAllocatorType(int(allocator_type))
        self.device_id = int(device_id)
        self.mem_type = OrtMemType(int(mem_type))
        self.device_mem_type = 0
        self.device_vendor_id = 0

    @staticmethod
    def cpu() -> "OrtMemoryInfo":
        return OrtMemoryInfo("Cpu", OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, OrtMemType.DEFAULT)

    def __repr__(self) -> str:
        return (f"OrtMemoryInfo(name={self.name!r}, allocator_type={self.allocator_type.name}, "
                f"device_id={self.device_id}, mem_type={self.mem_type.name})")


class OrtDevice:
    """A device: ``OrtDevice.make('cpu', 0)``. Device type 0 is the CPU, the only one of this build."""

    _TYPES = {"cpu": 0}

    def __init__(self, device_type: int = 0, device_id: int = 0, vendor_id: int = 0):
        self._type, self._id, self._vendor = int(device_type), int(device_id), int(vendor_id)

    @staticmethod
    def make(ort_device_name: str, device_id: int, vendor_id: int = -1) -> "OrtDevice":
        name = str(ort_device_name).lower()
        if name not in OrtDevice._TYPES:
            raise NotImplementedFeature(f"device '{ort_device_name}' is not available in this build (CPU only)")
        return OrtDevice(OrtDevice._TYPES[name], device_id, max(int(vendor_id), 0))

    def device_type(self) -> int:
        return self._type

    def device_id(self) -> int:
        return self._id

    def device_mem_type(self) -> int:
        return 0

    def device_vendor_id(self) -> int:
        return self._vendor

    def __repr__(self) -> str:
        return f"OrtDevice(type={self._type}, id={self._id})"


class OrtValue:
    """A value handed to or returned by a session (CPU only): wraps a numpy array without copying."""

    def __init__(self, value, device_type: str = "cpu", device_id: int = 0):
        if device_type.lower() != "cpu":
            raise NotImplementedFeature(f"device '{device_type}' is not available in this build (CPU only)")
        self._value = value
        self._device_id = device_id

    @staticmethod
    def ortvalue_from_numpy(numpy_obj, device_type: str = "cpu", device_id: int = 0) -> "OrtValue":
        arr = numpy_obj if isinstance(numpy_obj, np.ndarray) else np.asarray(numpy_obj)
        return OrtValue(arr, device_type, device_id)

    @staticmethod
    def ortvalue_from_shape_and_type(shape, element_type=np.float32, device_type: str = "cpu",
                                     device_id: int = 0) -> "OrtValue":
        """A zero-filled tensor; ``element_type`` a numpy type or an ONNX element type code (1 = float)."""
        return OrtValue(np.zeros(tuple(shape), dtype=_np_element_type(element_type)), device_type, device_id)

    @staticmethod
    def ortvalue_from_numpy_with_onnx_type(data, onnx_element_type: int) -> "OrtValue":
        """``data`` as a tensor of ONNX element type ``onnx_element_type``: its buffer reinterpreted when numpy
        holds the values under another type of the same width (bfloat16 or float8 as uint16 / uint8)."""
        arr = data if isinstance(data, np.ndarray) else np.asarray(data)
        dt = _np_element_type(int(onnx_element_type))
        if arr.dtype != dt:
            if arr.dtype.itemsize != dt.itemsize or arr.dtype == object or dt == object:
                raise InvalidArgument(f"ortvalue_from_numpy_with_onnx_type: a {arr.dtype} array cannot hold "
                                      f"tensor({dtypes.type_name(int(onnx_element_type))}) values")
            arr = arr.view(dt)
        return OrtValue(arr)

    @staticmethod
    def from_dlpack(data) -> "OrtValue":
        """A tensor sharing the memory of a DLPack capsule or of an object with ``__dlpack__`` (CPU)."""
        if type(data).__name__ == "PyCapsule":
            capsule = data

            class _Capsule:  # numpy takes objects with __dlpack__, not bare capsules
                def __dlpack__(self, stream=None):  # no max_version: numpy then reads a legacy capsule
                    return capsule

                def __dlpack_device__(self):
                    return (1, 0)  # kDLCPU

            data = _Capsule()
        return OrtValue(np.from_dlpack(data))

    def to_dlpack(self):
        """A DLPack capsule sharing this tensor's memory."""
        return self._value.__dlpack__()

    def __dlpack__(self, stream=None, **kwargs):
        return self._value.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self._value.__dlpack_device__()

    def numpy(self):
        return self._value

    def is_tensor(self) -> bool:
        return isinstance(self._value, np.ndarray)

    def is_tensor_sequence(self) -> bool:
        return isinstance(self._value, list)

    def has_value(self) -> bool:
        return self._value is not None

    def shape(self) -> list[int]:
        return list(self._value.shape)

    def data_type(self) -> str:
        if isinstance(self._value, list):
            inner = self._value[0] if self._value else np.zeros(0, np.float32)
            return f"seq(tensor({dtypes.type_name(dtypes.onnx_code(inner.dtype))}))"
        return f"tensor({dtypes.type_name(dtypes.onnx_code(self._value.dtype))})"

    def element_type(self) -> int:
        """The ONNX element type code (1 = float, 7 = int64, ...), as onnxruntime returns it."""
        if isinstance(self._value, list):
            inner = self._value[0] if self._value else np.zeros(0, np.float32)
            return dtypes.onnx_code(inner.dtype)
        return dtypes.onnx_code(self._value.dtype)

    def tensor_size_in_bytes(self) -> int:
        return int(self._value.nbytes)

    def device_name(self) -> str:
        return "cpu"

    def data_ptr(self) -> int:
        return int(self._value.ctypes.data)

    def update_inplace(self, np_arr) -> None:
        src = np.asarray(np_arr)
        if src.shape != self._value.shape or src.dtype != self._value.dtype:
            raise InvalidArgument(f"update_inplace: expected {self._value.dtype}{list(self._value.shape)}, "
                                  f"got {src.dtype}{list(src.shape)}")
        np.copyto(self._value, src)

    def __repr__(self) -> str:
        return f"OrtValue({self.data_type()}, shape={self.shape() if self.is_tensor() else None})"


def _np_element_type(element_type) -> np.dtype:
    """A numpy dtype from a numpy type or an ONNX element type code."""
    if isinstance(element_type, (int, np.integer)) and not isinstance(element_type, bool):
        try:
            return np.dtype(dtypes.np_dtype(int(element_type)))
        except (KeyError, ValueError, TypeError):
            raise InvalidArgument(f"unknown ONNX element type {int(element_type)}") from None
    return np.dtype(element_type)


def _array_from_pointer(ptr: int, element_type, shape) -> np.ndarray:
    dt = _np_element_type(element_type)
    n = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
    buf = (ctypes.c_char * n).from_address(int(ptr))
    return np.frombuffer(buf, dtype=dt).reshape(tuple(shape))


class IOBinding:
    """Binds inputs and outputs of a session to arrays or buffers (CPU)."""

    def __init__(self, session: InferenceSession):
        self._sess = session
        self._inputs: dict[str, Any] = {}
        self._outputs: list[tuple[str, Any]] = []  # (name, target array or None)
        self._results: list[OrtValue] = []

    def _check_device(self, device_type: str) -> None:
        if str(device_type).lower() != "cpu":
            raise NotImplementedFeature(f"device '{device_type}' is not available in this build (CPU only)")

    def bind_cpu_input(self, name: str, arr_on_cpu) -> None:
        self._inputs[name] = arr_on_cpu

    def bind_input(self, name: str, device_type, device_id, element_type, shape, buffer_ptr) -> None:
        self._check_device(device_type)
        self._inputs[name] = _array_from_pointer(buffer_ptr, element_type, shape)

    def bind_ortvalue_input(self, name: str, ortvalue: OrtValue) -> None:
        self._inputs[name] = ortvalue.numpy()

    def bind_output(self, name: str, device_type="cpu", device_id=0, element_type=None, shape=None,
                    buffer_ptr=None) -> None:
        self._check_device(device_type)
        known = [o.name for o in self._sess.get_outputs()]
        if name not in known:
            raise InvalidArgument(f"unknown output name '{name}'; the model's outputs are {known}")
        target = None
        if buffer_ptr is not None:
            if element_type is None or shape is None:
                raise InvalidArgument("bind_output with buffer_ptr needs element_type and shape")
            target = _array_from_pointer(buffer_ptr, element_type, shape)
        self._outputs = [(n, t) for n, t in self._outputs if n != name] + [(name, target)]

    def bind_ortvalue_output(self, name: str, ortvalue: OrtValue) -> None:
        self._outputs = [(n, t) for n, t in self._outputs if n != name] + [(name, ortvalue.numpy())]

    def _run(self, run_options) -> None:
        names = [n for n, _ in self._outputs] or [o.name for o in self._sess.get_outputs()]
        results = self._sess.run(names, dict(self._inputs), run_options)
        out: list[OrtValue] = []
        targets = dict(self._outputs)
        for name, value in zip(names, results):
            target = targets.get(name)
            if target is not None:
                if not isinstance(value, np.ndarray) or value.shape != target.shape or value.dtype != target.dtype:
                    raise InvalidArgument(
                        f"output '{name}': the bound buffer is {target.dtype}{list(target.shape)} but the result "
                        f"is {getattr(value, 'dtype', type(value).__name__)}{list(getattr(value, 'shape', []))}"
                    )
                np.copyto(target, value)
                value = target
            out.append(OrtValue(value))
        self._results = out

    def get_outputs(self) -> list[OrtValue]:
        return list(self._results)

    def copy_outputs_to_cpu(self) -> list:
        return [v.numpy().copy() if isinstance(v.numpy(), np.ndarray) else v.numpy() for v in self._results]

    def clear_binding_inputs(self) -> None:
        self._inputs.clear()

    def clear_binding_outputs(self) -> None:
        self._outputs.clear()

    def synchronize_inputs(self) -> None:  # CPU: nothing to wait for
        return None

    def synchronize_outputs(self) -> None:
        return None
