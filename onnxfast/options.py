"""Session and run options, with ONNX Runtime's names, defaults and enums.

``RunOptions`` is the native class (its ``terminate`` flag is read by the executor between
steps). ``SessionOptions`` is plain Python: it is read once when a session is created.
"""

from __future__ import annotations

import enum
import warnings

from . import _core
from .errors import InvalidArgument, NotImplementedFeature, OnnxfastWarning

RunOptions = _core.RunOptions


class GraphOptimizationLevel(enum.IntEnum):
    ORT_DISABLE_ALL = 0
    ORT_ENABLE_BASIC = 1
    ORT_ENABLE_EXTENDED = 2
    ORT_ENABLE_LAYOUT = 3
    ORT_ENABLE_ALL = 99


class ExecutionMode(enum.IntEnum):
    ORT_SEQUENTIAL = 0
    ORT_PARALLEL = 1


class ExecutionOrder(enum.IntEnum):
    DEFAULT = 0
    PRIORITY_BASED = 1
    MEMORY_EFFICIENT = 2


# Session config keys onnxfast reads (others warn: nothing is silently ignored).
KNOWN_CONFIG_KEYS = {
    "session.disable_prepacking": "do not pre-pack constant weights ('1' to disable)",
    "session.set_denormal_as_zero": "flush denormals to zero while running ('1')",
    "session.intra_op.allow_spinning": "'0': pool threads sleep at once instead of spinning ~50 us (shared pools)",
    "session.inter_op.allow_spinning": "accepted; there is no inter-op pool",
    "session.model_external_initializers_file_folder_path": "folder of external data for models given as bytes",
    "session.use_env_allocators": "accepted; onnxfast has one allocator",
    "optimization.disable_specified_optimizers": "';' list of optimizer passes not to run (onnxfast.optimizer.PASS_NAMES)",
    "onnxfast.disable_kernels": "comma list of kernel kinds to disable: native, numpy, native:Op, numpy:Op",
}


class SessionOptions:
    """Options read when a session is created (ONNX Runtime's fields and defaults)."""

    def __init__(self) -> None:
        self.intra_op_num_threads = 0
        self.inter_op_num_threads = 0
        self.execution_mode = ExecutionMode.ORT_SEQUENTIAL
        self.execution_order = ExecutionOrder.DEFAULT
        self.graph_optimization_level = GraphOptimizationLevel.ORT_ENABLE_ALL
        self.enable_cpu_mem_arena = True
        self.enable_mem_pattern = True
        self.enable_mem_reuse = True
        self.enable_profiling = False
        self.profile_file_prefix = "onnxfast_profile_"
        self.log_severity_level = -1
        self.log_verbosity_level = 0
        self.logid = ""
        self.optimized_model_filepath = ""
        self.use_deterministic_compute = False
        self._config: dict[str, str] = {}
        self._dim_overrides: dict[str, int] = {}
        self._initializers: dict[str, object] = {}
        self._custom_ops: dict[tuple[str, str], object] = {}

    # onnxruntime's SessionOptions is a native object: assigning a field it does not have (a typo such as
    # `intra_op_threads`) raises AttributeError instead of being stored and ignored
    _FIELDS = frozenset({
        "intra_op_num_threads", "inter_op_num_threads", "execution_mode", "execution_order",
        "graph_optimization_level", "enable_cpu_mem_arena", "enable_mem_pattern", "enable_mem_reuse",
        "enable_profiling", "profile_file_prefix", "log_severity_level", "log_verbosity_level", "logid",
        "optimized_model_filepath", "use_deterministic_compute", "_config", "_dim_overrides", "_initializers",
        "_custom_ops"})

    def __setattr__(self, name: str, value) -> None:
        if name not in self._FIELDS:
            raise AttributeError(f"'SessionOptions' object has no attribute '{name}'")
        object.__setattr__(self, name, value)

    def add_session_config_entry(self, key: str, value: str) -> None:
        key, value = str(key), str(value)
        if key not in KNOWN_CONFIG_KEYS:
            warnings.warn(f"session config entry '{key}' is not recognized by onnxfast and has no effect",
                          OnnxfastWarning, stacklevel=2)
        self._config[key] = value

    def get_session_config_entry(self, key: str) -> str:
        if key not in self._config:
            raise InvalidArgument(f"session config entry '{key}' is not set")
        return self._config[key]

    def add_free_dimension_override_by_name(self, dim_name: str, dim_value: int) -> None:
        if int(dim_value) < 0:
            raise InvalidArgument(f"free dimension '{dim_name}' cannot be overridden by a negative value {dim_value}")
        self._dim_overrides[str(dim_name)] = int(dim_value)

    def add_free_dimension_override_by_denotation(self, dim_denotation: str, dim_value: int) -> None:
        raise NotImplementedFeature("add_free_dimension_override_by_denotation is not supported yet; use by_name")

    def add_initializer(self, name: str, ort_value) -> None:
        self._initializers[str(name)] = ort_value

    def register_custom_ops_library(self, library_path: str) -> None:
        raise NotImplementedFeature("custom operator libraries (ONNX Runtime C ABI) are not supported by onnxfast; "
                                    "register a Python kernel with SessionOptions.register_custom_op")

    def register_custom_op(self, op_type: str, factory, domain: str = "") -> None:
        """A kernel for ``domain``::``op_type`` in sessions created with these options only.
        ``factory(node)`` is called once per node at session creation with an ``onnxfast.registry.KernelNode`` (attributes, opset, input element types,
        constant inputs) and returns ``fn(*inputs) -> output or tuple of outputs`` working on numpy arrays
        (a C++ kernel can be reached through any Python binding). The kernel runs as a host step with the GIL
        held, and is listed as 'custom' by ``kernel_listing()``; the model must import the domain. Operators
        onnxfast implements cannot be replaced (the optimizer may fuse them away): use your own domain."""
        from .registry import REGISTRY

        if REGISTRY.knows("" if domain == "ai.onnx" else str(domain), str(op_type)):
            raise InvalidArgument(f"register_custom_op: {domain or 'ai.onnx'}::{op_type} is an operator onnxfast "
                                  "implements; register custom operators in a domain of your own")
        if not callable(factory):
            raise InvalidArgument(f"register_custom_op: factory must be callable, got {type(factory).__name__}")
        if not isinstance(op_type, str) or not op_type:
            raise InvalidArgument("register_custom_op: op_type must be a non-empty string")
        self._custom_ops[("" if domain == "ai.onnx" else str(domain), op_type)] = factory

    def add_external_initializers(self, names, ort_values) -> None:
        for n, v in zip(names, ort_values):
            self.add_initializer(n, v)

    def _copy(self) -> "SessionOptions":
        c = SessionOptions.__new__(SessionOptions)
        c.__dict__.update(self.__dict__)
        c._config = dict(self._config)
        c._dim_overrides = dict(self._dim_overrides)
        c._initializers = dict(self._initializers)
        c._custom_ops = dict(self._custom_ops)
        return c

    def __repr__(self) -> str:
        fields = {k: v for k, v in self.__dict__.items() if not k.startswith("_")}
        return f"SessionOptions({fields}, config={self._config})"
