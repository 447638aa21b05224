"""Attribute validation and geometry safety of the convolution family (issue #14, defects 1 and 10):
Conv / ConvTranspose / MaxPool / AveragePool / LpPool, on the native kernels (csrc/kernels/conv_geometry.h)
and the numpy ones (onnxfast/ops/nn.py _ConvAttrs), float32 and float16.

- What the attributes alone decide fails at session creation (InvalidArgument from the native kernel,
  InvalidModel from the numpy one), naming the node, the attribute and the allowed range, where the code
  before crashed (strides 0: SIGFPE), corrupted the heap (negative pads on a depthwise Conv), read out of
  bounds (negative dilations) or divided by zero (LpPool p = 0).
- Huge strides, pads and dilations give onnxruntime's answer (extents in int64, no wrap), or a clear error
  when an extent overflows int64 or the output cannot be allocated.
- Scratch is sized from the output: a child process's peak RSS stays small where the code before allocated
  1 GiB (dilations 2^28) or asked for a 32 GiB index vector (strides 65536).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from onnx import TensorProto, helper

import onnxfast
from onnxfast.errors import AllocationError, InvalidArgument, InvalidModel
from onnx_helpers import make_model, run_python, vi

F32, F16 = TensorProto.FLOAT, TensorProto.FLOAT16
NP = {F32: np.float32, F16: np.float16}
POOLS = ("MaxPool", "AveragePool", "LpPool")
BIG = 2**62


def _model(op, xshape, wshape=None, elem=F32, bias=False, opset=19, **attrs):
    inputs = ["x"] + (["w"] if wshape else []) + (["b"] if bias else [])
    node = helper.make_node(op, inputs, ["y"], name="n0", **attrs)
    vis = [vi("x", elem, xshape)] + ([vi("w", elem, wshape)] if wshape else [])
    if bias:
        vis.append(vi("b", elem, None))
    return make_model([node], vis, [vi("y", elem, None)], opset=opset)


def _session(model, op, path):
    """The session of `model` on one path: "native" (op's numpy kernel disabled) or "numpy"."""
    o = onnxfast.SessionOptions()
    o.add_session_config_entry("onnxfast.disable_kernels", f"numpy:{op}" if path == "native" else "native")
    s = onnxfast.InferenceSession(model.SerializeToString(), o)
    kinds = {r["kernel"].split(":")[0].split("|")[0] for r in s.kernel_listing() if r["op_type"] == op}
    assert kinds == {path}, kinds
    return s


def _paths(op, elem):
    # the pools' native kernels are float32 only; Conv / ConvTranspose widen float16 (half.cpp)
    return ("numpy",) if (op in POOLS and elem == F16) else ("native", "numpy")


def _cases(cases):
    out = []
    for case in cases:
        for elem in (F32, F16):
            for path in _paths(case[0], elem):
                out.append(pytest.param(*case, elem, path, id=f"{case[0]}-{case[-1]}-{'f32' if elem == F32 else 'f16'}-{path}"))
    return out


# ---------------------------------------------------------------------------------------------
# attributes refused at session creation

CONV_X, CONV_W = (1, 2, 6, 6), (4, 2, 3, 3)
DW_X, DW_W = (1, 4, 8, 8), (4, 1, 3, 3)
CT_X, CT_W = (1, 2, 4, 4), (2, 3, 2, 2)
POOL_X = (1, 2, 6, 6)

CREATION = [
    # (op, x, w, attrs, what the message names, id)
    ("Conv", CONV_X, CONV_W, dict(strides=[0, 1]), r"strides \[0, 1\] must contain values >= 1", "strides0"),
    ("Conv", CONV_X, CONV_W, dict(strides=[1, -3]), r"strides .* >= 1", "strides-neg"),
    ("Conv", CONV_X, CONV_W, dict(dilations=[-2, 1]), r"dilations \[-2, 1\] must contain values >= 1", "dil-neg"),
    ("Conv", CONV_X, CONV_W, dict(dilations=[0, 1]), r"dilations .* >= 1", "dil0"),
    ("Conv", DW_X, DW_W, dict(group=4, pads=[-3, -3, 0, 0]), r"pads \[-3, -3, 0, 0\] must contain values >= 0",
     "depthwise-negpads"),
    ("Conv", CONV_X, CONV_W, dict(pads=[-1, 0, 0, 0]), r"pads .* >= 0", "negpads"),
    ("Conv", CONV_X, CONV_W, dict(pads=[1, 1, 1]), r"pads \[1, 1, 1\] must have an even number", "pads-odd"),
    ("Conv", CONV_X, CONV_W, dict(kernel_shape=[3, 3], pads=[1, 1]), r"pads \[1, 1\] must have 4 values", "pads-len"),
    ("Conv", CONV_X, CONV_W, dict(strides=[1, 1], dilations=[1, 1, 1]), r"dilations \[1, 1, 1\] must have 2 values",
     "dil-len"),
    ("Conv", CONV_X, CONV_W, dict(group=0), r"group must be >= 1", "group0"),
    ("Conv", CONV_X, CONV_W, dict(auto_pad="SAME"), r"auto_pad 'SAME' must be one of NOTSET, SAME_UPPER", "autopad"),
    ("Conv", CONV_X, CONV_W, dict(kernel_shape=[0, 3]), r"kernel_shape .* >= 1", "kshape0"),
    ("ConvTranspose", CT_X, CT_W, dict(strides=[0, 1]), r"strides .* >= 1", "strides0"),
    ("ConvTranspose", CT_X, CT_W, dict(dilations=[1, -1]), r"dilations .* >= 1", "dil-neg"),
    ("ConvTranspose", CT_X, CT_W, dict(pads=[0, -1, 0, 0]), r"pads .* >= 0", "negpads"),
    ("ConvTranspose", CT_X, CT_W, dict(output_padding=[-1, 0]), r"output_padding .* >= 0", "opad-neg"),
    ("ConvTranspose", CT_X, CT_W, dict(strides=[2, 2], output_padding=[2, 0]),
     r"output_padding \[2, 0\] must be smaller than max\(stride, dilation\) = 2", "opad-ge-stride"),
    ("ConvTranspose", CT_X, CT_W, dict(output_shape=[-1, 4]), r"output_shape .* >= 0", "oshape-neg"),
    ("ConvTranspose", CT_X, CT_W, dict(group=-1), r"group must be >= 1", "group-neg"),
    ("ConvTranspose", CT_X, CT_W, dict(auto_pad="UPPER"), r"auto_pad 'UPPER' must be one of", "autopad"),
] + [
    case for op in POOLS for case in [
        (op, POOL_X, None, dict(kernel_shape=[3, 3], strides=[0, 1]), r"strides .* >= 1", "strides0"),
        (op, POOL_X, None, dict(kernel_shape=[2, 2], dilations=[1, 0]), r"dilations .* >= 1", "dil0"),
        (op, POOL_X, None, dict(kernel_shape=[3, 3], pads=[-1, 0, 0, 0]), r"pads .* >= 0", "negpads"),
        (op, POOL_X, None, dict(kernel_shape=[2, 2], pads=[2, 2, 2, 2]),
         r"pads \[2, 2, 2, 2\] must be smaller than kernel_shape \[2, 2\]", "pads-ge-kernel"),
        (op, POOL_X, None, dict(kernel_shape=[3, 2], pads=[0, 0, 0, 2]), r"pads .* must be smaller than kernel_shape",
         "pads-end-ge-kernel"),
        (op, POOL_X, None, dict(kernel_shape=[3, 3], pads=[1, 1]), r"pads \[1, 1\] must have 4 values", "pads-len"),
        (op, POOL_X, None, dict(strides=[1, 1]), r"kernel_shape'? is missing", "no-kernel"),
        (op, POOL_X, None, dict(kernel_shape=[0, 2]), r"kernel_shape .* >= 1", "kshape0"),
        (op, POOL_X, None, dict(kernel_shape=[2, 2], auto_pad="same_upper"), r"auto_pad 'same_upper'", "autopad"),
    ]
] + [
    # onnxruntime returns inf for p = 0; numpy divided by zero (IntegerDivisionByZero) at run time before.
    # A negative p runs (on numpy), as in onnxruntime: tests/test_native_ops.py
    ("LpPool", POOL_X, None, dict(kernel_shape=[2, 2], p=0), r"attribute p must not be 0", "p0"),
]


@pytest.mark.parametrize("op,xshape,wshape,attrs,msg,_id,elem,path", _cases(CREATION))
def test_bad_attribute_refused_at_session_creation(op, xshape, wshape, attrs, msg, _id, elem, path):
    model = _model(op, xshape, wshape, elem, **attrs)
    with pytest.raises(InvalidModel, match=rf"{op} (node )?'n0': (attribute )?.*{msg}"):
        _session(model, op, path)


@pytest.mark.parametrize("elem", [F32, F16])
def test_global_lppool_p0_refused(elem):
    # numpy only (the native GlobalLpPool computes p = 1 and 2); before: IntegerDivisionByZero at run time
    model = _model("GlobalLpPool", POOL_X, None, elem, p=0)
    with pytest.raises(InvalidModel, match=r"GlobalLpPool node 'n0': attribute p must not be 0"):
        _session(model, "GlobalLpPool", "numpy")


# ---------------------------------------------------------------------------------------------
# shape-dependent errors at run time (InvalidArgument naming the node)

RUNTIME = [
    ("Conv", (1, 3, 6, 6), (2, 1, 3, 3), dict(group=2), r"group", "group-not-dividing"),
    ("Conv", CONV_X, CONV_W, dict(kernel_shape=[2, 2]), r"kernel_shape", "kshape-vs-weight"),
    ("Conv", CONV_X, CONV_W, dict(strides=[1, 1, 1]), r"strides \[1, 1, 1\] is for 3 spatial dimensions", "rank"),
    ("Conv", (1, 1, 3, 3), (1, 1, 1, 1), dict(pads=[BIG, 0, BIG, 0]), r"overflows int64", "pads-overflow"),
    ("Conv", (1, 1, 3, 3), (1, 1, 3, 3), dict(dilations=[BIG, 1]), r"larger than the padded input|overflows",
     "dil-huge"),
    ("ConvTranspose", (1, 3, 4, 4), (3, 1, 2, 2), dict(group=2), r"group", "group-not-dividing"),
    ("ConvTranspose", CT_X, CT_W, dict(kernel_shape=[3, 3]), r"kernel_shape", "kshape-vs-weight"),
    ("ConvTranspose", (1, 2, 3, 3), (2, 1, 2, 2), dict(strides=[BIG, 1]), r"overflows int64", "strides-overflow"),
    ("ConvTranspose", (1, 2, 3, 3), (2, 1, 2, 2), dict(pads=[5, 0, 5, 0]), r"negative", "pads-crop-all"),
] + [
    (op, POOL_X, None, dict(kernel_shape=[3]), r"kernel_shape", "rank") for op in POOLS
] + [
    (op, POOL_X, None, dict(kernel_shape=[9, 2]), r"larger than the padded input", "kernel-too-big") for op in POOLS
] + [
    (op, POOL_X, None, dict(kernel_shape=[2**40, 2]), r"larger than the padded input", "kernel-huge") for op in POOLS
]


@pytest.mark.parametrize("op,xshape,wshape,attrs,msg,_id,elem,path", _cases(RUNTIME))
def test_shape_dependent_errors_name_the_node(op, xshape, wshape, attrs, msg, _id, elem, path):
    s = _session(_model(op, xshape, wshape, elem, **attrs), op, path)
    feed = {"x": np.ones(xshape, NP[elem])}
    if wshape:
        feed["w"] = np.ones(wshape, NP[elem])
    with pytest.raises(InvalidArgument, match=rf"{op} (node )?'n0'.*{msg}"):
        s.run(None, feed)


@pytest.mark.parametrize("op,xshape,wshape,attrs,_id,elem,path", _cases([
    ("Conv", (1, 1, 3, 3), (1, 1, 1, 1), dict(pads=[2**40] * 4), "pads-2^40"),
    ("ConvTranspose", (1, 1, 3, 3), (1, 1, 1, 1), dict(strides=[2**40, 1], output_padding=[2**40 - 1, 0]), "opad-huge"),
    ("ConvTranspose", (1, 1, 3, 3), (1, 1, 2, 1), dict(dilations=[BIG, 1]), "dil-huge"),
    # output_shape as large as the input reaches (s * (in - 1) + eff + s - 1; beyond it: refused, below)
    ("ConvTranspose", (1, 1, 3, 3), (1, 1, 1, 1), dict(strides=[2**40, 2**40], output_shape=[3 * 2**40] * 2),
     "oshape-huge"),
]))
def test_output_too_large_is_a_memory_error(op, xshape, wshape, attrs, _id, elem, path):
    s = _session(_model(op, xshape, wshape, elem, **attrs), op, path)
    with pytest.raises(AllocationError, match="n0"):
        s.run(None, {"x": np.ones(xshape, NP[elem]), "w": np.ones(wshape, NP[elem])})


# ---------------------------------------------------------------------------------------------
# huge strides / pads / dilations / kernels: onnxruntime's answer

AGREE = [
    # a 1x1 Conv whose rows 0 and 2 read the padding: offsets truncated to int32 returned image rows
    ("Conv", (1, 1, 3, 3), (1, 1, 1, 1), dict(strides=[2**32, 1], pads=[2**32, 0, 2**32, 0]), "1x1-2^32"),
    ("Conv", (1, 2, 3, 3), (3, 2, 1, 1), dict(strides=[2**32, 1], pads=[2**32, 0, 2**32, 0]), "1x1-2^32-channels"),
    ("Conv", (1, 1, 5, 5), (1, 1, 3, 3), dict(strides=[BIG, BIG]), "strides-2^62"),  # sh * sw wrapped to 0
    ("Conv", (1, 1, 5, 5), (1, 1, 3, 3), dict(strides=[BIG, 2], pads=[1, 1, 1, 1]), "strides-2^62-padded"),
    ("Conv", (1, 4, 7, 7), (4, 1, 3, 3), dict(group=4, strides=[BIG, 1], pads=[1, 1, 1, 1]), "depthwise-2^62"),
    ("Conv", (1, 4, 7, 7), (4, 1, 3, 3), dict(group=4, strides=[2**32, 2], pads=[2**32, 1, 2**32, 1]),
     "depthwise-2^32"),
    ("Conv", (1, 4, 7, 7), (4, 1, 3, 3), dict(group=4, strides=[1, 2**32], pads=[1, 2**32, 1, 2**32]),
     "depthwise-across-2^32"),
    ("Conv", (1, 4, 7, 9), (4, 1, 3, 3), dict(group=4, strides=[2**40, 2], dilations=[2**20, 1], pads=[2**20, 1, 2**20, 1]),
     "depthwise-dilated-2^20"),
    ("Conv", (1, 1, 3, 3), (1, 1, 2, 1), dict(dilations=[2**28, 1], pads=[2**28, 0, 0, 0]), "dil-2^28"),
    ("Conv", (1, 2, 3, 3), (2, 2, 3, 3), dict(strides=[65536, 65536], pads=[1, 1, 1, 1]), "strides-65536"),
    ("Conv", (1, 2, 5, 4, 3), (2, 2, 2, 1, 2), dict(strides=[2**33, 1, 2**40], pads=[2**33, 0, 1, 2**33, 0, 1]),
     "3d-2^33"),
    # SAME with a stride >= the input: one output, the same for any such stride. onnxruntime 1.32 overflows
    # at 2^62 (its answer differs from stride 8's), so the reference (_ref) runs with stride 8 / 9
    ("Conv", (1, 2, 5, 6), (3, 2, 3, 3), dict(auto_pad="SAME_UPPER", strides=[BIG, 3], _ref=dict(strides=[8, 3])),
     "same-2^62"),
    ("Conv", (1, 2, 5, 6), (3, 2, 3, 3),
     dict(auto_pad="SAME_LOWER", strides=[3, BIG], _ref=dict(strides=[3, 9])), "same-lower-2^62"),
    ("ConvTranspose", (1, 1, 3, 2), (1, 1, 1, 1), dict(strides=[2**40, 1], pads=[2**40, 0, 2**40, 0]),
     "crop-2^40"),
    ("ConvTranspose", (1, 2, 3, 3), (2, 1, 2, 2), dict(strides=[2**20, 2], pads=[2**20, 1, 2**20, 0]),
     "crop-2^20"),
] + [
    case for op in POOLS for case in [
        (op, (1, 2, 5, 5), None, dict(kernel_shape=[2, 2], strides=[BIG, BIG]), "strides-2^62"),
        (op, (1, 2, 5, 5), None, dict(kernel_shape=[3, 3], strides=[BIG, 2], pads=[2, 1, 1, 2]), "strides-2^62-padded"),
        # windows rows [0, 0] and [1, 4]: onnxruntime 1.32's AveragePool / LpPool loop over the 2^40 taps
        # (a hang), so the reference (_ref) is the equivalent 5-row kernel (before: so did onnxfast)
        (op, (1, 2, 5, 5), None, dict(kernel_shape=[2**40, 2], strides=[2**40, 1], pads=[2**40 - 1, 0, 2**40 - 1, 0],
                                      _ref=dict(kernel_shape=[5, 2], strides=[5, 1], pads=[4, 0, 4, 0])), "kernel-2^40"),
        (op, (1, 1, 6, 5), None, dict(kernel_shape=[300, 2], strides=[200, 2], pads=[299, 1, 299, 1]), "kernel-300"),
    ]
]


def _ort(model, feed):
    ort = pytest.importorskip("onnxruntime")
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feed)[0]


