"""Resident memory side by side with onnxruntime. Real models (BERT-base, GPT-2, ResNet-50,
MobileNetV2): peak RSS to load, create and run, and BERT-base with varying sequence lengths
(ci/rss_model.py). And an MLP (256 -> 1024 -> 1024 -> 1024, MatMul + Add +
Relu) run with 64 batch sizes cycling (16..1024), in a child process per runtime (ci/rss_mlp.py).

extra_info holds the RSS (MB) before the session, after the first cycle (start), at the end, and after
deleting the session, with growth_mb = end - start and residue_mb = after - before (issue #14,
acceptance 5: end <= 1.25 x start and residue <= 30 MB). Timed: the whole child (2,000 runs when
benchmarks are measured; in the default test run a smoke run of 20 runs cycling batch 16..1024 in
steps of 64).
"""

import json
import os
import pathlib
import subprocess
import sys
import tempfile

import pytest

import onnxfast

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "ci" / "rss_mlp.py"


def _measure(runtime: str, runs: int, step: int) -> dict:
    env = dict(os.environ)
    pkg_root = os.path.dirname(os.path.dirname(onnxfast.__file__))
    env["PYTHONPATH"] = os.pathsep.join([pkg_root, env.get("PYTHONPATH", "")])
    r = subprocess.run([sys.executable, str(SCRIPT), "--runtime", runtime, "--runs", str(runs), "--step", str(step), "--json"], env=env,
                       capture_output=True, text=True, timeout=1200, cwd=tempfile.gettempdir())
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("runtime", ["onnxfast", "onnxruntime"])
def test_rss_mlp_cycling_batches(benchmark, runtime):
    if runtime == "onnxruntime":
        pytest.importorskip("onnxruntime")
    runs = 20 if benchmark.disabled else 2000
    out = {}
    benchmark.group = f"memory: RSS of an MLP over {runs} runs, batch 16..1024 cycling (see extra_info)"
    benchmark.pedantic(lambda: out.update(_measure(runtime, runs, 16 if runs >= 2000 else 64)), rounds=1, iterations=1)
    benchmark.extra_info.update({k: out[k] for k in ("before", "start", "end", "peak", "after")})
    benchmark.extra_info["growth_mb"] = round(out["end"] - out["start"], 1)
    benchmark.extra_info["residue_mb"] = round(out["after"] - out["before"], 1)
    if runtime == "onnxfast":
        assert out["end"] <= 1.25 * out["start"], out
        assert out["after"] <= out["before"] + 30, out


# ---- real models (issue #15, acceptance 2) --------------------------------------------------------

MODEL_SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "ci" / "rss_model.py"
PEAK_MODELS = ["bert_base", "gpt2", "resnet50", "mobilenet_v2"]


def _model_rss(model: str, runtime: str, *extra: str) -> dict:
    env = dict(os.environ)
    pkg_root = os.path.dirname(os.path.dirname(onnxfast.__file__))
    env["PYTHONPATH"] = os.pathsep.join([pkg_root, env.get("PYTHONPATH", "")])
    r = subprocess.run([sys.executable, str(MODEL_SCRIPT), model, "--runtime", runtime, "--json", *extra], env=env,
                       capture_output=True, text=True, timeout=1800, cwd=tempfile.gettempdir())
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def _zoo_ready():
    pytest.importorskip("onnxruntime")
    pytest.importorskip("torch")
    pytest.importorskip("transformers")


@pytest.mark.slow
@pytest.mark.parametrize("model", PEAK_MODELS)
def test_peak_rss_vs_onnxruntime(benchmark, model):
    """ru_maxrss of a process that loads the model, creates the session and runs it 3 times (batch 1,
    one thread), onnxfast and onnxruntime each in its own process: onnxfast's at most 1.1x."""
    _zoo_ready()
    out = {}
    benchmark.group = "memory: peak RSS (MB) to load, create and run 3 times"

    def measure():
        out["onnxfast"] = _model_rss(model, "onnxfast")
        out["onnxruntime"] = _model_rss(model, "onnxruntime")

    benchmark.pedantic(measure, rounds=1, iterations=1)
    ratio = out["onnxfast"]["peak"] / out["onnxruntime"]["peak"]
    benchmark.extra_info.update({"onnxfast_mb": out["onnxfast"]["peak"], "onnxruntime_mb": out["onnxruntime"]["peak"],
                                 "ratio": round(ratio, 3)})
    assert ratio <= 1.1, out


@pytest.mark.slow
def test_bert_rss_flat_with_varying_sequence_lengths(benchmark):
    """200 runs of BERT-base with sequence lengths drawn from 8..128: RSS after run 200 within 5% of
    RSS after run 50."""
    _zoo_ready()
    out = {}
    benchmark.group = "memory: BERT-base RSS, runs 50 -> 200, sequence 8..128"
    benchmark.pedantic(lambda: out.update(_model_rss("bert_base", "onnxfast", "--runs", "200", "--vary", "8,128")),
                       rounds=1, iterations=1)
    benchmark.extra_info.update({k: out[k] for k in ("created", "rss_50", "rss_end", "peak")})
    assert out["rss_end"] <= 1.05 * out["rss_50"], out
