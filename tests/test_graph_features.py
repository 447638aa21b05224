"""Model-local functions, subgraphs with outer-scope values (If, Loop, Scan), sequence and
optional values at the API, Constant folding."""

import numpy as np
import onnx
import pytest
from onnx_helpers import F, make_model, session, vi
from onnx import TensorProto, helper

I64 = TensorProto.INT64
B = TensorProto.BOOL


def _leaky_with_ref():
    n = helper.make_node("LeakyRelu", ["s"], ["y"])
    n.attribute.append(helper.make_attribute_ref("alpha", onnx.AttributeProto.FLOAT))
    return n


def test_model_local_function_is_inlined():
    # f(a, b) = Relu(a * b + alpha_const)   with an attribute reference
    fn = helper.make_function(
        "custom", "MulAddRelu", ["a", "b"], ["y"],
        [
            helper.make_node("Mul", ["a", "b"], ["p"]),
            helper.make_node("Constant", [], ["c"], value_float=0.0),
            helper.make_node("CastLike", ["c", "p"], ["c2"]),
            helper.make_node("Add", ["p", "c2"], ["s"]),
            _leaky_with_ref(),
        ],
        opset_imports=[helper.make_opsetid("", 18)],
        attributes=["alpha"],
    )
    m = make_model(
        [helper.make_node("MulAddRelu", ["x", "x"], ["t"], domain="custom", alpha=0.5),
         helper.make_node("MulAddRelu", ["t", "k"], ["z"], domain="custom", alpha=0.1)],
        [vi("x", F, [3]), vi("k", F, [3])],
        [vi("z", F, [3])],
        functions=[fn],
        extra_opsets=[("custom", 1)],
    )
    s = session(m)
    x = np.array([1.0, -2.0, 3.0], np.float32)
    k = np.array([-1.0, 1.0, 2.0], np.float32)
    t = x * x
    p = t * k
    np.testing.assert_allclose(s.run(None, {"x": x, "k": k})[0], np.where(p > 0, p, 0.1 * p), rtol=1e-6)


def test_if_with_outer_scope_values():
    then_g = helper.make_graph([helper.make_node("Add", ["x", "w"], ["o"])], "then", [], [vi("o", F, [2])])
    else_g = helper.make_graph([helper.make_node("Sub", ["x", "w"], ["o2"])], "else", [], [vi("o2", F, [2])])
    m = make_model(
        [helper.make_node("If", ["c"], ["y"], then_branch=then_g, else_branch=else_g)],
        [vi("c", B, []), vi("x", F, [2])],
        [vi("y", F, [2])],
        initializers=[("w", np.array([10, 20], np.float32))],
    )
    s = session(m)
    x = np.array([1, 2], np.float32)
    np.testing.assert_array_equal(s.run(None, {"c": np.array(True), "x": x})[0], [11, 22])
    np.testing.assert_array_equal(s.run(None, {"c": np.array(False), "x": x})[0], [-9, -18])
    assert any(r["kernel"] == "control-flow" for r in s.kernel_listing())
    assert any(r["subgraph"] for r in s.kernel_listing())


def test_loop_with_scan_output_and_outer_value():
    # for i in range(M): acc = acc + step ; collect acc   (step comes from the outer scope)
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("Add", ["acc_in", "step"], ["acc_out"]),
            helper.make_node("Identity", ["acc_out"], ["scan_out"]),
        ],
        "body",
        [vi("i", I64, []), vi("cond_in", B, []), vi("acc_in", F, [2])],
        [vi("cond_out", B, []), vi("acc_out", F, [2]), vi("scan_out", F, [2])],
    )
    m = make_model(
        [helper.make_node("Loop", ["M", "", "acc0"], ["acc", "hist"], body=body)],
        [vi("M", I64, []), vi("acc0", F, [2]), vi("step", F, [2])],
        [vi("acc", F, [2]), vi("hist", F, [None, 2])],
    )
    s = session(m)
    acc, hist = s.run(None, {"M": np.array(3, np.int64), "acc0": np.zeros(2, np.float32),
                             "step": np.array([1, 2], np.float32)})
    np.testing.assert_array_equal(acc, [3, 6])
    np.testing.assert_array_equal(hist, [[1, 2], [2, 4], [3, 6]])


