"""The onnxfast command line: run, info, the demo; bad input gives one line, no traceback."""

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
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
    # the file as it is: Gemm, Relu, MatMul, Add, Softmax; the kernels are the optimized graph's
    assert "Gemm: 1" in out and "MatMul: 1" in out and "FusedMatMul: " not in out and "parameters: 808" in out
    assert "unsupported operators: none" in out
    assert "fc1: FusedMatMul -> native:fused:prepacked on CPUExecutionProvider" in out
    assert "softmax: Softmax -> native on CPUExecutionProvider" in out


def test_info_lists_every_unsupported_operator(tmp_path, capsys):
    """info describes a model a session cannot be created for, naming every node without a kernel
    (subgraphs included), where the session stops at the first."""
    body = helper.make_graph([helper.make_node("Baz", ["x"], ["z"], name="baz", domain="my.ops")], "b", [],
                             [vi("z", F, [2])])
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="r"),
             helper.make_node("Foo", ["a"], ["b"], name="foo1", domain="my.ops"),
             helper.make_node("If", ["c"], ["y"], name="if1", then_branch=body, else_branch=body)]
    g = helper.make_graph(nodes, "g", [vi("x", F, [2]), vi("c", onnx.TensorProto.BOOL, [])], [vi("y", F, [2])])
    p = tmp_path / "m.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("my.ops", 1)]), p)
    assert main(["info", str(p), "--kernels"]) == 0
    out = capsys.readouterr().out
    assert "unsupported operators (3 nodes" in out
    assert "foo1: Foo (domain 'my.ops', opset 1)" in out
    assert "if1/then_branch/baz: Baz" in out and "if1/else_branch/baz: Baz" in out
    assert "kernels: none" in out
    r = subprocess.run([sys.executable, "-m", "onnxfast", "run", str(p)], capture_output=True, text=True, timeout=120,
                       cwd=tmp_path)
    assert r.returncode == 1 and r.stderr.count("is not supported") == 1  # a session stops at the first


def test_version(capsys):
    import onnxfast

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.startswith(f"onnxfast {onnxfast.__version__} (")


def test_bench_throughput_json(capsys):
    assert main(["bench", DEMO_MODEL, "--concurrency", "2", "--duration", "0.3", "--json"]) == 0
    cap = capsys.readouterr()
    doc = json.loads(cap.out)  # nothing but the document on stdout
    assert cap.err == ""  # no progress bar when stderr is not a terminal
    assert doc["mode"] == "throughput" and doc["concurrency"] == 2 and doc["duration_s"] == 0.3
    r = doc["results"]["onnxfast"]
    assert r["requests"] > 0 and r["throughput_per_s"] > 0 and r["wall_s"] >= 0.3  # ran for the duration
    assert r["p50_ms"] <= r["p99_ms"]


def test_bench_latency_json_against_onnxruntime(capsys):
    pytest.importorskip("onnxruntime")
    assert main(["bench", DEMO_MODEL, "--runs", "5", "--json", "--compare", "onnxruntime",
                 "--optimization-level", "basic"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["mode"] == "latency" and doc["optimization_level"] == "basic"
    assert doc["results"]["onnxfast"]["requests"] == doc["results"]["onnxruntime"]["requests"] == 5
    assert doc["ratio"] == doc["results"]["onnxfast"]["p50_ms"] / doc["results"]["onnxruntime"]["p50_ms"]


def test_bench_throughput_counts_requests(capsys):
    assert main(["bench", DEMO_MODEL, "--concurrency", "3", "--runs", "4"]) == 0
    out = capsys.readouterr().out
    assert "3 requests in flight, 4 requests each" in out
    row = next(line for line in out.splitlines() if line.startswith("onnxfast"))
    assert row.split()[1] == "12"


def test_run_with_provider_and_level(capsys):
    assert main(["run", DEMO_MODEL, "--runs", "0", "--optimization-level", "disable",
                 "--provider", "CPUExecutionProvider"]) == 0
    assert main(["run", DEMO_MODEL, "--provider", "NoSuchExecutionProvider"]) == 1
    assert "NoSuchExecutionProvider" in capsys.readouterr().err


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
