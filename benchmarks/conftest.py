"""Benchmarks run onnxfast and onnxruntime side by side in one process; the ratio is what counts
(absolute times on this shared machine drift).

They are measured only when asked (`--benchmark-only`, `--benchmark-enable`, or a JSON/autosave
option); in the default test run (`pytest`) each runs once, as a correctness check.
"""

import pathlib
import sys

import pytest

# benchmarks.models.zoo must be importable without shadowing the installed onnxfast.
_ROOT = str(pathlib.Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.append(_ROOT)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    opt = config.option
    wanted = any(getattr(opt, k, None) for k in ("benchmark_only", "benchmark_enable", "benchmark_autosave",
                                                   "benchmark_json", "benchmark_save"))
    if not wanted and hasattr(opt, "benchmark_disable"):
        opt.benchmark_disable = True
