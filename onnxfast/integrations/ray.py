"""onnxfast on Ray: batch inference over Ray Data and online serving with Ray Serve.

Batch (Ray Data)::

    import ray
    from onnxfast.integrations.ray import batch_inference

    ds = ray.data.read_parquet("features/")                      # columns named like the model's inputs
    preds = batch_inference(ds, "model.onnx", num_actors=4, num_cpus_per_actor=2, batch_size=1024)
    preds.write_parquet("predictions/")

``batch_inference`` puts the model bytes in the object store once and maps ``OnnxPredictor`` over the
dataset with a fixed pool of actors; each actor fetches the model once and builds one session whose
``intra_op_num_threads`` is the actor's CPU count. ``OnnxPredictor`` is a plain callable class for
``Dataset.map_batches`` when you want to call Ray Data yourself.

Serving (Ray Serve)::

    from ray import serve
    from onnxfast.integrations.ray import serve_app

    serve.run(serve_app("model.onnx", max_batch_size=16, batch_wait_timeout_s=0.005))
    # POST {"inputs": {"x": [[...], ...]}} to http://127.0.0.1:8000/ -> {"outputs": {"y": [...]}}
    # or from Python: serve.get_app_handle("default").predict.remote({"x": array}).result()

Concurrent requests are gathered by ``@serve.batch`` and run as one batch when their inputs can be
stacked along a dynamic first axis; a request with a wrong input name, dtype or shape gets its own error
(HTTP 400 with a JSON body, or an ``InvalidArgument`` raised to a handle caller) and the replica goes on.

This module owns the glue only: how a batch's columns become feeds and outputs become columns
(``columns_to_feeds``), request validation and batching for serving. Sessions are ordinary
``onnxfast.InferenceSession`` objects (or onnxruntime's, with ``runtime="onnxruntime"``, for comparison).
It needs ``pip install onnxfast[ray]``; ``import onnxfast`` does not import it.
"""

from __future__ import annotations

import asyncio
import os
import threading
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

try:
    import ray
except ImportError as _e:  # pragma: no cover - depends on the environment
    raise ImportError("onnxfast.integrations.ray needs Ray: pip install 'onnxfast[ray]'") from _e

from .. import dtypes
from ..errors import InvalidArgument

__all__ = [
    "OnnxPredictor",
    "OnnxServer",
    "batch_inference",
    "columns_to_feeds",
    "model_ref",
    "serve_app",
    "serve_deployment",
]

ModelSource = Any  # str | os.PathLike | bytes | onnx.ModelProto | ray.ObjectRef


# ---------------------------------------------------------------------------------------------------
# model transfer and sessions


def model_ref(model: ModelSource) -> "ray.ObjectRef":
    """The model's bytes in Ray's object store (read from a path or serialized from a ModelProto here,
    on the driver), so actors on any node fetch them once instead of each task shipping them."""
    if isinstance(model, ray.ObjectRef):
        return model
    return ray.put(_model_bytes(model))


def _model_bytes(model: ModelSource) -> bytes:
    if isinstance(model, ray.ObjectRef):
        model = ray.get(model)
    if isinstance(model, (bytes, bytearray, memoryview)):
        return bytes(model)
    if isinstance(model, (str, os.PathLike)):
        with open(model, "rb") as f:
            return f.read()
    if hasattr(model, "SerializeToString"):
        return model.SerializeToString()
    raise InvalidArgument(f"model must be a path, bytes, an onnx.ModelProto or a ray.ObjectRef, not "
                          f"{type(model).__name__}")


def actor_cpus() -> int | None:
    """CPUs Ray assigned to the calling actor or task (None outside Ray, or when it holds none)."""
    try:
        if not ray.is_initialized():
            return None
        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
    except Exception:  # noqa: BLE001 - not inside a Ray worker
        return None
    return max(1, int(cpus)) if cpus else None


