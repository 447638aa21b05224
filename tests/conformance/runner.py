"""The ONNX backend conformance runner.

The case list is defined once, here: every node case that
``onnx.backend.test.case.node.collect_testcases()`` builds, plus the model folders in
``onnx/backend/test/data/{simple,pytorch-converted,pytorch-operator}``. Each case runs through
``onnxfast.InferenceSession`` on each of its data sets and is compared with onnx's tolerances
(rtol 1e-3, atol 1e-7 unless the case says otherwise); element types must match exactly.

Undefined behaviour is not compared. The ONNX spec leaves a cast from a floating-point value to an
integer type undefined when the value is out of the integer type's range (Cast: "fixed point:
undefined if OOR"), and the expected outputs of such cases are whatever the installed ``ml_dtypes``
/ numpy happen to produce (ml_dtypes 0.7 changed float -> int4 / int2 from wrapping to 0). So in a
case whose graph is made only of Cast / CastLike nodes, from a floating-point input to an integer
output, an element is compared only when its input is finite and lies within the output type's
range (``lo <= x <= hi``); NaN, +-inf and out-of-range elements are excluded, every other element is
compared exactly (``_undefined_cast_mask``). onnxfast's own choice for those elements, documented in
``onnxfast/ops/tensor.py`` (``cast``), is onnxruntime's: NaN and +-inf give 0, other out-of-range
values keep their low bits (wrap), as an integer-to-integer cast does.

    python tests/conformance/runner.py            # print the count and every failure with its reason
    python tests/conformance/runner.py --update   # rewrite the ratchet (passing.txt) and failing.txt
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import tempfile
import warnings
from dataclasses import dataclass

import numpy as np
import onnx

HERE = os.path.dirname(os.path.abspath(__file__))
RATCHET = os.path.join(HERE, "passing.txt")
FAILING = os.path.join(HERE, "failing.txt")
DATA_SUITES = ("simple", "pytorch-converted", "pytorch-operator")


@dataclass
class Case:
    name: str
    model: onnx.ModelProto
    data_sets: list  # [(inputs list, outputs list)]
    rtol: float = 1e-3
    atol: float = 1e-7


def _read_value(path: str, type_proto):
    from onnx import numpy_helper

    data = open(path, "rb").read()
    kind = type_proto.WhichOneof("value") if type_proto is not None else "tensor_type"
    if kind == "sequence_type":
        p = onnx.SequenceProto()
        p.ParseFromString(data)
        return numpy_helper.to_list(p)
    if kind == "optional_type":
        p = onnx.OptionalProto()
        p.ParseFromString(data)
        return _as_value(numpy_helper.to_optional(p))
    if kind == "map_type":
        p = onnx.MapProto()
        p.ParseFromString(data)
        return numpy_helper.to_dict(p)
    t = onnx.TensorProto()
    t.ParseFromString(data)
    return numpy_helper.to_array(t)


def _as_value(v):
    """Node cases hold numpy arrays, lists, None, or TensorProtos (for types numpy lacks)."""
    from onnx import numpy_helper

    if isinstance(v, onnx.TensorProto):
        return numpy_helper.to_array(v)
    if isinstance(v, list):
        return [_as_value(x) for x in v]
    return v


def _dir_case(name: str, folder: str) -> Case:
    model = onnx.load(os.path.join(folder, "model.onnx"))
    inits = {t.name for t in model.graph.initializer}
    ins = [vi for vi in model.graph.input if vi.name not in inits]
    sets = []
    for ds in sorted(glob.glob(os.path.join(folder, "test_data_set_*"))):
        n_in = len(glob.glob(os.path.join(ds, "input_*.pb")))
        n_out = len(glob.glob(os.path.join(ds, "output_*.pb")))
        inputs = [_read_value(os.path.join(ds, f"input_{i}.pb"), ins[i].type if i < len(ins) else None)
                  for i in range(n_in)]
        outputs = [_read_value(os.path.join(ds, f"output_{i}.pb"), model.graph.output[i].type)
                   for i in range(n_out)]
        sets.append((inputs, outputs))
    return Case(name, model, sets)


def collect() -> list[Case]:
    """All cases, node cases first, in a stable order."""
    from onnx.backend.test.case.node import collect_testcases

    cases: list[Case] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for c in collect_testcases():
            sets = [([_as_value(v) for v in ins], [_as_value(v) for v in outs]) for ins, outs in c.data_sets]
            cases.append(Case(c.name, c.model, sets, c.rtol, c.atol))
    root = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data")
    for suite in DATA_SUITES:
        for folder in sorted(glob.glob(os.path.join(root, suite, "test_*"))):
            cases.append(_dir_case(f"{suite}/{os.path.basename(folder)}", folder))
    return cases


_FLOAT_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE,
                onnx.TensorProto.BFLOAT16}
_INT_RANGES = {
    onnx.TensorProto.INT2: (-2, 1), onnx.TensorProto.UINT2: (0, 3),
    onnx.TensorProto.INT4: (-8, 7), onnx.TensorProto.UINT4: (0, 15),
    onnx.TensorProto.INT8: (-(2**7), 2**7 - 1), onnx.TensorProto.UINT8: (0, 2**8 - 1),
    onnx.TensorProto.INT16: (-(2**15), 2**15 - 1), onnx.TensorProto.UINT16: (0, 2**16 - 1),
    onnx.TensorProto.INT32: (-(2**31), 2**31 - 1), onnx.TensorProto.UINT32: (0, 2**32 - 1),
    onnx.TensorProto.INT64: (-(2**63), 2**63 - 1), onnx.TensorProto.UINT64: (0, 2**64 - 1),
}


def _elem_type(vi) -> int:
    return vi.type.tensor_type.elem_type if vi.type.HasField("tensor_type") else 0


def _undefined_cast_mask(model: onnx.ModelProto, inputs: list, output_index: int):
    """For a float -> integer Cast / CastLike case: a boolean mask over output ``output_index``,
    True where the spec leaves the result undefined (input NaN, +-inf or outside the output
    type's range). None for every other case."""
    g = model.graph
    if not g.node or any(n.op_type not in ("Cast", "CastLike") for n in g.node):
        return None
    if not g.input or output_index >= len(g.output) or not inputs:
        return None
    if _elem_type(g.input[0]) not in _FLOAT_TYPES:
        return None
    rng = _INT_RANGES.get(_elem_type(g.output[output_index]))
    if rng is None:
        return None
    x = np.asarray(inputs[0]).astype(np.float64)
    lo, hi = rng
    return ~(np.isfinite(x) & (x >= lo) & (x <= hi))


def _compare(got, want, rtol: float, atol: float, where: str, undefined=None) -> None:
    if isinstance(want, list):
        if not isinstance(got, list) or len(got) != len(want):
            raise AssertionError(f"{where}: expected a sequence of {len(want)}, got {type(got).__name__}")
        for i, (g, w) in enumerate(zip(got, want)):
            _compare(g, w, rtol, atol, f"{where}[{i}]")
        return
    if want is None:
        if got is not None:
            raise AssertionError(f"{where}: expected an empty optional, got {type(got).__name__}")
        return
    if isinstance(want, dict):
        if not isinstance(got, dict) or set(got) != set(want):
            raise AssertionError(f"{where}: map keys differ")
        for k in want:
            _compare(got[k], want[k], rtol, atol, f"{where}[{k!r}]")
        return
    want = np.asarray(want)
    if not isinstance(got, np.ndarray):
        raise AssertionError(f"{where}: expected an array, got {type(got).__name__}")
    if want.dtype == object or want.dtype.kind in "US":
        if got.shape != want.shape or [str(x) for x in got.ravel()] != [str(x) for x in want.ravel()]:
            raise AssertionError(f"{where}: strings differ")
        return
    if got.dtype != want.dtype:
        raise AssertionError(f"{where}: element type {got.dtype}, expected {want.dtype}")
    if got.shape != want.shape:
        raise AssertionError(f"{where}: shape {got.shape}, expected {want.shape}")
    if undefined is not None and undefined.shape == want.shape:
        got, want = got[~undefined], want[~undefined]
    if want.dtype.kind in "biu" or want.dtype == np.bool_:
        if not np.array_equal(got, want):
            raise AssertionError(f"{where}: values differ")
        return
    g = got.astype(np.complex128 if want.dtype.kind == "c" else np.float64)
    w = want.astype(g.dtype)
    np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, equal_nan=True, err_msg=where)


