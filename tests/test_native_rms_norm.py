"""Native RMS normalization (vecmath's rmsnorm_row, per ISA tier: test_isa_tiers.py runs this file at
each): SimplifiedLayerNormalization (onnxruntime's, ONNX domain), ONNX RMSNormalization (opset 23) and
com.microsoft SkipSimplifiedLayerNormalization, against the numpy kernels and onnxruntime over row
lengths around the vector widths (4, 8, 16 lanes), and their errors."""

import numpy as np
import pytest
from onnx import TensorProto, helper
from onnx_helpers import F, make_model, native_and_numpy, vi

import onnxfast

ort = pytest.importorskip("onnxruntime")
MS = [("com.microsoft", 1)]
SIZES = [0, 1, 3, 7, 8, 15, 16, 17, 31, 33, 768, 4096]


def ort_run(model, feed):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feed)


def close(got, want, tol=2e-6):
    for g, w in zip(got, want):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=tol, atol=tol)


def rows(rng, h, n_rows=3):
    # an offset and a spread: the mean square is not ~1 (catches a missing division by n)
    return (rng.standard_normal((n_rows, h)) * 2.5 + 0.7).astype(np.float32)


@pytest.mark.filterwarnings("ignore:Mean of empty slice")  # (h = 0: the numpy reference's NaN)
@pytest.mark.parametrize("h", SIZES)
def test_simplified_layer_norm(rng, h):
    x, g = rows(rng, h), (rng.standard_normal(h) + 1).astype(np.float32)
    node = helper.make_node("SimplifiedLayerNormalization", ["x", "g"], ["y", "inv"], epsilon=1e-6)
    m = make_model([node], [vi("x", F, [3, h])], [vi("y", F, None), vi("inv", F, None)], initializers=[("g", g)])
    nat, ref = native_and_numpy(m, "SimplifiedLayerNormalization")
    got = nat.run(None, {"x": x})
    close(got, ref.run(None, {"x": x}))
    if h:  # (onnxruntime refuses an empty normalized shape)
        close(got, ort_run(m, {"x": x}))


@pytest.mark.filterwarnings("ignore:Mean of empty slice")
@pytest.mark.parametrize("h", SIZES)
def test_rms_normalization_opset_23(rng, h):
    x, g = rows(rng, h), (rng.standard_normal(h) + 1).astype(np.float32)
    node = helper.make_node("RMSNormalization", ["x", "g"], ["y"], epsilon=1e-5)
    m = make_model([node], [vi("x", F, [3, h])], [vi("y", F, None)], initializers=[("g", g)], opset=23, ir_version=10)
    nat, ref = native_and_numpy(m, "RMSNormalization")
    got = nat.run(None, {"x": x})
    close(got, ref.run(None, {"x": x}))
    if h:
        close(got, ort_run(m, {"x": x}))


@pytest.mark.parametrize("axis,scale_shape", [(1, (4, 17)), (-2, (4, 17)), (1, (17,)), (0, (2, 4, 17))])
def test_rms_over_several_axes_and_broadcast_scale(rng, axis, scale_shape):
    x = (rng.standard_normal((2, 4, 17)) * 3).astype(np.float32)
    g = (rng.standard_normal(scale_shape) + 1).astype(np.float32)
    node = helper.make_node("RMSNormalization", ["x", "g"], ["y"], axis=axis)
    m = make_model([node], [vi("x", F, [2, 4, 17])], [vi("y", F, None)], initializers=[("g", g)], opset=23,
                   ir_version=10)
    nat, ref = native_and_numpy(m, "RMSNormalization")
    got = nat.run(None, {"x": x})
    close(got, ref.run(None, {"x": x}))
    close(got, ort_run(m, {"x": x}))