def make_session(model: ModelSource, *, sess_options=None, providers=None, intra_op_num_threads: int | None = None,
                 runtime: str = "onnxfast"):
    """A session over ``model`` whose thread count is ``intra_op_num_threads`` if given, else the
    options' own if set, else the CPUs Ray assigned to this actor (so actors sharing a node do not
    oversubscribe its cores)."""
    if runtime == "onnxfast":
        import onnxfast as rt
    elif runtime == "onnxruntime":
        import onnxruntime as rt
    else:
        raise InvalidArgument(f"runtime is '{runtime}'; it must be 'onnxfast' or 'onnxruntime'")
    if sess_options is None:
        sess_options = rt.SessionOptions()
    elif runtime == "onnxruntime" and not isinstance(sess_options, rt.SessionOptions):
        raise InvalidArgument("sess_options must be onnxruntime.SessionOptions with runtime='onnxruntime'")
    threads = intra_op_num_threads or sess_options.intra_op_num_threads or actor_cpus()
    if threads:
        sess_options.intra_op_num_threads = int(threads)
    session = rt.InferenceSession(_model_bytes(model), sess_options=sess_options,
                                  providers=providers or ["CPUExecutionProvider"])
    return session, int(threads or 0)


# ---------------------------------------------------------------------------------------------------
# columns <-> feeds


@dataclass(frozen=True)
class _InputSpec:
    name: str
    dtype: np.dtype | None  # None: not a tensor (sequences, maps): passed through unchanged
    shape: tuple  # ints for fixed dims, None / str for free ones; () when the rank is unknown
    rank_known: bool


def _input_specs(session) -> list[_InputSpec]:
    specs = []
    for arg in session.get_inputs():
        shape = arg.shape
        known = shape is not None
        specs.append(_InputSpec(arg.name, dtypes.from_type_string(arg.type), tuple(shape or ()), known))
    return specs


def _column_array(col) -> np.ndarray:
    """A numpy array from a batch column: numpy, a pandas Series (object columns of per-row arrays
    are stacked), or a pyarrow (chunked) array, Ray's tensor extension type included."""
    if isinstance(col, np.ndarray):
        arr = col
    elif hasattr(col, "chunks"):  # pyarrow.ChunkedArray
        parts = [_arrow_chunk(c) for c in col.chunks]
        arr = np.concatenate(parts) if len(parts) > 1 else (parts[0] if parts else np.empty(0))
    elif hasattr(col, "to_numpy"):  # pandas.Series, pyarrow.Array
        arr = _arrow_chunk(col) if hasattr(col, "type") else col.to_numpy()
    else:
        arr = np.asarray(col)
    if arr.dtype == object and len(arr) and isinstance(arr[0], (np.ndarray, list, tuple)):
        arr = np.stack([np.asarray(v) for v in arr])
    return arr


def _arrow_chunk(chunk) -> np.ndarray:
    try:
        return chunk.to_numpy(zero_copy_only=False)
    except TypeError:  # Ray's tensor extension arrays take no arguments
        return chunk.to_numpy()


def _batch_columns(batch) -> dict[str, Any]:
    if isinstance(batch, Mapping):
        return dict(batch)
    if hasattr(batch, "column_names"):  # pyarrow.Table
        return {name: batch.column(name) for name in batch.column_names}
    if hasattr(batch, "columns"):  # pandas.DataFrame
        return {name: batch[name] for name in batch.columns}
    raise InvalidArgument(f"a batch must be a dict of arrays, a pandas DataFrame or a pyarrow Table, not "
                          f"{type(batch).__name__}")


