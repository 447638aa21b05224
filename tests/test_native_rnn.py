"""Native LSTM / GRU / RNN (csrc/kernels/rnn.cpp) against the numpy kernels (onnxfast/ops/rnn.py) and
onnxruntime.

Each model runs with the op's numpy kernel disabled (the kernel listing must say native) and with every
native kernel disabled (the numpy reference); where onnxruntime is installed it runs the model too. The
sweeps cover directions, layouts, sizes (batch 0/1/3, seq 0/1/5, hidden 1/7/16/33, input 1/8/13), the
optional inputs and outputs, sequence_lens, the activations with their alphas / betas, clip,
input_forget, linear_before_reset and the opset versions; plus the kernel listing, bitwise equality across
thread counts and the errors of bad models.

Where onnxruntime differs from the numpy reference, the reference wins and onnxruntime is not compared:
a batch row with sequence length 0 keeps its initial state in Y_h / Y_c (onnxruntime writes zeros), and the
default alpha / beta of Affine, ScaledTanh and ThresholdedRelu are the ONNX operators' (onnxruntime: 0), so
the onnxruntime comparisons give them explicitly.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx_helpers import native_and_numpy

import onnxfast

F = TensorProto.FLOAT
GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
NACTS = {"LSTM": 3, "GRU": 2, "RNN": 1}
RTOL = ATOL = 1e-5


def rnn_model(op, *, seq=5, batch=3, input_size=8, hidden=7, direction="forward", layout=0, opset=22,
              bias=True, lens=None, init_h=False, init_c=False, peep=False, outputs=("Y", "Y_h", "Y_c"),
              const_weights=True, attrs=None, seed=0, scale=0.5):
    """(model, feed, {name: value}): the node reads X, W, R and the optional inputs asked for (absent ones as
    empty names); `outputs` lists the output names wanted (the others are left out with empty names)."""
    rng = np.random.default_rng(seed)
    g, ndir = GATES[op], 2 if direction == "bidirectional" else 1
    vals = {
        "X": rng.standard_normal((seq, batch, input_size) if layout == 0 else (batch, seq, input_size)),
        "W": rng.standard_normal((ndir, g * hidden, input_size)) * scale,
        "R": rng.standard_normal((ndir, g * hidden, hidden)) * scale,
    }
    names = ["X", "W", "R"]
    if bias:
        vals["B"] = rng.standard_normal((ndir, 2 * g * hidden)) * scale
    names.append("B" if bias else "")
    if lens is not None:
        vals["sequence_lens"] = np.asarray(lens, np.int32)
    names.append("sequence_lens" if lens is not None else "")
    state = (ndir, batch, hidden) if layout == 0 else (batch, ndir, hidden)
    if init_h:
        vals["initial_h"] = rng.standard_normal(state)
    names.append("initial_h" if init_h else "")
    if op == "LSTM":
        if init_c:
            vals["initial_c"] = rng.standard_normal(state)
        names.append("initial_c" if init_c else "")
        if peep:
            vals["P"] = rng.standard_normal((ndir, 3 * hidden)) * scale
        names.append("P" if peep else "")
    while names and not names[-1]:
        names.pop()
    vals = {k: (v if v.dtype == np.int32 else v.astype(np.float32)) for k, v in vals.items()}
    all_outs = ["Y", "Y_h", "Y_c"][: 3 if op == "LSTM" else 2]
    outs = [o if o in outputs else "" for o in all_outs]
    while outs and not outs[-1]:
        outs.pop()
    a = {"hidden_size": hidden, "direction": direction}
    if opset >= 14:
        a["layout"] = layout
    a.update(attrs or {})
    node = helper.make_node(op, names, outs, name="rnn", **a)
    inits = [] if not const_weights else [numpy_helper.from_array(vals[n], n) for n in ("W", "R", "B") if n in vals]
    fed = [n for n in names if n and (not const_weights or n not in ("W", "R", "B"))]
    elem = {n: (TensorProto.INT32 if n == "sequence_lens" else F) for n in names}
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info(n, elem[n], vals[n].shape) for n in fed],
        [helper.make_tensor_value_info(o, F, None) for o in outs if o], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8 if opset < 21 else 10
    return model, {n: vals[n] for n in fed}


def ort_outputs(model, feed):
    """onnxruntime's outputs. It computes layout 0 only: a layout-1 node runs as layout 0 on transposed
    inputs, its outputs transposed back."""
    ort = pytest.importorskip("onnxruntime")
    node = model.graph.node[0]
    if next((a.i for a in node.attribute if a.name == "layout"), 0) == 1:
        m = type(model)()
        m.CopyFrom(model)
        next(a for a in m.graph.node[0].attribute if a.name == "layout").i = 0
        for vi in m.graph.input:
            vi.type.tensor_type.ClearField("shape")
        feed = {k: (v.transpose(1, 0, 2) if k in ("X", "initial_h", "initial_c") else v) for k, v in feed.items()}
        outs = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feed)
        names = [n for n in node.output if n]
        return [o.transpose(2, 0, 1, 3) if n == "Y" else o.transpose(1, 0, 2) for n, o in zip(names, outs)]
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feed)


def check(model, feed, op, ort=True, threads=0):
    nat, ref = native_and_numpy(model, op, threads=threads)
    got, want = nat.run(None, feed), ref.run(None, feed)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype == np.float32
        np.testing.assert_allclose(g, w, rtol=RTOL, atol=ATOL)
    if ort:
        for g, w in zip(got, ort_outputs(model, feed)):
            assert g.shape == w.shape
            np.testing.assert_allclose(g, w, rtol=RTOL, atol=ATOL)
    return got


# ---- sizes, directions, layouts ------------------------------------------------------------

# (batch, seq, hidden, input)
SIZES = [(1, 1, 1, 1), (3, 5, 7, 8), (3, 5, 33, 13), (1, 5, 16, 13), (0, 5, 7, 8), (3, 0, 16, 8), (3, 1, 33, 1),
         (3, 5, 7, 0)]


@pytest.mark.parametrize("size", SIZES, ids=lambda s: "b{}s{}h{}i{}".format(*s))
@pytest.mark.parametrize("layout", [0, 1])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
def test_sizes_directions_layouts(op, direction, layout, size):
    batch, seq, hidden, input_size = size
    model, feed = rnn_model(op, seq=seq, batch=batch, input_size=input_size, hidden=hidden, direction=direction,
                            layout=layout, init_h=True, init_c=True)
    # onnxruntime refuses an empty batch, sequence or input; the numpy reference is the judge there
    check(model, feed, op, ort=batch > 0 and seq > 0 and input_size > 0)


# ---- optional inputs and outputs -----------------------------------------------------------

# (op, optional inputs present): initial_c and P are LSTM's
OPTIONAL = [(op, dict(bias=b, init_h=h, init_c=c, peep=p))
            for op in ("LSTM", "GRU", "RNN") for b, h, c, p in itertools.product([False, True], repeat=4)
            if op == "LSTM" or not (c or p)]


@pytest.mark.parametrize("op,opt", OPTIONAL,
                         ids=lambda v: v if isinstance(v, str) else "-".join(k for k, x in v.items() if x) or "none")
@pytest.mark.parametrize("direction", ["reverse", "bidirectional"])
def test_optional_inputs(op, direction, opt):
    model, feed = rnn_model(op, direction=direction, **opt)
    check(model, feed, op)


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
def test_hidden_size_from_weights(op):
    """hidden_size is optional in the spec: W's shape gives it (onnxruntime requires it)."""
    model, feed = rnn_model(op, direction="bidirectional", init_h=True)
    del model.graph.node[0].attribute[[a.name for a in model.graph.node[0].attribute].index("hidden_size")]
    check(model, feed, op, ort=False)


