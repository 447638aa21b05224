"""Control flow: If, Loop, Scan. Their bodies are compiled into native plans of their own
(see planner.Subgraph); outer-scope values arrive as the node's trailing implicit inputs."""

from __future__ import annotations

import numpy as np

from .. import dtypes
from ..errors import InvalidArgument
from ..registry import KernelNode, op


def _env(node: KernelNode, implicit_values) -> dict:
    return dict(zip(node.context.get("implicit_inputs", []), implicit_values))


def _scan_lists(node: KernelNode, m: int, n_avail: int, k_out: int, lists: dict) -> dict:
    """Scan's num_scan_inputs and per-input / per-output attribute lists, checked at session creation
    (a num_scan_inputs of 2^31 would otherwise build 2^31-entry default lists)."""
    if not 1 <= m <= n_avail:
        node.fail(f"attribute 'num_scan_inputs' is {m}; it must be between 1 and the {n_avail} inputs the node has")
    if k_out < 0:
        node.fail(f"the node has {node.num_outputs} outputs, fewer than its {-k_out + node.num_outputs} state values")
    out = {}
    for name, (count, values) in lists.items():
        values = list(values) if values is not None else [0] * count
        if len(values) != count:
            node.fail(f"attribute '{name}' has {len(values)} entries; it needs one per scan "
                      f"{'input' if 'input' in name or name == 'directions' else 'output'} ({count})")
        out[name] = [int(v) for v in values]
    return out


def _result(outs):
    return outs[0] if len(outs) == 1 else tuple(outs)


def _stack(items, axis: int, elem_type, node: KernelNode):
    if items:
        return np.stack(items, axis=axis)
    dt = dtypes.np_dtype(elem_type) if elem_type else np.float32
    return np.zeros((0,), dtype=dt)


@op("If", since=1)
def if_(node: KernelNode):
    then_g = node.compile_subgraph("then_branch")
    else_g = node.compile_subgraph("else_branch")

    def run(cond, *implicit):
        if cond is None or np.size(cond) != 1:
            raise InvalidArgument(f"If node '{node.name}': cond must hold exactly one value, got {np.shape(cond)}")
        branch = then_g if bool(np.asarray(cond).reshape(-1)[0]) else else_g
        outs = branch.run([], _env(node, implicit))
        return _result(outs)

    return run


@op("Loop", since=1)
def loop(node: KernelNode):
    body = node.compile_subgraph("body")
    n_carried = node.num_inputs - 2

    def run(M, cond, *rest):
        carried = list(rest[:n_carried])
        env = _env(node, rest[n_carried:])
        max_trip = int(np.asarray(M).reshape(-1)[0]) if M is not None else None
        keep = bool(np.asarray(cond).reshape(-1)[0]) if cond is not None else True
        n_scan = node.num_outputs - n_carried
        scans: list[list] = [[] for _ in range(n_scan)]
        i = 0
        while keep and (max_trip is None or i < max_trip):
            outs = body.run([np.array(i, dtype=np.int64), np.array(keep), *carried], env)
            keep = bool(np.asarray(outs[0]).reshape(-1)[0]) if outs[0] is not None else keep
            carried = list(outs[1 : 1 + n_carried])
            for k in range(n_scan):
                scans[k].append(outs[1 + n_carried + k])
            i += 1
        types = body.output_types[1 + n_carried :]
        stacked = [
            _stack(s, 0, types[k] if k < len(types) else None, node) for k, s in enumerate(scans)
        ]
        return _result(carried + stacked)

    return run


