#!/usr/bin/env python3
"""Protobuf-aware mutation fuzzer for onnxfast (issue #14).

Seeds are the ONNX backend suite's node test cases (``onnx.backend.test.case.node.collect_testcases()``:
model + input values), cached once in ``~/.cache/onnxfast/``. Case ``i`` of a run is derived only from
``(--seed, i)``: a seed model is picked (an operator group uniformly, then one of its tests), then 1-4
mutations are applied:

- attribute values (ints -> 0 / -1 / 2^31 / 2^62 / 2^63-1 / ..., floats -> nan / inf / ..., strings ->
  empty / bad regex / other enum words / bytes that are not UTF-8, lists lengthened, shortened, emptied,
  one element made extreme), attributes added from the operator's schema, deleted or retyped;
- tensors (initializers, tensor attributes): dims, element type, values, truncated data;
- value_info (graph inputs / outputs / intermediate): dims, rank, element type;
- node input / output names (empty, swapped, duplicated, pointing elsewhere), op_type / domain swaps,
  opset and IR version changes;
- the feeds: shapes (empty, scalar, rank +-1, larger), element types, extreme values (the declared
  input is relaxed to match, so the mutation reaches the kernels);
- raw byte flips of the serialized model.

Each case runs in a persistent worker process (``--jobs`` of them); a worker that dies is replaced.
A Python exception (from onnxfast.errors or any other clean one) is a normal result. A finding is a
worker killed by a signal (SIGSEGV, SIGABRT, SIGFPE, SIGBUS, SIGILL, SIGKILL), a non-zero exit, or no
answer within ``--timeout`` seconds (a hang, 10 s by default; each run() is asked to stop through
``RunOptions.terminate`` after 0.3 x that, so only what ignores terminate can hang). Findings are deduplicated by
``(op_type, kind)``, minimized (graph cut after the crashing node, unrelated nodes, attributes, feeds
dropped while the finding reproduces) and saved to ``tests/fuzz_corpus/`` (``<id>.onnx`` +
``<id>.npz`` + ``index.json``), which ``tests/test_fuzz_corpus.py`` replays in the default test run.

    python ci/fuzz.py --cases 20000 --seed 1 --jobs 2                      # the build in this checkout
    python ci/fuzz.py --cases 20000 --seed 1 --jobs 2 --onnxfast-path /work/base   # another build
    python ci/fuzz.py --replay tests/fuzz_corpus                           # re-run the saved corpus
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import io
import json
import os
import pickle
import random
import select
import signal
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CORPUS = os.path.join(ROOT, "tests", "fuzz_corpus")
CACHE_DIR = os.path.join(os.path.expanduser("~"), ".cache", "onnxfast")

# ------------------------------------------------------------------------------------------------
# Seeds


def _seed_cache_path() -> str:
    import onnx

    return os.path.join(CACHE_DIR, f"fuzz_seeds_onnx{onnx.__version__}.pkl")


def _to_plain(v):
    """Node-case values -> numpy arrays, lists, None (TensorProto for types numpy lacks converted)."""
    import onnx
    from onnx import numpy_helper

    if isinstance(v, onnx.TensorProto):
        return numpy_helper.to_array(v)
    if isinstance(v, list):
        return [_to_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _to_plain(x) for k, x in v.items()}
    return v


def _picklable(v) -> bool:
    if isinstance(v, np.ndarray):
        return v.dtype.kind in "biufcUSO" and v.dtype.names is None and v.dtype.str[1:] not in ("V2", "V1")
    if isinstance(v, list):
        return all(_picklable(x) for x in v)
    if isinstance(v, dict):
        return all(_picklable(x) for x in v.values())
    return v is None


def load_seeds(path: str | None = None) -> list[dict]:
    """[{name, group, model (bytes), feeds [(name, value)]}] in collect_testcases() order; cached."""
    path = path or _seed_cache_path()
    if os.path.exists(path):
        with open(path, "rb") as f:
            return pickle.load(f)
    import warnings

    from onnx.backend.test.case.node import collect_testcases

    seeds = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for c in collect_testcases():
            if not c.data_sets:
                continue
            g = c.model.graph
            inits = {t.name for t in g.initializer}
            names = [vi.name for vi in g.input if vi.name not in inits]
            ins = [_to_plain(v) for v in c.data_sets[0][0]]
            if len(ins) > len(names) or not all(_picklable(v) for v in ins):
                continue
            ops = sorted({n.op_type for n in g.node})
            group = c.name.replace("test_", "").split("_expanded")[0] + "_expanded" if "expanded" in c.name \
                else "+".join(ops)
            seeds.append({"name": c.name, "group": group, "model": c.model.SerializeToString(),
                          "feeds": list(zip(names, ins))})
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + f".{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        pickle.dump(seeds, f, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, path)
    return seeds


# ------------------------------------------------------------------------------------------------
# Mutation

INT_EXTREMES = [0, -1, 1, 2, -2, 3, 7, 2**31 - 1, 2**31, -(2**31), -(2**31) - 1, 2**32, 2**32 + 1, 2**62,
                -(2**62), 2**63 - 1, -(2**63), 65536, 1 << 40, 1000003, -1000003]
FLOAT_EXTREMES = [float("nan"), float("inf"), float("-inf"), 0.0, -0.0, -1.0, 1e30, -1e30, 3.4e38, 1e-45,
                  1e300, 0.5, 2.0, -2.0]
STRING_POOL = [b"", b"(", b"[", b"*", b"\\", b"a{99999999999}", b"(?P<x>", b"(a*)*b", b"\xff\xfe", b"\x00",
               b"NOTSET", b"SAME_UPPER", b"SAME_LOWER", b"VALID", b"constant", b"reflect", b"edge", b"wrap",
               b"nearest", b"linear", b"cubic", b"NEAREST", b"LINEAR", b"half_pixel", b"asymmetric",
               b"tf_crop_and_resize", b"round_prefer_ceil", b"floor", b"BRANCH_LT", b"BRANCH_EQ", b"BRANCH_MEMBER",
               b"LEAF", b"SUM", b"AVERAGE", b"MAX", b"MIN", b"NONE", b"SOFTMAX", b"LOGISTIC", b"PROBIT",
               b"tanh", b"sigmoid", b"relu", b"Tanh", b"Sigmoid", b"Relu", b"forward", b"reverse",
               b"bidirectional", b"ij,jk->ik", b"...ii->...i", b"i,i", b"->", b"x" * 5000, b"NCHW", b"DCR",
               b"CRD", b"mean", b"sum", b"none", b"exact", b"UTF-8", b"en_US", b"LOWER", b"UPPER"]
DTYPE_CODES = [1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 16, 8, 14, 15, 17, 18, 19, 20, 21, 22, 23, 0, 99, -1]
DOMAINS = ["", "ai.onnx", "ai.onnx.ml", "com.microsoft", "onnxfast", "ai.onnx.preview.training", "bogus"]
EXTRA_OPS = ["FusedConv", "FusedMatMul", "MemcpyToDevice", "MemcpyFromDevice"]
FEED_DTYPES = [np.float32, np.float64, np.float16, np.int64, np.int32, np.int8, np.uint8, np.uint64, np.bool_,
               np.int16, np.uint32, object]


class Mutator:
    """Applies random mutations to a ModelProto and its feeds; every choice comes from ``rng``."""

    def __init__(self, rng: random.Random, op_pool: list[str], attr_dict: dict | None = None,
                 donors: list | None = None):
        self.rng = rng
        self.op_pool = op_pool
        self.attr_dict = attr_dict or {}  # (op_type, attr name) -> [AttributeProto seen in the suite]
        self.donors = donors or []  # other seed models of the same operator group (crossover)
        self.log: list[str] = []

    # -- helpers ---------------------------------------------------------------------------------
    def _graphs(self, g, out=None):
        out = [] if out is None else out
        out.append(g)
        for n in g.node:
            for a in n.attribute:
                if a.HasField("g"):
                    self._graphs(a.g, out)
                for sg in a.graphs:
                    self._graphs(sg, out)
        return out

    def _nodes(self, model):
        return [(g, n) for g in self._graphs(model.graph) for n in g.node]

    def _int(self, old=None):
        r = self.rng.random()
        if old is not None and r < 0.2:
            return self.rng.choice([old + 1, old - 1, -old, old * 2, old * 1000])
        if r < 0.3:
            return self.rng.randint(-4, 8)
        return self.rng.choice(INT_EXTREMES)

    def _float(self):
        return self.rng.choice(FLOAT_EXTREMES) if self.rng.random() < 0.8 else self.rng.uniform(-10, 10)

    def _string(self):
        r = self.rng.random()
        if r < 0.75:
            return self.rng.choice(STRING_POOL)
        return bytes(self.rng.randrange(256) for _ in range(self.rng.randint(0, 12)))

    def _mutate_list(self, lst, gen):
        vals = list(lst)
        ints = gen is self._int
        r = self.rng.random()
        # ints lists (strides, pads, kernel_shape, axes, split, tree node ids ...) mostly keep their
        # length and get extreme entries: a wrong length is usually refused at load
        p_elem, p_all = (0.4, 0.65) if ints else (0.3, 0.45)
        if r < p_elem and vals:
            i = self.rng.randrange(len(vals))
            vals[i] = gen(vals[i]) if ints else gen()
            what = f"[{i}]={vals[i]!r}"
        elif r < p_all and vals:
            v = gen(vals[0]) if ints else gen()
            vals = [v] * len(vals)
            what = f"all {v!r}"
        elif r < p_all + 0.1:
            for _ in range(self.rng.choice([1, 1, 2, 5, 100])):
                vals.append(gen() if not ints else self._int())
            what = f"lengthened to {len(vals)}"
        elif r < p_all + 0.2 and vals:
            vals = vals[: self.rng.randrange(len(vals))]
            what = f"shortened to {len(vals)}"
        elif r < p_all + 0.25:
            vals = []
            what = "emptied"
        elif vals and ints:
            vals = [-v for v in vals] if self.rng.random() < 0.5 else [v * 2**self.rng.choice([8, 31, 40]) for v in vals]
            what = "negated/scaled"
        else:
            vals.append(gen() if not ints else self._int())
            what = "appended"
        vals = [min(max(v, -(2**63)), 2**63 - 1) for v in vals] if ints else vals
        return vals, what

    # -- attributes ------------------------------------------------------------------------------
    def attr_value(self, model, feeds):
        import onnx

        cands = [(g, n, a) for g, n in self._nodes(model) for a in n.attribute]
        if not cands:
            return self.attr_add(model, feeds)
        g, n, a = self.rng.choice(cands)
        T = onnx.AttributeProto
        if a.type == T.INT:
            a.i = min(max(self._int(a.i), -(2**63)), 2**63 - 1)
            what = a.i
        elif a.type == T.FLOAT:
            a.f = self._float()
            what = a.f
        elif a.type == T.STRING:
            pool = [x.s for x in self.attr_dict.get(n.op_type, {}).get(a.name, []) if x.type == T.STRING]
            a.s = self.rng.choice(pool) if pool and self.rng.random() < 0.5 else self._string()
            what = a.s[:20]
        elif a.type == T.INTS:
            vals, what = self._mutate_list(a.ints, self._int)
            del a.ints[:]
            a.ints.extend(vals)
        elif a.type == T.FLOATS:
            vals, what = self._mutate_list(a.floats, self._float)
            del a.floats[:]
            a.floats.extend(vals)
        elif a.type == T.STRINGS:
            vals, what = self._mutate_list(a.strings, self._string)
            del a.strings[:]
            a.strings.extend(vals)
        elif a.type == T.TENSOR:
            what = self._mutate_tensor(a.t)
        elif a.type in (T.GRAPH, T.GRAPHS):
            sub = a.g if a.type == T.GRAPH else (a.graphs[0] if a.graphs else None)
            if sub is None or not sub.node:
                return self.attr_add(model, feeds)
            what = self._mutate_node_io_in(sub)
        else:
            return self.attr_add(model, feeds)
        self.log.append(f"attr {n.op_type}.{a.name} -> {what}")

    def attr_add(self, model, feeds):
        import onnx
        from onnx import defs, helper

        nodes = self._nodes(model)
        if not nodes:
            return
        g, n = self.rng.choice(nodes)
        try:
            schema = defs.get_schema(n.op_type, domain=n.domain)
            names = {k: v.type for k, v in schema.attributes.items()}
        except Exception:
            names = {}
        have = {a.name for a in n.attribute}
        missing = [k for k in names if k not in have]
        T = onnx.AttributeProto.AttributeType
        seen = [k for k in self.attr_dict.get(n.op_type, {}) if k not in have]
        if seen and self.rng.random() < 0.4:  # a value another test of this op uses
            name = self.rng.choice(seen)
            a = self.rng.choice(self.attr_dict[n.op_type][name])
            n.attribute.append(a)
            self.log.append(f"add attr {n.op_type}.{name} from the suite")
            return
        if missing and self.rng.random() < 0.85:
            name = self.rng.choice(missing)
            t = names[name]
        else:
            name = self.rng.choice(["axis", "k", "strides", "pads", "split", "num_outputs", "dtype", "mode",
                                    "bogus_attr"])
            t = self.rng.choice([T.INT, T.INTS, T.FLOAT, T.STRING])
        if t == T.INT:
            v = self._int()
        elif t == T.INTS:
            v = [self._int() for _ in range(self.rng.choice([0, 1, 2, 2, 4, 8]))]
        elif t == T.FLOAT:
            v = self._float()
        elif t == T.FLOATS:
            v = [self._float() for _ in range(self.rng.choice([0, 1, 2, 4]))]
        elif t == T.STRING:
            v = self._string()
        elif t == T.STRINGS:
            v = [self._string() for _ in range(self.rng.choice([0, 1, 2, 4]))]
        elif t == T.TENSOR:
            v = helper.make_tensor("t", self.rng.choice([1, 7, 6]), [0], [])
        else:
            return
        try:
            attr = helper.make_attribute(name, v)
        except Exception:
            return
        if attr.type == T.UNDEFINED and isinstance(v, list):
            attr.type = t
        n.attribute.append(attr)
        self.log.append(f"add attr {n.op_type}.{name}={v if not isinstance(v, bytes) else v[:20]!r}")

    def crossover(self, model, feeds):
        """Copy one node's attributes from another test of the same operator (a combination the suite
        does not have: e.g. one test's auto_pad with another's kernel)."""
        import onnx

        if not self.donors:
            return self.attr_add(model, feeds)
        d = onnx.ModelProto()
        d.ParseFromString(self.rng.choice(self.donors))
        by_op = {}
        for _, n in self._nodes(d):
            by_op.setdefault(n.op_type, []).append(n)
        cands = [(g, n) for g, n in self._nodes(model) if n.op_type in by_op]
        if not cands:
            return self.attr_add(model, feeds)
        _, n = self.rng.choice(cands)
        donor = self.rng.choice(by_op[n.op_type])
        for a in donor.attribute:
            if a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) or self.rng.random() < 0.5:
                continue
            for i, b in enumerate(n.attribute):
                if b.name == a.name:
                    del n.attribute[i]
                    break
            n.attribute.append(a)
        self.log.append(f"crossover {n.op_type} attrs from another test: {[a.name for a in n.attribute]}")

    def attr_delete(self, model, feeds):
        cands = [(n, i) for _, n in self._nodes(model) for i in range(len(n.attribute))]
        if not cands:
            return
        n, i = self.rng.choice(cands)
        self.log.append(f"del attr {n.op_type}.{n.attribute[i].name}")
        del n.attribute[i]

    def attr_retype(self, model, feeds):
        import onnx

        cands = [(n, a) for _, n in self._nodes(model) for a in n.attribute]
        if not cands:
            return
        n, a = self.rng.choice(cands)
        T = onnx.AttributeProto
        new = self.rng.choice([T.INT, T.INTS, T.FLOAT, T.FLOATS, T.STRING, T.STRINGS, T.TENSOR, T.UNDEFINED])
        a.type = new
        if new == T.INTS and not a.ints:
            a.ints.extend([self._int()])
        self.log.append(f"retype attr {n.op_type}.{a.name} -> {new}")

    # -- tensors ---------------------------------------------------------------------------------
    def _mutate_tensor(self, t) -> str:
        from onnx import numpy_helper

        r = self.rng.random()
        if r < 0.25 and len(t.dims):
            i = self.rng.randrange(len(t.dims))
            t.dims[i] = self.rng.choice([0, 1, 2, t.dims[i] + 1, max(t.dims[i] - 1, 0), 2**31, 2**40, -1, 2**62])
            return f"dims[{i}]={t.dims[i]}"
        if r < 0.35:
            if t.dims and self.rng.random() < 0.5:
                del t.dims[-1]
            else:
                t.dims.append(self.rng.choice([1, 2, 0]))
            return f"rank->{len(t.dims)}"
        if r < 0.5:
            t.data_type = self.rng.choice(DTYPE_CODES)
            return f"data_type={t.data_type}"
        if r < 0.6 and t.raw_data:
            t.raw_data = t.raw_data[: self.rng.randrange(len(t.raw_data))]
            return "raw_data truncated"
        try:
            arr = numpy_helper.to_array(t).copy()
        except Exception:
            return "unreadable"
        if arr.size == 0 or arr.dtype.kind not in "biuf":
            return "unchanged"
        flat = arr.reshape(-1)
        if arr.dtype.kind in "iu":
            info = np.iinfo(arr.dtype)
            choices = [0, -1, 1, info.max, info.min, int(flat.size), -int(flat.size) - 1, 2**31 - 1, -(2**31)]
            choices = [c for c in choices if info.min <= c <= info.max]
        elif arr.dtype.kind == "b":
            choices = [True, False]
        else:
            choices = [np.nan, np.inf, -np.inf, 0.0, -1.0, 1e30]
        if self.rng.random() < 0.5:
            flat[self.rng.randrange(flat.size)] = self.rng.choice(choices)
        else:
            flat[:] = self.rng.choice(choices)
        new = numpy_helper.from_array(arr, t.name)
        t.CopyFrom(new)
        return "values"

    def tensor(self, model, feeds):
        cands = []
        for g in self._graphs(model.graph):
            cands += [("init", t) for t in g.initializer]
            for n in g.node:
                cands += [(f"{n.op_type}.{a.name}", a.t) for a in n.attribute if a.HasField("t")]
        if not cands:
            return self.attr_value(model, feeds)
        where, t = self.rng.choice(cands)
        self.log.append(f"tensor {where}:{t.name} {self._mutate_tensor(t)}")

    # -- value_info ------------------------------------------------------------------------------
    def value_info(self, model, feeds):
        g = model.graph
        cands = list(g.input) + list(g.output) + list(g.value_info)
        cands = [vi for vi in cands if vi.type.HasField("tensor_type")]
        if not cands:
            return
        vi = self.rng.choice(cands)
        tt = vi.type.tensor_type
        r = self.rng.random()
        if r < 0.3:
            tt.elem_type = self.rng.choice(DTYPE_CODES)
            what = f"elem_type={tt.elem_type}"
        elif r < 0.55 and tt.HasField("shape") and len(tt.shape.dim):
            d = tt.shape.dim[self.rng.randrange(len(tt.shape.dim))]
            if self.rng.random() < 0.2:
                d.dim_param = "fz"
                what = "dim_param"
            else:
                d.dim_value = self.rng.choice([0, 1, 2**31, 2**62, 2**63 - 1, 7])
                what = f"dim={d.dim_value}"
        elif r < 0.7:
            if tt.HasField("shape") and len(tt.shape.dim) and self.rng.random() < 0.5:
                del tt.shape.dim[-1]
                what = "rank-1"
            else:
                tt.shape.dim.add().dim_value = self.rng.choice([1, 2, 0])
                what = "rank+1"
        elif r < 0.85:
            tt.ClearField("shape")
            what = "no shape"
        else:
            vi.ClearField("type")
            what = "no type"
        self.log.append(f"value_info {vi.name} {what}")

    # -- node inputs / outputs / op ---------------------------------------------------------------
    def _mutate_node_io_in(self, g) -> str:
        n = self.rng.choice(list(g.node))
        names = [x for m in g.node for x in list(m.input) + list(m.output)] + [vi.name for vi in g.input]
        r = self.rng.random()
        if r < 0.2 and n.input:
            i = self.rng.randrange(len(n.input))
            n.input[i] = ""
            return f"{n.op_type}.input[{i}]=''"
        if r < 0.3 and len(n.input) > 1:
            i, j = self.rng.sample(range(len(n.input)), 2)
            n.input[i], n.input[j] = n.input[j], n.input[i]
            return f"{n.op_type} swap inputs {i},{j}"
        if r < 0.45 and len(n.input) > 1:
            i, j = self.rng.sample(range(len(n.input)), 2)
            n.input[i] = n.input[j]
            return f"{n.op_type} input[{i}]=input[{j}]"
        if r < 0.55 and names:
            if n.input:
                i = self.rng.randrange(len(n.input))
                n.input[i] = self.rng.choice(names)
                return f"{n.op_type} input[{i}]={n.input[i]}"
        if r < 0.62 and n.input:
            del n.input[-1]
            return f"{n.op_type} drop last input"
        if r < 0.7 and names:
            n.input.append(self.rng.choice(names + [""]))
            return f"{n.op_type} extra input"
        if r < 0.78 and n.output:
            i = self.rng.randrange(len(n.output))
            n.output[i] = ""
            return f"{n.op_type}.output[{i}]=''"
        if r < 0.86 and n.output and names:
            i = self.rng.randrange(len(n.output))
            n.output[i] = self.rng.choice(names)
            return f"{n.op_type}.output[{i}]={n.output[i]}"
        if r < 0.93 and n.output:
            del n.output[-1]
            return f"{n.op_type} drop last output"
        n.output.append(f"fz_extra_{len(n.output)}")
        return f"{n.op_type} extra output"

    def node_io(self, model, feeds):
        gs = [g for g in self._graphs(model.graph) if g.node]
        if gs:
            self.log.append("io " + self._mutate_node_io_in(self.rng.choice(gs)))

    def op_swap(self, model, feeds):
        nodes = self._nodes(model)
        if not nodes:
            return
        _, n = self.rng.choice(nodes)
        old = n.op_type
        n.op_type = self.rng.choice(self.op_pool + EXTRA_OPS)
        if n.op_type in EXTRA_OPS and self.rng.random() < 0.7:
            n.domain = "onnxfast"
        if self.rng.random() < 0.3:
            del n.attribute[:]
        self.log.append(f"op {old} -> {n.domain}:{n.op_type}")

    def domain_swap(self, model, feeds):
        nodes = self._nodes(model)
        if not nodes:
            return
        _, n = self.rng.choice(nodes)
        n.domain = self.rng.choice(DOMAINS)
        if n.domain and not any(o.domain == n.domain for o in model.opset_import) and self.rng.random() < 0.8:
            model.opset_import.add(domain=n.domain, version=self.rng.choice([1, 2, 3, 4, 5]))
        self.log.append(f"domain {n.op_type} -> {n.domain!r}")

    def opset(self, model, feeds):
        r = self.rng.random()
        if r < 0.6 and model.opset_import:
            o = self.rng.choice(list(model.opset_import))
            o.version = self.rng.choice([o.version - 1, o.version + 1, 1, 6, 7, 9, 10, 11, 12, 13, 17, 18, 19, 20,
                                         21, 22, 23, 24, 25, 99, 0, -1, 2**31, 2**62])
            self.log.append(f"opset {o.domain!r}={o.version}")
        elif r < 0.75 and model.opset_import:
            i = self.rng.randrange(len(model.opset_import))
            self.log.append(f"drop opset {model.opset_import[i].domain!r}")
            del model.opset_import[i]
        elif r < 0.85:
            model.opset_import.add(domain=self.rng.choice(DOMAINS), version=self.rng.choice([1, 3, 5, 99]))
            self.log.append("add opset")
        else:
            model.ir_version = self.rng.choice([0, 1, 3, 4, 7, 8, 9, 10, 11, 12, 13, 99, 2**62])
            self.log.append(f"ir_version={model.ir_version}")

    # -- feeds -----------------------------------------------------------------------------------
    def _relax_input(self, model, name, arr):
        """Make the declared graph input accept ``arr`` (dynamic dims, matching element type)."""
        from onnx import helper

        for vi in model.graph.input:
            if vi.name == name and vi.type.HasField("tensor_type"):
                tt = vi.type.tensor_type
                try:
                    tt.elem_type = helper.np_dtype_to_tensor_dtype(arr.dtype) if arr.dtype != object else 8
                except Exception:
                    pass
                tt.ClearField("shape")
                if self.rng.random() < 0.5:
                    for i in range(arr.ndim):
                        tt.shape.dim.add().dim_param = f"fz{i}"

    def _extreme_array(self, arr):
        flat = arr.reshape(-1).copy()
        if flat.size == 0:
            return arr
        k = arr.dtype.kind
        if k in "iu":
            info = np.iinfo(arr.dtype)
            cands = [0, -1, 1, 2, info.max, info.min, info.max - 1, info.min + 1, 2**31 - 1, -(2**31), 2**31,
                     2**62, -(2**62), int(flat.size), -int(flat.size) - 1, 1000000]
            cands = [c for c in cands if info.min <= c <= info.max]
        elif k == "f":
            cands = [np.nan, np.inf, -np.inf, 0.0, -0.0, -1.0, 1e30, -1e30, 65504.0, 1e-40]
        elif k == "b":
            cands = [True, False]
        elif k in "OU":
            cands = ["", "(", "\u00e9\u4e2d", "x" * 1000, "\x00", "a.b@c.com", "-1", "nan"]
        else:
            return arr
        if self.rng.random() < 0.5:
            flat[self.rng.randrange(flat.size)] = self.rng.choice(cands)
        else:
            flat[:] = self.rng.choice(cands)
        return flat.reshape(arr.shape)

    def _reshape_array(self, arr):
        r = self.rng.random()
        if r < 0.25 and arr.ndim:
            shape = list(arr.shape)
            shape[self.rng.randrange(len(shape))] = 0
            return np.zeros(shape, arr.dtype) if arr.dtype != object else np.empty(shape, object), "empty"
        if r < 0.4:
            return arr.reshape(-1)[:1].reshape(()) if arr.size else np.zeros((), arr.dtype), "scalar"
        if r < 0.55:
            return arr[None], "rank+1"
        if r < 0.7 and arr.ndim:
            return (np.array(arr[0], dtype=arr.dtype) if arr.shape[0] else np.zeros(arr.shape[1:], arr.dtype)), "rank-1"
        if r < 0.8 and arr.ndim:
            return np.ascontiguousarray(arr.T), "reversed dims"
        if r < 0.92 and arr.ndim and arr.size * 3 <= 1_000_000:
            ax = self.rng.randrange(arr.ndim)
            return np.concatenate([arr] * self.rng.choice([2, 3]), axis=ax), f"axis {ax} x2/3"
        if arr.size:
            return arr.reshape(-1), "flattened"
        return arr, "unchanged"

    def feed(self, model, feeds):
        idx = [i for i, (_, v) in enumerate(feeds) if isinstance(v, np.ndarray)]
        if not idx:
            return self.attr_value(model, feeds)
        i = self.rng.choice(idx)
        name, arr = feeds[i]
        r = self.rng.random()
        relax = True
        if r < 0.4:
            arr = self._extreme_array(arr)
            what = "extreme values"
            relax = False
        elif r < 0.7:
            arr, what = self._reshape_array(arr)
        elif r < 0.85:
            dt = self.rng.choice(FEED_DTYPES)
            try:
                if dt is object:
                    arr = arr.astype(str).astype(object)
                else:
                    with np.errstate(all="ignore"):
                        arr = arr.astype(dt) if arr.dtype != object else np.zeros(arr.shape, dt)
            except (ValueError, TypeError):
                arr = np.zeros(arr.shape, dt)
            what = f"dtype {np.dtype(dt).name}"
        elif r < 0.92 and len(feeds) > 1:
            j = self.rng.choice([k for k in range(len(feeds)) if k != i])
            other = feeds[j][1]
            if isinstance(other, np.ndarray):
                arr = other
            what = f"value of {feeds[j][0]}"
        elif r < 0.96:
            del feeds[i]
            self.log.append(f"feed {name} dropped")
            return
        else:
            name = name + "_fz" if self.rng.random() < 0.5 else ""
            what = "renamed"
        feeds[i] = (name, arr)
        if relax and self.rng.random() < 0.85:
            self._relax_input(model, name, arr)
        self.log.append(f"feed {name} {what} {arr.dtype}{list(arr.shape)}")

    # -- entry point -----------------------------------------------------------------------------
    STRUCT = [("attr_value", 30), ("attr_add", 10), ("crossover", 5), ("attr_delete", 3), ("attr_retype", 2),
              ("tensor", 7), ("value_info", 6), ("node_io", 12), ("op_swap", 4), ("domain_swap", 2), ("opset", 4),
              ("feed", 20)]

    def mutate(self, model_bytes: bytes, feeds: list) -> tuple[bytes, list]:
        import onnx

        model = onnx.ModelProto()
        model.ParseFromString(model_bytes)
        feeds = [(n, v.copy() if isinstance(v, np.ndarray) else v) for n, v in feeds]
        n_mut = self.rng.choices([1, 2, 3, 4], [40, 32, 18, 10])[0]
        names, weights = zip(*self.STRUCT)
        for _ in range(n_mut):
            kind = self.rng.choices(names, weights)[0]
            try:
                getattr(self, kind)(model, feeds)
            except Exception as e:  # noqa: BLE001 - a mutation that does not apply is skipped (deterministically)
                self.log.append(f"{kind} skipped ({type(e).__name__})")
        data = model.SerializeToString()
        if self.rng.random() < 0.06:
            data = self.byte_flip(data)
        return data, feeds

    def byte_flip(self, data: bytes) -> bytes:
        b = bytearray(data)
        if not b:
            return data
        r = self.rng.random()
        if r < 0.6:
            k = self.rng.choice([1, 1, 2, 4, 8])
            for _ in range(k):
                i = self.rng.randrange(len(b))
                b[i] = self.rng.choice([b[i] ^ (1 << self.rng.randrange(8)), 0, 0xFF, 0x7F, 0x80])
            what = f"{k} bytes flipped"
        elif r < 0.8:
            b = b[: self.rng.randrange(len(b))]
            what = f"truncated to {len(b)}"
        else:
            i = self.rng.randrange(len(b))
            j = min(len(b), i + self.rng.randint(1, 16))
            b[i:i] = b[i:j]
            what = "chunk duplicated"
        self.log.append(f"bytes {what}")
        return bytes(b)


def _groups(seeds):
    g = collections.OrderedDict()
    for i, s in enumerate(seeds):
        g.setdefault(s["group"], []).append(i)
    return list(g.values())


class CaseMaker:
    """Case ``i`` of seed ``seed``: (seed test name, model bytes, feeds, mutation log)."""

    def __init__(self, seeds, seed: int):
        self.seeds = seeds
        self.seed = seed
        groups = _groups(seeds)
        self.plain = [g for g in groups if not seeds[g[0]]["group"].endswith("_expanded")]
        self.expanded = [g for g in groups if seeds[g[0]]["group"].endswith("_expanded")]
        import onnx

        ops = set()
        self.attr_dict: dict = {}
        for s in seeds:
            m = onnx.ModelProto()
            m.ParseFromString(s["model"])
            for n in m.graph.node:
                ops.add(n.op_type)
                for a in n.attribute:
                    if a.type not in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
                        lst = self.attr_dict.setdefault(n.op_type, {}).setdefault(a.name, [])
                        if len(lst) < 16 and all(a != b for b in lst):
                            lst.append(a)
        self.op_pool = sorted(ops)
        self.group_of = {}
        for g in groups:
            for i in g:
                self.group_of[i] = g

    def make(self, i: int):
        rng = random.Random(f"onnxfast-fuzz:{self.seed}:{i}")
        groups = self.plain if (rng.random() < 0.92 or not self.expanded) else self.expanded
        si = rng.choice(rng.choice(groups))
        s = self.seeds[si]
        donors = [self.seeds[j]["model"] for j in self.group_of[si] if j != si]
        mut = Mutator(rng, self.op_pool, self.attr_dict, donors)
        data, feeds = mut.mutate(s["model"], s["feeds"])
        return s["name"], data, feeds, mut.log


def model_ops(data: bytes) -> list[str]:
    import onnx

    try:
        m = onnx.ModelProto()
        m.ParseFromString(data)
        return [n.op_type for n in m.graph.node]
    except Exception:
        return []


# ------------------------------------------------------------------------------------------------
# Running one case (inside a worker)


def run_one(onnxfast, data: bytes, feeds: list, threads: int = 1, run_budget: float = 3.0) -> str:
    """'ok', 'load:<Exception>' or 'run:<Exception>'.

    Each run() gets ``run_budget`` seconds, then its RunOptions.terminate is set: a model that asks for
    endless but legitimate work (a Loop fed a trip count of 2^62) stops with RunTerminated, a clean
    result, as it does in onnxruntime. What does not stop (a kernel or a load step looping in native code,
    deaf to terminate) runs into the worker's ``--timeout`` and is a hang."""
    import threading

    so = onnxfast.SessionOptions()
    so.intra_op_num_threads = threads
    try:
        so.log_severity_level = 4
    except Exception:
        pass
    def name(e):
        if isinstance(e, MemoryError) and not isinstance(e, onnxfast.errors.OnnxfastError):
            # an allocation onnxfast's guard let through, stopped only by the worker's address-space
            # limit: without it the model would exhaust memory (or crawl: a "hang")
            return "oom"
        return f"{type(e).__module__.split('.')[0]}.{type(e).__name__}"

    try:
        sess = onnxfast.InferenceSession(data, so)
    except Exception as e:  # noqa: BLE001 - any clean Python exception is a normal result
        n = name(e)
        return n if n == "oom" else f"load:{n}"
    try:
        for _ in range(2):  # twice: caches filled by the first run are used by the second
            ro = onnxfast.RunOptions()
            timer = threading.Timer(run_budget, setattr, (ro, "terminate", True))
            timer.daemon = True
            timer.start()
            try:
                sess.run(None, dict(feeds), ro)
            finally:
                timer.cancel()
    except Exception as e:  # noqa: BLE001
        n = name(e)
        return n if n == "oom" else f"run:{n}"
    return "ok"


