"""Kernels of the internal ``onnxfast`` domain that the optimizer's fusions create. The native
kernels do the work (float32); these numpy kernels compose the original operators for the rest."""

from __future__ import annotations

import numpy as np
import onnx
import onnx.defs

from ..errors import InvalidArgument
from ..registry import REGISTRY, KernelNode, op
from .math import _erf, _sigmoid, relu

_CONV_ATTRS = ("auto_pad", "dilations", "group", "kernel_shape", "pads", "strides")


@op("FusedConv", since=1, domain="com.microsoft")  # onnxruntime's: the same inputs and attributes
@op("FusedConv", since=1, domain="onnxfast")
def fused_conv(node: KernelNode):
    conv_node = KernelNode("Conv", "", node.name, 11, 11, {k: v for k, v in node.attrs.items() if k in _CONV_ATTRS},
                           node.input_types[:3], node.output_types, {}, 3, 1)
    conv = REGISTRY.factory("", "Conv", 11)(conv_node)
    activate = _activation(node)

    def run(x, w, b=None, z=None):
        y = conv(x, w, b)
        if z is not None:
            y = y + z
        return activate(y).astype(x.dtype, copy=False)

    return run


def gelu_kernel(name: str, approximate: str):
    """The numpy kernel of ai.onnx Gelu-20 (``approximate`` "none" or "tanh"), for fused nodes."""
    node = KernelNode("Gelu", "", name, 20, 20, {"approximate": approximate}, [1], [1], {}, 1, 1)
    return REGISTRY.factory("", "Gelu", 20)(node)


def _activation(node: KernelNode):
    """The node's fused activation (attributes activation / activation_params) as a function,
    computed as the original operator computes it; resolved once, at session creation."""
    act = node.attr("activation", "None")
    params = list(node.attr("activation_params", []))
    if act == "Relu":
        return relu
    if act == "LeakyRelu":
        return lambda y: np.where(y >= 0, y, y * np.asarray(params[0], y.dtype))
    if act == "Clip":
        return lambda y: np.clip(y, np.asarray(params[0], y.dtype), np.asarray(params[1], y.dtype))
    if act == "Sigmoid":
        return lambda y: 1 / (1 + np.exp(-y))
    if act == "Tanh":
        return np.tanh
    if act == "HardSigmoid":  # com.microsoft FusedConv: activation_params alpha, beta
        alpha, beta = (params + [0.2, 0.5][len(params):])[:2]
        return lambda y: np.clip(y * np.asarray(alpha, y.dtype) + np.asarray(beta, y.dtype), 0, 1).astype(y.dtype)
    if act in ("Gelu", "GeluTanh"):
        return gelu_kernel(node.name, "tanh" if act == "GeluTanh" else "none")
    if act not in ("None", ""):
        node.fail(f"attribute 'activation' is '{act}'; known: None, Relu, LeakyRelu, Clip, Sigmoid, Tanh, Gelu, "
                  "GeluTanh, HardSigmoid")
    return lambda y: y


@op("FusedMatMul", since=1, domain="onnxfast")
def fused_matmul(node: KernelNode):
    """y = act(a @ b + bias + residual): MatMul [-> Add(bias)] [-> Add(residual)] [-> activation]."""
    activate = _activation(node)

    def run(a, b, bias=None, z=None):
        y = np.matmul(a, b)
        if bias is not None:
            y = y + bias
        if z is not None:
            y = y + z
        return activate(y).astype(a.dtype, copy=False)

    return run


