"""Execution providers: which nodes a provider claims, on which device they run.

A provider is a name (spelled as ONNX Runtime spells it), a device id and a ``claims`` rule.
The planner walks nodes in order and gives each to the first provider in the user's list that
claims it; the CPU provider is always last and claims everything it has a kernel for. A device
provider (``NativeDeviceProvider``) has its allocator, copy functions and kernels in ``_core``
under its name and takes only nodes its own kernels compute. Where a value crosses devices the
planner inserts MemcpyToDevice / MemcpyFromDevice steps.
"""

from __future__ import annotations

import warnings
from typing import Any

from .errors import InvalidArgument, OnnxfastWarning

# Provider names ONNX Runtime knows. Asking for one we do not have warns and falls back, as
# ONNX Runtime does for a provider missing from its build; any other name is an error.
ORT_PROVIDER_NAMES = {
    "CPUExecutionProvider",
    "CUDAExecutionProvider",
    "TensorrtExecutionProvider",
    "ROCMExecutionProvider",
    "MIGraphXExecutionProvider",
    "OpenVINOExecutionProvider",
    "DnnlExecutionProvider",
    "DmlExecutionProvider",
    "CoreMLExecutionProvider",
    "NnapiExecutionProvider",
    "QNNExecutionProvider",
    "XnnpackExecutionProvider",
    "WebGpuExecutionProvider",
    "AzureExecutionProvider",
    "ACLExecutionProvider",
    "ArmNNExecutionProvider",
    "CANNExecutionProvider",
    "VitisAIExecutionProvider",
    "TvmExecutionProvider",
    "SNPEExecutionProvider",
    "RknpuExecutionProvider",
    "JsExecutionProvider",
    "NvTensorRTRTXExecutionProvider",
}


class ExecutionProvider:
    """Base class. Subclasses set ``name`` and ``device`` and may restrict ``claims``."""

    name = "ExecutionProvider"
    device = 0  # 0 = host memory
    known_options: frozenset = frozenset()
    native_only = False  # device providers run native kernels only

    def __init__(self, options: dict[str, Any] | None = None):
        self.options = {str(k): str(v) for k, v in (options or {}).items()}
        unknown = set(self.options) - set(self.known_options)
        if unknown:
            warnings.warn(
                f"{self.name}: options {sorted(unknown)} are not recognized and have no effect",
                OnnxfastWarning,
                stacklevel=4,
            )

    def claims(self, node, native_available: bool) -> bool:
        """Whether this provider takes the node (native_available: a native kernel of this provider fits it)."""
        return True


class CPUExecutionProvider(ExecutionProvider):
    name = "CPUExecutionProvider"
    device = 0
    known_options = frozenset({"use_arena"})


class NativeDeviceProvider(ExecutionProvider):
    """A provider whose device allocator, copy functions and kernels live in ``_core`` (registered there
    under the provider's name: csrc/core/device.h, csrc/kernels/kernel.h). It claims the nodes its own
    kernels compute (the planner asks the registry); subclasses may narrow that with ``claims``."""

    native_only = True

    def __init__(self, options: dict[str, Any] | None = None):
        super().__init__(options)
        from . import _core

        self.device = _core.device_id(self.name)
        if self.device <= 0:
            raise InvalidArgument(f"{self.name}: _core registers no device allocator under this name")


_AVAILABLE: dict[str, type[ExecutionProvider]] = {"CPUExecutionProvider": CPUExecutionProvider}


def register_provider(cls: type[ExecutionProvider]) -> None:
    """Make a provider class available (tests register _core's TestDeviceExecutionProvider this way)."""
    _AVAILABLE[cls.name] = cls


def unregister_provider(name: str) -> None:
    if name != "CPUExecutionProvider":
        _AVAILABLE.pop(name, None)


def get_available_providers() -> list[str]:
    """Provider names usable in this build, CPU last (as in ONNX Runtime)."""
    names = [n for n in _AVAILABLE if n != "CPUExecutionProvider"]
    return names + ["CPUExecutionProvider"]


def get_all_providers() -> list[str]:
    return sorted(ORT_PROVIDER_NAMES | set(_AVAILABLE))


def resolve(providers, provider_options) -> list[ExecutionProvider]:
    """Turn the user's providers argument into provider instances (CPU appended last)."""
    if providers is None:
        providers = ["CPUExecutionProvider"]
    if isinstance(providers, (str, tuple)):
        providers = [providers]
    providers = list(providers)
    if provider_options is not None:
        provider_options = list(provider_options)
        if len(provider_options) != len(providers):
            raise InvalidArgument(
                f"provider_options has {len(provider_options)} entries but providers has {len(providers)}"
            )
    out: list[ExecutionProvider] = []
    seen: set[str] = set()
    for i, p in enumerate(providers):
        if isinstance(p, tuple):
            if len(p) != 2 or not isinstance(p[0], str) or not isinstance(p[1], dict):
                raise InvalidArgument(f"provider entry {p!r} must be a name or a (name, options dict) tuple")
            name, opts = p
            if provider_options is not None:
                raise InvalidArgument("give provider options either in (name, options) tuples or in provider_options")
        elif isinstance(p, str):
            name, opts = p, (provider_options[i] if provider_options is not None else {})
        else:
            raise InvalidArgument(f"provider entry {p!r} must be a name or a (name, options dict) tuple")
        if name in seen:
            raise InvalidArgument(f"provider '{name}' is listed twice")
        seen.add(name)
        cls = _AVAILABLE.get(name)
        if cls is None:
            if name in ORT_PROVIDER_NAMES:
                warnings.warn(
                    f"{name} is not available in this build of onnxfast; available providers: "
                    f"{get_available_providers()}. Falling back to the next provider.",
                    UserWarning,
                    stacklevel=3,
                )
                continue
            raise InvalidArgument(f"unknown provider '{name}'; known providers: {get_all_providers()}")
        out.append(cls(opts))
    if not any(isinstance(p, CPUExecutionProvider) for p in out):
        out.append(CPUExecutionProvider())
    return out