def _limit_resources(mem_gib: float) -> None:
    try:
        import resource

        lim = int(mem_gib * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (lim, lim))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (ImportError, ValueError, OSError):
        pass


def worker_main(args) -> None:
    """Reads commands from stdin ('I <case>' or 'F <model.onnx> <feeds.npz>'), answers one line each on
    the original stdout; the process's own stdout / stderr go to stderr (a kernel that prints cannot
    corrupt the protocol)."""
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    if args.onnxfast_path:
        sys.path.insert(0, args.onnxfast_path)
    import warnings

    warnings.simplefilter("ignore")
    _limit_resources(args.mem_gib)
    import onnxfast

    maker = None
    out.write(f"READY {os.path.dirname(onnxfast.__file__)}\n")
    for line in sys.stdin:
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "I":
            if maker is None:
                maker = CaseMaker(load_seeds(args.seed_cache), args.seed)
            _, data, feeds, _ = maker.make(int(parts[1]))
        else:
            data = open(parts[1], "rb").read()
            feeds = load_feeds(parts[2])
        res = run_one(onnxfast, data, feeds, args.threads, run_budget=0.3 * args.timeout)
        out.write(res + "\n")


class Worker:
    """A persistent child running cases; ``send`` one command, ``poll`` for its answer or death."""

    def __init__(self, args, seed_cache: str):
        env = dict(os.environ)
        env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONFAULTHANDLER="")
        env.pop("PYTHONFAULTHANDLER")
        cmd = [sys.executable, os.path.abspath(__file__), "--_worker", "--seed", str(args.seed), "--seed-cache",
               seed_cache, "--threads", str(args.threads), "--mem-gib", str(args.mem_gib),
               "--timeout", str(args.timeout)]
        if args.onnxfast_path:
            cmd += ["--onnxfast-path", os.path.abspath(args.onnxfast_path)]
        self.errlog = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.errlog,
                                     cwd=tempfile.gettempdir(), env=env, start_new_session=True)
        self.buf = b""
        self.current = None  # the command in flight
        self.deadline = None
        self.ready = None

    def fileno(self):
        return self.proc.stdout.fileno()

    def send(self, cmd: str, timeout: float, payload=None) -> None:
        self.current = payload if payload is not None else cmd
        self.deadline = time.monotonic() + timeout
        self.proc.stdin.write((cmd + "\n").encode())
        self.proc.stdin.flush()

    def read_line(self):
        """A complete line, or None; raises EOFError when the worker is gone."""
        if b"\n" not in self.buf:
            chunk = os.read(self.fileno(), 65536)
            if not chunk:
                raise EOFError
            self.buf += chunk
        if b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            return line.decode()
        return None

    def wait_ready(self, timeout: float = 120) -> str:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            r, _, _ = select.select([self], [], [], 1.0)
            if r:
                try:
                    line = self.read_line()
                except EOFError:
                    raise RuntimeError("worker died while starting: " + self.stderr_tail()) from None
                if line and line.startswith("READY"):
                    self.ready = line.split(" ", 1)[1]
                    return self.ready
        raise RuntimeError("worker did not start: " + self.stderr_tail())

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()

    def death(self) -> str:
        rc = self.proc.wait()
        if rc < 0:
            try:
                return signal.Signals(-rc).name
            except ValueError:
                return f"signal{-rc}"
        return f"exit{rc}"

    def stderr_tail(self, n: int = 600) -> str:
        try:
            self.errlog.seek(0, 2)
            size = self.errlog.tell()
            self.errlog.seek(max(0, size - n))
            return self.errlog.read().decode(errors="replace")
        except (OSError, ValueError):
            return ""

    def close(self) -> None:
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.kill()


