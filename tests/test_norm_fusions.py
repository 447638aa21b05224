"""LayerNormFusion, SimplifiedLayerNormFusion and SkipLayerNormFusion (optimizer/normalization.py): each
pattern is rewritten (the node list before / after) with the outputs of the unoptimized session and of
onnxruntime; near misses are left alone; and the exporters' own graphs (torch's TorchScript exporter at
opset 16, a tiny transformers BertModel, a Llama-style RMSNorm) fuse, with torch's outputs."""

import collections

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from onnx_helpers import F, make_model, vi

import onnxfast
from onnxfast import ir
from onnxfast.optimizer import PASS_NAMES, optimize

ort = pytest.importorskip("onnxruntime")
MS = "com.microsoft"
NORM_PASSES = ["LayerNormFusion", "SimplifiedLayerNormFusion", "SkipLayerNormFusion"]


def optimized(model, level=99, disabled=()):
    m = ir.build_model(model, None, release=False)
    optimize(m, level, disabled)
    m.graph.check()
    return m


def ops_after(model, level=99, disabled=("ElementwiseFusion",)):
    """The op list after the optimizer (the elementwise fusion off by default: a near miss's leftover
    nodes stay readable)."""
    return [(n.domain, n.op_type) if n.domain else n.op_type for n in optimized(model, level, disabled).graph.nodes]


def session(model, level=99, **kw):
    o = onnxfast.SessionOptions()
    o.graph_optimization_level = level
    return onnxfast.InferenceSession(model.SerializeToString() if isinstance(model, onnx.ModelProto) else model, o,
                                     **kw)


def check_outputs(model, feed, tol=2e-5, disabled=()):
    """The optimized session's outputs equal the unoptimized one's and onnxruntime's. onnxruntime runs the
    model as written (its optimizer off): its own LayerNormFusion (1.32) takes Pow(D, 4) for a square."""
    got = session(model, disabled_optimizers=list(disabled)).run(None, feed)
    ref = session(model, level=0).run(None, feed)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    want = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, feed)
    for g, r, w in zip(got, ref, want):
        np.testing.assert_allclose(g, r, rtol=tol, atol=tol)
        np.testing.assert_allclose(g, w, rtol=tol, atol=tol)


def _c(name, value):
    return name, np.asarray(value, np.float32)


def layer_norm_model(rng, square="pow", divide="div", two_subs=False, gamma=(16,), beta=(16,), axes=(-1,),
                     opset=17, shape=(2, 5, 16), extra_output=None, eps_input=False, elem=F):
    """The decomposed layer norm of input x as the exporters write it."""
    np_t = np.float32 if elem == F else np.float64
    inits = [("two", np.asarray(2.0, np_t))] + ([] if eps_input else [("eps", np.asarray(1e-5, np_t))])
    if opset >= 18:
        inits.append(("axes", np.asarray(axes, np.int64)))
        red = lambda i, o: helper.make_node("ReduceMean", [i, "axes"], [o])  # noqa: E731
    else:
        red = lambda i, o: helper.make_node("ReduceMean", [i], [o], axes=list(axes))  # noqa: E731
    nodes = [red("x", "m"), helper.make_node("Sub", ["x", "m"], ["d"])]
    d2 = "d"
    if two_subs:
        nodes.append(helper.make_node("Sub", ["x", "m"], ["d2"]))
        d2 = "d2"
    nodes.append(helper.make_node("Pow", ["d", "two"], ["sq"]) if square == "pow"
                 else helper.make_node("Mul", ["d", "d"], ["sq"]))
    nodes += [red("sq", "v"), helper.make_node("Add", ["v", "eps"], ["ve"]), helper.make_node("Sqrt", ["ve"], ["s"])]
    if divide == "div":
        nodes.append(helper.make_node("Div", [d2, "s"], ["n"]))
    else:
        nodes += [helper.make_node("Reciprocal", ["s"], ["r"]), helper.make_node("Mul", ["r", d2], ["n"])]
    cur = "n"
    if gamma is not None:
        nodes.append(helper.make_node("Mul", [cur, "gamma"], ["ng"]))
        inits.append(("gamma", (rng.standard_normal(gamma) + 1).astype(np_t)))
        cur = "ng"
    if beta is not None:
        nodes.append(helper.make_node("Add", ["beta", cur], ["nb"]))
        inits.append(("beta", rng.standard_normal(beta).astype(np_t)))
        cur = "nb"
    nodes.append(helper.make_node("Identity", [cur], ["y"]))
    inputs = [vi("x", elem, list(shape))] + ([vi("eps", elem, [])] if eps_input else [])
    outs = [vi("y", elem, None)] + ([vi(extra_output, elem, None)] if extra_output else [])
    return make_model(nodes, inputs, outs, initializers=inits, opset=opset)