@pytest.mark.parametrize("outputs", [("Y",), ("Y_h",), ("Y_c",), ("Y", "Y_c"), ("Y_h", "Y_c")])
@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
def test_optional_outputs(op, outputs):
    if op != "LSTM" and "Y_c" in outputs:
        outputs = tuple(o for o in outputs if o != "Y_c") or ("Y_h",)
    model, feed = rnn_model(op, direction="bidirectional", outputs=outputs, init_h=True, lens=[5, 2, 4])
    got = check(model, feed, op)
    assert len(got) == len(outputs)


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
def test_fed_weights_not_prepacked(op):
    model, feed = rnn_model(op, direction="bidirectional", const_weights=False, init_h=True, lens=[1, 5, 3])
    nat, _ = native_and_numpy(model, op)
    assert [r["kernel"] for r in nat.kernel_listing() if r["op_type"] == op] == ["native"]
    check(model, feed, op)
    # other weights through the same session
    _, feed2 = rnn_model(op, direction="bidirectional", const_weights=False, init_h=True, lens=[1, 5, 3], seed=7)
    got = nat.run(None, feed2)
    want = native_and_numpy(model, op)[1].run(None, feed2)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=RTOL, atol=ATOL)


# ---- sequence_lens -------------------------------------------------------------------------

