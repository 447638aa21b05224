"""Real exported models (benchmarks/models/zoo.py) against their source framework and onnxruntime.

Tolerance rule, one for all: max(1e-4 * max|reference|, 20 * onnxruntime's own error on that
model); classifier labels must equal onnxruntime's. Large models are marked slow."""

import numpy as np
import pytest

zoo = pytest.importorskip("benchmarks.models.zoo")

import onnxfast  # noqa: E402

PARAMS = [pytest.param(n, marks=[pytest.mark.slow] if s.slow else [], id=n) for n, s in zoo.ZOO.items()]


def _framework_available(family: str) -> None:
    for m in zoo.FAMILY_MODULES[family]:
        pytest.importorskip(m)


@pytest.mark.parametrize("level", [0, 1, 99], ids=["disable_all", "basic", "all"])
@pytest.mark.parametrize("name", PARAMS)
def test_model_matches_source_framework(name, level):
    """At every optimization level (no pass, folding and eliminations, every fusion)."""
    import onnxruntime as ort

    spec = zoo.ZOO[name]
    _framework_available(spec.family)
    c = zoo.get(name)
    n = 2 if spec.slow else None
    feed = {k: v[:n] for k, v in c.inputs.items()}
    want = [e[:n] for e in c.expected]
    o = onnxfast.SessionOptions()
    o.graph_optimization_level = onnxfast.GraphOptimizationLevel(level)
    sess = onnxfast.InferenceSession(str(c.path), o)
    got = sess.run(None, feed)
    ref = ort.InferenceSession(str(c.path), providers=["CPUExecutionProvider"]).run(None, feed)
    assert len(got) == len(ref)
    for i, (g, r, w) in enumerate(zip(got, ref, want)):
        out = sess.get_outputs()[i].name
        assert g.shape == r.shape, f"{name}/{out}: shape {g.shape} vs onnxruntime {r.shape}"
        if np.issubdtype(r.dtype, np.integer):
            np.testing.assert_array_equal(g, r, err_msg=f"{name}/{out}: labels differ from onnxruntime's")
            continue
        w = w.reshape(r.shape).astype(np.float64)
        ort_err = float(np.max(np.abs(r - w))) if r.size else 0.0
        tol = max(1e-4 * float(np.max(np.abs(w))), 20 * ort_err)
        err = float(np.max(np.abs(g - w))) if g.size else 0.0
        assert err <= tol, f"{name}/{out}: max error {err:.3g} > {tol:.3g} (onnxruntime's error {ort_err:.3g})"


@pytest.mark.slow
def test_resnet50_profile_is_a_chrome_trace(tmp_path):
    import json

    pytest.importorskip("torch")
    pytest.importorskip("onnxscript")
    c = zoo.get("resnet50")
    o = onnxfast.SessionOptions()
    o.enable_profiling = True
    o.profile_file_prefix = str(tmp_path / "resnet50_")
    sess = onnxfast.InferenceSession(str(c.path), o)
    sess.run(None, {"input": c.inputs["input"][:1]})
    path = sess.end_profiling()
    events = json.load(open(path))
    assert isinstance(events, list) and events
    for e in events:
        assert e["ph"] == "X" and isinstance(e["ts"], int) and isinstance(e["dur"], int) and e["name"]
    # 53 convolutions: most fused with their bias/residual/activation by the optimizer
    convs = [e for e in events if e["cat"] == "Node" and e["args"]["op_name"] in ("Conv", "FusedConv")]
    assert len(convs) == 53
    assert any(e["args"]["op_name"] == "Conv" for e in convs)
    assert convs[0]["args"]["input_type_shape"][0] == {"float": [1, 3, 224, 224]}
    assert convs[0]["args"]["provider"] == "CPUExecutionProvider"


# The models whose whole graph must run natively (no numpy step): standard-op exports, both exporters
# (GPT-2: dynamo only; the TorchScript exporter cannot export transformers 5's GPT-2).
NATIVE_ONLY = ["resnet50", "resnet50_torchscript", "mobilenet_v2", "mobilenet_v2_torchscript", "bert_base",
               "bert_base_torchscript", "gpt2", "minilm", "minilm_torchscript", "mlp",
               "mlp_torchscript", "lstm"]


@pytest.mark.parametrize("name", [p for p in PARAMS if p.values[0] in NATIVE_ONLY])
def test_no_numpy_step(name):
    """Every step of these models is a native kernel: no step takes the GIL or goes through numpy."""
    _framework_available(zoo.ZOO[name].family)
    sess = onnxfast.InferenceSession(str(zoo.get(name).path))
    listing = sess.kernel_listing()
    not_native = [(r["node"], r["op_type"], r["kernel"]) for r in listing
                  if not (r["kernel"].startswith("native") or r["kernel"] in ("constant", "copy"))
                  or "numpy" in r["kernel"]]
    assert listing and not not_native, f"{name}: steps not native: {not_native[:20]}"


@pytest.mark.parametrize("name", PARAMS)
def test_optimized_model_reloads_with_the_same_outputs(name, tmp_path):
    """The model saved through optimized_model_filepath (folded, fused) loads again and gives the
    outputs of the session that wrote it."""
    _framework_available(zoo.ZOO[name].family)
    c = zoo.get(name)
    o = onnxfast.SessionOptions()
    o.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    sess = onnxfast.InferenceSession(str(c.path), o)
    again = onnxfast.InferenceSession(o.optimized_model_filepath)
    feed = {k: v[:2] for k, v in c.inputs.items()}
    for g, w in zip(again.run(None, feed), sess.run(None, feed)):
        np.testing.assert_array_equal(g, w)