@pytest.mark.parametrize("h", [1, 7, 8, 16, 17, 33, 768])
@pytest.mark.parametrize("skip_shape", ["same", "1SH", "SH"])
@pytest.mark.parametrize("bias", [False, True])
def test_skip_simplified_layer_norm(rng, h, skip_shape, bias):
    x = rows(rng, h, 6).reshape(2, 3, h)
    skip = rng.standard_normal({"same": (2, 3, h), "1SH": (1, 3, h), "SH": (3, h)}[skip_shape]).astype(np.float32)
    inits = [("g", (rng.standard_normal(h) + 1).astype(np.float32))]
    ins = ["x", "skip", "g"]
    if bias:
        ins.append("bias")
        inits.append(("bias", rng.standard_normal(h).astype(np.float32)))
    node = helper.make_node("SkipSimplifiedLayerNormalization", ins, ["y", "", "inv", "sum"], domain="com.microsoft",
                            epsilon=1e-6)
    m = make_model([node], [vi("x", F, [2, 3, h]), vi("skip", F, list(skip.shape))],
                   [vi("y", F, None), vi("inv", F, None), vi("sum", F, None)], initializers=inits, extra_opsets=MS)
    feed = {"x": x, "skip": skip}
    nat, ref = native_and_numpy(m, "SkipSimplifiedLayerNormalization")
    got = nat.run(None, feed)
    close(got, ref.run(None, feed))
    close(got, ort_run(m, feed))


def test_skip_simplified_mean_output_is_zeros(rng):
    node = helper.make_node("SkipSimplifiedLayerNormalization", ["x", "skip", "g"], ["y", "mean"],
                            domain="com.microsoft")
    m = make_model([node], [vi("x", F, [2, 5]), vi("skip", F, [2, 5])], [vi("y", F, None), vi("mean", F, None)],
                   initializers=[("g", np.ones(5, np.float32))], extra_opsets=MS)
    nat, _ = native_and_numpy(m, "SkipSimplifiedLayerNormalization")
    feed = {"x": rows(rng, 5, 2), "skip": rows(rng, 5, 2)}
    np.testing.assert_array_equal(nat.run(None, feed)[1], np.zeros((2, 1), np.float32))


def test_rows_in_parallel_match_one_thread(rng):
    x, g = rows(rng, 1000, 64), (rng.standard_normal(1000) + 1).astype(np.float32)
    node = helper.make_node("SimplifiedLayerNormalization", ["x", "g"], ["y"])
    m = make_model([node], [vi("x", F, [64, 1000])], [vi("y", F, None)], initializers=[("g", g)])
    outs = []
    for threads in (1, 4):
        o = onnxfast.SessionOptions()
        o.intra_op_num_threads = threads
        outs.append(onnxfast.InferenceSession(m.SerializeToString(), o).run(None, {"x": x})[0])
    np.testing.assert_array_equal(outs[0], outs[1])


def test_fed_scale(rng):
    node = helper.make_node("SimplifiedLayerNormalization", ["x", "g"], ["y"], axis=-1)
    m = make_model([node], [vi("x", F, [4, 9]), vi("g", F, [9])], [vi("y", F, None)])
    nat, ref = native_and_numpy(m, "SimplifiedLayerNormalization")
    feed = {"x": rows(rng, 9, 4), "g": rng.standard_normal(9).astype(np.float32)}
    close(nat.run(None, feed), ref.run(None, feed))


# ---- errors ----------------------------------------------------------------------------------------

def test_axis_out_of_range_refused_at_creation():
    node = helper.make_node("SimplifiedLayerNormalization", ["x", "g"], ["y"], name="rms", axis=2)
    m = make_model([node], [vi("x", F, [3, 4])], [vi("y", F, None)], initializers=[("g", np.ones(4, np.float32))])
    o = onnxfast.SessionOptions()
    o.add_session_config_entry("onnxfast.disable_kernels", "numpy:SimplifiedLayerNormalization")
    with pytest.raises(onnxfast.errors.InvalidModel, match="Normalization 'rms': attribute 'axis' is 2"):
        onnxfast.InferenceSession(m.SerializeToString(), o)


def test_unknown_attribute_refused():
    node = helper.make_node("SimplifiedLayerNormalization", ["x", "g"], ["y"], name="rms", epsilonn=1e-6)
    m = make_model([node], [vi("x", F, [3, 4])], [vi("y", F, None)], initializers=[("g", np.ones(4, np.float32))])
    with pytest.raises(onnxfast.errors.InvalidModel, match="epsilonn"):
        onnxfast.InferenceSession(m.SerializeToString())