def x_of(rng, shape=(2, 5, 16)):
    return (rng.standard_normal(shape) * 2 + 0.5).astype(np.float32)


# ---- LayerNormFusion --------------------------------------------------------------------------------

@pytest.mark.parametrize("square", ["pow", "mul"])
@pytest.mark.parametrize("divide", ["div", "reciprocal"])
@pytest.mark.parametrize("two_subs", [False, True])
@pytest.mark.parametrize("opset", [17, 18])  # axes attribute / axes input
def test_layer_norm_fusion(rng, square, divide, two_subs, opset):
    m = layer_norm_model(rng, square, divide, two_subs, opset=opset)
    assert len(ops_after(m, level=0)) >= 10
    assert ops_after(m) == ["LayerNormalization"]
    assert ops_after(m, disabled=["LayerNormFusion"]) != ["LayerNormalization"]
    check_outputs(m, {"x": x_of(rng)})


@pytest.mark.parametrize("gamma,beta", [(None, None), ((16,), None), (None, (16,)), ((1, 1, 16), (1, 16))])
def test_layer_norm_scale_and_shift_forms(rng, gamma, beta):
    m = layer_norm_model(rng, gamma=gamma, beta=beta)
    opt = optimized(m)
    assert [n.op_type for n in opt.graph.nodes] == ["LayerNormalization"]
    ln = opt.graph.nodes[0]
    assert len(ln.inputs) == (3 if beta else 2)
    assert opt.graph.initializers[ln.inputs[1]].shape == (16,)  # ones when absent; leading 1s dropped
    check_outputs(m, {"x": x_of(rng)})


def test_layer_norm_over_two_trailing_axes(rng):
    m = layer_norm_model(rng, axes=(-2, -1), gamma=(5, 16), beta=(1, 5, 16))
    opt = optimized(m)
    assert [(n.op_type, n.attrs.get("axis")) for n in opt.graph.nodes] == [("LayerNormalization", -2)]
    check_outputs(m, {"x": x_of(rng)})
    # a beta broadcast over part of the normalized shape ((16,) against (5, 16)) is left after the node
    m = layer_norm_model(rng, axes=(-2, -1), gamma=(5, 16), beta=(16,))
    assert ops_after(m) == ["LayerNormalization", "Add"]
    check_outputs(m, {"x": x_of(rng)})
    m = layer_norm_model(rng, axes=(1, 2), gamma=(5, 16), beta=None)  # positive axes of a known rank
    assert ops_after(m) == ["LayerNormalization"]
    check_outputs(m, {"x": x_of(rng)})


def test_fed_gamma_of_the_normalized_shape_fuses(rng):
    """Scale is an input of LayerNormalization: a value fed at run time is fine where its declared shape
    is the normalized shape; with leading 1s (a Reshape would be needed) the Mul stays after the fused node."""
    m = layer_norm_model(rng, gamma=(16,), beta=None)
    m.graph.input.append(vi("gamma", F, [16]))
    assert ops_after(m) == ["LayerNormalization"]
    feed = {"x": x_of(rng), "gamma": rng.standard_normal(16).astype(np.float32)}
    check_outputs(m, feed)
    m = layer_norm_model(rng, gamma=(1, 16), beta=None)
    m.graph.input.append(vi("gamma", F, [1, 16]))
    assert ops_after(m) == ["LayerNormalization", "Mul"]
    check_outputs(m, {"x": x_of(rng), "gamma": rng.standard_normal((1, 16)).astype(np.float32)})


def test_opset_16_model_moves_to_17(rng, tmp_path):
    m = layer_norm_model(rng, opset=16)
    opt = optimized(m)
    assert [n.op_type for n in opt.graph.nodes] == ["LayerNormalization"] and opt.opsets[""] == 17
    check_outputs(m, {"x": x_of(rng)})
    # the model saved after the optimizer is a valid opset-17 model onnxruntime runs
    o = onnxfast.SessionOptions()
    o.optimized_model_filepath = str(tmp_path / "opt.onnx")
    onnxfast.InferenceSession(m.SerializeToString(), o)
    saved = onnx.load(o.optimized_model_filepath)
    assert {i.domain: i.version for i in saved.opset_import}[""] == 17
    x = x_of(rng)
    got = ort.InferenceSession(o.optimized_model_filepath, providers=["CPUExecutionProvider"]).run(None, {"x": x})
    np.testing.assert_allclose(got[0], session(m, level=0).run(None, {"x": x})[0], rtol=2e-5, atol=2e-5)