def columns_to_feeds(batch, specs: Sequence[_InputSpec], input_map: Mapping[str, Any] | None = None) -> dict:
    """The feeds for one batch. Each model input reads the column of its own name, or the one
    ``input_map`` names for it (a list of columns is stacked as the last axis: per-feature scalar columns
    into one [rows, features] input). A column is cast to the input's element type when numpy calls
    the cast same-kind (float64 -> float32, int32 -> int64); a 1-D column feeding an input of rank 2
    whose last dim is 1 gets that axis. Anything else that does not fit raises InvalidArgument naming
    the column and the input."""
    columns = _batch_columns(batch)
    input_map = dict(input_map or {})
    unknown = set(input_map) - {s.name for s in specs}
    if unknown:
        raise InvalidArgument(f"input_map names {sorted(unknown)}, which are not inputs of the model; its "
                              f"inputs are {[s.name for s in specs]}")
    feeds = {}
    for spec in specs:
        source = input_map.get(spec.name, spec.name)
        names = list(source) if isinstance(source, (list, tuple)) else [source]
        missing = [n for n in names if n not in columns]
        if missing:
            raise InvalidArgument(f"model input '{spec.name}' reads column(s) {missing}, which the batch does "
                                  f"not have; its columns are {sorted(columns)}")
        if len(names) == 1 and not isinstance(source, (list, tuple)):
            arr = _column_array(columns[names[0]])
        else:
            arr = np.stack([_column_array(columns[n]) for n in names], axis=-1)
        feeds[spec.name] = _conform(arr, spec, f"column {source!r}")
    return feeds


def _conform(arr: np.ndarray, spec: _InputSpec, what: str) -> np.ndarray:
    if spec.dtype is None:
        return arr
    if arr.dtype != spec.dtype:
        if spec.dtype == object and arr.dtype.kind in "US":
            arr = arr.astype(object)
        elif arr.dtype.kind in "biuf" and np.can_cast(arr.dtype, spec.dtype, casting="same_kind"):
            arr = arr.astype(spec.dtype)
        else:
            raise InvalidArgument(f"{what} has element type {arr.dtype}; model input '{spec.name}' takes "
                                  f"{spec.dtype} (no same-kind cast from one to the other)")
    if spec.rank_known and arr.ndim == len(spec.shape) - 1 and len(spec.shape) == 2 and spec.shape[-1] == 1:
        arr = arr.reshape(-1, 1)
    return np.ascontiguousarray(arr)


# ---------------------------------------------------------------------------------------------------
# Ray Data


class OnnxPredictor:
    """A callable class for ``Dataset.map_batches``: one session per actor, a batch of columns in, the
    model's outputs out as columns (a dict of numpy arrays, which Ray Data accepts whatever the
    ``batch_format`` of the input was: numpy, pandas or pyarrow).

    ``model``: an ObjectRef from ``model_ref()`` (fetched once per actor), bytes, a path readable on the
    actor's node, or an onnx.ModelProto. ``input_map``: model input -> column (or list of columns to
    stack) when the names differ. ``output_map``: model output -> column name. ``output_names``: the
    outputs to compute (default: all). ``passthrough``: input columns copied to the result unchanged
    (ids, labels). ``intra_op_num_threads``: default the actor's CPUs. ``runtime``: "onnxfast", or
    "onnxruntime" to compare under the same Ray setup.
    """

    def __init__(self, model: ModelSource, *, input_map: Mapping[str, Any] | None = None,
                 output_map: Mapping[str, str] | None = None, output_names: Sequence[str] | None = None,
                 passthrough: Sequence[str] = (), sess_options=None, providers=None,
                 intra_op_num_threads: int | None = None, runtime: str = "onnxfast"):
        self.session, self.intra_op_num_threads = make_session(
            model, sess_options=sess_options, providers=providers, intra_op_num_threads=intra_op_num_threads,
            runtime=runtime)
        self._specs = _input_specs(self.session)
        self._input_map = dict(input_map or {})
        outputs = [o.name for o in self.session.get_outputs()]
        self._output_names = list(output_names) if output_names is not None else outputs
        bad = [n for n in self._output_names if n not in outputs]
        if bad:
            raise InvalidArgument(f"output_names {bad} are not outputs of the model; its outputs are {outputs}")
        self._output_map = dict(output_map or {})
        bad = [n for n in self._output_map if n not in outputs]
        if bad:
            raise InvalidArgument(f"output_map names {bad}, which are not outputs of the model; its outputs are "
                                  f"{outputs}")
        self._passthrough = list(passthrough)
        # the check columns_to_feeds makes per batch, made now: a typo fails the actor's creation
        unknown = set(self._input_map) - {s.name for s in self._specs}
        if unknown:
            raise InvalidArgument(f"input_map names {sorted(unknown)}, which are not inputs of the model; its "
                                  f"inputs are {[s.name for s in self._specs]}")

    def __call__(self, batch) -> dict[str, np.ndarray]:
        feeds = columns_to_feeds(batch, self._specs, self._input_map)
        results = self.session.run(self._output_names, feeds)
        rows = len(next(iter(feeds.values()))) if feeds else None
        out = {}
        for name, value in zip(self._output_names, results):
            value = np.asarray(value)
            if rows is not None and (value.ndim == 0 or value.shape[0] != rows):
                raise InvalidArgument(f"output '{name}' has shape {list(value.shape)} for a batch of {rows} rows; "
                                      "Ray Data needs one output row per input row (output_names= can leave "
                                      "such an output out)")
            out[self._output_map.get(name, name)] = value
        if self._passthrough:
            columns = _batch_columns(batch)
            for name in self._passthrough:
                if name not in columns:
                    raise InvalidArgument(f"passthrough column '{name}' is not in the batch")
                if name in out:
                    raise InvalidArgument(f"passthrough column '{name}' has the name of an output column")
                out[name] = _column_array(columns[name])
        return out


