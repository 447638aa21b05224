"""The weight-folding passes (ConvBNFusion, ConvMulFusion, ConvAddFusion, MatMulScaleFusion) and the
layout passes (TransposeOptimizer, ReshapeChainElimination, GemmTransposeFusion, MatmulTransposeFusion),
each on its own: the pattern is rewritten (ops before / after) with outputs unchanged against the
unoptimized session and onnxruntime, and near misses stay."""

import numpy as np
import onnxruntime
import pytest
from onnx import TensorProto, helper
from onnx_helpers import F, make_model, vi

import onnxfast
from onnxfast import ir
from onnxfast.optimizer import optimize
from test_optimizer_passes import outputs


def ops_after(model, level=1, disabled=()):
    m = ir.build_model(model, None, release=False)
    optimize(m, level, disabled)
    m.graph.check()
    return [(n.domain, n.op_type) if n.domain else n.op_type for n in m.graph.nodes]


def same_outputs(model, feed, level=1, rtol=1e-5, atol=1e-5, ort=True):
    """The optimized session equals the unoptimized one and onnxruntime's (level 0, the model as written)."""
    ref = outputs(model, feed, level=0)
    got = outputs(model, feed, level=level)
    expected = ref
    if ort:
        o = onnxruntime.SessionOptions()
        o.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
        expected = onnxruntime.InferenceSession(model.SerializeToString(), o,
                                                providers=["CPUExecutionProvider"]).run(None, feed)
    for g, r, e in zip(got, ref, expected):
        assert g.shape == r.shape == e.shape and g.dtype == r.dtype
        np.testing.assert_allclose(g, r, rtol=rtol, atol=atol)
        np.testing.assert_allclose(g, e, rtol=rtol, atol=atol)


