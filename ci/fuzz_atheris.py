#!/usr/bin/env python3
"""Coverage-guided fuzzing of onnxfast with atheris (libFuzzer for Python; issue #14).

The input bytes are a serialized ModelProto: ``onnxfast.InferenceSession(bytes)`` loads it and, when
it loads, ``run()`` is called with feeds derived from the model's inputs (shape from the declared
dims, symbolic / unknown dims -> 2, values from a FuzzedDataProvider over the same bytes; element type
from the declared type). Any Python exception is a normal result; libFuzzer reports a crash (signal),
a hang (-timeout=10) or an out-of-memory (-rss_limit_mb) and writes the input to crash-* / timeout-*.
Seeds: the backend suite's node models (written to the corpus folder on the first run).

    python ci/fuzz_atheris.py fuzz_atheris_corpus/ -max_total_time=3600 -timeout=10 -rss_limit_mb=4096
    python ci/fuzz_atheris.py crash-<sha>            # re-run one finding

Only onnxfast's Python code is instrumented (native code is fuzzed through its coverage of Python
paths); set ONNXFAST_PATH to fuzz another build.
"""

from __future__ import annotations

import os
import sys

import atheris
import numpy as np

# The allocation guard's limit below libFuzzer's -rss_limit_mb (4096 above): a model asking for more
# memory is refused (AllocationError, a normal result) instead of reported as an out-of-memory, as
# ci/fuzz.py gets by its workers' RLIMIT_AS.
os.environ.setdefault("ONNXFAST_MEMORY_LIMIT_MB", "3072")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_path = os.environ.get("ONNXFAST_PATH", ROOT)
sys.path.insert(0, _path)

with atheris.instrument_imports(include=["onnxfast"]):
    import onnxfast

import onnx  # noqa: E402
from onnx import helper  # noqa: E402

_SO = onnxfast.SessionOptions()
_SO.intra_op_num_threads = 1
_MAX_ELEMENTS = 1 << 16


def _feed(vi, fdp):
    t = vi.type.tensor_type
    try:
        dt = helper.tensor_dtype_to_np_dtype(t.elem_type)
    except Exception:  # noqa: BLE001
        dt = np.dtype(np.float32)
    shape = []
    for d in t.shape.dim if t.HasField("shape") else []:
        shape.append(d.dim_value if d.HasField("dim_value") and 0 <= d.dim_value <= 64 else 2)
    n = int(np.prod(shape)) if shape else 1
    if n > _MAX_ELEMENTS:
        shape, n = [n % 7], n % 7
    if dt.kind in "OSU":
        return np.array([fdp.ConsumeUnicodeNoSurrogates(8) for _ in range(n)], dtype=object).reshape(shape)
    if dt.kind == "b":
        return np.array([fdp.ConsumeBool() for _ in range(n)], dtype=np.bool_).reshape(shape)
    if dt.kind in "iu":
        vals = [fdp.ConsumeIntInRange(-(2**31), 2**31 - 1) for _ in range(n)]
        with np.errstate(all="ignore"):
            return np.array(vals, dtype=np.int64).astype(dt).reshape(shape)
    if dt.kind in "fc":
        return np.array([fdp.ConsumeRegularFloat() for _ in range(n)], dtype=np.float64).astype(dt).reshape(shape)
    return np.zeros(shape, dt)


def TestOneInput(data: bytes) -> None:
    try:
        sess = onnxfast.InferenceSession(data, _SO)
    except Exception:  # noqa: BLE001 - a clean refusal is the expected result for most inputs
        return
    m = onnx.ModelProto()
    try:
        m.ParseFromString(data)
    except Exception:  # noqa: BLE001
        return
    fdp = atheris.FuzzedDataProvider(data)
    names = {i.name for i in sess.get_inputs()}
    feeds = {vi.name: _feed(vi, fdp) for vi in m.graph.input if vi.name in names}
    try:
        sess.run(None, feeds)
    except Exception:  # noqa: BLE001
        return


def _write_seeds(folder: str) -> None:
    import warnings

    from onnx.backend.test.case.node import collect_testcases

    os.makedirs(folder, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for c in collect_testcases():
            with open(os.path.join(folder, c.name + ".onnx"), "wb") as f:
                f.write(c.model.SerializeToString())


def main() -> None:
    dirs = [a for a in sys.argv[1:] if not a.startswith("-") and os.path.isdir(a)]
    if dirs and not os.listdir(dirs[0]):
        _write_seeds(dirs[0])
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
