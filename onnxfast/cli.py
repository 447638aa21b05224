"""The `onnxfast` command: `run` a model (random inputs when none are given), `bench` its latency
(against onnxruntime, interleaved, with an operator profile) or its throughput (`--concurrency`,
`--duration`), `info` about a model file (inputs/outputs, opsets, operator histogram, parameters, every
node no kernel supports, and with --kernels which kernel each node of the optimized graph gets),
`optimize` a model into a file (the optimizer's output at a level). `onnxfast --version` prints the
versions; `python -m onnxfast` runs the demo model shipped in the package.

Errors print one line (no traceback) and exit with status 1 (bad model/input) or 2 (usage).
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import time

import numpy as np

DEMO_MODEL = os.path.join(os.path.dirname(__file__), "models", "demo_mlp.onnx")


class CliError(Exception):
    pass


def _parse_dims(specs: list[str]) -> dict[str, int]:
    out = {}
    for s in specs or []:
        name, sep, val = s.partition("=")
        if not sep or not val.strip().lstrip("-").isdigit():
            raise CliError(f"--dim expects NAME=INT, got '{s}'")
        out[name] = int(val)
    return out


def random_inputs(sess, dims: dict[str, int] | None = None, batch: int = 1, seed: int = 0) -> dict:
    """Random values for every input: symbolic dims from ``dims`` (else ``batch`` for the first axis, 1)."""
    from . import dtypes

    rng = np.random.default_rng(seed)
    dims = dims or {}
    feed = {}
    for arg in sess.get_inputs():
        if not arg.type.startswith("tensor("):
            raise CliError(f"input '{arg.name}' has type {arg.type}; give it with --input")
        shape = []
        for i, d in enumerate(arg.shape or []):
            if isinstance(d, int):
                shape.append(d)
            elif isinstance(d, str) and d in dims:
                shape.append(dims[d])
            else:
                shape.append(batch if i == 0 else 1)
        elem = arg.type[len("tensor(") : -1]
        code = next((c for c in range(1, 27) if dtypes.type_name(c) == elem), None)
        dt = dtypes.np_dtype(code) if code else np.float32
        if elem == "string":
            feed[arg.name] = np.full(shape, "a", dtype=object)
        elif elem == "bool":
            feed[arg.name] = rng.integers(0, 2, size=shape).astype(bool)
        elif np.issubdtype(np.dtype(dt), np.integer):
            feed[arg.name] = rng.integers(0, 10, size=shape).astype(dt)
        else:
            feed[arg.name] = rng.standard_normal(shape).astype(dt)
    return feed


def _load_inputs(specs: list[str]) -> dict:
    feed = {}
    for s in specs or []:
        name, sep, path = s.partition("=")
        if not sep:
            raise CliError(f"--input expects NAME=FILE.npy, got '{s}'")
        if not os.path.exists(path):
            raise CliError(f"input file not found: '{path}'")
        try:
            feed[name] = np.load(path, allow_pickle=False)
        except Exception as e:
            raise CliError(f"cannot read '{path}' as a .npy file: {e}") from None
    return feed


LEVELS = {"disable": 0, "basic": 1, "extended": 2, "all": 99}
# onnxruntime's GraphOptimizationLevel member per level name (for --compare onnxruntime)
ORT_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
              "all": "ORT_ENABLE_ALL"}


def _session(path: str, threads: int | None = None, level: str = "all", provider: str | None = None):
    import warnings

    from . import GraphOptimizationLevel, InferenceSession, SessionOptions

    opts = SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    opts.graph_optimization_level = GraphOptimizationLevel(LEVELS[level])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return InferenceSession(path, opts, providers=[provider] if provider else None)


def _summary(name: str, value) -> str:
    if isinstance(value, np.ndarray):
        head = np.array2string(value.reshape(-1)[:6], precision=4, separator=", ")
        return f"{name}: {value.dtype}{list(value.shape)} {head}{' ...' if value.size > 6 else ''}"
    return f"{name}: {type(value).__name__} {value!r:.80}"


def cmd_run(args) -> int:
    sess = _session(args.model, level=args.optimization_level, provider=args.provider)
    feed = random_inputs(sess, _parse_dims(args.dim), batch=args.batch)
    feed.update(_load_inputs(args.input))
    names = [o.name for o in sess.get_outputs()]
    outs = sess.run(None, feed)
    times = []
    for _ in range(max(0, args.runs)):
        t = time.perf_counter()
        sess.run(None, feed)
        times.append(time.perf_counter() - t)
    for n, v in zip(names, outs):
        print(_summary(n, v))
    if times:
        t = np.array(times) * 1e3
        print(f"latency over {len(t)} runs: mean {t.mean():.3f} ms, p50 {np.percentile(t, 50):.3f} ms, "
              f"p90 {np.percentile(t, 90):.3f} ms")
    if args.output_dir:
        os.makedirs(args.output_dir, exist_ok=True)
        for n, v in zip(names, outs):
            if isinstance(v, np.ndarray):
                safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in n)
                np.save(os.path.join(args.output_dir, f"{safe}.npy"), v)
        print(f"outputs saved to {args.output_dir}")
    return 0


def _parse_shapes(specs: list[str]) -> dict[str, list[int]]:
    out = {}
    for s in specs or []:
        name, sep, dims = s.partition("=")
        try:
            shape = [int(d) for d in dims.replace("x", ",").split(",") if d.strip()]
        except ValueError:
            shape = None
        if not sep or shape is None:
            raise CliError(f"--shape expects NAME=D1,D2,... (or D1xD2), got '{s}'")
        out[name] = shape
    return out


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def cmd_bench(args) -> int:
    import json

    from .benchmark import interleaved, summary, throughput, top_operators

    if args.runs < 1 or args.warmup < 0 or args.batch < 1 or (args.threads is not None and args.threads < 0):
        raise CliError("--runs and --batch must be >= 1, --warmup and --threads >= 0")
    if args.concurrency < 1 or (args.duration is not None and args.duration <= 0):
        raise CliError("--concurrency must be >= 1 and --duration > 0")
    sess = _session(args.model, args.threads, args.optimization_level, args.provider)
    feed = random_inputs(sess, _parse_dims(args.dim), batch=args.batch)
    for name, shape in _parse_shapes(args.shape).items():
        if name not in feed:
            raise CliError(f"--shape: the model has no input '{name}'; inputs: {list(feed)}")
        dt = feed[name].dtype
        feed[name] = (np.random.default_rng(1).standard_normal(shape).astype(dt) if dt.kind == "f"
                      else np.ones(shape, dtype=dt))
    runners = {"onnxfast": lambda: sess.run(None, feed)}
    if args.compare:
        if args.compare != "onnxruntime":
            raise CliError(f"--compare supports 'onnxruntime', got '{args.compare}'")
        try:
            import onnxruntime as ort
        except ImportError:
            raise CliError("--compare onnxruntime needs the onnxruntime package (pip install onnxruntime)") from None
        so = ort.SessionOptions()
        if args.threads:
            so.intra_op_num_threads = args.threads
        so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, ORT_LEVELS[args.optimization_level])
        ref = ort.InferenceSession(args.model, so, providers=["CPUExecutionProvider"])
        runners["onnxruntime"] = lambda: ref.run(None, feed)
    mode = "throughput" if args.concurrency > 1 or args.duration is not None else "latency"
    progress = not args.no_progress and not args.json and sys.stderr.isatty()
    if not args.json:
        shapes = ", ".join(f"{k}{list(v.shape)}" for k, v in feed.items())
        how = (f"{args.concurrency} requests in flight for {args.duration} s each" if args.duration is not None
               else f"{args.concurrency} requests in flight, {args.runs} requests each") if mode == "throughput" \
            else f"warm-up {args.warmup}, {args.runs} runs" + (", interleaved with onnxruntime" if args.compare else "")
        print(f"benchmark: {args.model}  inputs: {shapes}  {how}")
    results = {}
    if mode == "latency":
        times = interleaved(runners, warmup=args.warmup, runs=args.runs, progress=progress)
        for n, t in times.items():
            results[n] = {"requests": len(t), **{f"{k}_ms": v for k, v in summary(t).items()}}
    else:
        for n, fn in runners.items():  # one runtime after the other: they would compete for the cores
            t, wall = throughput(fn, concurrency=args.concurrency, duration=args.duration, runs=args.runs,
                                 warmup=args.warmup)
            results[n] = {"requests": len(t), "wall_s": wall, "throughput_per_s": len(t) / wall,
                          **{f"{k}_ms": v for k, v in summary(t).items()}}
    ratio = None
    if "onnxruntime" in results:
        key = "p50_ms" if mode == "latency" else "throughput_per_s"
        ratio = results["onnxfast"][key] / results["onnxruntime"][key]
    if args.json:
        from . import __version__

        doc = {"model": args.model, "mode": mode, "inputs": {k: list(v.shape) for k, v in feed.items()},
               "threads": args.threads or 0, "concurrency": args.concurrency, "duration_s": args.duration,
               "optimization_level": args.optimization_level, "provider": args.provider or "CPUExecutionProvider",
               "onnxfast_version": __version__, "cpu": _cpu_name(), "results": results}
        if ratio is not None:
            doc["ratio"] = ratio
            doc["ratio_of"] = ("onnxfast / onnxruntime p50 latency" if mode == "latency"
                               else "onnxfast / onnxruntime requests per second")
        print(json.dumps(doc, indent=2))
        return 0
    if mode == "latency":
        print(f"{'runtime':<12} {'mean ms':>10} {'p50 ms':>10} {'p90 ms':>10} {'p99 ms':>10}")
        for n, st in results.items():
            print(f"{n:<12} {st['mean_ms']:>10.3f} {st['p50_ms']:>10.3f} {st['p90_ms']:>10.3f} {st['p99_ms']:>10.3f}")
        if ratio is not None:
            print(f"ratio onnxfast/onnxruntime (p50): {ratio:.3f}  ({'faster' if ratio < 1 else 'slower'})")
    else:
        print(f"{'runtime':<12} {'requests':>9} {'req/s':>10} {'p50 ms':>10} {'p90 ms':>10} {'p99 ms':>10}")
        for n, st in results.items():
            print(f"{n:<12} {st['requests']:>9} {st['throughput_per_s']:>10.1f} {st['p50_ms']:>10.3f} "
                  f"{st['p90_ms']:>10.3f} {st['p99_ms']:>10.3f}")
        if ratio is not None:
            print(f"throughput onnxfast/onnxruntime: {ratio:.3f}  ({'faster' if ratio > 1 else 'slower'})")
    if args.profile:
        import tempfile

        from . import InferenceSession, SessionOptions

        popts = SessionOptions()
        popts.enable_profiling = True
        popts.profile_file_prefix = os.path.join(tempfile.mkdtemp(prefix="onnxfast_bench_"), "profile_")
        if args.threads:
            popts.intra_op_num_threads = args.threads
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            psess = InferenceSession(args.model, popts)
        for _ in range(max(1, min(args.runs, 10))):
            psess.run(None, feed)
        path = psess.end_profiling()
        print(f"operators by time ({path}):")
        for op, ms, calls, share in top_operators(path, args.top):
            print(f"  {op:<24} {ms:>10.3f} ms  {calls:>6} calls  {share * 100:5.1f}%")
    return 0


def unsupported_nodes(model) -> list[tuple[str, str, str, int | None, str]]:
    """(node path, op type, domain, opset, why) of every node of an IR model (subgraphs included) that no
    kernel computes: the planner would stop at the first of them."""
    from .registry import REGISTRY
    from .schemas import since_version

    out = []

    def walk(graph, prefix: str) -> None:
        for n in graph.nodes:
            opset = model.opsets.get(n.domain)
            where = f"{prefix}{n.name}"
            if opset is None:
                out.append((where, n.op_type, n.domain or "ai.onnx", None, "the model imports no opset for its domain"))
            elif not REGISTRY.supports(n.domain, n.op_type, since_version(n.op_type, opset, n.domain)):
                why = ("no kernel at this opset" if REGISTRY.knows(n.domain, n.op_type)
                       else "onnxfast has no kernel for it")
                out.append((where, n.op_type, n.domain or "ai.onnx", opset, why))
            for attr, g in n.subgraphs.items():
                walk(g, f"{where}/{attr}/")

    walk(model.graph, "")
    return out


def cmd_info(args) -> int:
    """Describes the file as it is (no optimization); --kernels adds the optimized plan's kernels."""
    import onnx

    from . import ir
    from .loader import load_model
    from .registry import REGISTRY

    proto, base_dir, _ = load_model(args.model)
    hist = collections.Counter(n.op_type for n in proto.graph.node)
    params = nbytes = 0
    for t in proto.graph.initializer:
        n = int(np.prod(t.dims, dtype=np.int64))
        params += n
        try:
            nbytes += n * np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t.data_type)).itemsize
        except (KeyError, TypeError, ValueError):
            pass  # strings and types numpy has no width for
    num_inits = len(proto.graph.initializer)
    m = ir.build_model(proto, base_dir, release=True, has_kernel=REGISTRY.knows)
    print(f"model: {args.model}")
    print(f"producer: {m.producer_name} {m.producer_version}  ir_version: {m.ir_version}")
    print("opsets: " + ", ".join(f"{d or 'ai.onnx'}={v}" for d, v in sorted(m.opsets.items())))
    inits = m.graph.initializers
    print("inputs:")
    for vi in m.graph.inputs:
        if vi.name not in inits:
            print(f"  {vi.name}: {vi.type_str} {vi.shape}")
    print("outputs:")
    for vi in m.graph.outputs:
        print(f"  {vi.name}: {vi.type_str} {vi.shape}")
    print(f"operators ({sum(hist.values())} nodes):")
    for op_type, count in hist.most_common():
        print(f"  {op_type}: {count}")
    print(f"parameters: {params:,} in {num_inits} initializers ({nbytes / 1e6:.2f} MB)")
    missing = unsupported_nodes(m)
    if missing:
        print(f"unsupported operators ({len(missing)} nodes; a session cannot be created):")
        for where, op_type, domain, opset, why in missing:
            print(f"  {where}: {op_type} (domain '{domain}', opset {opset}): {why}")
    else:
        print("unsupported operators: none")
    if args.kernels:
        if missing:
            print("kernels: none (the model has unsupported operators)")
            return 0
        sess = _session(args.model)
        print("kernels (the optimized graph):")
        for r in sess.kernel_listing():
            where = f"{r['subgraph']}{r['node']}"
            print(f"  {where}: {r['op_type']} -> {r['kernel']} on {r['provider']}")
    return 0


