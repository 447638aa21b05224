"""Exceptions raised by onnxfast.

Every error subclasses :class:`OnnxfastError`, a standard Python class (ValueError, TypeError, ...) and
the onnxruntime class onnxruntime raises in the same situation (onnxfast.capi.onnxruntime_pybind11_state:
InvalidArgument, NoSuchFile, InvalidGraph, NotImplemented, RuntimeException, ...), so code written for
plain Python errors or for onnxruntime's keeps working; messages are in the user's terms: input names,
axes, expected vs. got, op type and node name.
"""

from __future__ import annotations

from .capi import onnxruntime_pybind11_state as _ort


class OnnxfastError(Exception):
    """Base class of every onnxfast error."""


class OnnxfastWarning(UserWarning):
    """Warnings issued by onnxfast (e.g. an unavailable provider, an option not implemented)."""


class InvalidArgument(OnnxfastError, ValueError, _ort.InvalidArgument):
    """A bad argument: unknown input/output name, wrong shape, bad option value."""


class InvalidType(OnnxfastError, TypeError, _ort.InvalidArgument):
    """A value of the wrong type or element type."""


class InvalidModel(OnnxfastError, ValueError, _ort.InvalidGraph):
    """The model cannot be used: corrupt protobuf, undefined value, cycle, bad attribute."""


class ExternalDataError(InvalidModel):
    """External data is missing, truncated, or points outside the model's folder."""


class InvalidProtobufModel(InvalidModel, _ort.InvalidProtobuf):
    """The model bytes are not a parsable ONNX protobuf (corrupt or truncated)."""


class ModelFileNotFound(OnnxfastError, FileNotFoundError, _ort.NoSuchFile):
    """The model file (or one of its external data files) does not exist."""


class UnsupportedOperator(OnnxfastError, NotImplementedError, _ort.NotImplemented):
    """No kernel for an operator (type, domain, opset) in the model."""


class NotImplementedFeature(OnnxfastError, NotImplementedError, _ort.NotImplemented):
    """An option or feature that onnxfast does not implement yet."""


class AllocationError(OnnxfastError, MemoryError, _ort.RuntimeException):
    """An allocation the model asks for cannot be satisfied."""


class IndexOutOfRange(OnnxfastError, IndexError, _ort.RuntimeException):
    """An index input (Gather, Scatter, ...) is outside the valid range."""


class IntegerDivisionByZero(OnnxfastError, ZeroDivisionError, _ort.RuntimeException):
    """Integer division or modulo by zero."""


class IntegerOverflow(OnnxfastError, OverflowError, _ort.RuntimeException):
    """Integer arithmetic that overflows (INT_MIN / -1)."""


class RunTerminated(OnnxfastError, RuntimeError, _ort.Fail):
    """A run stopped because RunOptions.terminate was set."""


class ExecutionError(OnnxfastError, RuntimeError, _ort.RuntimeException):
    """A kernel failed at run time for another reason."""


# Native error kinds (csrc/core/errors.h) -> classes.
NATIVE_CLASSES = {
    "InvalidArgument": InvalidArgument,
    "InvalidType": InvalidType,
    "NotImplemented": NotImplementedFeature,
    "Allocation": AllocationError,
    "Index": IndexOutOfRange,
    "ZeroDivision": IntegerDivisionByZero,
    "Overflow": IntegerOverflow,
    "Terminated": RunTerminated,
    "Runtime": ExecutionError,
    "InvalidModel": InvalidModel,
}

_WRAP = [
    (MemoryError, AllocationError),
    (IndexError, IndexOutOfRange),
    (ZeroDivisionError, IntegerDivisionByZero),
    (OverflowError, IntegerOverflow),
    (TypeError, InvalidType),
    (ValueError, InvalidArgument),
    (NotImplementedError, NotImplementedFeature),
]


def wrap_kernel_error(exc: BaseException, node_name: str, op_type: str):
    """Called by the executor when a Python kernel raises: adds the node to the message.

    Returns the exception to raise instead, or None to re-raise ``exc`` unchanged.
    """
    if isinstance(exc, OnnxfastError):
        if node_name and f"'{node_name}'" in str(exc):
            return None
        new = type(exc)(f"{op_type} node '{node_name}': {exc}")
        new.__cause__ = exc
        return new
    if not isinstance(exc, Exception):
        return None
    cls = ExecutionError
    for base, mapped in _WRAP:
        if isinstance(exc, base):
            cls = mapped
            break
    new = cls(f"{op_type} node '{node_name}': {exc}")
    new.__cause__ = exc
    return new