LENS = [[5, 5, 5], [1, 5, 3], [5, 0, 2], [0, 0, 0], [2, 2, 2]]


@pytest.mark.parametrize("lens", LENS, ids=lambda v: "-".join(map(str, v)))
@pytest.mark.parametrize("layout", [0, 1])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
def test_sequence_lens(op, direction, layout, lens):
    # with initial states, onnxruntime zeroes Y_h / Y_c of a row of length 0 (the reference keeps the state)
    init = 0 not in lens
    model, feed = rnn_model(op, direction=direction, layout=layout, lens=lens, init_h=init, init_c=init,
                            peep=op == "LSTM")
    got = check(model, feed, op)
    y = got[0] if layout == 0 else got[0].transpose(1, 2, 0, 3)  # (seq, ndir, batch, hidden)
    for b, n in enumerate(lens):
        assert not y[n:, :, b].any()  # past a row's length: zeros


def test_sequence_lens_int64_and_bad_values():
    """sequence_lens is int32 in the spec; an int64 tensor is read too. Values outside [0, seq] are refused."""
    model, feed = rnn_model("LSTM", direction="bidirectional", lens=[5, 1, 3])
    nat, ref = native_and_numpy(model, "LSTM")
    for v in ([5, 1, 3], [6, 1, 3], [-1, 1, 3]):
        feed["sequence_lens"] = np.array(v, np.int32)
        if max(v) > 5 or min(v) < 0:
            with pytest.raises(onnxfast.errors.OnnxfastError, match="LSTM 'rnn'.*sequence_lens"):
                nat.run(None, feed)
            continue
        for g, w in zip(nat.run(None, feed), ref.run(None, feed)):
            np.testing.assert_allclose(g, w, rtol=RTOL, atol=ATOL)
    feed["sequence_lens"] = np.array([1, 2], np.int32)  # (the feed check refuses the declared shape's misfit)
    with pytest.raises(onnxfast.errors.OnnxfastError, match="sequence_lens"):
        nat.run(None, feed)


# ---- activations, clip, input_forget, linear_before_reset ----------------------------------

ALL_ACTS = ["Relu", "Tanh", "Sigmoid", "Affine", "LeakyRelu", "ThresholdedRelu", "ScaledTanh", "HardSigmoid", "Elu",
            "Softsign", "Softplus"]
TAKES = {"Affine": 2, "LeakyRelu": 1, "ThresholdedRelu": 1, "ScaledTanh": 2, "HardSigmoid": 2, "Elu": 1}


def _act_attrs(names, explicit):
    """activations / alphas / betas (explicit: every parameter given, as onnxruntime's defaults differ)."""
    attrs = {"activations": names}
    if explicit:
        alphas = [0.3 + 0.1 * i for i, n in enumerate(names) if TAKES.get(n, 0) >= 1]
        betas = [0.2 + 0.05 * i for i, n in enumerate(names) if TAKES.get(n, 0) >= 2]
        if alphas:
            attrs["activation_alpha"] = alphas
        if betas:
            attrs["activation_beta"] = betas
    return attrs


def _act_sets(op):
    n = NACTS[op]
    # every activation in every slot at least once, each set rotating through the list
    return [[ALL_ACTS[(i + k) % len(ALL_ACTS)] for k in range(n)] for i in range(len(ALL_ACTS))]


