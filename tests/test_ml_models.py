"""Traditional-ML conversions (benchmarks/models/ml_zoo.py: scikit-learn through skl2onnx, LightGBM
and XGBoost through onnxmltools, a hand-built CastMap model) against onnxruntime and the source
library.

The rule of tests/test_real_models.py: probabilities, scores and values within
max(1e-4 * max|reference|, 20 * onnxruntime's own error on that output) of the source library's;
labels equal onnxruntime's, except on rows that are ties within that tolerance (the top two of the
source library's probabilities / scores, or a single score's distance from 0, within it). ZipMap
outputs are the Python objects onnxruntime returns: a list of dicts with the same keys, of the same
types, in the same order, and float values.
"""

from __future__ import annotations

import collections
import functools

import numpy as np
import onnx
import pytest

ml_zoo = pytest.importorskip("benchmarks.models.ml_zoo")

import onnxfast  # noqa: E402

PARAMS = [pytest.param(n, marks=[pytest.mark.slow] if s.slow else [], id=n) for n, s in ml_zoo.ML_ZOO.items()]
LEVELS = [pytest.param(None, id="default"), pytest.param(0, id="disable_all"), pytest.param(99, id="all")]


@functools.cache
def _cached(name: str):
    for mod in ml_zoo.FAMILY_MODULES[ml_zoo.ML_ZOO[name].family]:
        pytest.importorskip(mod)
    return ml_zoo.get(name)


def _model(name: str):
    pytest.importorskip("onnxruntime")
    return _cached(name)


def _session(c, level=None, threads=None):
    o = onnxfast.SessionOptions()
    if level is not None:
        o.graph_optimization_level = onnxfast.GraphOptimizationLevel(level)
    if threads is not None:
        o.intra_op_num_threads = threads
    return onnxfast.InferenceSession(str(c.path), o)


def _stack(pieces: list):
    """One output's per-row results as one value: ZipMap lists joined, tensors concatenated on axis 0
    (rows of different widths, CastMap DENSE's, padded with NaN)."""
    if isinstance(pieces[0], list):
        return [d for p in pieces for d in p]
    if len({p.shape[1:] for p in pieces}) == 1:
        return np.concatenate(pieces, axis=0)
    width = max(p.shape[1] for p in pieces)
    out = np.full((sum(p.shape[0] for p in pieces), width), np.nan, pieces[0].dtype)
    row = 0
    for p in pieces:
        out[row:row + p.shape[0], :p.shape[1]] = p
        row += p.shape[0]
    return out


def run_model(sess, c) -> list:
    """All the test rows through a session (onnxfast's or onnxruntime's): one run, or one run per
    row for models with a map input."""
    if not c.per_row:
        return sess.run(None, dict(c.inputs))
    n = len(next(iter(c.map_rows.values())))
    runs = []
    for i in range(n):
        feed = {k: rows[i] for k, rows in c.map_rows.items()}
        feed.update({k: v[i:i + 1] for k, v in c.inputs.items()})
        runs.append(sess.run(None, feed))
    return [_stack([r[j] for r in runs]) for j in range(len(runs[0]))]


@functools.cache
def _ort_results(name: str) -> list:
    import onnxruntime as ort

    c = _cached(name)
    return run_model(ort.InferenceSession(str(c.path), providers=["CPUExecutionProvider"]), c)


def _zipmap_matrix(rows: list, keys: list) -> np.ndarray:
    return np.array([[d[k] for k in keys] for d in rows], dtype=np.float64)