def test_older_opset_with_changed_schemas_stays(rng):
    """Opset 12 -> 17 would change Softmax (13): the model keeps its opset and its decomposed norm (the
    RMS fusion may still take its variance part: Div(D, sqrt(mean(D^2) + eps)) is an RMS norm of D)."""
    m = layer_norm_model(rng, opset=12)
    m.graph.node.append(helper.make_node("Softmax", ["y"], ["p"], axis=1))
    m.graph.output.append(vi("p", F, None))
    opt = optimized(m)
    assert opt.opsets[""] == 12 and "LayerNormalization" not in [n.op_type for n in opt.graph.nodes]
    check_outputs(m, {"x": x_of(rng)})


@pytest.mark.parametrize("case", ["mean_read_elsewhere", "centred_read_elsewhere", "non_trailing_axis",
                                  "eps_fed", "eps_computed", "exponent_4", "float64", "gamma_broadcasts_batch",
                                  "keepdims_0"])
def test_layer_norm_near_misses(rng, case):
    shape, feed_x = (2, 5, 16), x_of(rng)
    if case in ("mean_read_elsewhere", "centred_read_elsewhere"):
        m = layer_norm_model(rng, extra_output="m" if case == "mean_read_elsewhere" else "d")
    elif case == "non_trailing_axis":
        m = layer_norm_model(rng, axes=(1,), gamma=None, beta=None)
    elif case == "eps_fed":
        m = layer_norm_model(rng, eps_input=True)
    elif case == "eps_computed":  # eps = Abs(e) of a fed e: known at run time only
        m = layer_norm_model(rng)
        for n in m.graph.node:
            if n.op_type == "Add" and "eps" in n.input:
                n.input[list(n.input).index("eps")] = "eps_abs"
        m.graph.node.insert(0, helper.make_node("Abs", ["e"], ["eps_abs"]))
        m.graph.input.append(vi("e", F, []))
    elif case == "exponent_4":
        m = layer_norm_model(rng)
        m.graph.initializer[0].CopyFrom(onnx.numpy_helper.from_array(np.asarray(4.0, np.float32), "two"))
    elif case == "float64":
        m = layer_norm_model(rng, elem=TensorProto.DOUBLE)
        feed_x = feed_x.astype(np.float64)
    elif case == "gamma_broadcasts_batch":  # gamma (2, 1, 16): not over the normalized axis only
        m = layer_norm_model(rng, gamma=(2, 1, 16), beta=None)
    else:
        m = layer_norm_model(rng)
        for n in m.graph.node:
            if n.op_type == "ReduceMean" and n.output[0] == "m":
                n.attribute.append(helper.make_attribute("keepdims", 0))
                n.output[0] = "m0"
        m.graph.node.insert(1, helper.make_node("Unsqueeze", ["m0", "ax"], ["m"]))
        m.graph.initializer.append(onnx.numpy_helper.from_array(np.asarray([-1], np.int64), "ax"))
    after = ops_after(m)
    feed = {"x": feed_x}
    if case == "eps_fed":
        feed["eps"] = np.asarray(1e-5, np.float32)
    if case == "eps_computed":
        feed["e"] = np.asarray(1e-5, np.float32)
    if case == "gamma_broadcasts_batch":  # the normalization itself fuses; the Mul by gamma stays
        assert after == ["LayerNormalization", "Mul"]
    else:
        assert "LayerNormalization" not in after, after
    check_outputs(m, feed, tol=1e-4)


