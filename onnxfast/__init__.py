"""onnxfast: a fast ONNX inference runtime with a C++ core and onnxruntime's session API.

    import onnxfast as ort                      # drop-in for `import onnxruntime as ort`
    sess = ort.InferenceSession("model.onnx", providers=["CPUExecutionProvider"])
    outputs = sess.run(None, {"x": x})

This module re-exports the public API; see docs/ARCHITECTURE.md for how the pieces fit.
"""

from __future__ import annotations

import os as _os

try:
    from . import _core
except ImportError as _e:  # pragma: no cover - depends on how the package was put on sys.path
    raise ImportError(
        f"onnxfast's compiled core (_core) is missing from {_os.path.dirname(__file__)}: this is probably the "
        "source tree shadowing the installed package (run from another folder), or a build that did not "
        "finish (pip install . / ci/dev_build.sh)"
    ) from _e

_core.check_platform()  # a malformed ONNXFAST_CACHE_SIZES: ValueError naming the bad entry

from . import dtypes, errors  # noqa: E402

dtypes.register_with_core(_core)
_core.set_error_classes(errors.NATIVE_CLASSES)
_core.set_error_hook(errors.wrap_kernel_error)

from . import ops  # noqa: E402,F401  (registers every kernel)
from .ops import control  # noqa: E402,F401
from .options import (  # noqa: E402
    ExecutionMode,
    ExecutionOrder,
    GraphOptimizationLevel,
    RunOptions,
    SessionOptions,
)
from .providers import get_all_providers, get_available_providers  # noqa: E402
from .session import (  # noqa: E402
    InferenceSession,
    IOBinding,
    ModelMetadata,
    NodeArg,
    OrtAllocatorType,
    OrtDevice,
    OrtMemoryInfo,
    OrtMemType,
    OrtValue,
)

__version__ = "0.1.0"


def get_device() -> str:
    """'CPU' (as onnxruntime.get_device() reports for a CPU build)."""
    return "CPU"


def get_version_string() -> str:
    return __version__


def get_build_info() -> str:
    """One line about this build: version, the kernel tier chosen for this CPU, the compiler's build type."""
    info = _core.cpu_info()
    return (f"onnxfast Build Info: version={__version__}, isa={info['isa']} (best {info['best_isa']}), "
            f"gemm={info['gemm']}, vecmath={info['vecmath']}, build type=Release")


def set_default_logger_severity(severity: int) -> None:
    """The minimum severity logged (0 verbose, 1 info, 2 warning, 3 error, 4 fatal), as onnxruntime's."""
    from .session import set_log_severity

    set_log_severity(severity)


def set_seed(seed: int) -> None:
    """The seed of random operators (RandomNormal, RandomUniform, Dropout, ...) that have no seed
    attribute, for sessions created after this call, as onnxruntime.set_seed."""
    from .ops import _common

    _common.GLOBAL_SEED[0] = int(seed)


__all__ = [
    "InferenceSession",
    "SessionOptions",
    "RunOptions",
    "GraphOptimizationLevel",
    "ExecutionMode",
    "ExecutionOrder",
    "NodeArg",
    "ModelMetadata",
    "OrtValue",
    "IOBinding",
    "get_available_providers",
    "get_all_providers",
    "get_device",
    "get_version_string",
    "get_build_info",
    "set_default_logger_severity",
    "set_seed",
    "OrtDevice",
    "OrtMemoryInfo",
    "OrtMemType",
    "OrtAllocatorType",
    "errors",
]
