"""The basic eliminations and the Gelu fusions, each pass on its own: the pattern is rewritten (node
counts before / after) with unchanged outputs, and near misses are left alone. Also: passes switched
off by name (disabled_optimizers, optimization.disable_specified_optimizers), and the com.microsoft
Gelu kernels against their references."""

import math
import warnings

import numpy as np
import pytest
from onnx import TensorProto, helper
from onnx_helpers import F, make_model, vi

import onnxfast
from onnxfast import ir
from onnxfast.errors import OnnxfastWarning
from onnxfast.optimizer import PASS_NAMES, optimize

SQRT2 = math.sqrt(2.0)


def ops_after(model, level=99, disabled=()):
    m = ir.build_model(model, None, release=False)
    optimize(m, level, disabled)
    m.graph.check()
    return [(n.domain, n.op_type) if n.domain else n.op_type for n in m.graph.nodes]


def outputs(model, feed, level=99, **kw):
    o = onnxfast.SessionOptions()
    o.graph_optimization_level = level
    return onnxfast.InferenceSession(model.SerializeToString(), o, **kw).run(None, feed)


def same_outputs(model, feed, rtol=1e-6, atol=1e-6):
    ref = outputs(model, feed, level=0)
    got = outputs(model, feed)
    for a, b in zip(got, ref):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


# ---- eliminations ---------------------------------------------------------------------------------

def test_identity_in_the_middle_goes(rng):
    m = make_model([helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Identity", ["a"], ["b"]),
                    helper.make_node("Neg", ["b"], ["y"])], [vi("x", F, [3])], [vi("y", F, [3])])
    assert ops_after(m, level=1) == ["Relu", "Neg"]
    same_outputs(m, {"x": rng.standard_normal(3).astype(np.float32)})