def run_case(case: Case, roundtrip: bool = False) -> str | None:
    """None when the case passes, else a one-line reason. roundtrip: run the model that the session
    saved through optimized_model_filepath (loaded again), not the original."""
    import onnxfast

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if roundtrip:
                with tempfile.TemporaryDirectory() as d:
                    o = onnxfast.SessionOptions()
                    o.optimized_model_filepath = os.path.join(d, "optimized.onnx")
                    onnxfast.InferenceSession(case.model, o)
                    onnx.checker.check_model(o.optimized_model_filepath)
                    sess = onnxfast.InferenceSession(o.optimized_model_filepath)
            else:
                sess = onnxfast.InferenceSession(case.model)
        names = [i.name for i in sess.get_inputs()]
        outs = [o.name for o in sess.get_outputs()]
        for k, (inputs, outputs) in enumerate(case.data_sets):
            feed = dict(zip(names, inputs))
            got = sess.run(outs, feed)
            for i, (g, w) in enumerate(zip(got, outputs)):
                _compare(g, w, case.rtol, case.atol, f"data set {k}, output {outs[i]!r}",
                         _undefined_cast_mask(case.model, inputs, i))
    except AssertionError as e:
        return "wrong result: " + " ".join(str(e).split())[:300]
    except Exception as e:  # noqa: BLE001 - every failure is reported with its reason
        return f"{type(e).__name__}: " + " ".join(str(e).split())[:300]
    return None


