"""Kernel benchmarks, each against its peer measured interleaved in the same process:

- GEMM (MatMul through a session) vs numpy's matmul, both operands fed and with the weight a
  constant initializer (pre-packed); small shapes and M=1 vs onnxruntime.
- Every distinct ResNet-50 / MobileNetV2 convolution layer (Conv + bias + Relu) vs onnxruntime.
- Softmax, LayerNormalization, Gelu and broadcast Add on BERT-base shapes vs onnxruntime.

extra_info holds the peer's median, the ratio of the medians (onnxfast / peer; < 1 is faster) and
the paired ratio (the median over rounds of onnxfast's time / the peer's, each pair run back to
back, so a slow phase of the machine hits both halves of a pair alike). numpy's BLAS
is whatever numpy ships (see extra_info['blas'] via threadpoolctl when installed); run with
OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE unset to measure numpy at its best.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxfast

ort = pytest.importorskip("onnxruntime")
F = TensorProto.FLOAT


def _blas() -> str:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "unknown (threadpoolctl not installed)"
    for lib in threadpool_info():
        if lib.get("user_api") == "blas":
            return f"{lib.get('internal_api')} {lib.get('version')} {lib.get('architecture')} x{lib.get('num_threads')}"
    return "none"


def _model(nodes, inputs, outputs, inits=(), opset=18) -> bytes:
    g = helper.make_graph(nodes, "k", inputs, outputs, [numpy_helper.from_array(a, n) for n, a in inits])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 9
    return m.SerializeToString()


def _fast(data: bytes, threads: int):
    o = onnxfast.SessionOptions()
    o.intra_op_num_threads = threads
    return onnxfast.InferenceSession(data, o)


def _ort(data: bytes, threads: int):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])


def settle() -> None:
    """Let worker threads stop spinning between timed calls: OpenBLAS spins for about 2^28 cycles
    (~0.12 s here) after each call and onnxruntime's pool spins too; they would otherwise take the
    cores onnxfast's pool runs on. The pause comes before both sides' timed calls, so each starts
    from the same idle state (caches and clocks alike)."""
    if not BENCHMARK_DISABLED[0]:
        time.sleep(SETTLE_S)


SETTLE_S = 0.25
BENCHMARK_DISABLED = [False]


def _pair(benchmark, group: str, fast_fn, peer_fn, rounds: int, flops: float | None = None, peer: str = "onnxruntime"):
    peer_times: list[float] = []

    def setup():
        settle()
        t = time.perf_counter()
        peer_fn()
        peer_times.append(time.perf_counter() - t)
        settle()

    BENCHMARK_DISABLED[0] = benchmark.disabled
    for _ in range(2):
        fast_fn()
        peer_fn()
    benchmark.group = group
    benchmark.pedantic(fast_fn, setup=setup, rounds=1 if benchmark.disabled else rounds, iterations=1)
    stats = getattr(benchmark, "stats", None)
    if stats is not None and peer_times:
        fm, pm = stats.stats.median, float(np.median(peer_times))
        benchmark.extra_info.update({"peer": peer, "peer_median_s": pm, "ratio": fm / pm})
        # Round i's peer call ran just before its onnxfast call: the median of the per-round
        # ratios cancels the slow phases of this shared machine (another tenant on the core's
        # sibling thread halves the FMA rate for a while) that move both medians apart.
        fast_times = list(stats.stats.data)
        if len(fast_times) == len(peer_times):
            benchmark.extra_info["paired_ratio"] = float(np.median(np.array(fast_times) / np.array(peer_times)))
        if flops:
            benchmark.extra_info.update({"gflops": flops / fm / 1e9, "peer_gflops": flops / pm / 1e9})


GEMM_SHAPES = [(256, 256, 256), (512, 512, 512), (1024, 1024, 1024), (2048, 2048, 2048),
               (128, 768, 768), (128, 768, 3072), (128, 3072, 768)]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("const", [False, True])
@pytest.mark.parametrize("mkn", GEMM_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_gemm_vs_numpy(benchmark, mkn, const, threads):
    m, k, n = mkn
    rng = np.random.default_rng(0)
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    ins = [helper.make_tensor_value_info("a", F, [m, k])]
    if not const:
        ins.append(helper.make_tensor_value_info("b", F, [k, n]))
    data = _model([helper.make_node("MatMul", ["a", "b"], ["c"])], ins, [helper.make_tensor_value_info("c", F, None)],
                  [("b", b)] if const else [])
    s = _fast(data, threads)
    feed = {"a": a} if const else {"a": a, "b": b}
    from threadpoolctl import threadpool_limits

    # numpy's BLAS gets the same thread count for the whole case (set outside the timed calls).
    with threadpool_limits(threads, user_api="blas"):
        benchmark.extra_info["blas"] = _blas()
        _pair(benchmark, f"gemm {m}x{k}x{n} {'const' if const else 'fed'} t{threads}", lambda: s.run(None, feed),
              lambda: a @ b, rounds=20, flops=2.0 * m * k * n, peer="numpy")


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("mkn", [(64, 64, 64), (128, 128, 128), (1, 768, 3072)], ids=lambda s: "x".join(map(str, s)))
def test_small_gemm_vs_onnxruntime(benchmark, mkn, threads):
    m, k, n = mkn
    rng = np.random.default_rng(0)
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    data = _model([helper.make_node("MatMul", ["a", "b"], ["c"])], [helper.make_tensor_value_info("a", F, [m, k])],
                  [helper.make_tensor_value_info("c", F, None)], [("b", b)])
    s, r = _fast(data, threads), _ort(data, threads)
    _pair(benchmark, f"gemm {m}x{k}x{n} const t{threads}", lambda: s.run(None, {"a": a}),
          lambda: r.run(None, {"a": a}), rounds=50, flops=2.0 * m * k * n)


def _conv_layers():
    """Distinct (input shape, weight shape, stride, pad, group) of ResNet-50 and MobileNetV2, batch 1."""
    layers = {(3, 224, 64, 7, 2, 3, 1)}
    hw, cin = 56, 64
    for mid, n, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
        for i in range(n):
            s = stride if i == 0 else 1
            layers.add((cin, hw, mid, 1, 1, 0, 1))
            layers.add((mid, hw, mid, 3, s, 1, 1))
            hw2 = hw // s
            layers.add((mid, hw2, mid * 4, 1, 1, 0, 1))
            if i == 0:
                layers.add((cin, hw, mid * 4, 1, s, 0, 1))
            cin, hw = mid * 4, hw2
    resnet = sorted(layers)
    layers = {(3, 224, 32, 3, 2, 1, 1)}
    cfg = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
    cin, hw = 32, 112
    for t, c, n, s in cfg:
        for i in range(n):
            st = s if i == 0 else 1
            hid = cin * t
            if t != 1:
                layers.add((cin, hw, hid, 1, 1, 0, 1))
            layers.add((hid, hw, hid, 3, st, 1, hid))
            hw = (hw + 2 - 3) // st + 1
            layers.add((hid, hw, c, 1, 1, 0, 1))
            cin = c
    layers.add((320, 7, 1280, 1, 1, 0, 1))
    return [("resnet50", layer) for layer in resnet] + [("mobilenet_v2", layer) for layer in sorted(layers)]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("net,layer", _conv_layers(), ids=lambda v: v if isinstance(v, str) else "c{}_{}_{}k{}s{}g{}".format(
    v[0], v[1], v[2], v[3], v[4], v[6]))
def test_conv_layer(benchmark, net, layer, threads):
    cin, hw, cout, k, s, p, g = layer
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((cout, cin // g, k, k)) * 0.1).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], strides=[s, s], pads=[p] * 4, group=g),
             helper.make_node("Relu", ["c"], ["y"])]
    data = _model(nodes, [helper.make_tensor_value_info("x", F, [1, cin, hw, hw])],
                  [helper.make_tensor_value_info("y", F, None)], [("w", w), ("b", b)])
    x = rng.standard_normal((1, cin, hw, hw)).astype(np.float32)
    fs, rs = _fast(data, threads), _ort(data, threads)
    ho = (hw + 2 * p - k) // s + 1
    _pair(benchmark, f"conv {net} {cin}x{hw}x{hw} -> {cout} k{k} s{s} g{g} t{threads}", lambda: fs.run(None, {"x": x}),
          lambda: rs.run(None, {"x": x}), rounds=20, flops=2.0 * cout * (cin // g) * k * k * ho * ho)


BERT = [  # (name, nodes, inputs {name: shape}, initializers)
    ("softmax 12x128x128", lambda: [helper.make_node("Softmax", ["x"], ["y"], axis=-1)], {"x": (1, 12, 128, 128)}, []),
    ("layernorm 128x768", lambda: [helper.make_node("LayerNormalization", ["x", "g", "b"], ["y"], axis=-1)],
     {"x": (1, 128, 768)}, [("g", (768,)), ("b", (768,))]),
    ("gelu 128x3072", lambda: [helper.make_node("Gelu", ["x"], ["y"])], {"x": (1, 128, 3072)}, []),
    ("add bias 128x768", lambda: [helper.make_node("Add", ["x", "b"], ["y"])], {"x": (1, 128, 768)}, [("b", (768,))]),
    ("add mask 12x128x128", lambda: [helper.make_node("Add", ["x", "m"], ["y"])], {"x": (1, 12, 128, 128)},
     [("m", (1, 1, 1, 128))]),
]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("case", BERT, ids=lambda c: c[0].replace(" ", "_"))
def test_bert_kernels(benchmark, case, threads):
    name, nodes, inputs, inits = case
    rng = np.random.default_rng(0)
    init_arrays = [(n, rng.standard_normal(shape).astype(np.float32)) for n, shape in inits]
    data = _model(nodes(), [helper.make_tensor_value_info(n, F, list(s)) for n, s in inputs.items()],
                  [helper.make_tensor_value_info("y", F, None)], init_arrays, opset=20)
    feed = {n: rng.standard_normal(s).astype(np.float32) for n, s in inputs.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fs, rs = _fast(data, threads), _ort(data, threads)
    np.testing.assert_allclose(fs.run(None, feed)[0], rs.run(None, feed)[0], rtol=1e-4, atol=1e-5)
    _pair(benchmark, f"bert {name} t{threads}", lambda: fs.run(None, feed), lambda: rs.run(None, feed), rounds=100)


def test_conv_layer_list_covers_both_networks():
    layers = _conv_layers()
    assert sum(n == "resnet50" for n, _ in layers) >= 20 and sum(n == "mobilenet_v2" for n, _ in layers) >= 25
    onnx.checker.check_model(onnx.load_from_string(_model([helper.make_node("Relu", ["x"], ["y"])],
                                                          [helper.make_tensor_value_info("x", F, [1])],
                                                          [helper.make_tensor_value_info("y", F, [1])])))