@op("FusedElementwise", since=1, domain="onnxfast")
def fused_elementwise(node: KernelNode):
    """A group of elementwise float32 operations as one node (optimizer/elementwise.py): ``ops`` in
    order, ``args`` two slots each (-1: none), slots = inputs, then ``constants``, then results."""
    ops = list(node.attr("ops", []))
    args = [int(a) for a in node.attr("args", [])]
    constants = [np.float32(c) for c in node.attr("constants", [])]
    n_in = node.num_inputs
    if not ops or len(args) != 2 * len(ops):
        node.fail(f"attribute 'args' has {len(args)} values for {len(ops)} ops; it must have two per op")
    for i, op_type in enumerate(ops):
        if op_type not in _EW:
            node.fail(f"attribute 'ops' holds '{op_type}'; known: {', '.join(sorted(_EW))}")
        a, b = args[2 * i], args[2 * i + 1]
        limit = n_in + len(constants) + i  # a slot defined before this op
        binary = op_type in _EW_BINARY
        if not 0 <= a < limit or (binary and not 0 <= b < limit) or (not binary and b != -1):
            node.fail(f"attribute 'args' of op {i} ({op_type}) is [{a}, {b}]; slots must be defined before use")

    def run(*xs):
        shape = xs[0].shape
        for x in xs:
            if x.shape != shape or x.dtype != np.float32:
                node.fail(f"inputs must be float32 of one shape, got {[(str(v.dtype), v.shape) for v in xs]}",
                          cls=InvalidArgument)
        slots = list(xs) + [np.full(shape, c, np.float32) for c in constants]
        for i, op_type in enumerate(ops):
            a, b = args[2 * i], args[2 * i + 1]
            f = _EW[op_type]
            slots.append(np.asarray(f(slots[a], slots[b]) if b >= 0 else f(slots[a]), np.float32))
        return slots[-1]

    return run


@op("FusedAttention", since=1, domain="onnxfast")
def fused_attention(node: KernelNode):
    """softmax(Q @ Kt * scale [+ mask]) @ V over the last axis, rank-4 Q / Kt / V (optimizer/attention.py);
    nan_to_zero: a NaN probability (a row masked out entirely) becomes 0, as Where(IsNaN(p), 0, p)."""
    scale = np.float32(node.attr("scale", 1.0))
    nan_to_zero = bool(node.attr("nan_to_zero", 0))

    def run(q, kt, v, mask=None):
        for name, x in (("Q", q), ("Kt", kt), ("V", v)):
            if x.ndim != 4 or x.dtype != np.float32:
                node.fail(f"{name} must be a rank-4 float32 tensor, got {x.dtype} {x.shape}", cls=InvalidArgument)
        try:
            if kt.shape[-1] == 0:  # no keys: every output row is an empty sum
                scores = np.broadcast_shapes(q.shape[:2], kt.shape[:2]) + (q.shape[2], 0)
                if mask is not None:
                    scores = np.broadcast_shapes(scores, mask.shape)
                return np.zeros(np.broadcast_shapes(scores[:2], v.shape[:2]) + (scores[2], v.shape[3]), np.float32)
            x = np.matmul(q, kt) * scale
            if mask is not None:
                x = x + mask
            with np.errstate(invalid="ignore", over="ignore"):
                e = np.exp(x - np.max(x, axis=-1, keepdims=True))
                p = (e / np.sum(e, axis=-1, keepdims=True)).astype(np.float32)
            if nan_to_zero:
                p = np.where(np.isnan(p), np.float32(0), p)
            return np.matmul(p, v).astype(np.float32)
        except ValueError as err:
            node.fail(f"shapes Q {q.shape}, Kt {kt.shape}, V {v.shape}"
                      + (f", mask {mask.shape}" if mask is not None else "") + f" do not fit: {err}",
                      cls=InvalidArgument)

    return run


_EW_BINARY = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide}
_EW = {**_EW_BINARY, "Relu": relu, "Neg": np.negative, "Abs": np.abs, "Exp": np.exp, "Sqrt": np.sqrt,
       "Reciprocal": np.reciprocal, "Sigmoid": _sigmoid, "Tanh": np.tanh, "Erf": lambda x: _erf(x)}


# ---- ONNX schemas of the internal domain ------------------------------------------------------
# Registered with the onnx package at import, so a model that onnxfast's optimizer wrote (session
# option optimized_model_filepath, `onnxfast optimize`) passes onnx.checker and shape inference and
# loads again. The element type of the output is input 0's.