def run_all(cases: list[Case] | None = None, roundtrip: bool = False) -> dict[str, str | None]:
    cases = collect() if cases is None else cases
    return {c.name: run_case(c, roundtrip) for c in cases}


def read_ratchet() -> set[str]:
    if not os.path.exists(RATCHET):
        return set()
    with open(RATCHET) as f:
        return {line.strip() for line in f if line.strip() and not line.startswith("#")}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--update", action="store_true", help="rewrite passing.txt with the cases passing now")
    p.add_argument("-k", help="only cases whose name contains this")
    p.add_argument("--roundtrip", action="store_true",
                   help="run each model as saved through optimized_model_filepath and loaded again")
    args = p.parse_args(argv)
    cases = collect()
    if args.k:
        cases = [c for c in cases if args.k in c.name]
    if args.roundtrip:
        cases = [c for c in cases if c.name in read_ratchet()]
    results = run_all(cases, args.roundtrip)
    failing = {n: r for n, r in results.items() if r is not None}
    for n, r in sorted(failing.items()):
        print(f"FAIL {n}: {r}")
    passed = len(results) - len(failing)
    print(f"conformance: {passed} passed, {len(failing)} failed of {len(results)} cases")
    if args.update and not args.k and not args.roundtrip:
        with open(RATCHET, "w") as f:
            f.write("# ONNX backend cases onnxfast passes (tests/conformance/runner.py --update)\n")
            for n in sorted(n for n, r in results.items() if r is None):
                f.write(n + "\n")
        with open(FAILING, "w") as f:
            f.write("# ONNX backend cases onnxfast fails, with the reason (tests/conformance/runner.py --update)\n")
            for n, r in sorted(failing.items()):
                f.write(f"{n}: {r}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
