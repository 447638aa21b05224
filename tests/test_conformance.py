"""The ONNX backend suite (tests/conformance/runner.py) against the committed ratchet: every case
listed in passing.txt must still pass. New passes are reported; run the runner with --update to
raise the ratchet. failing.txt lists every failing case with its reason.

onnx's reference evaluator is needed to *build* the cases, but is blocked while onnxfast runs them."""

import contextlib
import importlib.abc
import sys
import warnings

import pytest
from conformance.runner import collect, read_ratchet, run_all


class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "onnx.reference" or name.startswith("onnx.reference."):
            raise ImportError("onnx.reference is blocked while onnxfast runs the conformance suite")
        return None


@contextlib.contextmanager
def onnx_reference_blocked():
    import onnx

    saved = {k: v for k, v in sys.modules.items() if k == "onnx.reference" or k.startswith("onnx.reference.")}
    for k in saved:
        del sys.modules[k]
    attr = onnx.__dict__.pop("reference", None)
    finder = _Block()
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
        sys.modules.update(saved)
        if attr is not None:
            onnx.reference = attr


@pytest.fixture(scope="module")
def cases():
    return collect()


def test_conformance_ratchet(cases, capsys):
    with onnx_reference_blocked():
        results = run_all(cases)
    passing = read_ratchet()
    assert passing, "tests/conformance/passing.txt is missing or empty"
    unknown = sorted(passing - set(results))
    assert not unknown, f"ratchet lists cases the suite does not have: {unknown[:10]}"
    broken = {n: results[n] for n in sorted(passing) if results[n] is not None}
    n_pass = sum(r is None for r in results.values())
    newly = sorted(n for n, r in results.items() if r is None and n not in passing)
    with capsys.disabled():
        print(f"\nconformance: {n_pass} passed, {len(results) - n_pass} failed of {len(results)} cases"
              + (f" ({len(newly)} pass but are not in the ratchet yet)" if newly else ""))
    assert not broken, "cases in the ratchet that fail now:\n" + "\n".join(f"{k}: {v}" for k, v in broken.items())


def _args(args):
    return [(a.name, a.type, list(a.shape) if a.shape is not None else None) for a in args]


def test_inputs_and_outputs_match_onnxruntime(cases):
    """For every suite model onnxruntime can load: names, shapes and type strings are equal."""
    import onnxruntime as ort

    import onnxfast

    so = ort.SessionOptions()
    so.log_severity_level = 4
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    compared, mismatches = 0, []
    for case in cases:
        data = case.model.SerializeToString()
        try:
            ref = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
        except Exception:  # noqa: BLE001 - models onnxruntime cannot load are out of this comparison
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ours = onnxfast.InferenceSession(data)
            except Exception as e:  # noqa: BLE001
                mismatches.append(f"{case.name}: onnxfast could not load it: {e}")
                continue
        compared += 1
        for what in ("get_inputs", "get_outputs"):
            a, b = _args(getattr(ours, what)()), _args(getattr(ref, what)())
            if a != b:
                mismatches.append(f"{case.name} {what}: onnxfast {a} != onnxruntime {b}")
    assert compared > 1500
    assert not mismatches, f"{len(mismatches)} of {compared} models differ:\n" + "\n".join(mismatches[:40])


def test_conformance_roundtrip(cases):
    """Every case in the ratchet, run from the model its session saved through optimized_model_filepath
    (checked by onnx.checker, then loaded again), still passes."""
    passing = read_ratchet()
    with onnx_reference_blocked():
        results = run_all([c for c in cases if c.name in passing], roundtrip=True)
    broken = {n: r for n, r in results.items() if r is not None}
    assert len(results) == len(passing)
    assert not broken, "cases that fail once saved and reloaded:\n" + "\n".join(f"{k}: {v}" for k, v in broken.items())