# ------------------------------------------------------------------------------------------------
# Corpus files: <id>.onnx, <id>.npz (feeds), index.json


def save_feeds(path: str, feeds: list) -> None:
    """Feeds -> .npz. Layout (JSON in '__layout__'): [[name, spec]], spec = {"a": key} for an array
    (object arrays of strings saved as unicode with "obj": true), {"seq": [spec...]}, or null for None."""
    arrays = {}

    def enc(v):
        if v is None:
            return None
        if isinstance(v, list):
            return {"seq": [enc(x) for x in v]}
        if isinstance(v, dict):
            return {"map": [[k if isinstance(k, (int, str)) else str(k), enc(x)] for k, x in v.items()]}
        a = np.asarray(v)
        key = f"a{len(arrays)}"
        if a.dtype == object:
            arrays[key] = a.astype(str)
            return {"a": key, "obj": True}
        arrays[key] = a
        return {"a": key}

    layout = [[n, enc(v)] for n, v in feeds]
    arrays["__layout__"] = np.array(json.dumps(layout))
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    with open(path, "wb") as f:
        f.write(buf.getvalue())


def load_feeds(path: str) -> list:
    with np.load(path, allow_pickle=False) as z:
        layout = json.loads(str(z["__layout__"]))

        def dec(spec):
            if spec is None:
                return None
            if "seq" in spec:
                return [dec(x) for x in spec["seq"]]
            if "map" in spec:
                return {k: dec(x) for k, x in spec["map"]}
            a = z[spec["a"]]
            return a.astype(object) if spec.get("obj") else a

        return [(n, dec(s)) for n, s in layout]