def _check_zipmap(name: str, out: str, got, ref) -> np.ndarray:
    """got is the list of dicts onnxruntime returns; returns its values as a (rows, classes) matrix."""
    assert isinstance(got, list), \
        f"{name}/{out}: ZipMap output is a {type(got).__name__}, onnxruntime's a list"
    assert len(got) == len(ref), f"{name}/{out}: {len(got)} dicts, onnxruntime {len(ref)}"
    keys = list(ref[0].keys())
    for i, (g, r) in enumerate(zip(got, ref)):
        assert type(g) is dict, f"{name}/{out}[{i}]: a {type(g).__name__}, onnxruntime's a dict"
        assert list(g.keys()) == list(r.keys()), f"{name}/{out}[{i}]: keys {list(g)} vs onnxruntime {list(r)}"
        assert [type(k) for k in g] == [type(k) for k in r], \
            f"{name}/{out}[{i}]: key types {[type(k) for k in g]} vs onnxruntime {[type(k) for k in r]}"
        assert [type(v) for v in g.values()] == [type(v) for v in r.values()], \
            f"{name}/{out}[{i}]: value types {[type(v) for v in g.values()]} vs onnxruntime's " \
            f"{[type(v) for v in r.values()]}"
    return _zipmap_matrix(got, keys)


def _max_err(a: np.ndarray, w: np.ndarray, what: str) -> float:
    nan_a, nan_w = np.isnan(a), np.isnan(w)
    assert np.array_equal(nan_a, nan_w), f"{what}: NaN at rows {np.nonzero((nan_a != nan_w).any(axis=-1))[0]}"
    return float(np.max(np.abs(a - w)[~nan_w])) if (~nan_w).any() else 0.0


def check_outputs(name: str, c, got: list, ref: list) -> None:
    assert len(got) == len(ref) == len(c.outputs)
    tols: dict[int, float] = {}
    labels = []
    for i, (info, g, r, w) in enumerate(zip(c.outputs, got, ref, c.expected)):
        what = f"{name}/{info.name}"
        if info.role == "label":
            labels.append(i)
            continue
        if info.zipmap:
            g_m, r_m = _check_zipmap(name, info.name, g, r), _zipmap_matrix(r, list(r[0].keys()))
        else:
            assert isinstance(g, np.ndarray), f"{what}: a {type(g).__name__}, onnxruntime's an array"
            assert g.dtype == r.dtype, f"{what}: dtype {g.dtype} vs onnxruntime {r.dtype}"
            assert g.shape == r.shape, f"{what}: shape {g.shape} vs onnxruntime {r.shape}"
            g_m, r_m = g.astype(np.float64), r.astype(np.float64)
        w = w.astype(np.float64).reshape(r_m.shape)
        ort_err = _max_err(r_m, w, f"{what} (onnxruntime against the source library)")
        tol = max(1e-4 * float(np.nanmax(np.abs(w))) if w.size else 0.0, 20 * ort_err)
        tols[i] = tol
        err = _max_err(g_m, w, what)
        assert err <= tol, f"{what}: max error {err:.3g} > {tol:.3g} (onnxruntime's error {ort_err:.3g})"
    for i in labels:
        info, g, r = c.outputs[i], got[i], ref[i]
        what = f"{name}/{info.name}"
        assert isinstance(g, np.ndarray), f"{what}: a {type(g).__name__}, onnxruntime's an array"
        assert g.dtype == r.dtype, f"{what}: dtype {g.dtype} vs onnxruntime {r.dtype}"
        assert g.shape == r.shape, f"{what}: shape {g.shape} vs onnxruntime {r.shape}"
        differ = np.asarray(g != r).reshape(len(g), -1).any(axis=1)
        if not differ.any():
            continue
        m = c.expected[info.margin_from].astype(np.float64).reshape(len(g), -1)
        if info.margin == "top2":
            s = np.sort(m, axis=1)
            margin = s[:, -1] - s[:, -2]
        else:
            margin = np.abs(m[:, 0])
        bad = np.nonzero(differ & ~(margin <= tols[info.margin_from]))[0]
        assert not bad.size, (f"{what}: labels differ from onnxruntime's on rows {bad.tolist()[:10]} "
                              f"(onnxfast {g[bad][:5].tolist()}, onnxruntime {r[bad][:5].tolist()}, "
                              f"margins {margin[bad][:5].tolist()})")


# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("name", PARAMS)
def test_model_matches_onnxruntime_and_source(name, level):
    """Default options, then no graph optimization (0) and every fusion (99)."""
    c = _model(name)
    got = run_model(_session(c, level), c)
    check_outputs(name, c, got, _ort_results(name))


def _same_bits(a, b) -> bool:
    if isinstance(a, list):
        return isinstance(b, list) and a == b and all(type(x) is type(y) for x, y in zip(a, b))
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype == object:
        return bool(np.array_equal(a, b))
    return a.tobytes() == b.tobytes()


@pytest.mark.parametrize("name", PARAMS)
def test_thread_count_does_not_change_results(name):
    """intra_op_num_threads=1 and =2 give bitwise identical outputs."""
    c = _model(name)
    one = run_model(_session(c, threads=1), c)
    two = run_model(_session(c, threads=2), c)
    for info, a, b in zip(c.outputs, one, two):
        assert _same_bits(a, b), f"{name}/{info.name}: 1 and 2 threads give different results"


@pytest.mark.parametrize("name", [p for p in PARAMS if p.values[0].startswith("column_logreg")])
def test_string_columns_as_unicode_arrays(name):
    """String columns fed as numpy unicode arrays (np.str_) give what object arrays give."""
    c = _model(name)
    sess = _session(c)
    feed = {k: (v.astype(str) if v.dtype == object else v) for k, v in c.inputs.items()}
    assert feed["c"].dtype.kind == "U"
    for info, a, b in zip(c.outputs, sess.run(None, feed), sess.run(None, dict(c.inputs))):
        assert _same_bits(a, b), \
            f"{name}/{info.name}: unicode and object string inputs give different results"


# ---------------------------------------------------------------------------------------------
# what runs where


def numpy_nodes(sess) -> list[tuple[str, str, str]]:
    """(node, op_type, kernel) of every step of the session's plan that is not a native kernel:
    numpy-implemented nodes, control flow driven from Python, native kernels with a numpy fallback."""
    out = []
    for r in sess.kernel_listing():
        k = r["kernel"]
        native = k.startswith("native") or k in ("constant", "copy")
        if not native or "numpy" in k:
            out.append((r["node"], r["op_type"], k))
    return out


@pytest.mark.parametrize("name", PARAMS)
def test_kernel_listing_names_every_node(name):
    """Without graph optimization, kernel_listing() has one entry per node of the model, with its
    op_type and where it runs; numpy_nodes() is the part of it that is not native."""
    c = _model(name)
    sess = _session(c, level=0)
    listing = sess.kernel_listing()
    main = [(r["node"], r["op_type"]) for r in listing if not r["subgraph"]]
    model = onnx.load(str(c.path))
    named = {(n.name, n.op_type) for n in model.graph.node if n.name}
    missing = sorted(named - set(main))
    assert not missing, f"{name}: nodes missing from kernel_listing(): {missing[:10]}"
    # unnamed nodes (onnxmltools leaves some unnamed) are listed under a made-up name: count them
    unnamed = collections.Counter(n.op_type for n in model.graph.node if not n.name)
    others = collections.Counter(op for node, op in main if (node, op) not in named)
    assert not unnamed - others, f"{name}: unnamed nodes missing from kernel_listing(): {unnamed - others}"
    kinds = {r["kernel"] for r in listing}
    known = ("numpy", "control-flow", "constant", "copy")
    assert all(k.startswith("native") or k in known for k in kinds), kinds
    listed = {(r["node"], r["op_type"], r["kernel"]) for r in listing}
    assert set(numpy_nodes(sess)) <= listed


@pytest.mark.parametrize("name", PARAMS)
def test_every_node_is_native(name):
    """Every node runs on a native kernel: numeric nodes on tensor kernels, the string and map ones
    (OneHotEncoder of string columns, string LabelEncoders, ZipMap, DictVectorizer, CastMap) on the
    C++ kernels over Python objects ('native:objects'); none on numpy."""
    c = _model(name)
    slow = numpy_nodes(_session(c))
    assert not slow, f"{name}: nodes not native: {slow[:20]}"
