"""Regression tests for the crash / hang sites ci/fuzz.py found (issue #14).

Each model runs in a child interpreter (the same onnxfast as this process) with a 4 GiB address-space
limit and a time limit, so a defect shows as a failed assertion naming the signal / hang instead of
killing pytest: the child prints 'load:<Error>', 'run:<Error>' or 'ok'. The corpus of fuzzer
findings itself is replayed by test_fuzz_corpus.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import onnxfast
from onnx_helpers import run_python

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_CHILD = r"""
import resource, sys, numpy as np
resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
import onnxfast
data = open(sys.argv[1], "rb").read()
with np.load(sys.argv[2], allow_pickle=True) as z:
    feeds = {k: z[k] for k in z.files}
feeds = {k[2:]: (v.astype(object) if v.dtype.kind == "U" else v) for k, v in feeds.items()}
def name(e):
    return type(e).__module__.split(".")[0] + "." + type(e).__name__
try:
    s = onnxfast.InferenceSession(data)
except Exception as e:
    print("load:" + name(e), str(e)[:300]); sys.exit(0)
try:
    s.run(None, feeds)
except Exception as e:
    print("run:" + name(e), str(e)[:300]); sys.exit(0)
print("ok")
"""


def run_isolated(model: onnx.ModelProto, feeds: dict, timeout: float = 30) -> str:
    """'ok' / 'load:onnxfast.InvalidModel ...' / 'run:...', or 'SIGNAL <n>' / 'HANG'."""
    with tempfile.TemporaryDirectory() as d:
        mp, fp = os.path.join(d, "m.onnx"), os.path.join(d, "f.npz")
        with open(mp, "wb") as f:
            f.write(model.SerializeToString())
        np.savez(fp, **{f"f_{k}": (v.astype(str) if v.dtype == object else v) for k, v in feeds.items()})
        try:
            r = run_python(["-c", _CHILD, mp, fp], timeout=timeout)
        except subprocess.TimeoutExpired:
            return "HANG"
    if r.returncode < 0:
        return f"SIGNAL {-r.returncode}"
    if r.returncode:
        return f"EXIT {r.returncode}: {r.stderr[-300:]}"
    return r.stdout.strip()


def _model(nodes, inputs, outputs, opset=18, ml=None):
    imports = [helper.make_opsetid("", opset)] + ([helper.make_opsetid("ai.onnx.ml", ml)] if ml else [])
    return helper.make_model(helper.make_graph(nodes, "g", inputs, outputs), opset_imports=imports)


def _vi(name, elem=TensorProto.FLOAT, shape=None):
    return helper.make_tensor_value_info(name, elem, shape)


# ---- Split: num_outputs that is not the node's output count (onnx's shape inference aborted) -------

@pytest.mark.parametrize("num_outputs", [1, 4, -1, 2**62])
def test_split_num_outputs_must_equal_the_output_count(num_outputs):
    n = helper.make_node("Split", ["x"], ["a", "b", "c"], axis=0, num_outputs=num_outputs)
    m = _model([n], [_vi("x", shape=[6])], [_vi("a"), _vi("b"), _vi("c")])
    res = run_isolated(m, {"x": np.arange(6, dtype=np.float32)})
    assert res.startswith("load:onnxfast.InvalidModel") and "num_outputs" in res, res


def test_split_num_outputs_equal_to_the_output_count_still_runs():
    n = helper.make_node("Split", ["x"], ["a", "b", "c"], axis=0, num_outputs=3)
    m = _model([n], [_vi("x", shape=[6])], [_vi("a"), _vi("b"), _vi("c")])
    assert run_isolated(m, {"x": np.arange(6, dtype=np.float32)}) == "ok"


# ---- Scan: num_scan_inputs out of range (a 2^31-entry default list: memory, then a hang) -----------

def _scan_body():
    add = helper.make_node("Add", ["s_in", "x_in"], ["s_out"])
    ident = helper.make_node("Identity", ["s_out"], ["y_out"])
    return helper.make_graph([add, ident], "body", [_vi("s_in", shape=[2]), _vi("x_in", shape=[2])],
                             [_vi("s_out", shape=[2]), _vi("y_out", shape=[2])])


@pytest.mark.parametrize("m", [0, 3, 2**31, -(2**63)])
def test_scan9_num_scan_inputs_out_of_range_is_refused(m):
    n = helper.make_node("Scan", ["s", "x"], ["s_final", "ys"], num_scan_inputs=m, body=_scan_body())
    model = _model([n], [_vi("s", shape=[2]), _vi("x", shape=[3, 2])], [_vi("s_final"), _vi("ys")], opset=11)
    res = run_isolated(model, {"s": np.zeros(2, np.float32), "x": np.ones((3, 2), np.float32)})
    assert res.startswith("load:onnxfast.InvalidModel") and "num_scan_inputs" in res, res


@pytest.mark.parametrize("m", [0, 3, 2**31])
def test_scan8_num_scan_inputs_out_of_range_is_refused(m):
    n = helper.make_node("Scan", ["", "s", "x"], ["s_final", "ys"], num_scan_inputs=m, body=_scan_body())
    model = _model([n], [_vi("s", shape=[1, 2]), _vi("x", shape=[1, 3, 2])], [_vi("s_final"), _vi("ys")], opset=8)
    res = run_isolated(model, {"s": np.zeros((1, 2), np.float32), "x": np.ones((1, 3, 2), np.float32)})
    assert res.startswith("load:onnxfast.InvalidModel") and "num_scan_inputs" in res, res


@pytest.mark.parametrize("attr", ["scan_input_axes", "scan_input_directions", "scan_output_axes",
                                  "scan_output_directions"])
def test_scan_attribute_lists_need_one_entry_per_input_or_output(attr):
    n = helper.make_node("Scan", ["s", "x"], ["s_final", "ys"], num_scan_inputs=1, body=_scan_body(),
                         **{attr: [0, 0, 0]})
    model = _model([n], [_vi("s", shape=[2]), _vi("x", shape=[3, 2])], [_vi("s_final"), _vi("ys")], opset=11)
    res = run_isolated(model, {"s": np.zeros(2, np.float32), "x": np.ones((3, 2), np.float32)})
    assert res.startswith("load:onnxfast.InvalidModel") and attr in res, res


def test_scan_with_valid_attributes_still_runs():
    n = helper.make_node("Scan", ["s", "x"], ["s_final", "ys"], num_scan_inputs=1, body=_scan_body())
    model = _model([n], [_vi("s", shape=[2]), _vi("x", shape=[3, 2])], [_vi("s_final"), _vi("ys")], opset=11)
    assert run_isolated(model, {"s": np.zeros(2, np.float32), "x": np.ones((3, 2), np.float32)}) == "ok"


# ---- graph inputs / outputs without a type (onnx's shape inference dereferenced them) --------------

def _tree_ensemble(x_vi):
    n = helper.make_node(
        "TreeEnsemble", ["X"], ["Y"], domain="ai.onnx.ml", aggregate_function=1, post_transform=0, n_targets=1,
        nodes_featureids=[0], nodes_modes=helper.make_tensor("m", TensorProto.UINT8, [1], [0]),
        nodes_splits=helper.make_tensor("s", TensorProto.FLOAT, [1], [0.5]),
        nodes_truenodeids=[0], nodes_trueleafs=[1], nodes_falsenodeids=[1], nodes_falseleafs=[1],
        tree_roots=[0], leaf_targetids=[0, 0], leaf_weights=helper.make_tensor("w", TensorProto.FLOAT, [2], [1, 2]))
    return _model([n], [x_vi], [_vi("Y")], opset=21, ml=5)


@pytest.mark.parametrize("which", ["input", "both"])
def test_graph_value_without_type_does_not_crash_type_inference(which):
    x = onnx.ValueInfoProto(name="X") if which in ("input", "both") else _vi("X", shape=[3, 1])
    m = _tree_ensemble(x)
    if which in ("output", "both"):
        del m.graph.output[:]
        m.graph.output.add().name = "Y"
    res = run_isolated(m, {"X": np.array([[0.0], [1.0], [0.2]], np.float32)})
    assert res == "ok" or res.startswith(("load:onnxfast.", "run:onnxfast.")), res


def test_label_encoder_input_without_type_runs():
    n = helper.make_node("LabelEncoder", ["X"], ["Y"], domain="ai.onnx.ml", keys_strings=["a", "b"],
                         values_int64s=[1, 2], default_int64=-1)
    m = _model([n], [onnx.ValueInfoProto(name="X")], [_vi("Y", TensorProto.INT64)], ml=2)
    res = run_isolated(m, {"X": np.array(["a", "c", "b"], dtype=object)})
    assert res == "ok" or res.startswith(("load:onnxfast.", "run:onnxfast.")), res


# ---- tensor attributes whose dims disagree with their data (onnx's inference hung / read past) -----

@pytest.mark.parametrize("dims,raw", [([2**40], False), ([2**31, 2], True), ([4], False), ([1, 2], True),
                                      ([0], False)])
def test_constant_whose_dims_disagree_with_its_data_is_refused(dims, raw):
    vals = np.array([1.0, 2.0, 3.0], np.float32)
    t = helper.make_tensor("v", TensorProto.FLOAT, [3], vals.tobytes() if raw else vals.tolist(), raw=raw)
    del t.dims[:]
    t.dims.extend(dims)
    c = helper.make_node("Constant", [], ["c"], value=t)
    add = helper.make_node("Add", ["x", "c"], ["y"])
    m = _model([c, add], [_vi("x", shape=[3])], [_vi("y")])
    res = run_isolated(m, {"x": np.ones(3, np.float32)})
    assert res.startswith("load:onnxfast.InvalidModel") and "'value'" in res, res


def test_constant_with_consistent_dims_still_runs():
    t = helper.make_tensor("v", TensorProto.FLOAT, [3], [1.0, 2.0, 3.0])
    c = helper.make_node("Constant", [], ["c"], value=t)
    add = helper.make_node("Add", ["x", "c"], ["y"])
    m = _model([c, add], [_vi("x", shape=[3])], [_vi("y")])
    assert run_isolated(m, {"x": np.ones(3, np.float32)}) == "ok"


# ---- GatherND with a negative batch_dims (onnx's shape inference read out of bounds) ---------------

@pytest.mark.parametrize("batch_dims", [-1, -(2**31)])
def test_gathernd_negative_batch_dims_is_refused(batch_dims):
    n = helper.make_node("GatherND", ["d", "i"], ["y"], batch_dims=batch_dims)
    m = _model([n], [_vi("d", shape=[2, 2]), _vi("i", TensorProto.INT64, [2, 1])], [_vi("y")])
    res = run_isolated(m, {"d": np.ones((2, 2), np.float32), "i": np.zeros((2, 1), np.int64)})
    assert res.startswith("load:onnxfast.InvalidModel") and "batch_dims" in res, res


# ---- a required input named "" reaching onnx's shape inference (SIGSEGV before the arity check) ---

@pytest.mark.parametrize("op,domain,attrs,opset", [
    ("RegexFullMatch", "", {}, 20),
    ("EyeLike", "", {"k": 1}, 18),
    ("LabelEncoder", "ai.onnx.ml", {"keys_strings": ["a"], "values_int64s": [1]}, 18),
    ("TreeEnsembleRegressor", "ai.onnx.ml", {"nodes_treeids": [0], "nodes_nodeids": [0], "nodes_modes": ["LEAF"],
                                             "target_treeids": [0], "target_nodeids": [0], "target_ids": [0],
                                             "target_weights": [1.0]}, 18),
])
def test_required_input_named_empty_is_refused_before_type_inference(op, domain, attrs, opset):
    n = helper.make_node(op, [""], ["Y"], domain=domain, **attrs)
    m = _model([n], [], [_vi("Y", TensorProto.BOOL if op == "RegexFullMatch" else TensorProto.FLOAT, [2, 0])],
               opset=opset, ml=(3 if op == "LabelEncoder" else 1) if domain else None)
    res = run_isolated(m, {})
    assert res.startswith("load:onnxfast.InvalidModel") and "empty name" in res, res


# ---- declared dims of 2^31: onnx's data propagation materialized them (a hang) ---------------------

def test_huge_declared_dim_in_value_info_does_not_hang_type_inference():
    corpus = os.path.join(ROOT, "tests", "fuzz_corpus")
    m = onnx.load(os.path.join(corpus, "div-hang-24fca674.onnx"))  # the fuzzer's minimized reproducer
    assert any(d.dim_value == 2**31 for vi in m.graph.input for d in vi.type.tensor_type.shape.dim)
    with np.load(os.path.join(corpus, "div-hang-24fca674.npz")) as z:
        import json

        layout = json.loads(str(z["__layout__"]))
        feeds = {name: z[spec["a"]] for name, spec in layout}
    res = run_isolated(m, feeds)
    assert res == "ok" or res.startswith(("load:onnxfast.", "run:onnxfast.")), res


# ---- blocked DequantizeLinear: a huge block_size made numpy's repeat write out of bounds (SIGSEGV) ---

@pytest.mark.parametrize("block_size", [2**62, 2**40, 5])
def test_blocked_dequantize_with_a_scale_that_does_not_fit_is_refused(block_size):
    m = _model([helper.make_node("DequantizeLinear", ["x", "s"], ["y"], axis=1, block_size=block_size)],
               [_vi("x", TensorProto.INT8, [2, 4]), _vi("s", TensorProto.FLOAT, [2, 4])], [_vi("y")], opset=21)
    r = run_isolated(m, {"x": np.ones((2, 4), np.int8), "s": np.ones((2, 4), np.float32)})
    assert r.startswith("run:onnxfast.InvalidArgument") and "block_size" in r, r


def test_blocked_dequantize_reads_block_i_over_block_size():
    x = np.arange(-6, 6, dtype=np.int8).reshape(2, 6)
    s = np.array([[0.5, 2.0], [1.0, 3.0]], np.float32)  # blocks of 4 along axis 1: ceil(6 / 4) = 2
    m = _model([helper.make_node("DequantizeLinear", ["x", "s"], ["y"], axis=1, block_size=4)],
               [_vi("x", TensorProto.INT8, [2, 6]), _vi("s", TensorProto.FLOAT, [2, 2])], [_vi("y")], opset=21)
    (y,) = onnxfast.InferenceSession(m.SerializeToString()).run(None, {"x": x, "s": s})
    np.testing.assert_array_equal(y, x.astype(np.float32) * np.repeat(s, 4, axis=1)[:, :6])


# ---- what onnx's C++ shape inference dereferenced: checked before it runs -------------------------

def test_a_node_reading_its_own_output_is_refused():
    m = _model([helper.make_node("Relu", ["x"], ["x"], name="loop")], [], [_vi("x", shape=[2])])
    r = run_isolated(m, {})
    assert r.startswith("load:onnxfast.InvalidModel") and "'x' is also one of its inputs" in r, r


def test_a_value_produced_twice_is_refused():
    m = _model([helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Neg", ["x"], ["y"], name="second")],
               [_vi("x", shape=[2])], [_vi("y", shape=[2])])
    r = run_isolated(m, {"x": np.ones(2, np.float32)})
    assert r.startswith("load:onnxfast.InvalidModel") and "'y' is defined twice" in r, r


@pytest.mark.parametrize("axis", [2**63 - 1, -(2**63), 5, -6])
def test_layer_normalization_axis_outside_the_declared_rank_is_refused(axis):
    m = _model([helper.make_node("LayerNormalization", ["x", "w"], ["y"], axis=axis, name="ln")],
               [_vi("x", shape=[2, 3, 4, 5]), _vi("w", shape=[5])], [_vi("y")], opset=17)
    r = run_isolated(m, {"x": np.ones((2, 3, 4, 5), np.float32), "w": np.ones(5, np.float32)})
    assert r.startswith("load:onnxfast.InvalidModel") and "'axis'" in r, r


@pytest.mark.parametrize("op,axis,shape", [("Flatten", 4, [2, 3, 4, 5]), ("Softmax", -4, [2, 3, 4, 5]),
                                           ("LayerNormalization", -1, [2, 3])])
def test_axis_at_the_ends_of_its_range_still_runs(op, axis, shape):
    ins = ["x", "w"] if op == "LayerNormalization" else ["x"]
    inputs = [_vi("x", shape=shape)] + ([_vi("w", shape=shape[-1:])] if op == "LayerNormalization" else [])
    feeds = {"x": np.ones(shape, np.float32)}
    if op == "LayerNormalization":
        feeds["w"] = np.ones(shape[-1:], np.float32)
    m = _model([helper.make_node(op, ins, ["y"], axis=axis)], inputs, [_vi("y")], opset=17)
    assert run_isolated(m, feeds) == "ok"


# ---- pools whose kernel is wider than the row: the taps loop ran over all 2^32 taps of nothing (hang) ---

@pytest.mark.parametrize("op", ["LpPool", "AveragePool", "MaxPool"])
def test_pool_with_a_kernel_wider_than_the_row_finishes_and_matches_a_covering_kernel(op):
    def model(k):
        return _model([helper.make_node(op, ["x"], ["y"], auto_pad="SAME_LOWER", kernel_shape=[2, k])],
                      [_vi("x", shape=[1, 3, 32, 32])], [_vi("y")])
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    assert run_isolated(model(2**32), {"x": x}) == "ok"
    # every window covers the whole row either way: the same answer as a kernel of 64 (2 x the row)
    (huge,) = onnxfast.InferenceSession(model(2**32).SerializeToString()).run(None, {"x": x})
    (ref,) = onnxfast.InferenceSession(model(64).SerializeToString()).run(None, {"x": x})
    np.testing.assert_allclose(huge, ref, rtol=1e-6)


# ---- TfIdfVectorizer: loops ran to max_gram_length / max_skip_count (2^31 and more: hang) ---------

@pytest.mark.parametrize("attr,huge", [("max_gram_length", 2**31 - 1), ("max_gram_length", 2**40),
                                       ("max_skip_count", 2**32 + 1)])
def test_tfidf_with_huge_gram_length_or_skip_count_matches_the_bounded_one(attr, huge):
    def model(**over):
        attrs = dict(mode="TF", min_gram_length=1, max_gram_length=2, max_skip_count=5, ngram_counts=[0, 4],
                     ngram_indexes=[0, 1, 2, 3, 4, 5, 6], pool_int64s=[2, 3, 5, 4, 5, 6, 7, 8, 6, 7])
        attrs.update(over)
        return _model([helper.make_node("TfIdfVectorizer", ["x"], ["y"], **attrs)],
                      [_vi("x", TensorProto.INT32, [12])], [_vi("y")], opset=9)
    x = np.array([1, 1, 3, 3, 3, 7, 8, 6, 7, 5, 6, 8], np.int32)
    assert run_isolated(model(**{attr: huge}), {"x": x}) == "ok"
    (got,) = onnxfast.InferenceSession(model(**{attr: huge}).SerializeToString()).run(None, {"x": x})
    bounded = {"max_gram_length": 2, "max_skip_count": 12}[attr]  # the pool's longest n-gram; the row length
    (want,) = onnxfast.InferenceSession(model(**{attr: bounded}).SerializeToString()).run(None, {"x": x})
    np.testing.assert_array_equal(got, want)


# ---- Einsum: onnx's shape inference looped forever on equations like "(a*)*b" ----------------------

@pytest.mark.parametrize("eq", ["(a*)*b", "U\x1cdL", "ij->j-i", "i.j"])
def test_einsum_equation_that_is_not_subscripts_is_refused(eq):
    m = _model([helper.make_node("Einsum", ["x"], ["y"], equation=eq)], [_vi("x", shape=[3, 4])], [_vi("y")], opset=12)
    r = run_isolated(m, {"x": np.ones((3, 4), np.float32)})
    assert r.startswith("load:onnxfast.InvalidModel") and "'equation'" in r, r


@pytest.mark.parametrize("eq,shapes", [("ij->ji", [[3, 4]]), ("...ij, ...jk -> ...ik", [[2, 3, 4], [2, 4, 5]]),
                                       ("ii", [[3, 3]]), ("i,i", [[3], [3]])])
def test_einsum_valid_equations_still_run(eq, shapes):
    names = [f"x{i}" for i in range(len(shapes))]
    m = _model([helper.make_node("Einsum", names, ["y"], equation=eq)],
               [_vi(n, shape=s) for n, s in zip(names, shapes)], [_vi("y")], opset=12)
    xs = [np.random.default_rng(i).standard_normal(s).astype(np.float32) for i, s in enumerate(shapes)]
    (y,) = onnxfast.InferenceSession(m.SerializeToString()).run(None, dict(zip(names, xs)))
    np.testing.assert_allclose(y, np.einsum(eq.replace(" ", ""), *xs), rtol=1e-5, atol=1e-6)


# ---- LRN: the channel axis was padded by `size` (1,000,003: a gigabyte and seconds of work) ---------

@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 8, 1_000_003])
def test_lrn_matches_the_definition_for_any_size(size):
    x = np.random.default_rng(size).standard_normal((2, 5, 3, 3)).astype(np.float32)
    m = _model([helper.make_node("LRN", ["x"], ["y"], size=size, alpha=1e-2, beta=0.75, bias=1.0)],
               [_vi("x", shape=list(x.shape))], [_vi("y")], opset=13)
    (y,) = onnxfast.InferenceSession(m.SerializeToString()).run(None, {"x": x})
    lo, hi = (size - 1) // 2, size - 1 - (size - 1) // 2
    want = np.empty_like(x)
    for c in range(5):
        s = (x[:, max(0, c - lo):min(5, c + hi + 1)].astype(np.float64) ** 2).sum(axis=1)
        want[:, c] = x[:, c] / (1.0 + 1e-2 / size * s) ** 0.75
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-6)


# ---- RoiAlign max mode: a (C, oh, gh, ow, gw) gather per corner (output_width 1,000,003: > 10 s, GBs) ----

_ROI_CHILD = r"""
import json, resource, sys
import numpy as np
from onnx import TensorProto, helper
from onnx_helpers import make_model, vi
import onnxfast
F = TensorProto.FLOAT
node = helper.make_node("RoiAlign", ["X", "rois", "bi"], ["Y"], output_height=5, output_width=1000003,
                        sampling_ratio=2, mode="max")