@pytest.mark.parametrize("op,xshape,wshape,attrs,_id,elem,path", _cases(AGREE))
def test_huge_geometry_matches_onnxruntime(rng, op, xshape, wshape, attrs, _id, elem, path):
    # small integers: exact in float16 and in any summation order
    x = rng.integers(-4, 5, xshape).astype(np.float32)
    feed = {"x": x}
    if wshape:
        feed["w"] = rng.integers(-2, 3, wshape).astype(np.float32)
    attrs = dict(attrs)
    ref = dict(attrs, **attrs.pop("_ref")) if "_ref" in attrs else attrs
    want = _ort(_model(op, xshape, wshape, F32, **ref), feed)
    s = _session(_model(op, xshape, wshape, elem, **attrs), op, path)
    got = s.run(None, {k: v.astype(NP[elem]) for k, v in feed.items()})[0]
    assert got.dtype == NP[elem] and got.shape == want.shape, (got.shape, want.shape)
    np.testing.assert_allclose(got.astype(np.float32), want, rtol=1e-3 if elem == F16 else 1e-6, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# scratch sized from the output, not from the attributes: a child process's peak memory

_CHILD = r"""
import json, resource, sys
import numpy as np
from onnx import TensorProto, helper
from onnx_helpers import make_model, vi
import onnxfast
xs, ws, attrs, elem, path = json.loads(sys.argv[1])
node = helper.make_node("Conv", ["x", "w"], ["y"], name="n0", **attrs)
m = make_model([node], [vi("x", elem, xs), vi("w", elem, ws)], [vi("y", elem, None)])
o = onnxfast.SessionOptions()
o.add_session_config_entry("onnxfast.disable_kernels", "numpy:Conv" if path == "native" else "native")
dt = np.float32 if elem == 1 else np.float16
s = onnxfast.InferenceSession(m.SerializeToString(), o)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
y = s.run(None, {"x": np.ones(xs, dt), "w": np.ones(ws, dt)})[0]
print(json.dumps({"shape": list(y.shape), "sum": float(y.astype(np.float64).sum()), "before_kb": before,
                  "peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def _limit_address_space():
    import resource

    # a 32 GiB request fails at once instead of paging the machine out
    resource.setrlimit(resource.RLIMIT_AS, (16 << 30, 16 << 30))


@pytest.mark.parametrize("op,xshape,wshape,attrs,shape,total,_id,elem,path", _cases([
    ("Conv", (1, 1, 3, 3), (1, 1, 2, 1), dict(dilations=[2**28, 1], pads=[2**28, 0, 0, 0]), (1, 1, 3, 3), 9.0, "dil-2^28"),
    ("Conv", (1, 2, 3, 3), (2, 2, 3, 3), dict(strides=[65536, 65536], pads=[1, 1, 1, 1]), (1, 2, 1, 1), 16.0,
     "strides-65536"),
    ("Conv", (1, 2, 3, 3), (2, 2, 3, 3), dict(dilations=[2**26, 2**26], pads=[2**26] * 4), (1, 2, 3, 3), 36.0,
     "dil-2^26-both"),
]))
def test_scratch_sized_from_the_output(op, xshape, wshape, attrs, shape, total, _id, elem, path):
    r = run_python(["-c", _CHILD, json.dumps([xshape, wshape, attrs, elem, path])], timeout=300,
                   preexec_fn=_limit_address_space)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert tuple(res["shape"]) == shape and res["sum"] == total, res
    # one output value must not cost a GiB of scratch: well under 256 MiB over the loaded interpreter
    assert res["peak_kb"] - res["before_kb"] < 256 * 1024, res


# ---------------------------------------------------------------------------------------------
# ConvTranspose output_shape past the full output: accepted as far as onnxruntime accepts it


@pytest.mark.parametrize("path", ["native", "numpy"])
@pytest.mark.parametrize("stride,opad,dil", [(1, 0, 1), (2, 0, 1), (3, 0, 1), (2, 1, 1), (1, 0, 2), (3, 2, 2)])
def test_convtranspose_output_shape_bound_matches_onnxruntime(stride, opad, dil, path):
    ort = pytest.importorskip("onnxruntime")
    x, w = np.arange(1, 4, dtype=np.float32).reshape(1, 1, 3), np.ones((1, 1, 3), np.float32)
    agree = []
    for out in range(1, 16):
        # shapes not declared: the check runs with the input's shape, at run time
        node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], name="n0", output_shape=[out], strides=[stride],
                                output_padding=[opad], dilations=[dil])
        m = make_model([node], [vi("x", F32, None), vi("w", F32, None)], [vi("y", F32, None)], opset=19)
        try:
            want = ort.InferenceSession(m.SerializeToString()).run(None, {"x": x, "w": w})[0]
        except Exception:
            want = None
        s = _session(m, "ConvTranspose", path)
        if want is None:
            with pytest.raises(InvalidArgument, match=rf"ConvTranspose (node )?'n0': output_shape {out} along spatial axis 0 "
                                                      r"is larger than \d+"):
                s.run(None, {"x": x, "w": w})
        else:
            np.testing.assert_allclose(s.run(None, {"x": x, "w": w})[0], want, rtol=1e-6)
            agree.append(out)
    full = stride * 2 + 2 * dil + 1 + opad
    assert agree == list(range(1, full - opad + stride)), agree  # what onnxruntime took: up to the bound
