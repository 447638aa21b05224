"""Native Resize (csrc/kernels/resize.cpp) against the numpy kernel (onnxfast/ops/tensor.py, _resize).

Each model runs twice: once with the numpy Resize disabled (the kernel listing must say native) and
once with every native kernel disabled. Nearest must be bitwise equal; linear / cubic agree to float32
rounding (same tap tables, same float32 products and sums, in the same axis order). The sweep covers
every mode x coordinate_transformation_mode x nearest_mode, up- and downsampling by scales (integer and
not) and by sizes (0, 1, odd, primes, larger), 1-D to 5-D inputs with non-spatial axes resized, opset 18's
axes and keep_aspect_ratio_policy, antialias, exclude_outside, cubic_coeff_a, tf_crop_and_resize with roi
and extrapolation, constant and fed scales / sizes / roi, opsets 10 / 11 / 13, non-contiguous inputs,
thread counts and errors; Upsample 7-9 (run by the same kernel as Resize-10). tests/test_isa_tiers.py reruns this file at every ISA tier."""

import numpy as np
import pytest
from onnx import TensorProto, helper
from onnx_helpers import make_model, native_and_numpy, noncontiguous, vi

import onnxfast

CTMS = ["half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric",
        "tf_crop_and_resize"]
MODES = [("nearest", nm) for nm in ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")] + [
    ("linear", None), ("cubic", None)]


def _fed_model(opset=19, **attrs):
    """Resize with x, roi, scales and sizes all fed (empty arrays: absent)."""
    node = helper.make_node("Resize", ["x", "roi", "scales", "sizes"], ["y"], name="n0", **attrs)
    return make_model([node], [vi("x"), vi("roi"), vi("scales"), vi("sizes", TensorProto.INT64)], [vi("y")],
                      opset=opset)


def _feed(x, scales=None, sizes=None, roi=None):
    return {"x": x,
            "roi": np.asarray([] if roi is None else roi, np.float32),
            "scales": np.asarray([] if scales is None else scales, np.float32),
            "sizes": np.asarray([] if sizes is None else sizes, np.int64)}


def _compare(nat, ref, feed, exact):
    """Both results (equal, or close for linear / cubic) or both errors of one class, the native one
    naming the node."""
    try:
        want = ref.run(None, feed)[0]
    except onnxfast.errors.OnnxfastError as e:
        if isinstance(e, (ZeroDivisionError, OverflowError)):
            # numpy's half_pixel_symmetric (0 / 0) and antialias (infinite support) choke on an
            # output length of 0; native returns the empty output
            assert nat.run(None, feed)[0].size == 0
            return None
        with pytest.raises(type(e)) as got:
            nat.run(None, feed)
        assert "'n0'" in str(got.value), got.value
        return None
    got = nat.run(None, feed)[0]
    assert got.shape == want.shape and got.dtype == want.dtype
    if exact:
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    return got


SCALES_4D = [[1, 1, 2, 2], [1, 1, 0.5, 0.5], [1, 1, 1.7, 0.6], [1, 1, 3, 1], [1, 1, 1, 2.5], [1, 1, 0.3, 0.25],
             [1, 1, 0.999, 1.001], [1, 1, 1, 1], [1, 2, 1.5, 1], [0.5, 1, 1, 3]]
SHAPES_4D = [(1, 2, 5, 7), (2, 3, 1, 1), (1, 1, 17, 13), (1, 2, 2, 3), (1, 1, 0, 4)]
SIZES_HW = [(1, 1), (2, 3), (5, 7), (13, 31), (3, 17), (0, 4), (10, 14)]


