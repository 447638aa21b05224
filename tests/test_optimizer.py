"""Graph rewrites: each pass on its own, the fixed-point driver, and levels."""

import numpy as np
import pytest
from onnx import TensorProto, helper
from onnx_helpers import F, make_model, vi

import onnxfast
from onnxfast import ir
from onnxfast.optimizer import check, optimize
from onnxfast.optimizer.fusions import fuse_conv_activation


def conv_model(rng, tail, residual=False, clip_inputs=False, opset=18):
    w = (rng.standard_normal((4, 3, 3, 3)) * 0.3).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], name="conv")]
    inits = [("w", w), ("b", b)]
    cur = "c"
    if residual:
        nodes.append(helper.make_node("Add", ["r", cur], ["a"], name="add"))
        cur = "a"
    if tail:
        attrs = {"alpha": 0.2} if tail == "LeakyRelu" else {}
        ins = [cur]
        if tail == "Clip":
            ins += ["lo", "hi"]
            inits += [("lo", np.array(0, np.float32)), ("hi", np.array(6, np.float32))]
        nodes.append(helper.make_node(tail, ins, ["y"], name="act", **attrs))
    else:
        nodes[-1].output[0] = "y"
    inputs = [vi("x", F, ["n", 3, 8, 8])] + ([vi("r", F, ["n", 4, 8, 8])] if residual else [])
    return make_model(nodes, inputs, [vi("y", F, ["n", 4, 8, 8])], initializers=inits, opset=opset)


def run(model, level, feed):
    o = onnxfast.SessionOptions()
    o.graph_optimization_level = level
    s = onnxfast.InferenceSession(model.SerializeToString(), o)
    return s, s.run(None, feed)[0]


@pytest.mark.parametrize("tail,residual", [(t, r) for t in [None, "Relu", "LeakyRelu", "Clip", "Sigmoid", "Tanh"]
                                           for r in (False, True) if t or r])
def test_conv_activation_fusion_keeps_results(rng, tail, residual):
    m = conv_model(rng, tail, residual)
    feed = {"x": rng.standard_normal((2, 3, 8, 8)).astype(np.float32)}
    if residual:
        feed["r"] = rng.standard_normal((2, 4, 8, 8)).astype(np.float32)
    s0, ref = run(m, onnxfast.GraphOptimizationLevel.ORT_DISABLE_ALL, feed)
    s1, got = run(m, onnxfast.GraphOptimizationLevel.ORT_ENABLE_ALL, feed)
    assert [r["op_type"] for r in s1.kernel_listing()] == ["FusedConv"]
    assert "FusedConv" not in [r["op_type"] for r in s0.kernel_listing()]
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_no_fusion_when_the_conv_output_is_used_twice(rng):
    m = conv_model(rng, "Relu")
    m.graph.output.append(helper.make_tensor_value_info("c", TensorProto.FLOAT, None))
    s, _ = run(m, onnxfast.GraphOptimizationLevel.ORT_ENABLE_ALL,
               {"x": np.ones((1, 3, 8, 8), np.float32)})
    assert [r["op_type"] for r in s.kernel_listing()] == ["Conv", "Relu"]


def test_no_fusion_with_runtime_clip_bounds(rng):
    m = conv_model(rng, "Clip")
    m.graph.initializer.pop()  # 'hi' becomes a graph input
    m.graph.input.append(helper.make_tensor_value_info("hi", TensorProto.FLOAT, []))
    feed = {"x": np.ones((1, 3, 8, 8), np.float32), "hi": np.array(1, np.float32)}
    s, _ = run(m, onnxfast.GraphOptimizationLevel.ORT_ENABLE_ALL, feed)
    assert [r["op_type"] for r in s.kernel_listing()] == ["Conv", "Clip"]


def test_levels(rng):
    m = conv_model(rng, "Relu")
    for level, fused in [(0, False), (1, False), (2, True), (99, True)]:
        model = ir.build_model(m, None, release=False)
        applied = optimize(model, level)
        assert ([r.name for r in applied] == ["ConvActivationFusion"]) == fused
        check(model.graph)