def cmd_demo(args=None) -> int:
    from . import InferenceSession

    sess = InferenceSession(DEMO_MODEL)
    x = np.random.default_rng(0).standard_normal((4, 16)).astype(np.float32)
    logits, probs = sess.run(None, {"input": x})
    times = []
    for _ in range(200):
        t = time.perf_counter()
        sess.run(None, {"input": x})
        times.append(time.perf_counter() - t)
    print(f"onnxfast demo: {os.path.basename(DEMO_MODEL)} (MLP 16-32-8), batch of 4")
    print(_summary("probabilities", probs))
    print("predicted classes:", probs.argmax(axis=1).tolist())
    t = np.array(times) * 1e6
    print(f"latency: median {np.median(t):.1f} us, p90 {np.percentile(t, 90):.1f} us over {len(t)} runs")
    return 0


def cmd_optimize(args) -> int:
    from . import GraphOptimizationLevel, InferenceSession, SessionOptions

    if os.path.abspath(args.model) == os.path.abspath(args.output):
        raise CliError("the output file must differ from the input model")
    o = SessionOptions()
    o.graph_optimization_level = GraphOptimizationLevel(LEVELS[args.level])
    o.optimized_model_filepath = args.output
    t = time.perf_counter()
    sess = InferenceSession(args.model, o, disabled_optimizers=args.disable)
    before, after = _node_count(args.model), len(sess._model.graph.nodes)
    print(f"{args.model} -> {args.output}: level {args.level}, {before} -> {after} nodes "
          f"({time.perf_counter() - t:.2f} s)")
    _print_passes(sess._optimizations)
    return 0