@pytest.mark.parametrize("ctm", CTMS)
@pytest.mark.parametrize("mode,nearest_mode", MODES)
def test_resize_modes_sweep(rng, mode, nearest_mode, ctm):
    attrs = dict(mode=mode, coordinate_transformation_mode=ctm, extrapolation_value=-7.5)
    if nearest_mode:
        attrs["nearest_mode"] = nearest_mode
    nat, ref = native_and_numpy(_fed_model(**attrs), "Resize")
    exact = mode == "nearest"
    roi4 = [0, 0, 0.1, -0.2, 1, 1, 0.8, 1.3] if ctm == "tf_crop_and_resize" else None
    for shape in SHAPES_4D:
        x = rng.standard_normal(shape).astype(np.float32)
        for scales in SCALES_4D:
            _compare(nat, ref, _feed(x, scales=scales, roi=roi4), exact)
        for h, w in SIZES_HW:
            if 0 in shape[2:]:
                continue
            _compare(nat, ref, _feed(x, sizes=[shape[0], shape[1], h, w], roi=roi4), exact)
        _compare(nat, ref, _feed(noncontiguous(x), scales=[1, 1, 2, 2], roi=roi4), exact)
    # 1-D, 2-D, 3-D and 5-D, every axis resized (non-spatial ones included)
    roi_for = (lambda r: [0.05] * r + [0.9] * r) if ctm == "tf_crop_and_resize" else (lambda r: None)
    for shape, scales in [((7,), [2.0]), ((11,), [0.4]), ((4, 5), [1.5, 0.5]), ((2, 3, 4), [2, 0.5, 1.5]),
                          ((3, 4, 5), [0.7, 1, 3]), ((1, 2, 3, 4, 5), [1, 1, 2, 0.5, 1.5]),
                          ((2, 2, 3, 3, 4), [1.5, 2, 1, 0.7, 2])]:
        x = rng.standard_normal(shape).astype(np.float32)
        _compare(nat, ref, _feed(x, scales=scales, roi=roi_for(len(shape))), exact)
        _compare(nat, ref, _feed(noncontiguous(x), scales=scales, roi=roi_for(len(shape))), exact)
        sizes = [max(1, int(d * s) + 1) for d, s in zip(shape, scales)]
        _compare(nat, ref, _feed(x, sizes=sizes, roi=roi_for(len(shape))), exact)


@pytest.mark.parametrize("ctm", CTMS)
@pytest.mark.parametrize("mode", ["linear", "cubic"])
def test_resize_exclude_outside_and_cubic_coeff(rng, mode, ctm):
    for a, excl in [(-0.5, 1), (-0.75, 1), (-0.5, 0)]:
        nat, ref = native_and_numpy(_fed_model(mode=mode, coordinate_transformation_mode=ctm, cubic_coeff_a=a,
                                               exclude_outside=excl), "Resize")
        roi = [0, 0, 0.2, 0.1, 1, 1, 0.7, 0.95] if ctm == "tf_crop_and_resize" else None
        for shape in [(1, 2, 6, 9), (2, 1, 3, 2)]:
            x = rng.standard_normal(shape).astype(np.float32)
            for scales in ([1, 1, 2, 2], [1, 1, 0.5, 0.7], [1, 1, 1.3, 3.1]):
                _compare(nat, ref, _feed(x, scales=scales, roi=roi), False)


@pytest.mark.parametrize("mode", ["linear", "cubic", "nearest"])
def test_resize_antialias(rng, mode):
    for ctm in ("half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric"):
        for excl in (0, 1):
            nat, ref = native_and_numpy(_fed_model(mode=mode, antialias=1, exclude_outside=excl,
                                                   coordinate_transformation_mode=ctm), "Resize")
            for shape in [(1, 2, 20, 17), (1, 1, 9, 64)]:
                x = rng.standard_normal(shape).astype(np.float32)
                for scales in ([1, 1, 0.5, 0.5], [1, 1, 0.3, 0.77], [1, 1, 2, 0.1], [1, 1, 0.05, 1.5]):
                    _compare(nat, ref, _feed(x, scales=scales), mode == "nearest")
                _compare(nat, ref, _feed(x, sizes=[shape[0], shape[1], 3, 5]), mode == "nearest")
                _compare(nat, ref, _feed(x, sizes=[shape[0], shape[1], 1, 1]), mode == "nearest")


@pytest.mark.parametrize("mode", ["nearest", "linear", "cubic"])
def test_resize_axes_and_keep_aspect_ratio(rng, mode):
    exact = mode == "nearest"
    x = rng.standard_normal((2, 3, 10, 7)).astype(np.float32)
    for axes in ([2, 3], [3, 2], [-1], [0, 2], [1, -1, 0]):
        for policy in ("stretch", "not_larger", "not_smaller"):
            nat, ref = native_and_numpy(_fed_model(mode=mode, axes=axes, keep_aspect_ratio_policy=policy), "Resize")
            n = len(axes)
            for sizes in ([5] * n, [13, 4, 9][:n], [1] * n, [31, 2, 17][:n]):
                _compare(nat, ref, _feed(x, sizes=sizes), exact)
            for scales in ([2.0] * n, [0.5, 1.5, 3.0][:n]):
                _compare(nat, ref, _feed(x, scales=scales), exact)
    # tf_crop_and_resize with the roi given per listed axis (or per tensor axis)
    for axes in ([2, 3], [3]):
        nat, ref = native_and_numpy(_fed_model(mode=mode, axes=axes, coordinate_transformation_mode="tf_crop_and_resize",
                                               extrapolation_value=3.0), "Resize")
        n = len(axes)
        roi = [0.1, -0.3][:n] + [1.2, 0.6][:n]
        _compare(nat, ref, _feed(x, scales=[1.5] * n, roi=roi), exact)
        _compare(nat, ref, _feed(x, sizes=[4] * n, roi=roi), exact)
        _compare(nat, ref, _feed(x, sizes=[4] * n, roi=[0.0] * 4 + [1.0] * 4), exact)  # per tensor axis
        _compare(nat, ref, _feed(x, sizes=[4] * n, roi=[0.1, 0.2, 0.3]), exact)  # other lengths: ignored