def test_identity_into_a_graph_output_renames_the_producer(rng):
    m = make_model([helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Identity", ["a"], ["y"])],
                   [vi("x", F, [3])], [vi("y", F, [3])])
    assert ops_after(m) == ["Relu"]
    x = rng.standard_normal(3).astype(np.float32)
    np.testing.assert_array_equal(outputs(m, {"x": x})[0], np.maximum(x, 0))


def test_identity_near_misses_stay():
    # input -> output directly: nothing to rename
    m = make_model([helper.make_node("Identity", ["x"], ["y"])], [vi("x", F, [3])], [vi("y", F, [3])])
    assert ops_after(m) == ["Identity"]
    # the producer's output is a graph output too
    m = make_model([helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Identity", ["a"], ["y"])],
                   [vi("x", F, [3])], [vi("y", F, [3]), vi("a", F, [3])])
    assert ops_after(m) == ["Relu", "Identity"]


def test_dropout_at_inference_goes_unless_its_mask_is_read(rng):
    body = [helper.make_node("Dropout", ["x", "r"], ["d"]), helper.make_node("Neg", ["d"], ["y"])]
    inits = [("r", np.array(0.3, np.float32))]
    m = make_model(body, [vi("x", F, [4])], [vi("y", F, [4])], initializers=inits)
    assert ops_after(m) == ["Neg"]
    same_outputs(m, {"x": rng.standard_normal(4).astype(np.float32)})
    with_mask = make_model([helper.make_node("Dropout", ["x", "r"], ["d", "mask"]), helper.make_node("Neg", ["d"], ["y"])],
                           [vi("x", F, [4])], [vi("y", F, [4]), vi("mask", TensorProto.BOOL, [4])], initializers=inits)
    assert "Dropout" in ops_after(with_mask)
    # training mode given at run time: may be on
    fed = make_model([helper.make_node("Dropout", ["x", "r", "t"], ["d"]), helper.make_node("Neg", ["d"], ["y"])],
                     [vi("x", F, [4]), vi("t", TensorProto.BOOL, [])], [vi("y", F, [4])], initializers=inits)
    assert "Dropout" in ops_after(fed)


def test_cast_to_the_same_type_goes(rng):
    same = make_model([helper.make_node("Cast", ["x"], ["c"], to=F), helper.make_node("Neg", ["c"], ["y"])],
                      [vi("x", F, [3])], [vi("y", F, [3])])
    assert ops_after(same) == ["Neg"]
    same_outputs(same, {"x": rng.standard_normal(3).astype(np.float32)})
    other = make_model([helper.make_node("Cast", ["x"], ["c"], to=TensorProto.DOUBLE),
                        helper.make_node("Neg", ["c"], ["y"])], [vi("x", F, [3])], [vi("y", TensorProto.DOUBLE, [3])])
    assert ops_after(other) == ["Cast", "Neg"]


def test_common_subexpressions_merge(rng):
    m = make_model([helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Relu", ["x"], ["b"]),
                    helper.make_node("LeakyRelu", ["x"], ["c"], alpha=0.1),
                    helper.make_node("LeakyRelu", ["x"], ["d"], alpha=0.2),
                    helper.make_node("Add", ["a", "b"], ["s"]), helper.make_node("Add", ["c", "d"], ["t"]),
                    helper.make_node("Mul", ["s", "t"], ["y"])], [vi("x", F, [5])], [vi("y", F, [5])])
    after = ops_after(m, level=1)
    assert after.count("Relu") == 1 and after.count("LeakyRelu") == 2  # other attributes: not the same
    same_outputs(m, {"x": rng.standard_normal(5).astype(np.float32)})


def test_random_nodes_never_merge():
    nodes = [helper.make_node("RandomNormalLike", ["x"], ["a"]), helper.make_node("RandomNormalLike", ["x"], ["b"]),
             helper.make_node("Add", ["a", "b"], ["y"])]
    m = make_model(nodes, [vi("x", F, [5])], [vi("y", F, [5])])
    assert ops_after(m).count("RandomNormalLike") == 2


def test_dead_nodes_go(rng):
    m = make_model([helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Exp", ["a"], ["unused"]),
                    helper.make_node("Neg", ["x"], ["y"])], [vi("x", F, [3])], [vi("y", F, [3])])
    assert ops_after(m, level=1) == ["Neg"]
    assert ops_after(m, level=0) == ["Relu", "Exp", "Neg"]


# ---- Gelu --------------------------------------------------------------------------------------

def _c(name, value, shape=()):
    return (name, np.full(shape, value, np.float32))


def gelu_model(order="dynamo", div=True, half=0.5, x_shape=(2, 7), const_shape=(), extra_output=None):
    """MatMul-free Gelu in one of the exporters' orders, on input x."""
    inits = [_c("one", 1.0, const_shape), _c("half", half, const_shape)]
    if div:
        inits.append(_c("s2", SQRT2, const_shape))
        nodes = [helper.make_node("Div", ["x", "s2"], ["d"])]
    else:
        inits.append(_c("rs2", 1 / SQRT2, const_shape))
        nodes = [helper.make_node("Mul", ["x", "rs2"], ["d"])]
    nodes += [helper.make_node("Erf", ["d"], ["e"]), helper.make_node("Add", ["e", "one"], ["a"])]
    if order == "dynamo":  # x * (0.5 * a)
        nodes += [helper.make_node("Mul", ["half", "a"], ["m"]), helper.make_node("Mul", ["x", "m"], ["y"])]
    elif order == "torchscript":  # (x * a) * 0.5
        nodes += [helper.make_node("Mul", ["x", "a"], ["m"]), helper.make_node("Mul", ["m", "half"], ["y"])]
    elif order == "transformers":  # (x * 0.5) * a
        nodes += [helper.make_node("Mul", ["x", "half"], ["m"]), helper.make_node("Mul", ["m", "a"], ["y"])]
    elif order == "div2":  # (x * a) / 2
        inits.append(_c("two", 2.0))
        nodes += [helper.make_node("Mul", ["a", "x"], ["m"]), helper.make_node("Div", ["m", "two"], ["y"])]
    outs = [vi("y", F, list(x_shape))] + ([vi(extra_output, F, None)] if extra_output else [])
    return make_model(nodes, [vi("x", F, list(x_shape))], outs, initializers=inits)


@pytest.mark.parametrize("order", ["dynamo", "torchscript", "transformers", "div2"])
@pytest.mark.parametrize("div", [True, False])
def test_gelu_fusion(rng, order, div):
    m = gelu_model(order, div)
    assert ops_after(m, disabled=["MatMulEpilogueFusion"]) == [("com.microsoft", "Gelu")]
    assert len(ops_after(m, level=1)) == 5
    x = (rng.standard_normal((2, 7)) * 3).astype(np.float32)
    same_outputs(m, {"x": x}, rtol=2e-6, atol=1e-6)


@pytest.mark.parametrize("case", ["second_reader", "half_is_0.6", "overridable_constant", "broadcast_grows"])
def test_gelu_near_misses_stay(case):
    if case == "second_reader":
        m = gelu_model(extra_output="e")  # erf's output is also a graph output
    elif case == "half_is_0.6":
        m = gelu_model(half=0.6)
    elif case == "overridable_constant":
        m = gelu_model()
        m.graph.input.append(helper.make_tensor_value_info("one", F, []))
    else:
        m = gelu_model(const_shape=(1, 1, 1))  # rank 3 constant against a rank 2 x: the output grows
    assert ("com.microsoft", "Gelu") not in ops_after(m)


def fast_gelu_model(cube="pow", coeff=0.044715):
    inits = [_c("half", 0.5), _c("one", 1.0), _c("k", coeff), _c("s", math.sqrt(2 / math.pi))]
    if cube == "pow":
        inits.append(_c("three", 3.0))
        nodes = [helper.make_node("Pow", ["x", "three"], ["p"])]
    else:
        nodes = [helper.make_node("Mul", ["x", "x"], ["sq"]), helper.make_node("Mul", ["sq", "x"], ["p"])]
    nodes += [helper.make_node("Mul", ["x", "half"], ["h"]), helper.make_node("Mul", ["p", "k"], ["q"]),
              helper.make_node("Add", ["x", "q"], ["r"]), helper.make_node("Mul", ["r", "s"], ["t"]),
              helper.make_node("Tanh", ["t"], ["th"]), helper.make_node("Add", ["th", "one"], ["a"]),
              helper.make_node("Mul", ["h", "a"], ["y"])]
    return make_model(nodes, [vi("x", F, [3, 9])], [vi("y", F, [3, 9])], initializers=inits)


@pytest.mark.parametrize("cube", ["pow", "mul"])
def test_fast_gelu_fusion(rng, cube):
    m = fast_gelu_model(cube)
    assert ops_after(m) == [("com.microsoft", "FastGelu")]
    same_outputs(m, {"x": (rng.standard_normal((3, 9)) * 3).astype(np.float32)}, rtol=2e-6, atol=1e-6)
    assert ("com.microsoft", "FastGelu") not in ops_after(fast_gelu_model(cube, coeff=0.05))


def test_gelu_then_matmul_epilogue_is_one_step(rng):
    w = rng.standard_normal((6, 7)).astype(np.float32)
    b = rng.standard_normal(7).astype(np.float32)
    g = gelu_model()
    nodes = [helper.make_node("MatMul", ["in", "w"], ["mm"]), helper.make_node("Add", ["mm", "b"], ["x"])]
    nodes += list(g.graph.node)
    inits = [("w", w), ("b", b)] + [(t.name, np.frombuffer(t.raw_data, np.float32).reshape(t.dims))
                                    for t in g.graph.initializer]
    m = make_model(nodes, [vi("in", F, [2, 6])], [vi("y", F, [2, 7])], initializers=inits)
    feed = {"in": rng.standard_normal((2, 6)).astype(np.float32)}
    s = onnxfast.InferenceSession(m.SerializeToString())
    assert [r["op_type"] for r in s.kernel_listing()] == ["FusedMatMul"]
    np.testing.assert_allclose(s.run(None, feed)[0], outputs(m, feed, level=0)[0], rtol=1e-5, atol=1e-5)


# ---- switching passes off by name -------------------------------------------------------------

def test_disabled_optimizers_keyword_and_config_entry():
    m = gelu_model().SerializeToString()
    names = lambda s: [r["op_type"] for r in s.kernel_listing()]  # noqa: E731
    assert names(onnxfast.InferenceSession(m)) == ["Gelu"]
    off = ["GeluFusion", "ElementwiseFusion"]
    assert "Erf" in names(onnxfast.InferenceSession(m, disabled_optimizers=off))
    assert "Erf" in names(onnxfast.InferenceSession(m, disabled_optimizers={*off, "ConstantFolding"}))
    assert names(onnxfast.InferenceSession(m, disabled_optimizers=["GeluFusion"])) == ["FusedElementwise"]
    o = onnxfast.SessionOptions()
    o.add_session_config_entry("optimization.disable_specified_optimizers", "ConstantFolding;GeluFusion;ElementwiseFusion")
    assert "Erf" in names(onnxfast.InferenceSession(m, o))


def test_unknown_optimizer_names_warn_and_are_ignored():
    with pytest.warns(OnnxfastWarning, match="NoSuchPass"):
        s = onnxfast.InferenceSession(gelu_model().SerializeToString(), disabled_optimizers=["NoSuchPass"])
    assert [r["op_type"] for r in s.kernel_listing()] == ["Gelu"]
    assert "GeluFusion" in PASS_NAMES and len(set(PASS_NAMES)) == len(PASS_NAMES)


def test_optimized_gelu_model_loads_in_onnxruntime(tmp_path, rng):
    ort = pytest.importorskip("onnxruntime")
    o = onnxfast.SessionOptions()
    o.optimized_model_filepath = str(tmp_path / "opt.onnx")
    onnxfast.InferenceSession(gelu_model().SerializeToString(), o)
    x = (rng.standard_normal((2, 7)) * 3).astype(np.float32)
    got = ort.InferenceSession(o.optimized_model_filepath, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, outputs(gelu_model(), {"x": x}, level=0)[0], rtol=1e-5, atol=1e-6)


# ---- the com.microsoft Gelu kernels --------------------------------------------------------------

def ms_model(op, shape, bias):
    ins = ["x"] + (["b"] if bias else [])
    inputs = [vi("x", F, list(shape))] + ([vi("b", F, [shape[-1]])] if bias else [])
    return make_model([helper.make_node(op, ins, ["y"], domain="com.microsoft")], inputs, [vi("y", F, list(shape))],
                      extra_opsets=[("com.microsoft", 1)])


def _gelu_ref(x, tanh):
    x = x.astype(np.float64)
    if tanh:
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    from math import erf
    return 0.5 * x * (1 + np.vectorize(erf, otypes=[np.float64])(x / SQRT2))


@pytest.mark.parametrize("op,bias", [("Gelu", False), ("FastGelu", False), ("FastGelu", True), ("BiasGelu", True)])
@pytest.mark.parametrize("n", [0, 1, 7, 8, 16, 17, 33, 3072])
def test_ms_gelu_kernels(rng, op, bias, n):
    shape = (3, n)
    m = ms_model(op, shape, bias).SerializeToString()
    x = (rng.standard_normal(shape) * 4).astype(np.float32)
    feed = {"x": x}
    if bias:
        feed["b"] = rng.standard_normal(n).astype(np.float32)
    want = _gelu_ref(x + feed.get("b", 0), op == "FastGelu")
    native = onnxfast.InferenceSession(m)
    assert native.kernel_listing()[0]["kernel"].startswith("native")
    o = onnxfast.SessionOptions()
    o.add_session_config_entry("onnxfast.disable_kernels", "native")
    numpy_ = onnxfast.InferenceSession(m, o)
    for s in (native, numpy_):
        np.testing.assert_allclose(s.run(None, feed)[0], want, rtol=2e-6, atol=1e-6)  # 0.5 x (1 + tanh) cancels


def test_ms_gelu_bias_shape_checked(rng):
    m = ms_model("BiasGelu", (2, 5), True)
    m.graph.input[1].type.tensor_type.shape.dim[0].dim_value = 4
    s = onnxfast.InferenceSession(m.SerializeToString())
    with pytest.raises(onnxfast.errors.InvalidArgument, match="bias must be 1-D"):
        s.run(None, {"x": np.zeros((2, 5), np.float32), "b": np.zeros(4, np.float32)})


def test_ms_gelu_matches_onnxruntime(rng):
    ort = pytest.importorskip("onnxruntime")
    x = (rng.standard_normal((4, 77)) * 3).astype(np.float32)
    b = rng.standard_normal(77).astype(np.float32)
    for op, bias in [("Gelu", False), ("FastGelu", True), ("BiasGelu", True)]:
        m = ms_model(op, (4, 77), bias).SerializeToString()
        feed = {"x": x, "b": b} if bias else {"x": x}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            want = ort.InferenceSession(m, providers=["CPUExecutionProvider"]).run(None, feed)[0]
        np.testing.assert_allclose(onnxfast.InferenceSession(m).run(None, feed)[0], want, rtol=1e-5, atol=1e-6)


# ---- Gemm: bias in the GEMM's store, and Gemm + activation into FusedMatMul ---------------------

@pytest.mark.parametrize("c_shape", [None, (), (1,), (9,), (1, 9), (5, 1), (5, 9)])
@pytest.mark.parametrize("beta", [1.0, 0.5])
@pytest.mark.parametrize("k", [0, 1, 6])
def test_gemm_bias_forms(rng, c_shape, beta, k):
    a = rng.standard_normal((5, k)).astype(np.float32)
    b = rng.standard_normal((9, k)).astype(np.float32)  # transB
    ins, inits = ["a", "b"], [("b", b)]
    want = a @ b.T * 1.5
    if c_shape is not None:
        c = rng.standard_normal(c_shape).astype(np.float32)
        ins.append("c")
        inits.append(("c", c))
        want = want + beta * c
    m = make_model([helper.make_node("Gemm", ins, ["y"], alpha=1.5, beta=beta, transB=1)], [vi("a", F, [5, k])],
                   [vi("y", F, [5, 9])], initializers=inits)
    for level in (0, 99):
        np.testing.assert_allclose(outputs(m, {"a": a}, level=level)[0], want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("trans_b", [0, 1])
@pytest.mark.parametrize("tail", ["Relu", "Gelu"])
def test_gemm_activation_becomes_fused_matmul(rng, trans_b, tail):
    w = rng.standard_normal((7, 6) if trans_b else (6, 7)).astype(np.float32)
    bias = rng.standard_normal(7).astype(np.float32)
    nodes = [helper.make_node("Gemm", ["in", "w", "bias"], ["x"], transB=trans_b)]
    inits = [("w", w), ("bias", bias)]
    if tail == "Relu":
        nodes.append(helper.make_node("Relu", ["x"], ["y"]))
    else:
        g = gelu_model()
        nodes += list(g.graph.node)
        inits += [(t.name, np.frombuffer(t.raw_data, np.float32).reshape(t.dims)) for t in g.graph.initializer]
    m = make_model(nodes, [vi("in", F, ["n", 6])], [vi("y", F, ["n", 7])], initializers=inits)
    s = onnxfast.InferenceSession(m.SerializeToString())
    assert [r["op_type"] for r in s.kernel_listing()] == ["FusedMatMul"]
    feed = {"in": rng.standard_normal((3, 6)).astype(np.float32)}
    np.testing.assert_allclose(s.run(None, feed)[0], outputs(m, feed, level=0)[0], rtol=1e-5, atol=1e-5)


def test_gemm_near_misses_stay(rng):
    w = rng.standard_normal((6, 7)).astype(np.float32)
    for attrs in ({"alpha": 2.0}, {"transA": 1}, {"beta": 0.5}):
        a_shape = [6, "n"] if attrs.get("transA") else ["n", 6]
        m = make_model([helper.make_node("Gemm", ["in", "w", "bias"], ["x"], **attrs),
                        helper.make_node("Relu", ["x"], ["y"])], [vi("in", F, a_shape)], [vi("y", F, ["n", 7])],
                       initializers=[("w", w), ("bias", np.ones(7, np.float32))])
        assert ops_after(m) == ["Gemm", "Relu"], attrs
    fed_w = make_model([helper.make_node("Gemm", ["in", "w"], ["x"]), helper.make_node("Relu", ["x"], ["y"])],
                       [vi("in", F, ["n", 6]), vi("w", F, [6, 7])], [vi("y", F, ["n", 7])])
    assert ops_after(fed_w) == ["Gemm", "Relu"]


def test_onnx_reference_evaluator_still_imports(tmp_path):
    """onnxfast registers no schema whose name exists in another domain (onnx.reference refuses that)."""
    import subprocess
    import sys

    code = "import onnxfast, onnx.reference; onnxfast.InferenceSession; print('ok')"
    # from another folder: the source tree must not shadow an installed package
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-2000:]


@pytest.mark.parametrize("second_reader", [False, True])
def test_activation_after_a_reshape_of_the_product_fuses(rng, second_reader):
    """GPT-2's MLP: Gemm -> Reshape(computed shape) -> activation; the Reshape moves after the fused node."""
    w = rng.standard_normal((6, 8)).astype(np.float32)
    nodes = [helper.make_node("Gemm", ["in", "w", "bias"], ["g"]), helper.make_node("Shape", ["in"], ["sh"]),
             helper.make_node("Gather", ["sh", "zero"], ["n0"]), helper.make_node("Unsqueeze", ["n0", "ax"], ["n1"]),
             helper.make_node("Concat", ["n1", "tail"], ["shape"], axis=0),
             helper.make_node("Reshape", ["g", "shape"], ["r"]), helper.make_node("Relu", ["r"], ["y"])]
    inits = [("w", w), ("bias", rng.standard_normal(8).astype(np.float32)), ("zero", np.array(0, np.int64)),
             ("ax", np.array([0], np.int64)), ("tail", np.array([2, 4], np.int64))]
    outs = [vi("y", F, ["n", 2, 4])] + ([vi("r", F, ["n", 2, 4])] if second_reader else [])
    m = make_model(nodes, [vi("in", F, ["n", 6])], outs, initializers=inits)
    after = ops_after(m)
    assert (("onnxfast", "FusedMatMul") in after) != second_reader  # r read twice: stays unfused
    feed = {"in": rng.standard_normal((3, 6)).astype(np.float32)}
    got, ref = outputs(m, feed), outputs(m, feed, level=0)
    for a, b in zip(got, ref):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


# ---- elementwise fusion ------------------------------------------------------------------------

def ew_chain_model(shape=(3, 5), other_shape=None, second_reader=False):
    """y = tanh(x * sigmoid(x * 1.5 + z)) - z / 2 (7 elementwise nodes)."""
    other_shape = other_shape or shape
    nodes = [helper.make_node("Mul", ["x", "k"], ["a"]), helper.make_node("Add", ["a", "z"], ["b"]),
             helper.make_node("Sigmoid", ["b"], ["c"]), helper.make_node("Mul", ["x", "c"], ["d"]),
             helper.make_node("Tanh", ["d"], ["e"]), helper.make_node("Div", ["z", "two"], ["f"]),
             helper.make_node("Sub", ["e", "f"], ["y"])]
    inits = [("k", np.array(1.5, np.float32)), ("two", np.array(2.0, np.float32))]
    outs = [vi("y", F, list(shape))] + ([vi("c", F, list(shape))] if second_reader else [])
    return make_model(nodes, [vi("x", F, list(shape)), vi("z", F, list(other_shape))], outs, initializers=inits)


@pytest.mark.parametrize("n", [0, 1, 7, 511, 512, 513, 4099])
def test_elementwise_chain_is_one_step(rng, n):
    m = ew_chain_model((2, n))
    s = onnxfast.InferenceSession(m.SerializeToString())
    assert [(r["op_type"], r["kernel"]) for r in s.kernel_listing()] == [("FusedElementwise", "native")]
    feed = {"x": rng.standard_normal((2, n)).astype(np.float32), "z": rng.standard_normal((2, n)).astype(np.float32)}
    ref = outputs(m, feed, level=0)[0]
    np.testing.assert_allclose(s.run(None, feed)[0], ref, rtol=1e-6, atol=1e-6)
    o = onnxfast.SessionOptions()
    o.add_session_config_entry("onnxfast.disable_kernels", "native")
    np.testing.assert_allclose(onnxfast.InferenceSession(m.SerializeToString(), o).run(None, feed)[0], ref,
                               rtol=1e-6, atol=1e-6)


def test_elementwise_group_keeps_symbolic_shapes(rng):
    m = ew_chain_model(("n", 6))
    assert ops_after(m) == [("onnxfast", "FusedElementwise")]
    feed = {"x": rng.standard_normal((4, 6)).astype(np.float32), "z": rng.standard_normal((4, 6)).astype(np.float32)}
    same_outputs(m, feed)


def test_elementwise_near_misses(rng):
    # z broadcasts ([1, 5] against [3, 5]): its readers stay out; the rest still fuses
    after = ops_after(ew_chain_model((3, 5), other_shape=(1, 5)))
    assert "Add" in after and "Div" in after and ("onnxfast", "FusedElementwise") in after
    same_outputs(ew_chain_model((3, 5), other_shape=(1, 5)),
                 {"x": rng.standard_normal((3, 5)).astype(np.float32), "z": rng.standard_normal((1, 5)).astype(np.float32)})
    # an intermediate that is also a graph output ends a group there
    after = ops_after(ew_chain_model(second_reader=True))
    assert after.count(("onnxfast", "FusedElementwise")) == 2
    same_outputs(ew_chain_model(second_reader=True),
                 {"x": rng.standard_normal((3, 5)).astype(np.float32), "z": rng.standard_normal((3, 5)).astype(np.float32)})
    # integers: not fused
    m = make_model([helper.make_node("Add", ["x", "x"], ["a"]), helper.make_node("Mul", ["a", "x"], ["y"])],
                   [vi("x", TensorProto.INT64, [4])], [vi("y", TensorProto.INT64, [4])])
    assert ops_after(m) == ["Add", "Mul"]
    # unknown shapes: not fused
    m = make_model([helper.make_node("Exp", ["x"], ["a"]), helper.make_node("Neg", ["a"], ["y"])],
                   [vi("x", F, None)], [vi("y", F, None)])
    assert ops_after(m) == ["Exp", "Neg"]


def test_swish_is_one_step(rng):
    m = make_model([helper.make_node("Sigmoid", ["x"], ["s"]), helper.make_node("Mul", ["x", "s"], ["y"])],
                   [vi("x", F, [2, 9])], [vi("y", F, [2, 9])])
    assert ops_after(m) == [("onnxfast", "FusedElementwise")]
    same_outputs(m, {"x": rng.standard_normal((2, 9)).astype(np.float32)})


def test_fused_elementwise_refuses_inputs_of_other_shapes():
    m = ew_chain_model(("n", 6))
    s = onnxfast.InferenceSession(m.SerializeToString())
    with pytest.raises(onnxfast.errors.InvalidArgument, match="differ"):
        s.run(None, {"x": np.zeros((2, 6), np.float32), "z": np.zeros((3, 6), np.float32)})


# ---- attention fusion ------------------------------------------------------------------------------

def attention_model(style="dynamo", s=5, t=7, d=4, dv=3, mask_shape=(2, 1, 1, 7), axis=-1, extra_output=None,
                    opset=18, zero_shape=()):
    """Scaled dot-product attention as the exporters write it. Q (2, 3, S, D), Kt (2, 3, D, T), V (2, 3, T, Dv)."""
    inits = []
    if style == "dynamo":  # both operands scaled by d^-1/4, then IsNaN / Where after the Softmax
        c = float(d) ** -0.25
        inits.append(("c", np.array(c, np.float32)))
        nodes = [helper.make_node("Mul", ["q", "c"], ["qs"]), helper.make_node("Mul", ["kt", "c"], ["ks"]),
                 helper.make_node("MatMul", ["qs", "ks"], ["sc"])]
    else:  # TorchScript: the product divided by sqrt(d)
        inits.append(("c", np.array(math.sqrt(d), np.float32)))
        nodes = [helper.make_node("MatMul", ["q", "kt"], ["mm"]), helper.make_node("Div", ["mm", "c"], ["sc"])]
    cur = "sc"
    inputs = [vi("q", F, [2, 3, s, d]), vi("kt", F, [2, 3, d, t]), vi("v", F, [2, 3, t, dv])]
    if mask_shape is not None:
        nodes.append(helper.make_node("Add", ["mask", cur], ["x"]))
        inputs.append(vi("mask", F, list(mask_shape)))
        cur = "x"
    nodes.append(helper.make_node("Softmax", [cur], ["p"], axis=axis))
    cur = "p"
    if style == "dynamo":
        inits.append(("zero", np.zeros(zero_shape, np.float32)))
        nodes += [helper.make_node("IsNaN", ["p"], ["isnan"]), helper.make_node("Where", ["isnan", "zero", "p"], ["pz"])]
        cur = "pz"
    nodes.append(helper.make_node("MatMul", [cur, "v"], ["y"]))
    outs = [vi("y", F, None)] + ([vi(extra_output, F, None)] if extra_output else [])
    return make_model(nodes, inputs, outs, initializers=inits, opset=opset)


def attention_feed(rng, s=5, t=7, d=4, dv=3, mask_shape=(2, 1, 1, 7), masked_row=False):
    feed = {"q": rng.standard_normal((2, 3, s, d)).astype(np.float32),
            "kt": rng.standard_normal((2, 3, d, t)).astype(np.float32),
            "v": rng.standard_normal((2, 3, t, dv)).astype(np.float32)}
    if mask_shape is not None:
        m = np.where(rng.random(mask_shape) < 0.3, -1e4, 0).astype(np.float32)
        if masked_row:
            m[0] = -np.inf  # batch 0: every key masked, softmax NaN -> 0 through IsNaN / Where
        feed["mask"] = m
    return feed


@pytest.mark.parametrize("style", ["dynamo", "torchscript"])
@pytest.mark.parametrize("s,t,mask_shape", [(5, 7, (2, 1, 1, 7)), (5, 7, (2, 1, 5, 7)), (1, 1, (1, 1)), (33, 300, (300,)),
                                            (300, 9, None), (4, 0, None)])
def test_attention_fusion(rng, style, s, t, mask_shape):
    m = attention_model(style, s=s, t=t, mask_shape=mask_shape)
    assert ops_after(m) == [("onnxfast", "FusedAttention")]
    feed = attention_feed(rng, s=s, t=t, mask_shape=mask_shape)
    # no keys: an empty sum per row (the unfused Softmax of an empty axis is refused by numpy's max)
    want = np.zeros((2, 3, s, 3), np.float32) if t == 0 else outputs(m, feed, level=0)[0]
    o = onnxfast.SessionOptions()
    o.add_session_config_entry("onnxfast.disable_kernels", "native")
    for sess in (onnxfast.InferenceSession(m.SerializeToString()), onnxfast.InferenceSession(m.SerializeToString(), o)):
        np.testing.assert_allclose(sess.run(None, feed)[0], want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("zero_shape", [(), (1,)])  # TorchScript writes the Where's 0 as a (1,) constant
def test_attention_fully_masked_rows_give_zero(rng, zero_shape):
    m = attention_model("dynamo", mask_shape=(2, 1, 1, 7), zero_shape=zero_shape)
    assert ops_after(m) == [("onnxfast", "FusedAttention")]
    feed = attention_feed(rng, masked_row=True)
    got = outputs(m, feed)[0]
    assert not np.isnan(got).any() and np.all(got[0] == 0)
    same_outputs(m, feed, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", ["axis1", "second_reader", "mask_rank5", "opset11"])
def test_attention_near_misses(case):
    if case == "axis1":
        m = attention_model(axis=1)
    elif case == "second_reader":
        m = attention_model(extra_output="p")
    elif case == "mask_rank5":
        m = attention_model(mask_shape=(1, 2, 1, 1, 7))
    else:
        m = attention_model("torchscript", opset=11)
    assert ("onnxfast", "FusedAttention") not in ops_after(m)


# ---------------------------------------------------------------------------------------------
# ClassLabelIndexing (traditional ML)


def _string_label_classifier(op, ml_opset, labels=("no", "yes", "maybe")):
    from onnx import TensorProto

    if op == "LinearClassifier":
        attrs = dict(coefficients=[0.5, -1.0, 2.0, 0.25, -0.75, 1.5], intercepts=[0.1, -0.2, 0.0],
                     classlabels_strings=list(labels), post_transform="SOFTMAX")
    else:  # a one-split tree per class
        attrs = dict(nodes_treeids=[0, 0, 0], nodes_nodeids=[0, 1, 2], nodes_featureids=[1, 0, 0],
                     nodes_values=[0.3, 0.0, 0.0], nodes_modes=["BRANCH_LEQ", "LEAF", "LEAF"],
                     nodes_truenodeids=[1, 0, 0], nodes_falsenodeids=[2, 0, 0],
                     class_treeids=[0, 0, 0, 0], class_nodeids=[1, 1, 2, 2], class_ids=[0, 2, 1, 2],
                     class_weights=[0.6, 0.4, 0.7, 0.3], classlabels_strings=list(labels))
    node = helper.make_node(op, ["x"], ["label", "scores"], domain="ai.onnx.ml", name="clf", **attrs)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])],
                          [helper.make_tensor_value_info("label", TensorProto.STRING, [None]),
                           helper.make_tensor_value_info("scores", TensorProto.FLOAT, [None, 3])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", ml_opset)],
                             ir_version=8)


@pytest.mark.parametrize("op", ["LinearClassifier", "TreeEnsembleClassifier"])
@pytest.mark.parametrize("ml_opset", [1, 3])
def test_string_labels_become_indices_and_a_label_encoder(rng, op, ml_opset):
    m = _string_label_classifier(op, ml_opset)
    assert ops_after(m, level=0) == [("ai.onnx.ml", op)]
    assert ops_after(m, level=1) == [("ai.onnx.ml", op), ("ai.onnx.ml", "LabelEncoder")]
    x = rng.normal(size=(9, 2)).astype(np.float32)
    base = outputs(m, {"x": x}, level=0)
    got = outputs(m, {"x": x}, level=1)
    assert got[0].dtype == object and got[0].tolist() == base[0].tolist()
    np.testing.assert_allclose(got[1], base[1], rtol=1e-6, atol=1e-7)  # native (float32) vs numpy (float64)
    s = onnxfast.InferenceSession(m.SerializeToString())
    assert {r["op_type"]: r["kernel"] for r in s.kernel_listing()}[op] == "native"


def test_integer_labels_are_left_alone():
    m = _string_label_classifier("LinearClassifier", 3)
    for n in m.graph.node:
        for a in list(n.attribute):
            if a.name == "classlabels_strings":
                n.attribute.remove(a)
        n.attribute.append(helper.make_attribute("classlabels_ints", [4, 5, 6]))
    m.graph.output[0].type.tensor_type.elem_type = 7
    assert ops_after(m, level=1) == [("ai.onnx.ml", "LinearClassifier")]