m = make_model([node], [vi("X", F, [1, 1, 10, 10]), vi("rois", F, [3, 4]), vi("bi", TensorProto.INT64, [3])],
               [vi("Y", F, None)])
s = onnxfast.InferenceSession(m.SerializeToString())
feeds = {"X": np.ones((1, 1, 10, 10), np.float32), "bi": np.zeros(3, np.int64),
         "rois": np.array([[0, 0, 9, 9], [0, 5, 4, 9], [5, 5, 9, 9]], np.float32)}
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
y = s.run(None, feeds)[0]
print(json.dumps({"shape": list(y.shape), "max": float(y.max()), "grew_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before}))
"""


def test_roialign_max_mode_works_in_memory_of_the_output_size():
    r = run_python(["-c", _ROI_CHILD], timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["shape"] == [3, 1, 5, 1000003] and res["max"] == 1.0, res
    # the output is 60 MB (float32) and its float64 accumulator 120 MB; before, each corner's
    # temporaries were gh * gw = 4 times the output
    assert res["grew_kb"] < 400 * 1024, res


@pytest.mark.parametrize("seed", range(6))
def test_roialign_max_mode_matches_the_reference(seed):
    from onnx.reference import ReferenceEvaluator

    rng = np.random.default_rng(seed)
    node = helper.make_node("RoiAlign", ["X", "rois", "bi"], ["Y"], output_height=int(rng.integers(1, 6)),
                            output_width=int(rng.integers(1, 6)), sampling_ratio=int(rng.integers(0, 4)),
                            spatial_scale=float(rng.choice([0.5, 1.0])), mode="max",
                            coordinate_transformation_mode=str(rng.choice(["half_pixel", "output_half_pixel"])))
    m = _model([node], [_vi("X"), _vi("rois"), _vi("bi", TensorProto.INT64)], [_vi("Y")], opset=16)
    rois = rng.uniform(-2, 10, (4, 4)).astype(np.float32)
    rois[:, 2:] = rois[:, :2] + np.abs(rois[:, 2:])
    feeds = {"X": rng.standard_normal((2, 3, 7, 9)).astype(np.float32), "rois": rois, "bi": rng.integers(0, 2, 4)}
    (y,) = onnxfast.InferenceSession(m.SerializeToString()).run(None, feeds)
    np.testing.assert_allclose(y, ReferenceEvaluator(m).run(None, feeds)[0], rtol=1e-5, atol=1e-5)


# ---- a node reading a value nothing defines: onnx's shape inference dereferenced it (SIGSEGV) -----

def test_a_read_of_an_undefined_value_is_refused_before_inference():
    m = _model([helper.make_node("EyeLike", ["x"], ["y"], dtype=TensorProto.DOUBLE)],
               [_vi("other", shape=[3, 4])], [_vi("y", TensorProto.DOUBLE, [3, 4])], opset=22)
    r = run_isolated(m, {"other": np.ones((3, 4), np.float32)})
    assert r.startswith("load:onnxfast.InvalidModel") and "reads 'x', which no node" in r, r


def test_a_subgraph_may_read_the_enclosing_graph_but_not_an_undefined_value():
    def if_model(read):
        then = helper.make_graph([helper.make_node("Neg", [read], ["t"])], "then", [], [_vi("t", shape=[2])])
        other = helper.make_graph([helper.make_node("Abs", ["x"], ["e"])], "else", [], [_vi("e", shape=[2])])
        node = helper.make_node("If", ["c"], ["y"], then_branch=then, else_branch=other)
        return _model([node], [_vi("c", TensorProto.BOOL, []), _vi("x", shape=[2])], [_vi("y", shape=[2])])

    feeds = {"c": np.array(True), "x": np.array([1.0, -2.0], np.float32)}
    assert run_isolated(if_model("x"), feeds) == "ok"
    r = run_isolated(if_model("nowhere"), feeds)
    assert r.startswith("load:onnxfast.InvalidModel") and "reads 'nowhere'" in r and "enclosing graph" in r, r


# ---- RoiAlign sampling_ratio 1,000,003: 10^12 samples per roi, one by one (ci/fuzz.py case 92924) ----

def _roialign(mode, oh, ow, ratio, scale=1.0, ctm="half_pixel"):
    node = helper.make_node("RoiAlign", ["X", "rois", "bi"], ["Y"], output_height=oh, output_width=ow,
                            sampling_ratio=ratio, spatial_scale=scale, mode=mode, coordinate_transformation_mode=ctm)
    return _model([node], [_vi("X"), _vi("rois"), _vi("bi", TensorProto.INT64)], [_vi("Y")], opset=16)


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("ratio", [1000003, 2**40])
def test_roialign_huge_sampling_ratio_groups_its_samples(mode, ratio):
    rois = np.array([[0, 0, 9, 9], [0, 5, 4, 9], [5, 5, 9, 9]], np.float32)
    feeds = {"X": np.random.default_rng(0).standard_normal((1, 2, 10, 10)).astype(np.float32), "rois": rois,
             "bi": np.zeros(3, np.int64)}
    assert run_isolated(_roialign(mode, 5, 5, ratio), feeds) == "ok"
    # the limit of many samples per bin: the bin's max / mean of the bilinear surface, near 64 samples
    (many,) = onnxfast.InferenceSession(_roialign(mode, 5, 5, ratio).SerializeToString()).run(None, feeds)
    (some,) = onnxfast.InferenceSession(_roialign(mode, 5, 5, 64).SerializeToString()).run(None, feeds)
    np.testing.assert_allclose(many, some, atol=0.05)


@pytest.mark.parametrize("seed", range(4))
def test_roialign_grouped_samples_equal_samples_one_by_one(seed, monkeypatch):
    """The grouped path (many samples per bin) against the per-sample path on the same cases: max
    mode bit for bit, avg mode to rounding; rois inverted (negative bins) and outside the image too."""
    from onnxfast.ops import image

    rng = np.random.default_rng(seed)
    for _ in range(40):
        mode = str(rng.choice(["max", "avg"]))
        m = _roialign(mode, int(rng.integers(1, 6)), int(rng.integers(1, 6)), int(rng.integers(0, 30)),
                      float(rng.choice([0.5, 1.0, 2.0])), str(rng.choice(["half_pixel", "output_half_pixel"])))
        h, w = (int(v) for v in rng.integers(1, 9, 2))
        rois = rng.uniform(-4, 12, (4, 4)).astype(np.float32)
        if rng.random() < 0.7:
            rois[:, 2:] = rois[:, :2] + np.abs(rois[:, 2:]) * 3
        feeds = {"X": rng.standard_normal((2, 3, h, w)).astype(np.float32), "rois": rois, "bi": rng.integers(0, 2, 4)}
        got = []
        for above in (10**9, 0):
            monkeypatch.setattr(image, "_ROI_GROUP_ABOVE", above)
            got.append(onnxfast.InferenceSession(m.SerializeToString()).run(None, feeds)[0])
        if mode == "max":
            np.testing.assert_array_equal(got[1], got[0])
        else:
            np.testing.assert_allclose(got[1], got[0], rtol=1e-5, atol=1e-6)


# ---- SequenceMap over an input typed {}: onnx's function builder dereferenced it (SIGSEGV; atheris) ----

def test_a_context_dependent_function_is_not_built_from_incomplete_types():
    body = helper.make_graph([helper.make_node("Identity", ["in0"], ["out0"])], "body",
                             [_vi("in0", shape=["N"])], [_vi("out0", shape=["N"])])
    node = helper.make_node("SequenceMap", ["x"], ["y"], body=body)
    x = onnx.ValueInfoProto(name="x")
    x.type.SetInParent()  # a type with nothing in it
    y = helper.make_tensor_sequence_value_info("y", TensorProto.FLOAT, ["N"])
    m = helper.make_model(helper.make_graph([node], "g", [x], [y]), opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    r = run_isolated(m, {})
    assert r.startswith("load:onnxfast.") and "SequenceMap" in r, r


def test_cast_to_an_unknown_type_code_is_refused_before_onnx_inference():
    """A Cast whose 'to' names no element type, read by another node: onnx's shape inference crashed the
    process on it (found by fuzzing converted ML models); now a clear InvalidModel."""
    from onnx import TensorProto, helper

    import onnxfast

    nodes = [helper.make_node("Cast", ["x"], ["c"], to=-1), helper.make_node("Relu", ["c"], ["y"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    with pytest.raises(onnxfast.errors.InvalidModel, match="attribute 'to' is -1"):
        onnxfast.InferenceSession(m.SerializeToString())