@pytest.mark.parametrize("explicit", [True, False], ids=["params", "defaults"])
@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
def test_every_activation(op, explicit):
    for names in _act_sets(op):
        for direction in ("forward", "bidirectional"):
            attrs = _act_attrs(names * (2 if direction == "bidirectional" else 1), explicit)
            # small weights: unbounded gate activations (Relu, Affine) make values grow fast
            model, feed = rnn_model(op, direction=direction, attrs=attrs, init_h=True, hidden=9, scale=0.1)
            # defaults: onnxruntime takes 0 for Affine / ScaledTanh / ThresholdedRelu (ONNX: the operators')
            ort = explicit or not ({"Affine", "ScaledTanh", "ThresholdedRelu"} & set(names))
            check(model, feed, op, ort=ort)


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
def test_activation_lists(op):
    """Names in any case; as the numpy reference, one list for both directions of a bidirectional node, and
    RNN's schema default (two names) on a one-direction node (onnxruntime wants one list per direction)."""
    n = NACTS[op]
    # (onnxruntime's RNN takes the names' exact case only)
    for attrs, ort in [({"activations": ["sigmoid", "TANH", "tanh"][:n] * 2}, op != "RNN"),
                       ({"activations": ["sigmoid", "TANH", "tanh"][:n]}, False),
                       ({"activations": ["HardSigmoid", "Softsign", "Elu"][:n], "activation_alpha": [0.3, 0.7],
                         "activation_beta": [0.4]}, False),
                       ({"activations": ["Softsign", "Tanh", "Relu", "HardSigmoid", "Tanh", "Relu"][: 2 * n]}, True)]:
        model, feed = rnn_model(op, direction="bidirectional", attrs=attrs, init_h=True, scale=0.3)
        check(model, feed, op, ort=ort)
    if op == "RNN":
        model, feed = rnn_model(op, attrs={"activations": ["Relu", "Tanh"]})
        check(model, feed, op, ort=False)


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
def test_clip(op):
    for clip in (0.3, 2.0):
        model, feed = rnn_model(op, direction="bidirectional", attrs={"clip": clip}, init_h=True, init_c=True,
                                peep=True, scale=1.5, lens=[5, 3, 1])
        check(model, feed, op)


@pytest.mark.parametrize("peep", [False, True])
@pytest.mark.parametrize("clip", [None, 0.5])
def test_lstm_input_forget(peep, clip):
    attrs = {"input_forget": 1} | ({"clip": clip} if clip else {})
    model, feed = rnn_model("LSTM", direction="bidirectional", attrs=attrs, init_h=True, init_c=True, peep=peep)
    check(model, feed, "LSTM")


@pytest.mark.parametrize("lbr", [0, 1])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("layout", [0, 1])
def test_gru_linear_before_reset(lbr, bias, layout):
    model, feed = rnn_model("GRU", direction="bidirectional", layout=layout, bias=bias, init_h=True, hidden=16,
                            attrs={"linear_before_reset": lbr}, lens=[5, 4, 2])
    check(model, feed, "GRU")


@pytest.mark.parametrize("opset", [6, 7, 14, 22])
@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
def test_opset_versions(op, opset):
    """Every schema version: 1 (GRU 3) with output_sequence, which the numpy kernel ignores too (Y is
    computed when asked for), 7, 14 (layout) and 22; onnxruntime starts at 7."""
    attrs = {"output_sequence": 1} if opset < 7 else {}
    model, feed = rnn_model(op, opset=opset, direction="bidirectional", init_h=True, init_c=True, peep=True,
                            lens=[5, 2, 4], attrs=attrs)
    check(model, feed, op, ort=opset >= 7)


def test_larger_sizes():
    """Sizes past the GEMM's blocks: hidden 300 (K blocks of 256), batch 13 (several micro-kernel strips)."""
    for op in ("LSTM", "GRU"):
        model, feed = rnn_model(op, seq=4, batch=13, input_size=270, hidden=300, direction="bidirectional",
                                init_h=True, scale=0.05, lens=[4] * 12 + [2])
        check(model, feed, op)


# ---- listing, threads, types ---------------------------------------------------------------

def test_kernel_listing_shows_native():
    for op in ("LSTM", "GRU", "RNN"):
        model, _ = rnn_model(op)
        s = onnxfast.InferenceSession(model.SerializeToString())
        assert [r["kernel"] for r in s.kernel_listing() if r["op_type"] == op] == ["native:prepacked"]
    assert {"LSTM", "GRU", "RNN"} <= set(onnxfast._core.native_kernels())


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
def test_threads_bitwise_equal(op, direction):
    model, feed = rnn_model(op, seq=6, batch=9, input_size=40, hidden=70, direction=direction, init_h=True,
                            init_c=True, peep=True, lens=[6, 5, 6, 1, 6, 6, 3, 6, 0], scale=0.1)
    runs = []
    for threads in (1, 2):
        o = onnxfast.SessionOptions()
        o.intra_op_num_threads = threads
        runs.append(onnxfast.InferenceSession(model.SerializeToString(), o).run(None, feed))
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


def test_double_runs_on_numpy():
    """float64 models run on the numpy kernel (the native one is float32 only)."""
    model, feed = rnn_model("LSTM", direction="bidirectional", init_h=True, const_weights=False)
    for vi in model.graph.input:
        vi.type.tensor_type.elem_type = TensorProto.DOUBLE
    for o in model.graph.output:
        o.type.tensor_type.elem_type = TensorProto.DOUBLE
    s = onnxfast.InferenceSession(model.SerializeToString())
    assert [r["kernel"] for r in s.kernel_listing() if r["op_type"] == "LSTM"] == ["numpy"]
    got = s.run(None, {k: v.astype(np.float64) for k, v in feed.items()})
    assert got[0].dtype == np.float64


