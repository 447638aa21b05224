"""onnxruntime's exception classes under onnxruntime's names and import path
(``onnxruntime.capi.onnxruntime_pybind11_state``), so ``except InvalidArgument`` / ``except Fail`` written for
onnxruntime keeps working. onnxfast's own errors (onnxfast.errors) subclass the one onnxruntime raises in the
same situation: a bad argument or element type -> InvalidArgument, a model file not found -> NoSuchFile, a
corrupt protobuf -> InvalidProtobuf, an invalid graph -> InvalidGraph, no kernel -> NotImplemented, a failure
while running -> RuntimeException, a run stopped by RunOptions.terminate -> Fail.

This module defines classes only: it imports nothing from onnxfast.
"""

from __future__ import annotations


class Fail(Exception):
    """onnxruntime's FAIL status."""


class InvalidArgument(Exception):
    """onnxruntime's INVALID_ARGUMENT status."""


class NoSuchFile(Exception):
    """onnxruntime's NO_SUCHFILE status."""


class NoModel(Exception):
    """onnxruntime's NO_MODEL status."""


class EngineError(Exception):
    """onnxruntime's ENGINE_ERROR status."""


class RuntimeException(Exception):
    """onnxruntime's RUNTIME_EXCEPTION status."""


class InvalidProtobuf(Exception):
    """onnxruntime's INVALID_PROTOBUF status."""


class ModelLoaded(Exception):
    """onnxruntime's MODEL_LOADED status."""


class NotImplemented(Exception):  # noqa: A001 - onnxruntime's name
    """onnxruntime's NOT_IMPLEMENTED status."""


class InvalidGraph(Exception):
    """onnxruntime's INVALID_GRAPH status."""


class EPFail(Exception):
    """onnxruntime's EP_FAIL status."""


class ModelLoadCanceled(Exception):
    """onnxruntime's MODEL_LOAD_CANCELED status."""


class ModelRequiresCompilation(Exception):
    """onnxruntime's MODEL_REQUIRES_COMPILATION status."""


class NotFound(Exception):
    """onnxruntime's NOT_FOUND status."""


class DeviceReset(Exception):
    """onnxruntime's DEVICE_RESET status."""