def keras_model(rng, gamma=True, beta=True, tail=16):
    """tf2onnx's graph of a Keras Dense (Tensordot: a Reshape to a shape computed from Shape(x), so shape
    inference leaves it unknown) then LayerNormalization: means as GlobalAveragePool (the last axis of a
    rank-3 value), y = x * s + (-mean) * s + beta with s = 1 / sqrt(var + eps) * gamma."""
    inits = [("w", (rng.standard_normal((16, 16)) * 0.3).astype(np.float32)), ("flat", np.asarray([-1, 16])),
             ("free", np.asarray([0, 1])), ("last", np.asarray([tail])), _c("eps", 1e-3)]
    nodes = [helper.make_node("Shape", ["x_in"], ["sh"]), helper.make_node("Gather", ["sh", "free"], ["g"]),
             helper.make_node("Concat", ["g", "last"], ["cs"], axis=0),
             helper.make_node("Reshape", ["x_in", "flat"], ["x2"]), helper.make_node("MatMul", ["x2", "w"], ["mm"]),
             helper.make_node("Reshape", ["mm", "cs"], ["x"]),
             helper.make_node("GlobalAveragePool", ["x"], ["mean"]), helper.make_node("Neg", ["mean"], ["nm"]),
             helper.make_node("Sub", ["x", "mean"], ["d"]), helper.make_node("Mul", ["d", "d"], ["sq"]),
             helper.make_node("GlobalAveragePool", ["sq"], ["var"]), helper.make_node("Add", ["var", "eps"], ["ve"]),
             helper.make_node("Sqrt", ["ve"], ["s"]), helper.make_node("Reciprocal", ["s"], ["r"])]
    scale = "r"
    if gamma:
        inits.append(("gamma", (rng.standard_normal((1, 1, 16)) + 1).astype(np.float32)))
        nodes.append(helper.make_node("Mul", ["r", "gamma"], ["sc"]))
        scale = "sc"
    nodes += [helper.make_node("Mul", ["x", scale], ["a"]), helper.make_node("Mul", ["nm", scale], ["b"])]
    shift = "b"
    if beta:
        inits.append(("beta", rng.standard_normal((1, 1, 16)).astype(np.float32)))
        nodes.append(helper.make_node("Add", ["b", "beta"], ["c"]))
        shift = "c"
    nodes.append(helper.make_node("Add", ["a", shift], ["y"]))
    return make_model(nodes, [vi("x_in", F, ["n", 5, 16])], [vi("y", F, None)], initializers=inits, opset=17)


@pytest.mark.parametrize("gamma,beta", [(True, True), (False, True), (True, False), (False, False)])
def test_keras_layer_norm_as_tf2onnx_writes_it(rng, gamma, beta):
    m = keras_model(rng, gamma, beta)
    after = ops_after(m)
    assert after.count("LayerNormalization") == 1 and not {"GlobalAveragePool", "Neg", "Sqrt"} & set(after), after
    check_outputs(m, {"x_in": x_of(rng)})


def test_keras_layer_norm_with_an_unknown_last_dim_stays(rng):
    m = keras_model(rng, tail=-1)  # the Reshape infers the last dim: not known before the run
    assert "LayerNormalization" not in ops_after(m)
    check_outputs(m, {"x_in": x_of(rng)})


# ---- SimplifiedLayerNormFusion --------------------------------------------------------------------

def rms_model(rng, square="pow", divide="reciprocal", casts=None, weight=True, shape=(2, 5, 16), extra_output=None,
              elem=F, axes=(-1,), opset=17):
    """RMS norm of x: (x or Cast(x)) squared, mean, + eps, sqrt, 1 / . , times x, [Cast back], [* weight]."""
    inits = [_c("two", 2.0), _c("eps", 1e-6), _c("one", 1.0)]
    nodes, xs, xn = [], "x", "x"
    if casts in ("llama", "t5"):  # Llama: x itself becomes the cast; T5: only the square reads the cast
        nodes.append(helper.make_node("Cast", ["x"], ["xc"], to=F))
        xs = "xc"
        xn = "xc" if casts == "llama" else "x"
    nodes.append(helper.make_node("Pow", [xs, "two"], ["sq"]) if square == "pow"
                 else helper.make_node("Mul", [xs, xs], ["sq"]))
    nodes += [helper.make_node("ReduceMean", ["sq"], ["ms"], axes=list(axes)),
              helper.make_node("Add", ["ms", "eps"], ["a"]), helper.make_node("Sqrt", ["a"], ["s"])]
    if divide == "div":
        nodes.append(helper.make_node("Div", [xn, "s"], ["n"]))
    else:
        nodes.append(helper.make_node("Reciprocal", ["s"], ["r"]) if divide == "reciprocal"
                     else helper.make_node("Div", ["one", "s"], ["r"]))
        nodes.append(helper.make_node("Mul", [xn, "r"], ["n"]))
    cur = "n"
    if casts == "llama":
        nodes.append(helper.make_node("Cast", [cur], ["nc"], to=F))
        cur = "nc"
    if weight:
        inits.append(("w", (rng.standard_normal(shape[-1]) + 1).astype(np.float32)))
        nodes.append(helper.make_node("Mul", ["w", cur], ["nw"]))
        cur = "nw"
    nodes.append(helper.make_node("Identity", [cur], ["y"]))
    outs = [vi("y", elem, None)] + ([vi(extra_output, F, None)] if extra_output else [])
    if opset >= 18:  # ReduceMean's axes: an input from opset 18
        i = next(i for i, n in enumerate(nodes) if n.op_type == "ReduceMean")
        nodes[i] = helper.make_node("ReduceMean", ["sq", "rm_axes"], ["ms"])
        inits.append(("rm_axes", np.array(axes, np.int64)))
    return make_model(nodes, [vi("x", elem, list(shape))], outs, initializers=inits, opset=opset,
                      ir_version=10 if opset >= 23 else 9)