def batch_inference(ds: "ray.data.Dataset", model: ModelSource, *, num_actors: int = 1,
                    num_cpus_per_actor: float = 1, batch_size: int | None = 1024, batch_format: str = "numpy",
                    **predictor_kwargs) -> "ray.data.Dataset":
    """``ds.map_batches(OnnxPredictor, ...)`` over a fixed pool of ``num_actors`` actors with
    ``num_cpus_per_actor`` CPUs each; the model goes into the object store once. Keyword arguments
    not named here go to ``OnnxPredictor`` (input_map, output_map, output_names, passthrough,
    sess_options, providers, runtime). Returns the lazy dataset of output columns."""
    if num_actors < 1:
        raise InvalidArgument(f"num_actors is {num_actors}; it must be at least 1")
    kwargs = dict(predictor_kwargs)
    kwargs["model"] = model_ref(model)
    return ds.map_batches(OnnxPredictor, fn_constructor_kwargs=kwargs, batch_size=batch_size,
                          batch_format=batch_format, num_cpus=num_cpus_per_actor,
                          compute=ray.data.ActorPoolStrategy(size=num_actors))


# ---------------------------------------------------------------------------------------------------
# Ray Serve


class _Failure:
    """One request's error inside a batch (the others in the batch still get their outputs)."""

    __slots__ = ("error",)

    def __init__(self, error: Exception):
        self.error = error