# ---- bad models and inputs -----------------------------------------------------------------

@pytest.mark.parametrize("op,attrs,match", [
    ("LSTM", {"direction": "sideways"}, "attribute 'direction' is 'sideways'"),
    ("GRU", {"activations": ["Sigmoid", "Gelu"]}, "attribute 'activations' is ['Sigmoid', 'Gelu']"),
    ("LSTM", {"activations": ["Sigmoid", "Tanh"]}, "attribute 'activations' is ['Sigmoid', 'Tanh']; it must be 3 names"),
    ("RNN", {"layout": 2}, "attribute 'layout' is 2"),
    ("LSTM", {"clip": -1.0}, "attribute 'clip' is -1"),
    ("LSTM", {"input_forget": 3}, "attribute 'input_forget' is 3"),
    ("GRU", {"linear_before_reset": 2}, "attribute 'linear_before_reset' is 2"),
    ("RNN", {"activation_alpha": [float("nan")], "activations": ["LeakyRelu"]}, "attribute 'activation_alpha'"),
    ("LSTM", {"hidden_size": 5}, "input 1 ('W') has shape (1, 28, 8)"),
])
def test_bad_attributes_refused_at_creation(op, attrs, match):
    model, _ = rnn_model(op, attrs=attrs)
    for disabled in (f"numpy:{op}", "native"):
        o = onnxfast.SessionOptions()
        o.add_session_config_entry("onnxfast.disable_kernels", disabled)
        with pytest.raises(onnxfast.errors.InvalidModel) as info:
            onnxfast.InferenceSession(model.SerializeToString(), o)
        assert str(info.value).startswith(f"{op} 'rnn': "), info.value
        assert match in str(info.value), info.value


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
def test_bad_fed_shapes_raise_naming_the_op(op):
    """Weights fed at run time with shapes that do not fit: an onnxfast error naming the node, no crash."""
    model, feed = rnn_model(op, direction="bidirectional", const_weights=False, init_h=True)
    for vi in model.graph.input:  # shapes known only at run time
        vi.type.tensor_type.ClearField("shape")
    nat, _ = native_and_numpy(model, op)
    g = GATES[op]
    bad = [("W", (2, g * 7, 9)), ("W", (2, g * 7 + 1, 8)), ("W", (1, g * 7, 8)), ("R", (2, g * 7, 6)),
           ("B", (2, g * 7)), ("initial_h", (2, 4, 7)), ("X", (5, 3))]
    for name, shape in bad:
        f = dict(feed)
        f[name] = np.zeros(shape, np.float32)
        with pytest.raises(onnxfast.errors.OnnxfastError, match=f"{op} 'rnn'") as info:
            nat.run(None, f)
        assert name in str(info.value) or "hidden_size" in str(info.value), info.value


@pytest.mark.parametrize("op,name,shape,allowed", [
    ("LSTM", "W", (2, 28, 9), "(2, 28, 8) for hidden_size 7"),
    ("LSTM", "R", (2, 28, 6), "(2, 28, 7)"),
    ("GRU", "R", (2, 21, 6), "(2, 21, 7)"),
    ("RNN", "B", (2, 10), "(2, 14)"),
    ("LSTM", "initial_h", (1, 3, 7), "(2, batch_size, 7)"),
    ("GRU", "initial_h", (2, 3, 6), "(2, batch_size, 7)"),
    ("LSTM", "P", (2, 20), "(2, 21)"),
    ("LSTM", "X", (5, 3), "3"),
])
def test_declared_shapes_checked_at_creation(op, name, shape, allowed):
    """Shapes the model declares for its inputs that cannot fit are refused when the session is made."""
    model, _ = rnn_model(op, direction="bidirectional", const_weights=False, init_h=True, peep=op == "LSTM")
    for vi in model.graph.input:
        if vi.name == name:
            vi.CopyFrom(helper.make_tensor_value_info(name, F, shape))
    with pytest.raises(onnxfast.errors.InvalidModel) as info:
        onnxfast.InferenceSession(model.SerializeToString())
    msg = str(info.value)
    assert msg.startswith(f"{op} 'rnn': input ") and f"('{name}')" in msg and f"it must be {allowed}" in msg, msg
