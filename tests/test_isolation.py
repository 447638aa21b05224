"""onnx's reference evaluator is a test oracle only: nothing in onnxfast imports it."""

import pathlib
import subprocess
import sys

PKG = pathlib.Path(__file__).resolve().parents[1] / "onnxfast"


def test_package_sources_do_not_mention_onnx_reference():
    import onnxfast

    root = pathlib.Path(onnxfast.__file__).parent
    for src in [root, PKG]:
        for f in src.rglob("*.py"):
            text = f.read_text()
            assert "onnx.reference" not in text and "from onnx import reference" not in text, f


def test_import_and_run_with_onnx_reference_blocked(tmp_path):
    code = r"""
import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "onnx.reference" or name.startswith("onnx.reference."):
            raise ImportError("onnx.reference is blocked in this test")
sys.meta_path.insert(0, Block())
import numpy as np, onnxfast
from onnxfast.cli import DEMO_MODEL
s = onnxfast.InferenceSession(DEMO_MODEL)
out = s.run(None, {"input": np.ones((2, 16), np.float32)})
assert out[1].shape == (2, 8)
assert not any(m.startswith("onnx.reference") for m in sys.modules)
print("ok")
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"