@pytest.mark.parametrize("opset", [10, 11, 13, 18])
@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_resize_older_opsets_and_constant_inputs(rng, opset, mode):
    x = rng.standard_normal((1, 3, 6, 5)).astype(np.float32)
    scales = np.array([1, 1, 2, 1.5], np.float32)
    if opset == 10:
        inputs, inits = ["x", "scales"], [("scales", scales)]
    elif opset == 11:  # roi is a required input in Resize-11: exporters pass an empty tensor
        inputs, inits = ["x", "no_roi", "scales"], [("no_roi", np.zeros(0, np.float32)), ("scales", scales)]
    else:
        inputs, inits = ["x", "", "scales"], [("scales", scales)]
    node = helper.make_node("Resize", inputs, ["y"], name="n0", mode=mode)
    nat, ref = native_and_numpy(make_model([node], [vi("x")], [vi("y")], initializers=inits, opset=opset), "Resize")
    _compare(nat, ref, {"x": x}, mode == "nearest")
    _compare(nat, ref, {"x": noncontiguous(x)}, mode == "nearest")
    if opset >= 11:  # constant roi and sizes
        # Resize-11 requires scales: given with sizes as an empty tensor
        no_scales = "no_scales" if opset == 11 else ""
        node = helper.make_node("Resize", ["x", "roi", no_scales, "sizes"], ["y"], name="n0", mode=mode,
                                coordinate_transformation_mode="tf_crop_and_resize", extrapolation_value=1.5)
        inits = [("roi", np.array([0, 0, -0.1, 0.2, 1, 1, 0.9, 1.4], np.float32)),
                 ("sizes", np.array([1, 3, 7, 4], np.int64))]
        if opset == 11:
            inits.append(("no_scales", np.zeros(0, np.float32)))
        nat, ref = native_and_numpy(make_model([node], [vi("x")], [vi("y")], initializers=inits, opset=opset), "Resize")
        _compare(nat, ref, {"x": x}, mode == "nearest")
        # a float16 and a float64 roi
        for dt in (np.float16, np.float64):
            inits[0] = ("roi", np.array([0, 0, -0.25, 0.5, 1, 1, 0.75, 1.5], dt))
            nat, ref = native_and_numpy(make_model([node], [vi("x")], [vi("y")], initializers=inits, opset=opset), "Resize")
            _compare(nat, ref, {"x": x}, mode == "nearest")


@pytest.mark.parametrize("opset", [7, 8, 9])
@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_upsample_runs_as_resize_10(rng, opset, mode):
    # Upsample 7 / 8: scales attribute; 9: scales input (constant or fed). Asymmetric, floor.
    x = rng.standard_normal((2, 3, 5, 7)).astype(np.float32)
    for scales in ([1, 1, 2, 2], [1, 1, 1.5, 3], [1, 2, 0.5, 1]):
        if opset < 9:
            node = helper.make_node("Upsample", ["x"], ["y"], name="n0", mode=mode, scales=[float(v) for v in scales])
            models = [(make_model([node], [vi("x")], [vi("y")], opset=opset), {})]
        else:
            node = helper.make_node("Upsample", ["x", "scales"], ["y"], name="n0", mode=mode)
            sc = np.array(scales, np.float32)
            models = [(make_model([node], [vi("x")], [vi("y")], initializers=[("scales", sc)], opset=opset), {}),
                      (make_model([node], [vi("x"), vi("scales")], [vi("y")], opset=opset), {"scales": sc})]
        for model, extra in models:
            nat, ref = native_and_numpy(model, op="Upsample")
            got = _compare(nat, ref, {"x": x, **extra}, mode == "nearest")
            assert got is not None and got.shape == tuple(int(d * s) for d, s in zip(x.shape, scales))


