"""The native tree-ensemble kernel (csrc/kernels/tree_ensemble.cpp) against onnxruntime on random
ensembles: TreeEnsembleRegressor / TreeEnsembleClassifier (ai.onnx.ml 1 and 3) and TreeEnsemble (ai.onnx.ml 5),
every branch mode, missing-value tracks, NaN inputs, every aggregate and post transform, base values,
the binary-class conventions, float / double / integer inputs, 1 and 2 threads (bitwise equal), and
malformed ensembles refused at session creation."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto as T
from onnx import helper, numpy_helper
from onnx_helpers import native_and_numpy

import onnxfast

ort = pytest.importorskip("onnxruntime")

LEGACY_MODES = ["BRANCH_LEQ", "BRANCH_LT", "BRANCH_GTE", "BRANCH_GT", "BRANCH_EQ", "BRANCH_NEQ"]
VALUES = np.array([-1.5, -0.5, 0.0, 0.5, 1.0, 2.0], np.float32)  # inputs and thresholds share values: EQ hits


def _random_trees(rng, n_trees, depth, n_feat, modes, n_targets, weights_per_leaf=1, positive=False,
                  missing=True, targets=None):
    """Trees as lists of node dicts (node ids from 0 per tree), leaves with (target, weight) lists."""
    trees = []
    for _ in range(n_trees):
        nodes = []

        def grow(d):
            i = len(nodes)
            nodes.append(None)
            if d >= depth or (d > 0 and rng.random() < 0.25):
                # distinct targets per leaf (onnxruntime reads only a single-target leaf's first weight)
                pool = targets if targets is not None else range(n_targets)
                ts = rng.choice(list(pool), size=min(weights_per_leaf, len(pool)), replace=False)
                ws = [(int(t), float(rng.uniform(0.01, 1.0) if positive else rng.uniform(-1, 1))) for t in ts]
                nodes[i] = {"leaf": True, "weights": ws}
                return i
            f = grow(d + 1)
            t = grow(d + 1)
            nodes[i] = {"leaf": False, "feat": int(rng.integers(n_feat)), "mode": str(rng.choice(modes)),
                        "thr": float(rng.choice(VALUES)), "t": t, "f": f,
                        "mvt": int(missing and rng.random() < 0.5)}
            return i

        grow(0)
        trees.append(nodes)
    return trees


def _legacy_attrs(trees, prefix, as_tensor=False):
    a = {k: [] for k in ("nodes_treeids", "nodes_nodeids", "nodes_featureids", "nodes_values", "nodes_modes",
                         "nodes_truenodeids", "nodes_falsenodeids", "nodes_missing_value_tracks_true")}
    w = {k: [] for k in (prefix + "_treeids", prefix + "_nodeids", prefix + "_ids", prefix + "_weights")}
    for ti, nodes in enumerate(trees):
        for ni, n in enumerate(nodes):
            a["nodes_treeids"].append(ti)
            a["nodes_nodeids"].append(ni)
            if n["leaf"]:
                a["nodes_featureids"].append(0)
                a["nodes_values"].append(0.0)
                a["nodes_modes"].append("LEAF")
                a["nodes_truenodeids"].append(0)
                a["nodes_falsenodeids"].append(0)
                a["nodes_missing_value_tracks_true"].append(0)
                for t, wt in n["weights"]:
                    w[prefix + "_treeids"].append(ti)
                    w[prefix + "_nodeids"].append(ni)
                    w[prefix + "_ids"].append(t)
                    w[prefix + "_weights"].append(wt)
            else:
                a["nodes_featureids"].append(n["feat"])
                a["nodes_values"].append(n["thr"])
                a["nodes_modes"].append(n["mode"])
                a["nodes_truenodeids"].append(n["t"])
                a["nodes_falsenodeids"].append(n["f"])
                a["nodes_missing_value_tracks_true"].append(n["mvt"])
    a.update(w)
    if as_tensor:
        a["nodes_values_as_tensor"] = numpy_helper.from_array(np.asarray(a.pop("nodes_values"), np.float64))
        a[prefix + "_weights_as_tensor"] = numpy_helper.from_array(
            np.asarray(a.pop(prefix + "_weights"), np.float64))
    return a


def _model(op, attrs, x_type, outputs, ml_opset=3):
    node = helper.make_node(op, ["X"], [o.name for o in outputs], domain="ai.onnx.ml", name="trees", **attrs)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("X", x_type, [None, None])], outputs)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", ml_opset)],
                             ir_version=9)


def _inputs(rng, n, f, dtype=np.float32, nan=True):
    x = rng.choice(VALUES, size=(n, f)).astype(dtype)
    x += rng.choice([0, 0, 0.25], size=x.shape).astype(dtype)  # some values between thresholds
    if nan and np.dtype(dtype).kind == "f":
        x[rng.random(x.shape) < 0.1] = np.nan
    return x


def _ort(model, x):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"X": x})


def _check(model, x, op, probit_binary=False, label_exempt=False, probit=False, ort_model=None):
    nat, ref = native_and_numpy(model, op)
    got = nat.run(None, {"X": x})
    want = _ort(model, x) if ort_model is None else _ort(ort_model, x.astype(np.float32))
    for i, (g, w) in enumerate(zip(got, want)):
        assert g.shape == w.shape and g.dtype == w.dtype, (i, g.shape, w.shape, g.dtype, w.dtype)
        if g.dtype == np.int64:
            if not label_exempt:
                np.testing.assert_array_equal(g, w)
            continue
        if probit_binary:
            g, w = g[:, :1], w[:, :1]
        # onnxruntime's probit (sqrt(a^2 - b) - a in float32) loses digits near p = 0.5: small score
        # differences (float64 sums here, float32 there) grow there
        tol = 2e-4 if probit else 2e-5
        np.testing.assert_allclose(g, w, rtol=tol, atol=tol, equal_nan=True)
    # the numpy fallback computes the same thing
    for g, r in zip(got, ref.run(None, {"X": x})):
        if g.dtype == np.int64:
            np.testing.assert_array_equal(g, r)
        else:
            np.testing.assert_allclose(g, r, rtol=2e-5, atol=2e-5, equal_nan=True)
    # 1 and 2 threads: bitwise identical
    o = onnxfast.SessionOptions()
    o.intra_op_num_threads = 2
    two = onnxfast.InferenceSession(model.SerializeToString(), o).run(None, {"X": x})
    for g, t in zip(got, two):
        np.testing.assert_array_equal(g, t)
    return got


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("agg", ["SUM", "AVERAGE", "MIN", "MAX"])
@pytest.mark.parametrize("n_targets", [1, 3])
def test_regressor_random(seed, agg, n_targets):
    rng = np.random.default_rng(seed)
    modes = LEGACY_MODES if seed % 2 else ["BRANCH_LEQ"]
    trees = _random_trees(rng, int(rng.integers(1, 40)), int(rng.integers(1, 7)), 5, modes, n_targets,
                          weights_per_leaf=int(rng.integers(1, 3)))
    attrs = _legacy_attrs(trees, "target", as_tensor=seed == 3)
    attrs.update(n_targets=n_targets, aggregate_function=agg)
    post = ["NONE", "LOGISTIC", "SOFTMAX", "SOFTMAX_ZERO", "PROBIT", "NONE"][seed]
    attrs["post_transform"] = post
    if seed % 3 == 1:
        attrs["base_values"] = [float(v) for v in rng.uniform(-1, 1, n_targets)]
    x = _inputs(rng, int(rng.choice([0, 1, 7, 65, 300])), 5, np.float64 if seed == 3 else np.float32)
    _check(_model("TreeEnsembleRegressor", attrs, T.DOUBLE if seed == 3 else T.FLOAT,
                  [helper.make_tensor_value_info("Y", T.FLOAT, None)]), x, "TreeEnsembleRegressor",
           probit=post == "PROBIT")


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("post", ["NONE", "LOGISTIC", "SOFTMAX", "SOFTMAX_ZERO", "PROBIT"])
@pytest.mark.parametrize("kind", ["binary0", "binary1", "multi"])
def test_classifier_random(seed, post, kind):
    rng = np.random.default_rng(seed)
    n_classes = 2 if kind != "multi" else 4
    targets = [0] if kind == "binary0" else [1] if kind == "binary1" else None
    positive = seed % 2 == 0
    modes = LEGACY_MODES if seed % 3 == 0 else ["BRANCH_LEQ"]
    trees = _random_trees(rng, int(rng.integers(1, 30)), int(rng.integers(1, 6)), 4, modes, n_classes,
                          weights_per_leaf=1 if kind != "multi" else int(rng.integers(1, 4)), positive=positive,
                          targets=targets)
    attrs = _legacy_attrs(trees, "class")
    attrs.update(classlabels_int64s=[10 + 7 * i for i in range(n_classes)], post_transform=post)
    nb = [0, 1, 2, n_classes][seed % 4] if kind != "multi" else [0, n_classes][seed % 2]
    if nb:
        attrs["base_values"] = [float(v) for v in rng.uniform(-0.5, 0.5, nb)]
    x = _inputs(rng, int(rng.choice([1, 5, 64, 257])), 4)
    outs = [helper.make_tensor_value_info("L", T.INT64, None), helper.make_tensor_value_info("P", T.FLOAT, None)]
    # PROBIT with one class scored: onnxruntime leaves the second column unwritten
    _check(_model("TreeEnsembleClassifier", attrs, T.FLOAT, outs), x, "TreeEnsembleClassifier",
           probit_binary=post == "PROBIT" and kind != "multi", probit=post == "PROBIT")


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.float64])
def test_integer_and_double_inputs(dtype):
    rng = np.random.default_rng(5)
    trees = _random_trees(rng, 12, 4, 3, LEGACY_MODES, 1, missing=False)
    attrs = _legacy_attrs(trees, "target")
    attrs["n_targets"] = 1
    x = (rng.integers(-2, 3, (40, 3))).astype(dtype)
    ttype = {np.int64: T.INT64, np.int32: T.INT32, np.float64: T.DOUBLE}[dtype]
    out = [helper.make_tensor_value_info("Y", T.FLOAT, None)]
    # onnxruntime's regressor takes float and double only: its float32 model is the reference for integers
    _check(_model("TreeEnsembleRegressor", attrs, ttype, out), x, "TreeEnsembleRegressor",
           ort_model=None if dtype == np.float64 else _model("TreeEnsembleRegressor", attrs, T.FLOAT, out))


def test_tree_ensemble_v5_random():
    rng = np.random.default_rng(11)
    for trial in range(6):
        n_targets = [1, 2][trial % 2]
        dtype = np.float64 if trial >= 4 else np.float32
        trees = _random_trees(rng, int(rng.integers(1, 20)), int(rng.integers(1, 5)), 4, LEGACY_MODES, n_targets)
        attrs, with_member = _v5_from_trees(trees, rng, member=trial % 3 == 0, dtype=dtype)
        attrs.update(n_targets=n_targets, aggregate_function=[0, 1, 2, 3, 1, 1][trial],
                     post_transform=[0, 0, 1, 2, 0, 3][trial] if n_targets > 1 else 0)
        x = _inputs(rng, 33, 4, dtype)
        m = _model("TreeEnsemble", attrs, T.DOUBLE if dtype == np.float64 else T.FLOAT,
                   [helper.make_tensor_value_info("Y", T.DOUBLE if dtype == np.float64 else T.FLOAT, None)],
                   ml_opset=5)
        nat, ref = native_and_numpy(m, "TreeEnsemble")
        got = nat.run(None, {"X": x})[0]
        if not with_member:
            # onnxruntime takes integer membership values only (and onnx's reference evaluator reads the sets
            # in its own walk order, not in node order as the spec says): compared without BRANCH_MEMBER nodes
            want = _ort(m, x)[0]
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=f"trial {trial}")
        np.testing.assert_allclose(got, ref.run(None, {"X": x})[0], rtol=1e-5, atol=1e-5)
        for g, t in zip([got], _two_threads(m, x)):
            np.testing.assert_array_equal(g, t)


def _two_threads(model, x):
    o = onnxfast.SessionOptions()
    o.intra_op_num_threads = 2
    return onnxfast.InferenceSession(model.SerializeToString(), o).run(None, {"X": x})


def test_tree_ensemble_v5_membership():
    """BRANCH_MEMBER: sets in node order (the spec), NaN a member of no set unless its track says true."""
    node_attrs = dict(nodes_featureids=[0, 1], nodes_splits=numpy_helper.from_array(np.zeros(2, np.float32)),
                      nodes_modes=numpy_helper.from_array(np.array([6, 6], np.uint8)), nodes_truenodeids=[1, 0],
                      nodes_falsenodeids=[2, 1], nodes_trueleafs=[0, 1], nodes_falseleafs=[1, 1],
                      nodes_missing_value_tracks_true=[0, 1], leaf_targetids=[0, 0, 0],
                      leaf_weights=numpy_helper.from_array(np.array([1.0, 2.0, 3.0], np.float32)), tree_roots=[0],
                      membership_values=numpy_helper.from_array(np.array([0, 2, np.nan, 5, np.nan], np.float32)),
                      n_targets=1)
    m = _model("TreeEnsemble", node_attrs, T.FLOAT, [helper.make_tensor_value_info("Y", T.FLOAT, None)], ml_opset=5)
    x = np.array([[0, 5], [2, 1], [1, 5], [np.nan, 5], [0, np.nan], [2, 4]], np.float32)
    nat, ref = native_and_numpy(m, "TreeEnsemble")
    # x0 in {0, 2} (NaN: no) -> node 1, else leaf 2 (3.0); node 1: x1 in {5} or NaN -> leaf 0 (1.0), else leaf 1 (2.0)
    want = np.array([[1.0], [2.0], [3.0], [3.0], [1.0], [2.0]], np.float32)
    np.testing.assert_array_equal(nat.run(None, {"X": x})[0], want)
    np.testing.assert_array_equal(ref.run(None, {"X": x})[0], want)


def _v5_from_trees(trees, rng, member, dtype):
    code = {m: i for i, m in enumerate(LEGACY_MODES)}
    feats, splits, modes, tids, fids, tleaf, fleaf, mvt, lt, lw, roots, memb = ([] for _ in range(12))
    for nodes in trees:
        where = {}
        for ni, n in enumerate(nodes):
            if n["leaf"]:
                where[ni] = (True, len(lt))
                t, w = n["weights"][0]
                lt.append(t)
                lw.append(w)
            else:
                where[ni] = (False, len(feats))
                feats.append(n["feat"])
                if member and rng.random() < 0.3:
                    modes.append(6)
                    splits.append(0.0)
                    memb.extend([float(v) for v in rng.choice(VALUES, 2, replace=False)] + [np.nan])
                else:
                    modes.append(code[n["mode"]])
                    splits.append(n["thr"])
                mvt.append(n["mvt"])
                tids.append(0)
                fids.append(0)
                tleaf.append(0)
                fleaf.append(0)
        for ni, n in enumerate(nodes):
            if n["leaf"]:
                continue
            k = where[ni][1]
            tleaf[k], tids[k] = int(where[n["t"]][0]), where[n["t"]][1]
            fleaf[k], fids[k] = int(where[n["f"]][0]), where[n["f"]][1]
        roots.append(where[0][1])
    attrs = dict(nodes_featureids=feats, nodes_splits=numpy_helper.from_array(np.asarray(splits, dtype)),
                 nodes_modes=numpy_helper.from_array(np.asarray(modes, np.uint8)), nodes_truenodeids=tids,
                 nodes_falsenodeids=fids, nodes_trueleafs=tleaf, nodes_falseleafs=fleaf,
                 nodes_missing_value_tracks_true=mvt, leaf_targetids=lt,
                 leaf_weights=numpy_helper.from_array(np.asarray(lw, dtype)), tree_roots=roots)
    if memb:
        attrs["membership_values"] = numpy_helper.from_array(np.asarray(memb, dtype))
    return attrs, bool(memb)


def test_single_leaf_tree_and_many_rows_two_threads():
    # a tree that is one leaf, beside normal trees; 10,000 rows run in parallel row blocks
    rng = np.random.default_rng(3)
    trees = _random_trees(rng, 40, 6, 20, ["BRANCH_LEQ"], 1) + [[{"leaf": True, "weights": [(0, 0.75)]}]]
    attrs = _legacy_attrs(trees, "target")
    attrs["n_targets"] = 1
    x = _inputs(rng, 10000, 20)
    _check(_model("TreeEnsembleRegressor", attrs, T.FLOAT, [helper.make_tensor_value_info("Y", T.FLOAT, None)]), x,
           "TreeEnsembleRegressor")


def _stump_attrs(**over):
    a = dict(nodes_treeids=[0, 0, 0], nodes_nodeids=[0, 1, 2], nodes_featureids=[0, 0, 0],
             nodes_values=[0.5, 0.0, 0.0], nodes_modes=["BRANCH_LEQ", "LEAF", "LEAF"], nodes_truenodeids=[1, 0, 0],
             nodes_falsenodeids=[2, 0, 0], target_treeids=[0, 0], target_nodeids=[1, 2], target_ids=[0, 0],
             target_weights=[1.0, 2.0], n_targets=1)
    a.update(over)
    return a


@pytest.mark.parametrize("over, words", [
    (dict(nodes_truenodeids=[7, 0, 0]), "points to node 7"),
    (dict(nodes_nodeids=[0, 1, 1]), "defined twice"),
    (dict(nodes_values=[0.5, 0.0]), "nodes_values"),
    (dict(nodes_modes=["BRANCH_LEQ", "LEAF", "BRANCH_WHAT"]), "BRANCH_WHAT"),
    (dict(nodes_treeids=[0] * 4, nodes_nodeids=[0, 1, 2, 3], nodes_featureids=[0] * 4,
          nodes_values=[0.5] * 4, nodes_modes=["BRANCH_LEQ", "BRANCH_LEQ", "BRANCH_LEQ", "LEAF"],
          nodes_truenodeids=[1, 2, 3, 0], nodes_falsenodeids=[2, 2, 3, 0], target_nodeids=[3, 3]), "reached twice"),
    (dict(nodes_modes=["BRANCH_LEQ", "BRANCH_LEQ", "LEAF"], nodes_truenodeids=[1, 1, 0],
          nodes_falsenodeids=[2, 0, 0]), "no root"),
    (dict(target_nodeids=[1, 9]), "node 9"),
    (dict(target_ids=[0, 3]), "target 3"),
    (dict(nodes_featureids=[-1, 0, 0]), "feature -1"),
    (dict(aggregate_function="MEDIAN"), "MEDIAN"),
    (dict(post_transform="TANH"), "TANH"),
    (dict(target_weights=[1.0]), "target_weights"),
])
def test_malformed_ensembles_refused(over, words):
    m = _model("TreeEnsembleRegressor", _stump_attrs(**over), T.FLOAT, [helper.make_tensor_value_info("Y", T.FLOAT, None)])
    with pytest.raises(onnxfast.errors.OnnxfastError) as e:
        onnxfast.InferenceSession(m.SerializeToString())
    assert words in str(e.value)


def test_feature_out_of_range_at_run_time():
    m = _model("TreeEnsembleRegressor", _stump_attrs(nodes_featureids=[4, 0, 0]), T.FLOAT,
               [helper.make_tensor_value_info("Y", T.FLOAT, None)])
    s = onnxfast.InferenceSession(m.SerializeToString())
    with pytest.raises(onnxfast.errors.OnnxfastError, match="feature 4"):
        s.run(None, {"X": np.zeros((2, 3), np.float32)})
    assert s.run(None, {"X": np.ones((2, 5), np.float32)})[0].tolist() == [[2.0], [2.0]]