def read_index(corpus: str) -> list[dict]:
    p = os.path.join(corpus, "index.json")
    if not os.path.exists(p):
        return []
    with open(p) as f:
        return json.load(f)["entries"]


def write_index(corpus: str, entries: list[dict]) -> None:
    os.makedirs(corpus, exist_ok=True)
    with open(os.path.join(corpus, "index.json"), "w") as f:
        json.dump({"about": "Crash / hang reproducers found by ci/fuzz.py; replayed by tests/test_fuzz_corpus.py. "
                            "Each entry: <id>.onnx + <id>.npz (feeds; load with ci/fuzz.py load_feeds).",
                   "entries": entries}, f, indent=1)
        f.write("\n")


# ------------------------------------------------------------------------------------------------
# Checking one explicit case in a fresh worker (minimization, replay)


class Checker:
    """Runs explicit (model, feeds) cases in a reusable worker; a crash or hang costs a restart."""

    def __init__(self, args, seed_cache):
        self.args = args
        self.seed_cache = seed_cache
        self.w = None
        self.tmp = tempfile.mkdtemp(prefix="onnxfast-fuzz-")
        self.checks = 0

    def check(self, data: bytes, feeds: list, timeout: float | None = None) -> str:
        """'ok' / 'load:...' / 'run:...' or a finding kind ('SIGSEGV', 'hang', 'exit1', ...)."""
        self.checks += 1
        mp, fp = os.path.join(self.tmp, "m.onnx"), os.path.join(self.tmp, "f.npz")
        with open(mp, "wb") as f:
            f.write(data)
        save_feeds(fp, feeds)
        if self.w is None:
            for attempt in (1, 2):  # a worker that fails to start (a loaded machine) gets one more try
                self.w = Worker(self.args, self.seed_cache)
                try:
                    self.w.wait_ready()
                    break
                except RuntimeError as e:
                    self.w.kill()
                    self.w = None
                    if attempt == 2:
                        return f"worker-start-failed: {str(e)[-200:]}"
        w = self.w
        w.send(f"F {mp} {fp}", timeout or self.args.timeout)
        while True:
            left = w.deadline - time.monotonic()
            if left <= 0:
                w.kill()
                self.w = None
                return "hang"
            r, _, _ = select.select([w], [], [], min(left, 1.0))
            if r:
                try:
                    line = w.read_line()
                except EOFError:
                    kind = w.death()
                    self.w = None
                    return kind
                if line is not None:
                    return line

    def close(self):
        if self.w is not None:
            self.w.close()