class OnnxServer:
    """The body of the Serve deployment (``serve_deployment`` wraps it): one session per replica,
    concurrent requests batched by ``@serve.batch``. ``predict(inputs)`` is the handle API (a dict of
    arrays in, a dict of arrays out, ``InvalidArgument`` for a bad request); ``__call__`` is the HTTP
    API (JSON ``{"inputs": {name: nested lists}}`` -> ``{"outputs": {name: nested lists}}``, or status
    400 and ``{"error": ..., "type": ...}``)."""

    def __init__(self, model: ModelSource, *, max_batch_size: int = 16, batch_wait_timeout_s: float = 0.005,
                 sess_options=None, providers=None, intra_op_num_threads: int | None = None,
                 runtime: str = "onnxfast"):
        from ray import serve

        self.session, self.intra_op_num_threads = make_session(
            model, sess_options=sess_options, providers=providers, intra_op_num_threads=intra_op_num_threads,
            runtime=runtime)
        self._specs = _input_specs(self.session)
        self._outputs = [o.name for o in self.session.get_outputs()]
        # requests stack along axis 0 only when every input is a tensor whose first dim is free
        self._stackable = all(s.dtype is not None and s.rank_known and len(s.shape) >= 1
                              and not isinstance(s.shape[0], int) for s in self._specs)
        self._batched = serve.batch(max_batch_size=max_batch_size,
                                    batch_wait_timeout_s=batch_wait_timeout_s)(self._run_batch)
        self._lock = threading.Lock()
        self._stats = {"requests": 0, "batches": 0, "largest_batch": 0, "stacked_runs": 0, "errors": 0}

    # -- API ----------------------------------------------------------------------------------------
    async def predict(self, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        result = await self._batched(inputs)
        if isinstance(result, _Failure):
            raise result.error
        return result

    async def __call__(self, request):
        from starlette.responses import JSONResponse

        try:
            body = await request.json()
        except Exception as e:  # noqa: BLE001 - any unparsable body is the client's error
            return JSONResponse({"error": f"the request body is not JSON: {e}", "type": "InvalidArgument"},
                                status_code=400)
        inputs = body.get("inputs") if isinstance(body, dict) else None
        if not isinstance(inputs, dict):
            return JSONResponse({"error": 'the request body must be {"inputs": {name: value, ...}}',
                                 "type": "InvalidArgument"}, status_code=400)
        result = await self._batched(inputs)
        if isinstance(result, _Failure):
            status = 400 if isinstance(result.error, (InvalidArgument, ValueError, TypeError)) else 500
            return JSONResponse({"error": str(result.error), "type": type(result.error).__name__},
                                status_code=status)
        return JSONResponse({"outputs": {k: v.tolist() for k, v in result.items()}})

    def stats(self) -> dict:
        """Requests, batches, the largest batch and how many batches ran stacked as one session run."""
        with self._lock:
            return dict(self._stats, intra_op_num_threads=self.intra_op_num_threads)

    def check_health(self) -> None:
        """Serve's health probe: the replica is healthy while it holds a session (built in __init__;
        Serve restarts a replica whose constructor raised)."""
        if getattr(self, "session", None) is None:
            raise RuntimeError("the replica has no session")

    # -- batching -----------------------------------------------------------------------------------
    def _feeds(self, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        if not isinstance(inputs, Mapping):
            raise InvalidArgument(f"a request must be a dict of input name -> array, not {type(inputs).__name__}")
        names = [s.name for s in self._specs]
        unknown = [k for k in inputs if k not in names]
        if unknown:
            raise InvalidArgument(f"unknown input name(s) {unknown}; the model's inputs are {names}")
        feeds = {}
        for spec in self._specs:
            if spec.name not in inputs:
                raise InvalidArgument(f"missing input '{spec.name}'; the model's inputs are {names}")
            value = inputs[spec.name]
            if isinstance(value, np.ndarray):
                arr = value
            else:  # JSON: nested lists, read as the input's element type
                try:
                    arr = np.asarray(value, dtype=spec.dtype)
                except (TypeError, ValueError) as e:
                    raise InvalidArgument(f"input '{spec.name}' is not a rectangular array of {spec.dtype}: "
                                          f"{e}") from None
            if spec.dtype is not None and arr.dtype != spec.dtype:
                raise InvalidArgument(f"input '{spec.name}' has element type {arr.dtype}; the model takes "
                                      f"{spec.dtype}")
            if spec.rank_known:
                if arr.ndim != len(spec.shape):
                    raise InvalidArgument(f"input '{spec.name}' has rank {arr.ndim} (shape {list(arr.shape)}); "
                                          f"the model takes rank {len(spec.shape)} ({list(spec.shape)})")
                for axis, (got, want) in enumerate(zip(arr.shape, spec.shape)):
                    if isinstance(want, int) and got != want:
                        raise InvalidArgument(f"input '{spec.name}' has dim {got} on axis {axis} (shape "
                                              f"{list(arr.shape)}); the model takes {list(spec.shape)}")
            feeds[spec.name] = arr
        return feeds

    def _run(self, feeds: dict) -> dict[str, np.ndarray]:
        return dict(zip(self._outputs, self.session.run(None, feeds)))

    def _run_group(self, group: list[tuple[int, dict]], results: list) -> None:
        """Run requests of one signature: stacked along axis 0 as one session run when every output
        splits back by rows, one by one otherwise (or when the stacked run fails, so only the bad
        request gets the error)."""
        if len(group) > 1:
            rows = [next(iter(f.values())).shape[0] for _, f in group]
            total = sum(rows)
            stacked = {name: np.concatenate([f[name] for _, f in group]) for name in group[0][1]}
            try:
                out = self._run(stacked)
            except Exception:  # noqa: BLE001 - retried per request below, each getting its own error
                out = None
            if out is not None and all(v.ndim >= 1 and v.shape[0] == total for v in out.values()):
                offsets = np.cumsum([0] + rows)
                for (index, _), lo, hi in zip(group, offsets[:-1], offsets[1:]):
                    results[index] = {k: v[lo:hi] for k, v in out.items()}
                with self._lock:
                    self._stats["stacked_runs"] += 1
                return
        for index, feeds in group:
            try:
                results[index] = self._run(feeds)
            except Exception as e:  # noqa: BLE001 - this request's error, reported to it alone
                results[index] = _Failure(e)

    def _run_requests(self, requests: list) -> list:
        results: list = [None] * len(requests)
        groups: dict[tuple, list] = {}
        for index, inputs in enumerate(requests):
            try:
                feeds = self._feeds(inputs)
            except Exception as e:  # noqa: BLE001 - a malformed request fails alone
                results[index] = _Failure(e)
                continue
            if self._stackable:
                key = tuple((n, a.dtype.str, a.shape[1:]) for n, a in feeds.items())
            else:
                key = ("single", index)
            groups.setdefault(key, []).append((index, feeds))
        for group in groups.values():
            self._run_group(group, results)
        with self._lock:
            s = self._stats
            s["requests"] += len(requests)
            s["batches"] += 1
            s["largest_batch"] = max(s["largest_batch"], len(requests))
            s["errors"] += sum(isinstance(r, _Failure) for r in results)
        return results

    async def _run_batch(self, requests: list) -> list:
        # the session releases the GIL: running it on a thread keeps the replica's event loop (health
        # checks, the next batch's queue) answering meanwhile
        return await asyncio.get_running_loop().run_in_executor(None, self._run_requests, requests)


def serve_deployment(*, name: str = "onnxfast", num_replicas: int = 1, num_cpus_per_replica: float = 1,
                     max_ongoing_requests: int = 64, **deployment_options):
    """A Serve deployment of ``OnnxServer``; bind it to a model and its options:
    ``serve.run(serve_deployment().bind("model.onnx", max_batch_size=32))``."""
    from ray import serve

    return serve.deployment(OnnxServer, name=name, num_replicas=num_replicas,
                            ray_actor_options={"num_cpus": num_cpus_per_replica},
                            max_ongoing_requests=max_ongoing_requests, **deployment_options)


def serve_app(model: ModelSource, *, name: str = "onnxfast", num_replicas: int = 1, num_cpus_per_replica: float = 1,
              max_batch_size: int = 16, batch_wait_timeout_s: float = 0.005, max_ongoing_requests: int = 64,
              **server_kwargs):
    """The application to pass to ``serve.run``: the model behind ``OnnxServer`` with request batching.
    A path is read here, on the driver, so replicas on other nodes need no shared file system."""
    dep = serve_deployment(name=name, num_replicas=num_replicas, num_cpus_per_replica=num_cpus_per_replica,
                           max_ongoing_requests=max_ongoing_requests)
    # bytes, not an ObjectRef: Serve keeps a deployment's arguments for replicas it starts later (scaling,
    # restarts), and a reference the driver stops holding could be gone by then
    source = model if isinstance(model, ray.ObjectRef) else _model_bytes(model)
    return dep.bind(source, max_batch_size=max_batch_size, batch_wait_timeout_s=batch_wait_timeout_s,
                    **server_kwargs)