def test_pass_reaches_fixed_point(rng):
    model = ir.build_model(conv_model(rng, "Relu", residual=True), None, release=False)
    assert fuse_conv_activation(model.graph, model) is True
    assert fuse_conv_activation(model.graph, model) is False
    assert [n.op_type for n in model.graph.nodes] == ["FusedConv"]
    assert model.graph.nodes[0].inputs == ["x", "w", "b", "r"]


def matmul_model(rng, bias=True, residual=False, tail=None, a_shape=(2, 5, 6), n=7, opset=20, b_rank=2):
    b = (rng.standard_normal((6, n) if b_rank == 2 else (2, 6, n)) * 0.3).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["a", "w"], ["m"], name="mm")]
    inits = [("w", b)]
    cur = "m"
    if bias:
        inits.append(("bias", rng.standard_normal(n).astype(np.float32)))
        nodes.append(helper.make_node("Add", [cur, "bias"], ["mb"], name="add_bias"))
        cur = "mb"
    out_shape = list(a_shape[:-1]) + [n]
    if residual:
        nodes.append(helper.make_node("Add", ["r", cur], ["mr"], name="add_res"))
        cur = "mr"
    if tail:
        attrs = {"approximate": "tanh"} if tail == "GeluTanh" else {}
        nodes.append(helper.make_node("Gelu" if tail.startswith("Gelu") else tail, [cur], ["y"], name="act", **attrs))
    else:
        nodes[-1].output[0] = "y"
    inputs = [vi("a", F, list(a_shape))] + ([vi("r", F, out_shape)] if residual else [])
    return make_model(nodes, inputs, [vi("y", F, out_shape)], initializers=inits, opset=opset)


@pytest.mark.parametrize("bias,residual,tail", [
    (True, False, None), (False, True, None), (True, True, None), (True, False, "Relu"), (True, False, "Gelu"),
    (True, False, "GeluTanh"), (True, True, "Tanh"), (False, False, "Sigmoid"), (True, False, "LeakyRelu"),
])
def test_matmul_epilogue_fusion_keeps_results(rng, bias, residual, tail):
    m = matmul_model(rng, bias, residual, tail)
    feed = {"a": rng.standard_normal((2, 5, 6)).astype(np.float32)}
    if residual:
        feed["r"] = rng.standard_normal((2, 5, 7)).astype(np.float32)
    s0, ref = run(m, onnxfast.GraphOptimizationLevel.ORT_DISABLE_ALL, feed)
    s1, got = run(m, onnxfast.GraphOptimizationLevel.ORT_ENABLE_ALL, feed)
    listing = s1.kernel_listing()
    assert [r["op_type"] for r in listing] == ["FusedMatMul"]
    assert listing[0]["kernel"].startswith("native:fused")
    assert "FusedMatMul" not in [r["op_type"] for r in s0.kernel_listing()]
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    o = onnxfast.SessionOptions()
    o.add_session_config_entry("onnxfast.disable_kernels", "native:FusedMatMul")
    np.testing.assert_allclose(onnxfast.InferenceSession(m.SerializeToString(), o).run(None, feed)[0], ref,
                               rtol=1e-5, atol=1e-5)


def test_no_matmul_fusion_without_a_2d_weight_or_with_a_bias_of_the_wrong_length(rng):
    s, _ = run(matmul_model(rng, tail="Relu", b_rank=3), onnxfast.GraphOptimizationLevel.ORT_ENABLE_ALL,
               {"a": np.ones((2, 5, 6), np.float32)})
    assert [r["op_type"] for r in s.kernel_listing()] == ["MatMul", "Add", "Relu"]
    m = matmul_model(rng, n=1)  # bias of 1 value broadcast over N=1 is fine; of 7 values over N=1 is not
    m.graph.initializer[1].CopyFrom(onnx_numpy(np.ones(7, np.float32), "bias"))
    m.graph.output[0].CopyFrom(vi("y", F, None))
    s, y = run(m, onnxfast.GraphOptimizationLevel.ORT_ENABLE_ALL, {"a": np.ones((2, 5, 6), np.float32)})
    assert [r["op_type"] for r in s.kernel_listing()] == ["MatMul", "Add"]
    assert y.shape == (2, 5, 7)


def onnx_numpy(a, name):
    from onnx import numpy_helper

    return numpy_helper.from_array(a, name)