def test_scale_of_another_shape_refused_naming_the_node(rng):
    node = helper.make_node("SimplifiedLayerNormalization", ["x", "g"], ["y"], name="rms")
    m = make_model([node], [vi("x", F, [3, 4]), vi("g", F, None)], [vi("y", F, None)])
    nat, _ = native_and_numpy(m, "SimplifiedLayerNormalization")
    with pytest.raises(onnxfast.errors.InvalidArgument, match="SimplifiedLayerNormalization 'rms'.*scale"):
        nat.run(None, {"x": rows(rng, 4), "g": np.ones(5, np.float32)})


def test_skip_simplified_bias_shape_refused(rng):
    node = helper.make_node("SkipSimplifiedLayerNormalization", ["x", "skip", "g", "bias"], ["y"], name="ssln",
                            domain="com.microsoft")
    m = make_model([node], [vi("x", F, [2, 4]), vi("skip", F, [2, 4]), vi("bias", F, None)], [vi("y", F, None)],
                   initializers=[("g", np.ones(4, np.float32))], extra_opsets=MS)
    nat, _ = native_and_numpy(m, "SkipSimplifiedLayerNormalization")
    with pytest.raises(onnxfast.errors.InvalidArgument, match="'ssln'.*bias must have shape \\(4,\\)"):
        nat.run(None, {"x": rows(rng, 4, 2), "skip": rows(rng, 4, 2), "bias": np.ones(3, np.float32)})


def test_other_stash_type_or_scale_type_runs_on_numpy():
    node = helper.make_node("SimplifiedLayerNormalization", ["x", "g"], ["y"], stash_type=0)
    m = make_model([node], [vi("x", F, [3, 4])], [vi("y", F, None)], initializers=[("g", np.ones(4, np.float32))])
    s = onnxfast.InferenceSession(m.SerializeToString())
    assert [r["kernel"] for r in s.kernel_listing()] == ["numpy"]
    node = helper.make_node("RMSNormalization", ["x", "g"], ["y"])
    m = make_model([node], [vi("x", F, [3, 4])], [vi("y", TensorProto.FLOAT16, None)],
                   initializers=[("g", np.ones(4, np.float16))], opset=23, ir_version=10)
    s = onnxfast.InferenceSession(m.SerializeToString())
    assert [r["kernel"] for r in s.kernel_listing()] == ["numpy"]


def test_float16_input_not_native():
    node = helper.make_node("SimplifiedLayerNormalization", ["x", "g"], ["y"])
    m = make_model([node], [vi("x", TensorProto.FLOAT16, [3, 4])], [vi("y", TensorProto.FLOAT16, None)],
                   initializers=[("g", np.ones(4, np.float16))])
    s = onnxfast.InferenceSession(m.SerializeToString())
    assert [r["kernel"] for r in s.kernel_listing()] != ["native"]


@pytest.mark.filterwarnings("ignore:Mean of empty slice")
@pytest.mark.filterwarnings("ignore:invalid value encountered")
def test_layer_norm_of_empty_rows_gives_nan_statistics(rng):
    # LayerNormalization over a normalized shape of 0 values: an empty Y and, per row, NaN mean /
    # inverse deviation (numpy's mean of nothing), not uninitialized memory
    node = helper.make_node("LayerNormalization", ["x", "g"], ["y", "mean", "inv"], axis=-1)
    m = make_model([node], [vi("x", F, [3, 0])], [vi("y", F, None), vi("mean", F, None), vi("inv", F, None)],
                   initializers=[("g", np.zeros(0, np.float32))])
    nat, ref = native_and_numpy(m, "LayerNormalization")
    x = np.zeros((3, 0), np.float32)
    for _ in range(3):  # fresh arena memory each time would hide garbage once; run a few times
        got, want = nat.run(None, {"x": x}), ref.run(None, {"x": x})
        assert got[0].shape == (3, 0)
        for g, w in zip(got[1:], want[1:]):
            assert g.shape == w.shape == (3, 1) and np.isnan(g).all() and np.isnan(w).all()