def is_finding(res: str) -> bool:
    return not (res == "ok" or res.startswith("load:") or res.startswith("run:"))


def minimize(checker: Checker, data: bytes, feeds: list, kind: str, max_checks: int) -> tuple[bytes, list, str]:
    """Shrink while ``checker`` still reports ``kind``. Returns (model, feeds, op_type of the crashing node)."""
    import onnx

    budget = [max_checks]

    def still(d, f) -> bool:
        if budget[0] <= 0:
            return False
        budget[0] -= 1
        return checker.check(d, f) == kind

    m = onnx.ModelProto()
    try:
        m.ParseFromString(data)
        if m.SerializeToString() is None:
            raise ValueError
    except Exception:
        return data, feeds, "?"
    g = m.graph

    def ser(mm):
        try:
            return mm.SerializeToString()
        except Exception:
            return None

    # 1. cut the graph after the first node at which it still fails; its outputs become the graph's
    nodes = list(g.node)
    crash_at = len(nodes) - 1
    if len(nodes) > 1:
        for k in range(len(nodes)):
            mm = onnx.ModelProto()
            mm.CopyFrom(m)
            del mm.graph.node[k + 1:]
            del mm.graph.output[:]
            for o in nodes[k].output:
                if o:
                    mm.graph.output.add().name = o
            d = ser(mm)
            if d is not None and still(d, feeds):
                m, crash_at = mm, k
                break
        # drop nodes the crashing node does not depend on
        g = m.graph
        need = set(g.node[-1].input) if len(g.node) else set()
        keep = [len(g.node) - 1]
        for j in range(len(g.node) - 2, -1, -1):
            if need & set(g.node[j].output):
                keep.append(j)
                need |= set(g.node[j].input)
        if len(keep) < len(g.node):
            mm = onnx.ModelProto()
            mm.CopyFrom(m)
            kept = [mm.graph.node[j] for j in sorted(keep)]
            new = [onnx.NodeProto() for _ in kept]
            for a, b in zip(new, kept):
                a.CopyFrom(b)
            del mm.graph.node[:]
            mm.graph.node.extend(new)
            d = ser(mm)
            if d is not None and still(d, feeds):
                m = mm
    g = m.graph
    op = g.node[-1].op_type if len(g.node) else "?"
    # 2. attributes, one at a time (last node first)
    for ni in range(len(g.node) - 1, -1, -1):
        ai = len(g.node[ni].attribute) - 1
        while ai >= 0:
            mm = onnx.ModelProto()
            mm.CopyFrom(m)
            del mm.graph.node[ni].attribute[ai]
            d = ser(mm)
            if d is not None and still(d, feeds):
                m = mm
            ai -= 1
        g = m.graph
    # 3. unused initializers / graph inputs / value_info, and feeds nobody reads
    used = {x for n in m.graph.node for x in n.input}
    for n in m.graph.node:  # names read inside subgraphs
        for a in n.attribute:
            for sg in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                used |= {x for sn in sg.node for x in sn.input}
    mm = onnx.ModelProto()
    mm.CopyFrom(m)
    kept_init = [t for t in mm.graph.initializer if t.name in used]
    del mm.graph.initializer[:]
    mm.graph.initializer.extend(kept_init)
    kept_in = [vi for vi in mm.graph.input if vi.name in used]
    del mm.graph.input[:]
    mm.graph.input.extend(kept_in)
    del mm.graph.value_info[:]
    f2 = [(n, v) for n, v in feeds if n in used]
    d = ser(mm)
    if d is not None and (d != ser(m) or len(f2) != len(feeds)) and still(d, f2):
        m, feeds = mm, f2
    # 4. single feeds
    i = len(feeds) - 1
    while i >= 0 and len(feeds) > 0:
        f2 = feeds[:i] + feeds[i + 1:]
        if still(m.SerializeToString(), f2):
            feeds = f2
        i -= 1
    return m.SerializeToString(), feeds, op