def rand(rng, *shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


# ---- Conv + BatchNormalization ------------------------------------------------------------------

def conv_bn(rng, x_shape, w_shape, *, group=1, bias=True, fed=(), bn_attrs=None, opset=18, extra_out=(),
            dtype=np.float32, bn_outputs=("y",)):
    m = w_shape[0]
    code = F if dtype == np.float32 else TensorProto.DOUBLE
    inits = {"W": rand(rng, *w_shape, dtype=dtype), "B": rand(rng, m, dtype=dtype),
             "scale": rand(rng, m, dtype=dtype), "beta": rand(rng, m, dtype=dtype),
             "mean": rand(rng, m, dtype=dtype), "var": (rng.random(m) + 0.5).astype(dtype)}
    conv_in = ["x", "W", "B"] if bias else ["x", "W"]
    nodes = [helper.make_node("Conv", conv_in, ["c"], group=group, pads=[1] * (2 * (len(x_shape) - 2))),
             helper.make_node("BatchNormalization", ["c", "scale", "beta", "mean", "var"], list(bn_outputs),
                              **(bn_attrs or {"epsilon": 1e-3}))]
    inputs = [vi("x", code, list(x_shape))] + [vi(n, code, list(inits[n].shape)) for n in fed]
    outs = [vi("y", code, None)] + [vi(n, code, None) for n in extra_out]
    model = make_model(nodes, inputs, outs, initializers=[(k, v) for k, v in inits.items() if k not in fed],
                       opset=opset)
    feed = {"x": rand(rng, *x_shape, dtype=dtype), **{n: inits[n] for n in fed}}
    return model, feed


@pytest.mark.parametrize("x_shape, w_shape, group", [
    ((1, 3, 9, 9), (8, 3, 3, 3), 1),
    ((2, 4, 7, 5), (4, 1, 3, 3), 4),      # depthwise
    ((1, 6, 11), (6, 2, 3), 3),            # 1-D, grouped
    ((1, 2, 5, 4, 6), (3, 2, 3, 3, 3), 1),  # 3-D
])
@pytest.mark.parametrize("bias", [True, False])
def test_conv_bn_folds(rng, x_shape, w_shape, group, bias):
    model, feed = conv_bn(rng, x_shape, w_shape, group=group, bias=bias)
    assert ops_after(model) == ["Conv"]
    same_outputs(model, feed)


def test_conv_bn_folds_in_float64(rng):
    model, feed = conv_bn(rng, (1, 3, 6, 6), (4, 3, 3, 3), dtype=np.float64)
    assert ops_after(model) == ["Conv"]
    same_outputs(model, feed, rtol=1e-12, atol=1e-12, ort=False)  # (onnxruntime has no double Conv)


def test_conv_bn_near_misses_stay(rng):
    # statistics fed at run time: not constant
    model, _ = conv_bn(rng, (1, 3, 6, 6), (4, 3, 3, 3), fed=("var",))
    assert ops_after(model) == ["Conv", "BatchNormalization"]
    # the convolution's output is read by something else too
    model, feed = conv_bn(rng, (1, 3, 6, 6), (4, 3, 3, 3), extra_out=("c",))
    assert ops_after(model) == ["Conv", "BatchNormalization"]
    # training mode (opset 15): batch statistics, not the constants
    model, _ = conv_bn(rng, (1, 3, 6, 6), (4, 3, 3, 3), opset=15, bn_attrs={"training_mode": 1},
                       bn_outputs=("y", "rm", "rv"), extra_out=("rm", "rv"))
    assert ops_after(model) == ["Conv", "BatchNormalization"]
    # the weights fed at run time
    model, _ = conv_bn(rng, (1, 3, 6, 6), (4, 3, 3, 3), fed=("W",))
    assert ops_after(model) == ["Conv", "BatchNormalization"]
    # level 0 leaves it, and the pass is switched off by name
    model, _ = conv_bn(rng, (1, 3, 6, 6), (4, 3, 3, 3))
    assert ops_after(model, level=0) == ["Conv", "BatchNormalization"]
    assert ops_after(model, disabled=["ConvBNFusion"]) == ["Conv", "BatchNormalization"]


def test_shared_weights_fold_per_convolution(rng):
    m = 4
    inits = [("W", rand(rng, m, 3, 3, 3))] + [(f"{s}{i}", rand(rng, m) if s != "v" else rng.random(m).astype(
        np.float32) + 0.5) for i in range(2) for s in ("g", "b", "m", "v")]
    nodes = []
    for i in range(2):
        nodes += [helper.make_node("Conv", ["x", "W"], [f"c{i}"]),
                  helper.make_node("BatchNormalization", [f"c{i}", f"g{i}", f"b{i}", f"m{i}", f"v{i}"], [f"y{i}"])]
    model = make_model(nodes, [vi("x", F, [1, 3, 5, 5])], [vi("y0", F, None), vi("y1", F, None)], initializers=inits)
    assert ops_after(model) == ["Conv", "Conv"]
    same_outputs(model, {"x": rand(rng, 1, 3, 5, 5)})


# ---- Conv + Mul / Add ---------------------------------------------------------------------------

def conv_then(rng, steps, m=6, x_shape=(2, 3, 8, 8)):
    """Conv(x, W, B) followed by the (op, constant) steps in order."""
    nodes = [helper.make_node("Conv", ["x", "W", "B"], ["t0"], pads=[1, 1, 1, 1])]
    inits = [("W", rand(rng, m, x_shape[1], 3, 3)), ("B", rand(rng, m))]
    for i, (op, c) in enumerate(steps):
        out = "y" if i == len(steps) - 1 else f"t{i + 1}"
        inits.append((f"k{i}", c))
        nodes.append(helper.make_node(op, [f"t{i}", f"k{i}"] if i % 2 == 0 else [f"k{i}", f"t{i}"], [out]))
    model = make_model(nodes, [vi("x", F, list(x_shape))], [vi("y", F, None)], initializers=inits)
    return model, {"x": rand(rng, *x_shape)}


@pytest.mark.parametrize("shape", [(6, 1, 1), (1, 6, 1, 1), (), (1,), (1, 1, 1, 1)])
@pytest.mark.parametrize("op", ["Mul", "Add"])
def test_conv_per_channel_mul_add_fold(rng, op, shape):
    model, feed = conv_then(rng, [(op, rand(rng, *shape))])
    assert ops_after(model) == ["Conv"]
    same_outputs(model, feed)


def test_tf2onnx_batch_norm_as_mul_add_folds(rng):
    model, feed = conv_then(rng, [("Mul", rand(rng, 6, 1, 1)), ("Add", rand(rng, 6, 1, 1)),
                                  ("Mul", rand(rng, 1, 6, 1, 1))])
    assert ops_after(model) == ["Conv"]
    same_outputs(model, feed)


@pytest.mark.parametrize("shape", [
    (6, 8, 8),        # per position: the constant varies along the spatial axes
    (1, 1, 1, 8),     # along the last axis
    (1, 1, 6, 1, 1),  # broadcasting would add an axis
    (2, 6, 1, 1),     # along the batch axis
])
@pytest.mark.parametrize("op", ["Mul", "Add"])
def test_conv_mul_add_near_misses_stay(rng, op, shape):
    model, feed = conv_then(rng, [(op, rand(rng, *shape))])
    assert ops_after(model) == ["Conv", op]
    same_outputs(model, feed)


def test_conv_mul_by_a_fed_value_stays(rng):
    model = make_model([helper.make_node("Conv", ["x", "W"], ["c"]), helper.make_node("Mul", ["c", "s"], ["y"])],
                       [vi("x", F, [1, 2, 4, 4]), vi("s", F, [3, 1, 1])], [vi("y", F, None)],
                       initializers=[("W", rand(rng, 3, 2, 1, 1))])
    assert ops_after(model) == ["Conv", "Mul"]


# ---- MatMul / Gemm scale ------------------------------------------------------------------------

def matmul_mul(rng, x_shape, c, *, gemm=None, before=False, w_shape=(8, 5)):
    inits = [("W", rand(rng, *w_shape)), ("c", c)]
    if gemm is not None:
        attrs, has_c = gemm
        ins = ["x", "W"] + (["C"] if has_c else [])
        if has_c:
            inits.append(("C", rand(rng, *has_c)))
        nodes = [helper.make_node("Gemm", ins, ["p"], **attrs), helper.make_node("Mul", ["p", "c"], ["y"])]
    elif before:
        nodes = [helper.make_node("Mul", ["c", "x"], ["s"]), helper.make_node("MatMul", ["s", "W"], ["y"])]
    else:
        nodes = [helper.make_node("MatMul", ["x", "W"], ["p"]), helper.make_node("Mul", ["p", "c"], ["y"])]
    model = make_model(nodes, [vi("x", F, list(x_shape))], [vi("y", F, None)], initializers=inits)
    return model, {"x": rand(rng, *x_shape)}


@pytest.mark.parametrize("x_shape, c_shape", [(x, c) for x in [(3, 8), (2, 3, 8), (8,)] for c in [(), (5,), (1, 5), (1,)]
                                              if len(x) > 1 or len(c) < 2])  # (1, 5) adds an axis to (5,)
def test_matmul_then_per_column_mul_folds(rng, x_shape, c_shape):
    model, feed = matmul_mul(rng, x_shape, rand(rng, *c_shape))
    assert ops_after(model) == ["MatMul"]
    same_outputs(model, feed)


@pytest.mark.parametrize("x_shape, c_shape", [((3, 8), (3, 5)), ((3, 8), (3, 1)), ((2, 3, 8), (2, 1, 5)),
                                              ((8,), (1, 5)), ((3, 8), (1, 1, 5))])
def test_matmul_mul_near_misses_stay(rng, x_shape, c_shape):
    model, feed = matmul_mul(rng, x_shape, rand(rng, *c_shape))
    assert ops_after(model) == ["MatMul", "Mul"]
    same_outputs(model, feed)


@pytest.mark.parametrize("c_shape", [(), (1, 1), (1,)])
def test_scalar_mul_before_matmul_folds(rng, c_shape):
    model, feed = matmul_mul(rng, (4, 8), rand(rng, *c_shape), before=True)
    assert ops_after(model) == ["MatMul"]
    same_outputs(model, feed)


def test_mul_before_matmul_near_misses_stay(rng):
    # per-column of X: not a scalar
    model, feed = matmul_mul(rng, (4, 8), rand(rng, 8), before=True)
    assert ops_after(model) == ["Mul", "MatMul"]
    # a size-1 constant of higher rank than X adds axes
    model, feed = matmul_mul(rng, (4, 8), rand(rng, 1, 1, 1), before=True)
    assert ops_after(model) == ["Mul", "MatMul"]
    same_outputs(model, feed)


@pytest.mark.parametrize("trans_b", [0, 1])
@pytest.mark.parametrize("c_shape", [None, (5,), (1, 5), (4, 5), (4, 1), ()])
def test_gemm_then_mul_folds(rng, trans_b, c_shape):
    w_shape = (5, 8) if trans_b else (8, 5)
    model, feed = matmul_mul(rng, (4, 8), rand(rng, 5), gemm=({"transB": trans_b, "alpha": 0.5, "beta": 2.0},
                                                            c_shape), w_shape=w_shape)
    assert ops_after(model) == ["Gemm"]
    same_outputs(model, feed)


def test_gemm_mul_near_miss_stays(rng):
    model, feed = matmul_mul(rng, (4, 8), rand(rng, 4, 1), gemm=({}, (5,)))  # per row
    assert ops_after(model) == ["Gemm", "Mul"]
    same_outputs(model, feed)


# ---- Transpose pairs ----------------------------------------------------------------------------

def transposes(perms, x_shape, extra_reader=False):
    nodes, cur = [], "x"
    for i, p in enumerate(perms):
        out = "y" if i == len(perms) - 1 else f"t{i}"
        nodes.append(helper.make_node("Transpose", [cur], [out], **({"perm": p} if p is not None else {})))
        cur = out
    outs = [vi("y", F, None)]
    if extra_reader:
        nodes.append(helper.make_node("Neg", ["t0"], ["z"]))
        outs.append(vi("z", F, None))
    return make_model(nodes, [vi("x", F, list(x_shape))], outs)


def test_cancelling_transposes_go(rng):
    model = transposes([[0, 2, 3, 1], [0, 3, 1, 2]], (2, 3, 4, 5))
    # the last Transpose defines the graph output: an Identity of the input stays for it
    assert ops_after(model) == ["Identity"]
    same_outputs(model, {"x": rand(rng, 2, 3, 4, 5)})
    # inside a graph, nothing stays
    m = make_model([helper.make_node("Transpose", ["x"], ["a"], perm=[1, 0]),
                    helper.make_node("Transpose", ["a"], ["b"], perm=[1, 0]), helper.make_node("Relu", ["b"], ["y"])],
                   [vi("x", F, [3, 4])], [vi("y", F, None)])
    assert ops_after(m) == ["Relu"]
    same_outputs(m, {"x": rand(rng, 3, 4)})


@pytest.mark.parametrize("perms", [([0, 2, 3, 1], [0, 2, 1, 3]), (None, [1, 0, 2, 3]), ([3, 1, 0, 2], None),
                                   ([0, 1, 3, 2], [0, 1, 3, 2], [2, 3, 0, 1])])
def test_transpose_chains_compose(rng, perms):
    model = transposes(list(perms), (2, 3, 4, 5))
    after = ops_after(model)
    assert after.count("Transpose") <= 1 and len(after) == 1
    same_outputs(model, {"x": rand(rng, 2, 3, 4, 5)})


def test_identity_transpose_goes_and_a_shared_inner_transpose_stays(rng):
    m = make_model([helper.make_node("Transpose", ["x"], ["a"], perm=[0, 1, 2]), helper.make_node("Relu", ["a"], ["y"])],
                   [vi("x", F, [2, 3, 4])], [vi("y", F, None)])
    assert ops_after(m) == ["Relu"]
    model = transposes([[1, 0, 2], [2, 0, 1]], (2, 3, 4), extra_reader=True)
    assert ops_after(model).count("Transpose") == 2  # the first one is read by the Neg too
    same_outputs(model, {"x": rand(rng, 2, 3, 4)})


def test_transposes_apart_stay(rng):
    m = make_model([helper.make_node("Transpose", ["x"], ["a"], perm=[1, 0]), helper.make_node("Relu", ["a"], ["b"]),
                    helper.make_node("Transpose", ["b"], ["y"], perm=[1, 0])], [vi("x", F, [3, 4])], [vi("y", F, None)])
    assert ops_after(m) == ["Transpose", "Relu", "Transpose"]
    # an identity permutation of the wrong length is refused (at creation: the rank is declared), optimized or not
    m = make_model([helper.make_node("Transpose", ["x"], ["a"], perm=[0, 1]), helper.make_node("Relu", ["a"], ["y"])],
                   [vi("x", F, [2, 3, 4])], [vi("y", F, None)])
    assert ops_after(m) == ["Transpose", "Relu"]
    for level in (0, 1):
        with pytest.raises(onnxfast.errors.InvalidModel, match="perm"):
            outputs(m, {"x": rand(rng, 2, 3, 4)}, level=level)
    # a default permutation of unknown rank: nothing to compose
    m = make_model([helper.make_node("Transpose", ["x"], ["a"]), helper.make_node("Transpose", ["a"], ["y"])],
                   [vi("x", F, None)], [vi("y", F, None)])
    assert ops_after(m) == ["Transpose", "Transpose"]


# ---- Reshape chains -----------------------------------------------------------------------------

def reshapes(shapes, x_shape, allowzero=0, fed_shape=False):
    nodes, inits, inputs, cur = [], [], [vi("x", F, list(x_shape))], "x"
    for i, s in enumerate(shapes):
        out = "y" if i == len(shapes) - 1 else f"r{i}"
        if fed_shape and i == len(shapes) - 1:
            inputs.append(vi(f"s{i}", TensorProto.INT64, [len(s)]))
        else:
            inits.append((f"s{i}", np.array(s, np.int64)))
        nodes.append(helper.make_node("Reshape", [cur, f"s{i}"], [out], allowzero=allowzero))
        cur = out
    nodes.append(helper.make_node("Relu", ["y"], ["z"]))
    return make_model(nodes, inputs, [vi("z", F, None)], initializers=inits)


def test_reshape_chain_becomes_one(rng):
    model = reshapes([[6, 4], [-1, 8], [2, 12]], (2, 3, 4))
    assert ops_after(model) == ["Reshape", "Relu"]
    same_outputs(model, {"x": rand(rng, 2, 3, 4)})


def test_reshape_to_its_own_shape_goes(rng):
    model = reshapes([[2, 3, 4]], (2, 3, 4))
    assert ops_after(model) == ["Relu"]
    same_outputs(model, {"x": rand(rng, 2, 3, 4)})


def test_reshape_chain_near_misses_stay(rng):
    # a 0 copies a dimension of the first Reshape's output
    model = reshapes([[6, 4], [0, 2, 2]], (2, 3, 4))
    assert ops_after(model) == ["Reshape", "Reshape", "Relu"]
    same_outputs(model, {"x": rand(rng, 2, 3, 4)})
    # the second shape given at run time
    model = reshapes([[6, 4], [4, 6]], (2, 3, 4), fed_shape=True)
    assert ops_after(model) == ["Reshape", "Reshape", "Relu"]
    # the input's shape is not static: a Reshape to (2, 3, 4) is no no-op there
    m = make_model([helper.make_node("Reshape", ["x", "s"], ["y"]), helper.make_node("Relu", ["y"], ["z"])],
                   [vi("x", F, ["a", 3, 4])], [vi("z", F, None)], initializers=[("s", np.array([2, 3, 4], np.int64))])
    assert ops_after(m) == ["Reshape", "Relu"]


def test_reshape_chain_with_allowzero_keeps_zero_dims(rng):
    model = reshapes([[0, 4], [4, 0]], (0, 4), allowzero=1)
    m = ir.build_model(model, None, release=False)
    optimize(m, 1)
    assert [n.op_type for n in m.graph.nodes] == ["Reshape", "Relu"]
    got = outputs(model, {"x": np.zeros((0, 4), np.float32)})[0]
    assert got.shape == (4, 0)


# ---- Transposes into Gemm / MatMul --------------------------------------------------------------

@pytest.mark.parametrize("which", ["A", "B", "both"])
@pytest.mark.parametrize("trans", [0, 1])
def test_transpose_folds_into_gemm(rng, which, trans):
    m_, k, n = 4, 5, 6
    a_in = (k, m_) if trans else (m_, k)  # what the Gemm reads as A (transA = trans), B (transB = trans)
    b_in = (n, k) if trans else (k, n)
    nodes, ins, shapes = [], ["x", "w"], [a_in, b_in]
    for i, (flag, name) in enumerate((("A", "x"), ("B", "w"))):
        if which in (flag, "both"):
            nodes.append(helper.make_node("Transpose", [name], [name + "t"], perm=[1, 0]))
            ins[i] = name + "t"
            shapes[i] = shapes[i][::-1]
    nodes.append(helper.make_node("Gemm", ins + ["c"], ["y"], transA=trans, transB=trans, alpha=1.5))
    model = make_model(nodes, [vi("x", F, list(shapes[0])), vi("w", F, list(shapes[1]))], [vi("y", F, None)],
                       initializers=[("c", rand(rng, n))])
    assert ops_after(model) == ["Gemm"]
    same_outputs(model, {"x": rand(rng, *shapes[0]), "w": rand(rng, *shapes[1])})


def test_gemm_transpose_near_miss_stays(rng):
    m = make_model([helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0]), helper.make_node("Relu", ["xt"], ["r"]),
                    helper.make_node("Gemm", ["r", "w"], ["y"])], [vi("x", F, [5, 4]), vi("w", F, [5, 3])],
                   [vi("y", F, None)])
    assert ops_after(m) == ["Transpose", "Relu", "Gemm"]


