"""Regenerate onnxfast/models/demo_mlp.onnx, the small model the package ships for
`python -m onnxfast` (an MLP classifier with fixed-seed weights, dynamic batch)."""

import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def build() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    w1 = (rng.standard_normal((16, 32)) / 4).astype(np.float32)
    b1 = (rng.standard_normal(32) / 10).astype(np.float32)
    w2 = (rng.standard_normal((32, 8)) / 6).astype(np.float32)
    b2 = (rng.standard_normal(8) / 10).astype(np.float32)
    nodes = [
        helper.make_node("Gemm", ["input", "w1", "b1"], ["h"], name="fc1"),
        helper.make_node("Relu", ["h"], ["hr"], name="relu1"),
        helper.make_node("MatMul", ["hr", "w2"], ["l0"], name="fc2"),
        helper.make_node("Add", ["l0", "b2"], ["logits"], name="fc2_bias"),
        helper.make_node("Softmax", ["logits"], ["probabilities"], name="softmax", axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "demo_mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 16])],
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 8]),
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 8]),
        ],
        [numpy_helper.from_array(a, n) for a, n in ((w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2"))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], producer_name="onnxfast-demo")
    model.ir_version = 9
    model.doc_string = "A 16-32-8 MLP classifier with fixed-seed random weights."
    onnx.checker.check_model(model)
    return model


if __name__ == "__main__":
    out = os.path.join(os.path.dirname(__file__), "..", "onnxfast", "models", "demo_mlp.onnx")
    onnx.save(build(), out)
    print("wrote", os.path.normpath(out))