# ------------------------------------------------------------------------------------------------
# The campaign


def fuzz(args) -> int:
    t0 = time.time()
    seeds = load_seeds(args.seed_cache)
    seed_cache = args.seed_cache or _seed_cache_path()
    maker = CaseMaker(seeds, args.seed)
    print(f"fuzz: {len(seeds)} seed cases in {len(maker.plain)} + {len(maker.expanded)} groups; "
          f"seed {args.seed}, cases {args.start}..{args.start + args.cases - 1}, jobs {args.jobs}, "
          f"timeout {args.timeout:g} s (seeds loaded in {time.time() - t0:.1f} s)", flush=True)
    workers = []
    for _ in range(args.jobs):
        workers.append(Worker(args, seed_cache))
    for w in workers:
        where = w.wait_ready()
    print(f"fuzz: onnxfast under test: {where}", flush=True)

    results = collections.Counter()
    raw_findings = []  # (case, kind, tentative op, stderr tail)
    per_key = collections.Counter()
    done = 0
    nxt = args.start
    end = args.start + args.cases
    t_start = time.time()
    last_report = t_start
    idle = []

    def feed(w):
        nonlocal nxt
        if nxt < end:
            w.send(f"I {nxt}", args.timeout, payload=nxt)
            nxt += 1
        else:
            w.current = None
            idle.append(w)

    for w in workers:
        feed(w)

    def record(case, kind, tail):
        name, data, _, log = maker.make(case)
        ops = sorted(set(model_ops(data)))
        top = ops[0] if len(ops) == 1 else f"multi:{name}"
        per_key[(top, kind)] += 1
        raw_findings.append({"case": case, "kind": kind, "top": top, "seed_test": name, "mutations": log,
                             "stderr": tail[-300:]})
        print(f"fuzz: case {case}: {kind} ({top}; {name}; {'; '.join(log)[:200]})", flush=True)

    while done < args.cases:
        busy = [w for w in workers if w.current is not None]
        if not busy:
            break
        now = time.monotonic()
        timeout = max(0.0, min(w.deadline for w in busy) - now)
        r, _, _ = select.select(busy, [], [], min(timeout, 1.0))
        for w in list(busy):
            replace = None
            if w in r:
                try:
                    line = w.read_line()
                except EOFError:
                    kind = w.death()
                    record(w.current, kind, w.stderr_tail())
                    done += 1
                    replace = w
                    line = None
                if line is not None:
                    if is_finding(line):  # an answer that is still a finding ("oom")
                        record(w.current, line, "")
                    else:
                        results[line.split(":")[0]] += 1
                        if line != "ok":
                            results[line] += 1
                    done += 1
                    feed(w)
            elif time.monotonic() > w.deadline:
                w.kill()
                record(w.current, "hang", w.stderr_tail())
                done += 1
                replace = w
            if replace is not None:
                i = workers.index(replace)
                nw = Worker(args, seed_cache)
                nw.wait_ready()
                workers[i] = nw
                feed(nw)
        if time.time() - last_report > args.report_every:
            last_report = time.time()
            el = last_report - t_start
            print(f"fuzz: {done} cases, {done / el:.1f}/s, findings {len(raw_findings)}", flush=True)
    for w in workers:
        if w.proc.poll() is None:
            w.close()
    elapsed = time.time() - t_start

    # minimize one reproducer per tentative key, then dedupe by (op, kind)
    final = collections.OrderedDict()
    checker = Checker(args, seed_cache)
    first = collections.OrderedDict()
    for f in raw_findings:
        first.setdefault((f["top"], f["kind"]), []).append(f)
    t_min = time.time()
    for key, fs in (first.items() if not args.no_minimize else ()):
        for f in fs[: args.repro_per_key]:
            name, data, feeds, log = maker.make(f["case"])
            got = checker.check(data, feeds)
            if got != f["kind"]:
                got2 = checker.check(data, feeds)
                if got2 != f["kind"]:
                    f["reproduced"] = False
                    print(f"fuzz: case {f['case']} ({f['kind']}) did not reproduce in a fresh worker ({got}, {got2})",
                          flush=True)
                    continue
            budget = args.min_checks if f["kind"] != "hang" else args.min_checks_hang
            d2, f2, op = minimize(checker, data, feeds, f["kind"], budget) if budget > 0 else (data, feeds, "?")
            if op == "?":
                op = f["top"]
            k = (op, f["kind"])
            if k not in final:
                final[k] = dict(f, op=op, model=d2, feeds=f2)
            if op != "?":
                break
    checker.close()
    t_min = time.time() - t_min

    saved = []
    if not args.no_save and final:
        entries = read_index(args.corpus)
        have = {(e["op"], e["kind"]) for e in entries}
        for (op, kind), f in final.items():
            if (op, kind) in have and not args.save_dups:
                continue
            h = hashlib.sha1(f["model"] + repr([(n, str(v)) for n, v in f["feeds"]]).encode()).hexdigest()[:8]
            eid = f"{''.join(c if c.isalnum() else '_' for c in op).lower()}-{kind.lower()}-{h}"
            os.makedirs(args.corpus, exist_ok=True)
            with open(os.path.join(args.corpus, eid + ".onnx"), "wb") as fh:
                fh.write(f["model"])
            save_feeds(os.path.join(args.corpus, eid + ".npz"), f["feeds"])
            entries.append({"id": eid, "op": op, "kind": kind, "seed_test": f["seed_test"],
                            "found_by": f"ci/fuzz.py --seed {args.seed} case {f['case']}",
                            "mutations": f["mutations"]})
            saved.append(eid)
        write_index(args.corpus, entries)

    print("\n==== fuzz summary ====")
    print(f"onnxfast: {where}")
    print(f"command: python ci/fuzz.py --cases {args.cases} --seed {args.seed} --jobs {args.jobs}"
          + (f" --start {args.start}" if args.start else "")
          + (f" --onnxfast-path {args.onnxfast_path}" if args.onnxfast_path else ""))
    print(f"cases: {done} in {elapsed:.0f} s ({done / max(elapsed, 1e-9):.1f} cases/s); minimization {t_min:.0f} s "
          f"({checker.checks} checks)")
    print(f"results: ok {results['ok']}, refused at load {results['load']}, error at run {results['run']}")
    crashes = sum(1 for f in raw_findings if f["kind"] not in ("hang", "oom"))
    hangs = sum(1 for f in raw_findings if f["kind"] == "hang")
    ooms = sum(1 for f in raw_findings if f["kind"] == "oom")
    print(f"findings: {crashes} crashes, {hangs} hangs, {ooms} unguarded allocations (oom) (raw); "
          f"{len(final)} unique by (op, kind) after minimization")
    for (op, kind), f in final.items():
        n_raw = sum(c for (t, k), c in per_key.items() if k == kind and (t == op or t.startswith("multi:")))
        print(f"  {op:24s} {kind:8s} first case {f['case']:>6}  ({f['seed_test']}: {'; '.join(f['mutations'])[:120]})")
    by_op = collections.Counter()
    for (t, k), c in per_key.items():
        by_op[(t, k)] += c
    if by_op:
        print("raw findings by (op, kind): " + ", ".join(f"{t}/{k}: {c}" for (t, k), c in by_op.most_common()))
    unrepro = [f for f in raw_findings if f.get("reproduced") is False]
    if unrepro:
        print(f"not reproducible in a fresh worker: {len(unrepro)} (cases {[f['case'] for f in unrepro][:10]})")
    foreign = [(k, c) for k, c in results.items() if ":" in k and not k.split(":", 1)[1].startswith("onnxfast.")]
    if foreign:
        foreign.sort(key=lambda kc: -kc[1])
        print("clean exceptions not from onnxfast.errors (not findings): "
              + ", ".join(f"{k} {c}" for k, c in foreign[:12]))
    if saved:
        print(f"saved to {args.corpus}: {', '.join(saved)}")
    return 1 if raw_findings else 0