@pytest.mark.parametrize("mode", ["nearest", "linear", "cubic"])
def test_resize_threads_agree(rng, mode):
    x = rng.standard_normal((2, 8, 61, 64)).astype(np.float32)
    model = _fed_model(mode=mode)
    for feed in (_feed(x, scales=[1, 1, 2, 2]), _feed(x, scales=[1, 1, 0.5, 0.75]), _feed(x, sizes=[2, 8, 97, 33]),
                 _feed(x, scales=[1, 2, 1.5, 1])):
        results = []
        for threads in (1, 2):
            nat, ref = native_and_numpy(model, "Resize", threads)
            results.append(_compare(nat, ref, feed, mode == "nearest").tobytes())
        assert results[0] == results[1]


def test_resize_upsampling_2x_bitwise(rng):
    """The fused NCHW path (H then W): linear 2x matches numpy's float32 arithmetic exactly."""
    x = rng.standard_normal((1, 4, 33, 40)).astype(np.float32)
    for ctm in ("half_pixel", "align_corners", "asymmetric", "pytorch_half_pixel"):
        nat, ref = native_and_numpy(_fed_model(mode="linear", coordinate_transformation_mode=ctm), "Resize")
        feed = _feed(x, scales=[1, 1, 2, 2])
        np.testing.assert_array_equal(nat.run(None, feed)[0], ref.run(None, feed)[0])


def _error(nat, feed, cls, msg):
    with pytest.raises(cls, match=f"Resize 'n0'.*{msg}"):
        nat.run(None, feed)


def test_resize_errors(rng):
    x = rng.standard_normal((1, 2, 3, 4)).astype(np.float32)
    nat, ref = native_and_numpy(_fed_model(), "Resize")
    inv = onnxfast.errors.InvalidArgument
    _error(nat, _feed(x, scales=[1, 1, 2, 2], sizes=[1, 2, 6, 8]), inv, "only one of scales and sizes")
    _error(nat, _feed(x), inv, "one of scales or sizes must be given")
    _error(nat, _feed(x, scales=[2, 2]), inv, "must have one entry per resized axis")
    _error(nat, _feed(x, sizes=[1, 2, 3]), inv, "must have one entry per resized axis")
    _error(nat, _feed(x, scales=[1, 1, 0, 2]), inv, "must be positive")
    _error(nat, _feed(x, scales=[1, 1, -1, 2]), inv, "must be positive")
    _error(nat, _feed(x, sizes=[1, 2, -3, 4]), inv, "negative dimension")
    _error(nat, _feed(x, sizes=[1, 2, 1 << 40, 1 << 40]), onnxfast.errors.AllocationError, "too large")
    _error(nat, _feed(x, scales=[1, 1, 1e30, 1e30]), onnxfast.errors.AllocationError, "too large")
    _error(nat, _feed(np.zeros((1, 2, 0, 4), np.float32), sizes=[1, 2, 3, 4]), inv, "length 0")
    for feed in (_feed(x, scales=[1, 1, 2, 2], sizes=[1, 2, 6, 8]), _feed(x), _feed(x, scales=[2, 2]),
                 _feed(x, scales=[1, 1, 0, 2]), _feed(x, sizes=[1, 2, -3, 4]),
                 _feed(x, sizes=[1, 2, 1 << 40, 1 << 40])):
        _compare(nat, ref, feed, True)
    # a huge but representable output: MemoryError from the executor's allocation, not a crash
    with pytest.raises(MemoryError):
        nat.run(None, _feed(x, sizes=[1, 2, 1 << 20, 1 << 20]))
    # bad axes fail at run time where the input's rank is not declared (here), as the numpy kernel does
    for attrs, msg in [(dict(axes=[4]), "out of range"), (dict(axes=[1, -3]), "duplicates")]:
        nat, ref = native_and_numpy(_fed_model(**attrs), "Resize")
        feed = _feed(x, scales=[2.0] * len(attrs.get("axes", [0] * 4)))
        _error(nat, feed, inv, msg)
        _compare(nat, ref, feed, True)
    # unknown attribute values are refused at session creation (as onnxruntime does), on every path,
    # even on a node that would resize nothing (tests/test_kernel_validation.py sweeps every op)
    for attrs in (dict(mode="bogus"), dict(coordinate_transformation_mode="bogus"), dict(nearest_mode="bogus")):
        (name,) = attrs
        for disabled in ("numpy:Resize", "native"):
            o = onnxfast.SessionOptions()
            o.add_session_config_entry("onnxfast.disable_kernels", disabled)
            with pytest.raises(onnxfast.errors.InvalidModel, match=f"Resize 'n0': attribute '{name}' is 'bogus'"):
                onnxfast.InferenceSession(_fed_model(**attrs).SerializeToString(), o)