@pytest.mark.parametrize("square", ["pow", "mul"])
@pytest.mark.parametrize("divide", ["div", "reciprocal", "div1"])
@pytest.mark.parametrize("weight", [True, False])
def test_simplified_layer_norm_fusion(rng, square, divide, weight):
    m = rms_model(rng, square, divide, weight=weight)
    assert ops_after(m) == ["SimplifiedLayerNormalization"]
    check_outputs(m, {"x": x_of(rng)})
    s = session(m)
    assert [r["kernel"] for r in s.kernel_listing()] == ["native"]


@pytest.mark.parametrize("casts", ["llama", "t5"])
def test_transformers_rms_norm_with_casts(rng, casts):
    m = rms_model(rng, casts=casts)
    assert ops_after(m) == ["SimplifiedLayerNormalization"]
    # the Casts are part of the pattern where CastElimination is off too
    assert ops_after(m, disabled=["CastElimination", "ElementwiseFusion"]) == ["SimplifiedLayerNormalization"]
    check_outputs(m, {"x": x_of(rng)}, disabled=["CastElimination"])


@pytest.mark.parametrize("case", ["square_read_elsewhere", "non_trailing_axis", "float16_cast", "float64",
                                  "other_numerator"])
def test_simplified_layer_norm_near_misses(rng, case):
    feed = {"x": x_of(rng)}
    if case == "square_read_elsewhere":
        m = rms_model(rng, extra_output="sq")
    elif case == "non_trailing_axis":
        m = rms_model(rng, axes=(1,), weight=False)
    elif case == "float16_cast":  # float16 x cast to float32: the Cast is no no-op and stays; the norm of its
        # float32 output (read by the square and the numerator) fuses
        m = rms_model(rng, casts="t5", elem=TensorProto.FLOAT16)
        for n in m.graph.node:
            if n.op_type == "Mul" and "x" in n.input:  # the numerator reads the float32 copy
                n.input[list(n.input).index("x")] = "xc"
        m.graph.output[0].type.tensor_type.elem_type = F
        feed = {"x": x_of(rng).astype(np.float16)}
    elif case == "float64":
        m = rms_model(rng, weight=False)
        for t in m.graph.initializer:
            t.CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(t).astype(np.float64), t.name))
        m.graph.input[0].type.tensor_type.elem_type = TensorProto.DOUBLE
        m.graph.output[0].type.tensor_type.elem_type = TensorProto.DOUBLE
        feed = {"x": x_of(rng).astype(np.float64)}
    else:  # Mul(x2, 1/rms(x)) with another value x2: not a normalization
        m = rms_model(rng, weight=False)
        for n in m.graph.node:
            if n.op_type == "Mul" and "r" in n.input:
                n.input[list(n.input).index("x")] = "x2"
        m.graph.input.append(vi("x2", F, [2, 5, 16]))
        feed["x2"] = x_of(rng)
    if case == "float16_cast":
        assert ops_after(m) == ["Cast", "SimplifiedLayerNormalization"]
    else:
        assert "SimplifiedLayerNormalization" not in ops_after(m)
    check_outputs(m, feed)


# ---- SkipLayerNormFusion --------------------------------------------------------------------------

def skip_model(rng, norm="LayerNormalization", bias=False, second_reader=False, b_shape=(2, 5, 16), axis=-1,
               stats=False, with_beta=True, opset=18):
    h = 16
    inits = [("gamma", (rng.standard_normal(h) + 1).astype(np.float32))]
    ln_in = ["s", "gamma"]
    if norm == "LayerNormalization" and with_beta:
        inits.append(("beta", rng.standard_normal(h).astype(np.float32)))
        ln_in.append("beta")
    nodes, a = [], "a"
    if bias:
        inits.append(("bias", rng.standard_normal(h).astype(np.float32)))
        nodes.append(helper.make_node("Add", ["a", "bias"], ["ab"]))
        a = "ab"
    nodes.append(helper.make_node("Add", [a, "b"], ["s"]))
    outs = ["y"] + (["mean"] if stats else [])
    nodes.append(helper.make_node(norm, ln_in, outs, axis=axis, epsilon=1e-6))
    graph_outs = [vi("y", F, None)] + ([vi("mean", F, None)] if stats else [])
    if second_reader:  # the residual stream: the sum is read again after the norm
        nodes.append(helper.make_node("Mul", ["s", "y"], ["z"]))
        graph_outs.append(vi("z", F, None))
    return make_model(nodes, [vi("a", F, [2, 5, h]), vi("b", F, list(b_shape))], graph_outs, initializers=inits,
                      opset=opset, ir_version=10 if opset >= 23 else 9)