def test_scan_cumulative_sum():
    body = helper.make_graph(
        [helper.make_node("Add", ["s_in", "x_t"], ["s_out"]), helper.make_node("Identity", ["s_out"], ["y_t"])],
        "body",
        [vi("s_in", F, [2]), vi("x_t", F, [2])],
        [vi("s_out", F, [2]), vi("y_t", F, [2])],
    )
    m = make_model(
        [helper.make_node("Scan", ["s0", "xs"], ["s", "ys"], body=body, num_scan_inputs=1)],
        [vi("s0", F, [2]), vi("xs", F, [None, 2])],
        [vi("s", F, [2]), vi("ys", F, [None, 2])],
    )
    xs = np.arange(8, dtype=np.float32).reshape(4, 2)
    s, ys = session(m).run(None, {"s0": np.zeros(2, np.float32), "xs": xs})
    np.testing.assert_array_equal(ys, np.cumsum(xs, axis=0))
    np.testing.assert_array_equal(s, xs.sum(axis=0))


def test_sequence_output_and_input():
    m = make_model(
        [helper.make_node("SplitToSequence", ["x"], ["seq"], axis=0),
         helper.make_node("SequenceLength", ["seq"], ["n"])],
        [vi("x", F, [None, 2])],
        [helper.make_tensor_sequence_value_info("seq", F, None), vi("n", I64, [])],
    )
    s = session(m)
    assert s.get_outputs()[0].type == "seq(tensor(float))"
    x = np.arange(6, dtype=np.float32).reshape(3, 2)
    seq, n = s.run(None, {"x": x})
    assert isinstance(seq, list) and len(seq) == 3 and int(n) == 3
    np.testing.assert_array_equal(seq[1], x[1:2])

    m2 = make_model(
        [helper.make_node("ConcatFromSequence", ["seq"], ["y"], axis=0)],
        [helper.make_tensor_sequence_value_info("seq", F, None)],
        [vi("y", F, None)],
    )
    s2 = session(m2)
    assert s2.get_inputs()[0].type == "seq(tensor(float))"
    y = s2.run(None, {"seq": [np.ones((1, 2), np.float32), np.zeros((2, 2), np.float32)]})[0]
    assert y.shape == (3, 2)


def test_optional_input():
    opt = helper.make_value_info("o", helper.make_optional_type_proto(helper.make_tensor_type_proto(F, [2])))
    m = make_model(
        [helper.make_node("OptionalHasElement", ["o"], ["has"])],
        [opt],
        [vi("has", B, [])],
    )
    s = session(m)
    assert s.get_inputs()[0].type == "optional(tensor(float))"
    assert bool(s.run(None, {"o": None})[0]) is False
    assert bool(s.run(None, {"o": np.ones(2, np.float32)})[0]) is True


def test_constant_nodes_are_folded_and_prepacked(rng):
    w = rng.standard_normal((4, 3)).astype(np.float32)
    m = make_model(
        [helper.make_node("Constant", [], ["w"], value=onnx.numpy_helper.from_array(w)),
         helper.make_node("MatMul", ["x", "w"], ["y"])],
        [vi("x", F, [None, 4])],
        [vi("y", F, [None, 3])],
    )
    s = session(m)
    kinds = {r["op_type"]: r["kernel"] for r in s.kernel_listing()}
    assert kinds == {"Constant": "constant", "MatMul": "native:prepacked"}
    x = rng.standard_normal((2, 4)).astype(np.float32)
    np.testing.assert_allclose(s.run(None, {"x": x})[0], x @ w, rtol=1e-5)


@pytest.mark.parametrize("batch,seq", [(1, 1), (2, 5), (3, 9)])
def test_one_session_many_shapes(rng, batch, seq):
    m = make_model(
        [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Softmax", ["h"], ["y"], axis=-1)],
        [vi("x", F, ["batch", "seq", 8])],
        [vi("y", F, ["batch", "seq", 4])],
        initializers=[("w", rng.standard_normal((8, 4)).astype(np.float32))],
    )
    s = session(m)
    x = rng.standard_normal((batch, seq, 8)).astype(np.float32)
    assert s.run(None, {"x": x})[0].shape == (batch, seq, 4)