def _print_passes(records) -> None:
    """What each optimizer pass did: times it changed the graph, main-graph node counts before its
    first application and after its last, and the nodes it removed in all."""
    if not records:
        print("no pass changed the graph")
        return
    stats: dict[str, list[int]] = {}
    for r in records:
        s = stats.setdefault(r.name, [0, r.nodes_before, r.nodes_after, 0])
        s[0] += 1
        s[2] = r.nodes_after
        s[3] += r.nodes_before - r.nodes_after
    width = max(len("pass"), *(len(n) for n in stats))
    print(f"{'pass':<{width}}  applied  nodes before  nodes after  removed")
    for name, (times, first, last, removed) in stats.items():
        print(f"{name:<{width}}  {times:>7}  {first:>12}  {last:>11}  {removed:>7}")


def _node_count(path: str) -> int:
    import onnx

    return len(onnx.load(path, load_external_data=False).graph.node)


def _session_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--optimization-level", choices=list(LEVELS), default="all",
                   help="graph optimization level, as onnxruntime's (default all)")
    p.add_argument("--provider", default=None, metavar="NAME",
                   help="execution provider (default CPUExecutionProvider; see get_available_providers())")


def _version() -> str:
    import onnx

    from . import __version__, _core

    return (f"onnxfast {__version__} (numpy {np.__version__}, onnx {onnx.__version__}; "
            f"kernels: {_core.cpu_info()['isa']})")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="onnxfast", description="Run and inspect ONNX models with onnxfast.")
    p.add_argument("--version", action="version", version=_version())
    sub = p.add_subparsers(dest="command")
    r = sub.add_parser("run", help="run a model (random inputs unless given)")
    r.add_argument("model")
    r.add_argument("--input", action="append", metavar="NAME=FILE.npy", help="an input from a .npy file")
    r.add_argument("--dim", action="append", metavar="NAME=INT", help="value of a symbolic dimension")
    r.add_argument("--batch", type=int, default=1, help="size of unnamed/symbolic first axes (default 1)")
    r.add_argument("--runs", type=int, default=10, help="timed runs after the first (default 10)")
    r.add_argument("--output-dir", help="save outputs as NAME.npy here")
    _session_arguments(r)
    r.set_defaults(func=cmd_run)
    i = sub.add_parser("info", help="describe a model")
    i.add_argument("model")
    i.add_argument("--kernels", action="store_true", help="list the kernel and provider of every node")
    i.set_defaults(func=cmd_info)
    b = sub.add_parser("bench", help="measure latency (optionally against onnxruntime, interleaved)")
    b.add_argument("model")
    b.add_argument("--threads", type=int, default=None, help="intra-op threads (default: runtime default)")
    b.add_argument("--batch", type=int, default=1, help="size of symbolic first axes (default 1)")
    b.add_argument("--shape", action="append", metavar="NAME=D1,D2,...", help="explicit shape of an input")
    b.add_argument("--dim", action="append", metavar="NAME=INT", help="value of a symbolic dimension")
    b.add_argument("--compare", metavar="RUNTIME", help="also measure this runtime (onnxruntime)")
    b.add_argument("--warmup", type=int, default=3, help="warm-up runs, not timed (default 3)")
    b.add_argument("--runs", type=int, default=20, help="timed runs (default 20)")
    b.add_argument("--profile", action="store_true", help="print the operators that take the most time")
    b.add_argument("--top", type=int, default=10, help="operators listed by --profile (default 10)")
    b.add_argument("--no-progress", action="store_true", help="no progress bar (there is none unless stderr "
                                                                 "is a terminal)")
    b.add_argument("--concurrency", type=int, default=1, metavar="N",
                   help="throughput mode: N requests in flight (N threads sharing the session; default 1)")
    b.add_argument("--duration", type=float, default=None, metavar="S",
                   help="throughput mode: issue requests for S seconds per runtime (instead of --runs each)")
    b.add_argument("--json", action="store_true", help="print the results as one JSON document")
    _session_arguments(b)
    b.set_defaults(func=cmd_bench)
    o = sub.add_parser("optimize", help="write the model as onnxfast's optimizer leaves it")
    o.add_argument("model")
    o.add_argument("output")
    o.add_argument("--level", choices=list(LEVELS), default="extended",
                   help="basic: folding and eliminations; extended: + fusions (into com.microsoft operators, "
                        "which onnxruntime runs too, and onnxfast-domain ones, which only onnxfast runs); all: "
                        "everything (default extended)")
    o.add_argument("--disable", action="append", metavar="PASS", default=[],
                   help="a pass not to run (repeatable; names: onnxfast.optimizer.PASS_NAMES)")
    o.set_defaults(func=cmd_optimize)
    d = sub.add_parser("demo", help="run the demo model shipped with onnxfast")
    d.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from .errors import OnnxfastError

    try:
        return args.func(args)
    except CliError as e:
        print(f"onnxfast: error: {e}", file=sys.stderr)
        return 2
    except (OnnxfastError, OSError, ValueError, TypeError) as e:
        print(f"onnxfast: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