def skip_feed(rng, b_shape=(2, 5, 16)):
    return {"a": x_of(rng), "b": x_of(rng, b_shape)}


@pytest.mark.parametrize("norm", ["LayerNormalization", "SimplifiedLayerNormalization"])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("second_reader", [False, True])
def test_skip_layer_norm_fusion(rng, norm, bias, second_reader):
    m = skip_model(rng, norm, bias, second_reader)
    opt = optimized(m)
    fused = "SkipLayerNormalization" if norm == "LayerNormalization" else "SkipSimplifiedLayerNormalization"
    ops = [(n.domain, n.op_type) for n in opt.graph.nodes]
    assert ops[0] == (MS, fused) and len(ops) == 1 + second_reader
    node = opt.graph.nodes[0]
    assert node.inputs[-1] == "bias" if bias else "bias" not in node.inputs
    assert node.outputs == (["y", "", "", "s"] if second_reader else ["y"])
    assert node.attrs["epsilon"] == pytest.approx(1e-6)
    check_outputs(m, skip_feed(rng))
    s = session(m)
    assert all(r["kernel"] == "native" for r in s.kernel_listing())


def test_rms_norm_at_opset_23_becomes_onnx_rms_normalization(rng, tmp_path):
    """Where the model's opset has ONNX's RMSNormalization the fusion writes it (a saved model stays valid
    for onnx.checker), and the skip fusion takes it like SimplifiedLayerNormalization."""
    m = rms_model(rng, opset=23)
    m.graph.output[0].CopyFrom(vi("y", F, [2, 5, 16]))  # (onnx.checker wants an output's shape field)
    assert ops_after(m) == ["RMSNormalization"]
    check_outputs(m, {"x": x_of(rng)})
    o = onnxfast.SessionOptions()
    o.optimized_model_filepath = str(tmp_path / "rms.onnx")
    s = onnxfast.InferenceSession(m.SerializeToString(), o)
    assert [r["kernel"] for r in s.kernel_listing()] == ["native"]
    onnx.checker.check_model(o.optimized_model_filepath)  # (as the conformance round trip checks)
    feed = {"x": x_of(rng)}
    np.testing.assert_allclose(onnxfast.InferenceSession(o.optimized_model_filepath).run(None, feed)[0],
                               s.run(None, feed)[0], rtol=1e-6, atol=1e-6)
    sk = skip_model(rng, "RMSNormalization", bias=True, opset=23)
    assert [(n.domain, n.op_type) for n in optimized(sk).graph.nodes] == [(MS, "SkipSimplifiedLayerNormalization")]
    check_outputs(sk, skip_feed(rng))


