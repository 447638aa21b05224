"""The onnxfast command line: run, info, the demo; bad input gives one line, no traceback."""

import subprocess
import sys

import numpy as np
import onnx
from onnx_helpers import F, make_model, vi
from onnx import helper

from onnxfast.cli import DEMO_MODEL, main


def test_demo_via_python_m(tmp_path):
    r = subprocess.run([sys.executable, "-m", "onnxfast"], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "probabilities" in r.stdout and "latency" in r.stdout


def test_info_with_kernels(capsys):
    assert main(["info", DEMO_MODEL, "--kernels"]) == 0
    out = capsys.readouterr().out
    assert "input: tensor(float) ['batch', 16]" in out
    assert "FusedMatMul: 2" in out and "parameters: 808" in out  # Gemm + Relu and MatMul + Add, fused
    assert "fc1: FusedMatMul -> native:fused:prepacked on CPUExecutionProvider" in out
    assert "softmax: Softmax -> native on CPUExecutionProvider" in out


def test_run_random_and_given_inputs(tmp_path, capsys):
    assert main(["run", DEMO_MODEL, "--runs", "3", "--batch", "2"]) == 0
    out = capsys.readouterr().out
    assert "probabilities: float32[2, 8]" in out and "latency over 3 runs" in out
    x = np.ones((5, 16), np.float32)
    np.save(tmp_path / "x.npy", x)
    assert main(["run", DEMO_MODEL, "--input", f"input={tmp_path / 'x.npy'}", "--output-dir", str(tmp_path / "o")]) == 0
    assert np.load(tmp_path / "o" / "probabilities.npy").shape == (5, 8)


def test_symbolic_dims(tmp_path, capsys):
    m = make_model([helper.make_node("Relu", ["x"], ["y"])], [vi("x", F, ["n", "k"])], [vi("y", F, ["n", "k"])])
    p = tmp_path / "m.onnx"
    onnx.save(m, p)
    assert main(["run", str(p), "--dim", "k=7", "--runs", "0"]) == 0
    assert "y: float32[1, 7]" in capsys.readouterr().out


def test_errors_are_one_line(tmp_path):
    for args, code, msg in [
        (["run", str(tmp_path / "missing.onnx")], 1, "model file not found"),
        (["info", str(tmp_path)], 1, "is a folder"),
        (["run", DEMO_MODEL, "--input", "nonsense"], 2, "--input expects NAME=FILE.npy"),
        (["run", DEMO_MODEL, "--input", "input=/nope.npy"], 2, "input file not found"),
        (["run", DEMO_MODEL, "--dim", "k=x"], 2, "--dim expects NAME=INT"),
    ]:
        r = subprocess.run([sys.executable, "-m", "onnxfast", *args], capture_output=True, text=True, cwd=tmp_path,
                           timeout=120)
        assert r.returncode == code, (args, r.stderr)
        assert msg in r.stderr and "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00\x01garbage")
    r = subprocess.run([sys.executable, "-m", "onnxfast", "info", str(bad)], capture_output=True, text=True,
                       cwd=tmp_path, timeout=120)
    assert r.returncode == 1 and "not a valid ONNX model" in r.stderr and "Traceback" not in r.stderr
