"""Helpers for tests: tiny models built with onnx.helper."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

F = TensorProto.FLOAT


def vi(name, elem=F, shape=None):
    return helper.make_tensor_value_info(name, elem, shape)


def make_model(nodes, inputs, outputs, initializers=(), opset=18, ir_version=9, functions=(), extra_opsets=()):
    graph = helper.make_graph(
        nodes,
        "test_graph",
        inputs,
        outputs,
        [numpy_helper.from_array(np.asarray(a), n) if not isinstance(a, onnx.TensorProto) else a
         for n, a in initializers],
    )
    opsets = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, v) for d, v in extra_opsets]
    m = helper.make_model(graph, opset_imports=opsets, functions=list(functions))
    m.ir_version = ir_version
    return m


def session(model, **kw):
    import onnxfast

    return onnxfast.InferenceSession(model.SerializeToString() if isinstance(model, onnx.ModelProto) else model, **kw)