@op("Scan", since=9)
def scan(node: KernelNode):
    body = node.compile_subgraph("body")
    m = int(node.attr("num_scan_inputs", 0))
    n_states = node.num_inputs - m
    k_out = node.num_outputs - n_states
    lists = _scan_lists(node, m, node.num_inputs, k_out, {
        "scan_input_axes": (m, node.attr("scan_input_axes")),
        "scan_input_directions": (m, node.attr("scan_input_directions")),
        "scan_output_axes": (max(k_out, 0), node.attr("scan_output_axes")),
        "scan_output_directions": (max(k_out, 0), node.attr("scan_output_directions")),
    })
    in_axes, in_dirs = lists["scan_input_axes"], lists["scan_input_directions"]
    out_axes, out_dirs = lists["scan_output_axes"], lists["scan_output_directions"]

    def run(*args):
        states = list(args[:n_states])
        scan_in = list(args[n_states : n_states + m])
        env = _env(node, args[n_states + m :])
        axes = [a + x.ndim if a < 0 else a for a, x in zip(in_axes, scan_in)]
        lengths = {x.shape[a] for a, x in zip(axes, scan_in)}
        if len(lengths) > 1:
            raise InvalidArgument(f"Scan node '{node.name}': scan inputs have different lengths {sorted(lengths)}")
        length = lengths.pop() if lengths else 0
        outs_acc: list[list] = [[] for _ in range(k_out)]
        for t in range(length):
            slices = []
            for x, a, d in zip(scan_in, axes, in_dirs):
                idx = length - 1 - t if d else t
                slices.append(np.take(x, idx, axis=a))
            outs = body.run(states + slices, env)
            states = list(outs[:n_states])
            for k in range(k_out):
                outs_acc[k].append(outs[n_states + k])
        results = list(states)
        types = body.output_types[n_states:]
        for k in range(k_out):
            items = outs_acc[k][::-1] if out_dirs[k] else outs_acc[k]
            if items:
                ax = out_axes[k]
                ax = ax + items[0].ndim + 1 if ax < 0 else ax
                results.append(np.stack(items, axis=ax))
            else:
                results.append(_stack([], 0, types[k] if k < len(types) else None, node))
        return _result(results)

    return run


@op("Scan", since=8)
def scan_8(node: KernelNode):
    """Scan-8: a leading batch axis on states and scan inputs, optional sequence_lens first."""
    body = node.compile_subgraph("body")
    m = int(node.attr("num_scan_inputs", 0))
    n_explicit = node.num_inputs - 1  # minus sequence_lens
    n_states = n_explicit - m
    k_out = node.num_outputs - n_states
    dirs = _scan_lists(node, m, n_explicit, k_out, {"directions": (m, node.attr("directions"))})["directions"]

    def run(seq_lens, *args):
        states0 = list(args[:n_states])
        scan_in = list(args[n_states : n_states + m])
        env = _env(node, args[n_states + m :])
        batch = (scan_in[0].shape[0] if scan_in else states0[0].shape[0])
        max_len = scan_in[0].shape[1] if scan_in else 0
        lens = (np.asarray(seq_lens).reshape(-1).astype(np.int64) if seq_lens is not None
                else np.full(batch, max_len, np.int64))
        if lens.shape[0] != batch or (lens < 0).any() or (lens > max_len).any():
            raise InvalidArgument(f"Scan node '{node.name}': sequence_lens {lens.tolist()} do not fit batch {batch} "
                                  f"and length {max_len}")
        final_states = [[] for _ in range(n_states)]
        outs_acc: list[list] = [[] for _ in range(k_out)]
        for b in range(batch):
            states = [s[b] for s in states0]
            steps: list[list] = [[] for _ in range(k_out)]
            for t in range(int(lens[b])):
                slices = [x[b, (int(lens[b]) - 1 - t) if d else t] for x, d in zip(scan_in, dirs)]
                outs = body.run(states + slices, env)
                states = list(outs[:n_states])
                for k in range(k_out):
                    steps[k].append(np.asarray(outs[n_states + k]))
            for i in range(n_states):
                final_states[i].append(np.asarray(states[i]))
            for k in range(k_out):
                outs_acc[k].append(steps[k])
        results = [np.stack(s) for s in final_states]
        for k in range(k_out):
            per_batch = outs_acc[k]
            proto = next((s[0] for s in per_batch if s), None)
            if proto is None:
                elem = body.output_types[n_states + k] if n_states + k < len(body.output_types) else None
                dt = dtypes.np_dtype(elem) if elem else np.float32
                results.append(np.zeros((batch, max_len), dtype=dt))
                continue
            out = np.zeros((batch, max_len) + proto.shape, dtype=proto.dtype)
            for b, s in enumerate(per_batch):
                if s:
                    out[b, : len(s)] = np.stack(s)
            results.append(out)
        return _result(results)

    return run