def test_optimized_models_load_in_onnxruntime(rng, tmp_path):
    """What the passes write is onnxruntime's: the saved models run there with the same outputs."""
    cases = [(skip_model(rng, norm, bias=True, second_reader=True), skip_feed(rng))
             for norm in ("LayerNormalization", "SimplifiedLayerNormalization")]
    cases.append((rms_model(rng, casts="llama"), {"x": x_of(rng)}))
    for i, (m, feed) in enumerate(cases):
        o = onnxfast.SessionOptions()
        o.optimized_model_filepath = str(tmp_path / f"{i}.onnx")
        s = onnxfast.InferenceSession(m.SerializeToString(), o)
        assert {n.op_type for n in onnx.load(o.optimized_model_filepath).graph.node} & {
            "SkipLayerNormalization", "SkipSimplifiedLayerNormalization", "SimplifiedLayerNormalization"}
        want = ort.InferenceSession(o.optimized_model_filepath, providers=["CPUExecutionProvider"]).run(None, feed)
        again = onnxfast.InferenceSession(o.optimized_model_filepath).run(None, feed)  # and in onnxfast again
        for g, w, a in zip(s.run(None, feed), want, again):
            np.testing.assert_allclose(g, w, rtol=2e-5, atol=2e-5)
            np.testing.assert_allclose(a, g, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("case", ["broadcast_add", "not_last_axis", "stats_read", "gamma_unknown_shape", "rank_4"])
def test_skip_layer_norm_near_misses(rng, case):
    b_shape = (2, 5, 16)
    if case == "broadcast_add":  # b (1, 5, 16): the Add broadcasts
        b_shape = (1, 5, 16)
        m = skip_model(rng, b_shape=b_shape)
    elif case == "not_last_axis":
        m = skip_model(rng, axis=1, with_beta=False)
        m.graph.initializer[0].CopyFrom(onnx.numpy_helper.from_array(np.ones((5, 16), np.float32), "gamma"))
    elif case == "stats_read":
        m = skip_model(rng, stats=True)
    elif case == "gamma_unknown_shape":  # fed, of no declared shape: may not be (H,) at run time
        m = skip_model(rng, with_beta=False)
        m.graph.input.append(vi("gamma", F, None))
    else:
        m = skip_model(rng)
        m.graph.input[0].CopyFrom(vi("a", F, [2, 5, 1, 16]))
        m.graph.input[1].CopyFrom(vi("b", F, [2, 5, 1, 16]))
        b_shape = (2, 5, 1, 16)
    after = ops_after(m)
    assert "Add" in after and (MS, "SkipLayerNormalization") not in after, after
    feed = {"a": x_of(rng, (2, 5, 1, 16) if case == "rank_4" else (2, 5, 16)), "b": x_of(rng, b_shape)}
    check_outputs(m, feed)


def test_residual_add_of_a_matmul_stays_in_the_gemm(rng):
    """MatMul + bias + residual -> LayerNormalization: the GEMM's store takes the bias and the residual
    (MatMulEpilogueFusion runs first); with that pass off, the skip fusion takes them (bias input)."""
    h = 16
    nodes = [helper.make_node("MatMul", ["x", "w"], ["mm"]), helper.make_node("Add", ["mm", "bias"], ["mb"]),
             helper.make_node("Add", ["mb", "res"], ["s"]),
             helper.make_node("LayerNormalization", ["s", "gamma", "beta"], ["y"], epsilon=1e-5)]
    inits = [("w", rng.standard_normal((8, h)).astype(np.float32) * 0.3),
             ("bias", rng.standard_normal(h).astype(np.float32)),
             ("gamma", np.ones(h, np.float32)), ("beta", np.zeros(h, np.float32))]
    m = make_model(nodes, [vi("x", F, [2, 5, 8]), vi("res", F, [2, 5, h])], [vi("y", F, None)], initializers=inits)
    assert ops_after(m) == [("onnxfast", "FusedMatMul"), "LayerNormalization"]
    after = optimized(m, disabled=["MatMulEpilogueFusion"])
    assert [n.op_type for n in after.graph.nodes] == ["MatMul", "SkipLayerNormalization"]
    assert after.graph.nodes[1].inputs[-1] == "bias"
    feed = {"x": x_of(rng, (2, 5, 8)), "res": x_of(rng, (2, 5, h))}
    check_outputs(m, feed)
    check_outputs(m, feed, disabled=["MatMulEpilogueFusion"])


def test_passes_named_as_onnxruntime_and_switched_off_by_name(rng):
    assert set(NORM_PASSES) <= set(PASS_NAMES)
    assert PASS_NAMES.index("SkipLayerNormFusion") > PASS_NAMES.index("MatMulEpilogueFusion")
    assert PASS_NAMES.index("LayerNormFusion") < PASS_NAMES.index("ElementwiseFusion")
    m = layer_norm_model(rng)
    assert "LayerNormalization" not in ops_after(m, disabled=["LayerNormFusion", "SimplifiedLayerNormFusion"])
    s = session(m, disabled_optimizers=["LayerNormFusion"])
    assert "LayerNormalization" not in [r["op_type"] for r in s.kernel_listing()]
    assert "LayerNormalization" not in ops_after(m, level=1)  # extended level


# ---- exporters' graphs -----------------------------------------------------------------------------

torch = pytest.importorskip("torch")


def torch_export(module, args, names, tmp_path, opset=16, dynamic=None):
    path = tmp_path / "model.onnx"
    torch.onnx.export(module.eval(), args, str(path), dynamo=False, opset_version=opset, input_names=names,
                      output_names=["y"], dynamic_axes=dynamic)
    return onnx.load(str(path))


def counts(model, **kw):
    return collections.Counter(n.op_type for n in optimized(model, **kw).graph.nodes)


def test_torchscript_layer_norm_at_opset_16(tmp_path):
    torch.manual_seed(0)
    mod = torch.nn.Sequential(torch.nn.Linear(24, 32), torch.nn.GELU(), torch.nn.LayerNorm(32, eps=1e-6))
    x = torch.randn(3, 7, 24)
    m = torch_export(mod, (x,), ["x"], tmp_path, dynamic={"x": {0: "b", 1: "s"}})
    assert "LayerNormalization" not in [n.op_type for n in m.graph.node]
    assert counts(m)["LayerNormalization"] == 1
    with torch.no_grad():
        want = mod(x).numpy()
    np.testing.assert_allclose(session(m).run(None, {"x": x.numpy()})[0], want, rtol=1e-5, atol=1e-5)


def test_transformers_bert_at_opset_16(tmp_path):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                                  vocab_size=100)
    bert = transformers.BertModel(cfg, add_pooling_layer=False).eval()

    class Wrap(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.m = bert

        def forward(self, ids, mask):
            return self.m(input_ids=ids, attention_mask=mask).last_hidden_state

    ids = torch.randint(0, 100, (2, 8))
    mask = torch.ones(2, 8, dtype=torch.int64)
    mask[1, 6:] = 0
    dyn = {"ids": {0: "b", 1: "s"}, "mask": {0: "b", 1: "s"}}
    m = torch_export(Wrap(), (ids, mask), ["ids", "mask"], tmp_path, dynamic=dyn)
    assert "LayerNormalization" not in [n.op_type for n in m.graph.node]
    c = counts(m)
    assert c["LayerNormalization"] == 5 and c["ReduceMean"] == 0  # embeddings + 2 per layer
    # the residual Adds go to the GEMM's store; without that pass the skip fusion takes those whose two
    # operands have provably one shape (the FFN's; the attention output's comes through a Reshape to a
    # computed shape, so its symbolic dims differ from the residual's)
    c = counts(m, disabled=["MatMulEpilogueFusion"])
    assert c["SkipLayerNormalization"] == 2 and c["LayerNormalization"] == 3
    with torch.no_grad():
        want = Wrap()(ids, mask).numpy()
    feed = {"ids": ids.numpy(), "mask": mask.numpy()}
    for disabled in ([], ["MatMulEpilogueFusion"]):
        got = session(m, disabled_optimizers=disabled).run(None, feed)[0]
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_keras_layer_norm_converted_by_tf2onnx():
    tf = pytest.importorskip("tensorflow")
    tf2onnx = pytest.importorskip("tf2onnx")
    tf.keras.utils.set_random_seed(0)
    inp = tf.keras.Input((5, 16), name="x")
    model = tf.keras.Model(inp, tf.keras.layers.LayerNormalization(epsilon=1e-3)(tf.keras.layers.Dense(16)(inp)))
    ln = model.layers[-1]
    ln.set_weights([np.random.default_rng(0).standard_normal(w.shape).astype(np.float32) for w in ln.get_weights()])
    m, _ = tf2onnx.convert.from_keras(model, input_signature=(tf.TensorSpec((None, 5, 16), tf.float32, name="x"),),
                                      opset=17)
    assert "LayerNormalization" not in [n.op_type for n in m.graph.node]
    assert counts(m)["LayerNormalization"] == 1
    x = np.random.default_rng(1).standard_normal((3, 5, 16)).astype(np.float32)
    np.testing.assert_allclose(session(m).run(None, {"x": x})[0], model(x).numpy(), rtol=1e-5, atol=1e-5)


def test_llama_rms_norm_exported(tmp_path):
    class LlamaRMSNorm(torch.nn.Module):  # transformers' LlamaRMSNorm
        def __init__(self, h, eps=1e-6):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.rand(h) + 0.5)
            self.eps = eps

        def forward(self, x):
            dtype = x.dtype
            x = x.to(torch.float32)
            variance = x.pow(2).mean(-1, keepdim=True)
            x = x * torch.rsqrt(variance + self.eps)
            return self.weight * x.to(dtype)

    torch.manual_seed(0)
    mod = torch.nn.Sequential(torch.nn.Linear(16, 48), LlamaRMSNorm(48))
    x = torch.randn(2, 5, 16)
    m = torch_export(mod, (x,), ["x"], tmp_path, opset=17)
    for disabled in ([], ["CastElimination"]):
        c = counts(m, disabled=disabled)
        assert c["SimplifiedLayerNormalization"] == 1 and c["ReduceMean"] == 0 and c["Cast"] == 0
    with torch.no_grad():
        want = mod(x).numpy()
    np.testing.assert_allclose(session(m).run(None, {"x": x.numpy()})[0], want, rtol=1e-5, atol=1e-5)
