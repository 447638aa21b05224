"""Models exported by torch.onnx.export (dynamo, opset 18) match PyTorch.

Tolerance rule (one for all): max(1e-4 * max|reference|, 20 * onnxruntime's own error)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxscript")

from small_torch_models import MODEL_NAMES, export, input_shape  # noqa: E402

import onnxfast  # noqa: E402

pytestmark = pytest.mark.torch


@pytest.fixture(scope="module", params=MODEL_NAMES)
def exported(request):
    return request.param, *export(request.param)


def test_matches_torch_and_onnxruntime(exported):
    import onnxruntime as ort

    name, path, run_torch = exported
    sess = onnxfast.InferenceSession(str(path))
    ref_sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    base = input_shape(name)
    for scale in (1, 3):  # the same session across batch (and sequence) sizes
        shape = (base[0] * scale,) + tuple(base[1:])
        if name == "encoder":
            shape = (base[0] * scale, base[1] + 2 * scale, base[2])
        x = rng.standard_normal(shape).astype(np.float32)
        want = run_torch(x)
        got = sess.run(None, {"x": x})[0]
        ort_err = float(np.max(np.abs(ref_sess.run(None, {"x": x})[0] - want)))
        tol = max(1e-4 * float(np.max(np.abs(want))), 20 * ort_err)
        err = float(np.max(np.abs(got - want)))
        assert got.shape == want.shape
        assert err <= tol, f"{name}: max error {err:.3g} > tolerance {tol:.3g} (onnxruntime's error {ort_err:.3g})"


def test_heavy_nodes_run_native(exported):
    name, path, _ = exported
    sess = onnxfast.InferenceSession(str(path))
    for r in sess.kernel_listing():
        if r["op_type"] in ("Conv", "MatMul", "Gemm", "ConvTranspose", "Resize", "InstanceNormalization"):
            assert r["kernel"].startswith("native"), r