FUSED_DOMAIN = "onnxfast"
_FLOAT_TYPES = ["tensor(float)", "tensor(float16)", "tensor(bfloat16)", "tensor(double)"]


def _same_type_as_input0(ctx) -> None:
    t = ctx.get_input_type(0)
    if t is not None and t.WhichOneof("value") == "tensor_type":
        out = onnx.TypeProto()
        out.tensor_type.elem_type = t.tensor_type.elem_type
        ctx.set_output_type(0, out)


def _schema(name: str, doc: str, inputs: list[tuple[str, bool]], attrs: list) -> "onnx.defs.OpSchema":
    S = onnx.defs.OpSchema
    opt = S.FormalParameterOption.Optional
    params = [S.FormalParameter(n, "T", param_option=opt) if optional else S.FormalParameter(n, "T")
              for n, optional in inputs]
    schema = S(name, FUSED_DOMAIN, 1, doc, inputs=params, outputs=[S.FormalParameter("Y", "T")],
               type_constraints=[("T", _FLOAT_TYPES, "float tensors")], attributes=attrs)
    schema.set_type_and_shape_inference_function(_same_type_as_input0)
    return schema


def register_schemas() -> None:
    S = onnx.defs.OpSchema
    A = S.AttrType
    act = [S.Attribute("activation", A.STRING, "None, Relu, LeakyRelu, Clip, Sigmoid, Tanh, Gelu, GeluTanh",
                       required=False),
           S.Attribute("activation_params", A.FLOATS, "LeakyRelu: alpha; Clip: min, max", required=False)]
    conv = [S.Attribute("auto_pad", A.STRING, "", required=False), S.Attribute("dilations", A.INTS, "", required=False),
            S.Attribute("group", A.INT, "", required=False), S.Attribute("kernel_shape", A.INTS, "", required=False),
            S.Attribute("pads", A.INTS, "", required=False), S.Attribute("strides", A.INTS, "", required=False)]
    ew = S("FusedElementwise", FUSED_DOMAIN, 1, "a group of elementwise float32 operations, one pass over memory",
           inputs=[S.FormalParameter("X", "T", param_option=S.FormalParameterOption.Variadic)],
           outputs=[S.FormalParameter("Y", "T")], type_constraints=[("T", ["tensor(float)"], "float32")],
           attributes=[S.Attribute("ops", A.STRINGS, "operator names, in order"),
                       S.Attribute("args", A.INTS, "two slots per op (-1: none)"),
                       S.Attribute("constants", A.FLOATS, "scalar operands", required=False)])
    ew.set_type_and_shape_inference_function(_same_type_as_input0)
    attention = S("FusedAttention", FUSED_DOMAIN, 1, "softmax(Q @ Kt * scale + mask) @ V",
                  inputs=[S.FormalParameter("Q", "T"), S.FormalParameter("Kt", "T"), S.FormalParameter("V", "T"),
                          S.FormalParameter("mask", "T", param_option=S.FormalParameterOption.Optional)],
                  outputs=[S.FormalParameter("Y", "T")], type_constraints=[("T", ["tensor(float)"], "float32")],
                  attributes=[S.Attribute("scale", A.FLOAT, "applied to Q @ Kt", required=False),
                              S.Attribute("nan_to_zero", A.INT, "NaN probabilities become 0", required=False)])
    attention.set_type_and_shape_inference_function(_same_type_as_input0)
    for schema in (
        attention,
        ew,
        _schema("FusedConv", "Y = activation(Conv(X, W, B) + Z)", [("X", False), ("W", False), ("B", True), ("Z", True)],
                conv + act),
        _schema("FusedMatMul", "Y = activation(MatMul(A, B) + bias + Z)",
                [("A", False), ("B", False), ("bias", True), ("Z", True)], act),
    ):
        try:
            onnx.defs.get_schema(schema.name, 1, FUSED_DOMAIN)
            continue  # registered already (a second import of this module)
        except onnx.defs.SchemaError:
            onnx.defs.register_schema(schema)


register_schemas()