def replay(args) -> int:
    """Re-run every corpus entry in a worker; print each result."""
    entries = read_index(args.replay)
    checker = Checker(args, args.seed_cache or "")
    bad = 0
    for e in entries:
        data = open(os.path.join(args.replay, e["id"] + ".onnx"), "rb").read()
        feeds = load_feeds(os.path.join(args.replay, e["id"] + ".npz"))
        res = checker.check(data, feeds)
        bad += is_finding(res)
        print(f"{e['id']:48s} {res}", flush=True)
    checker.close()
    return 1 if bad else 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", type=int, default=1000)
    p.add_argument("--start", type=int, default=0, help="first case index (cases are numbered per seed)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--jobs", type=int, default=max(1, os.cpu_count() or 1))
    p.add_argument("--timeout", type=float, default=10.0, help="seconds without an answer that make a hang")
    p.add_argument("--onnxfast-path", default=None,
                   help="folder holding the onnxfast package to fuzz (put first on sys.path); default: this checkout "
                        "when it has a compiled _core, else the installed package")
    p.add_argument("--corpus", default=DEFAULT_CORPUS)
    p.add_argument("--no-save", action="store_true", help="do not write findings to the corpus")
    p.add_argument("--no-minimize", action="store_true", help="report raw findings only (no reproduce / minimize / save)")
    p.add_argument("--save-dups", action="store_true", help="save findings whose (op, kind) the corpus already has")
    p.add_argument("--threads", type=int, default=1, help="intra_op_num_threads of each session")
    p.add_argument("--mem-gib", type=float, default=4.0, help="address-space limit of each worker (RLIMIT_AS)")
    p.add_argument("--min-checks", type=int, default=40, help="minimization budget per crash")
    p.add_argument("--min-checks-hang", type=int, default=8, help="minimization budget per hang")
    p.add_argument("--repro-per-key", type=int, default=2)
    p.add_argument("--report-every", type=float, default=60.0)
    p.add_argument("--seed-cache", default=None)
    p.add_argument("--replay", metavar="CORPUS", default=None, help="replay a corpus folder and exit")
    p.add_argument("--_worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.onnxfast_path is None and not args._worker:
        import glob

        if glob.glob(os.path.join(ROOT, "onnxfast", "_core*.so")):
            args.onnxfast_path = ROOT
    if args._worker:
        worker_main(args)
        return 0
    if args.replay:
        return replay(args)
    return fuzz(args)


if __name__ == "__main__":
    sys.exit(main())