@pytest.mark.parametrize("a_shape, b_shape, perm", [
    ((3, 8), (5, 8), [1, 0]),
    ((2, 3, 8), (2, 5, 8), [0, 2, 1]),
    ((2, 4, 3, 8), (2, 4, 5, 8), [0, 1, 3, 2]),
    ((2, 4, 3, 8), (5, 8), [1, 0]),            # broadcast batch
    ((1, 7), (9, 7), [1, 0]),
])
def test_transpose_folds_into_matmul_b(rng, a_shape, b_shape, perm):
    m = make_model([helper.make_node("Transpose", ["b"], ["bt"], perm=perm), helper.make_node("MatMul", ["a", "bt"], ["y"])],
                   [vi("a", F, list(a_shape)), vi("b", F, list(b_shape))], [vi("y", F, None)])
    assert ops_after(m, level=2) == [("com.microsoft", "FusedMatMul")]
    assert ops_after(m, level=1) == ["Transpose", "MatMul"]  # an extended-level pass
    same_outputs(m, {"a": rand(rng, *a_shape), "b": rand(rng, *b_shape)}, level=2)


def test_matmul_transpose_near_misses_stay(rng):
    # moves a batch axis too
    m = make_model([helper.make_node("Transpose", ["b"], ["bt"], perm=[1, 2, 0]), helper.make_node("MatMul", ["a", "bt"], ["y"])],
                   [vi("a", F, [3, 2, 4]), vi("b", F, [3, 4, 5])], [vi("y", F, None)])
    assert ops_after(m, level=2) == ["Transpose", "MatMul"]
    # the transposed operand is A (the native kernel takes transB only)
    m = make_model([helper.make_node("Transpose", ["a"], ["at"], perm=[1, 0]), helper.make_node("MatMul", ["at", "b"], ["y"])],
                   [vi("a", F, [4, 3]), vi("b", F, [4, 5])], [vi("y", F, None)])
    assert ops_after(m, level=2) == ["Transpose", "MatMul"]
    # double: no native kernel
    d = TensorProto.DOUBLE
    m = make_model([helper.make_node("Transpose", ["b"], ["bt"], perm=[1, 0]), helper.make_node("MatMul", ["a", "bt"], ["y"])],
                   [vi("a", d, [3, 4]), vi("b", d, [5, 4])], [vi("y", d, None)])
    assert ops_after(m, level=2) == ["Transpose", "MatMul"]
