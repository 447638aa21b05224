"""onnxfast.integrations.ray on a local Ray cluster started here (2 CPUs), run by tests/test_ray.py in a
child pytest process (`pytest tests/ray_cases.py` runs them directly): Ray Data batch inference equals
a plain single-process loop, the model reaches each actor once and its session uses the actor's CPUs;
Ray Serve answers concurrent requests with batching and survives malformed ones."""

from __future__ import annotations

import concurrent.futures
import socket
import sys

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

ray = pytest.importorskip("ray")
pd = pytest.importorskip("pandas")

import onnxfast  # noqa: E402
from onnxfast.errors import InvalidArgument  # noqa: E402

# a cluster that cannot schedule work waits forever: fail the test instead
pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]

ROWS = 10_000


def two_in_two_out_model() -> bytes:
    """a: float32 [N, 4], b: int64 [N] -> y: float32 [N, 3] = Relu(a @ W + b), s: float32 [N] = 2 * sum(a)."""
    w = np.linspace(-1, 1, 12, dtype=np.float32).reshape(4, 3)
    nodes = [
        helper.make_node("MatMul", ["a", "W"], ["aw"]),
        helper.make_node("Cast", ["b"], ["bf"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["bf", "axis1"], ["bcol"]),
        helper.make_node("Add", ["aw", "bcol"], ["pre"]),
        helper.make_node("Relu", ["pre"], ["y"]),
        helper.make_node("ReduceSum", ["a", "axis1"], ["sum"], keepdims=0),
        helper.make_node("Mul", ["sum", "two"], ["s"]),
    ]
    graph = helper.make_graph(
        nodes, "two_in_two_out",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", 4]),
         helper.make_tensor_value_info("b", TensorProto.INT64, ["N"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3]),
         helper.make_tensor_value_info("s", TensorProto.FLOAT, ["N"])],
        [numpy_helper.from_array(w, "W"), numpy_helper.from_array(np.array([1], np.int64), "axis1"),
         numpy_helper.from_array(np.array(2, np.float32), "two")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, monkeypatch_module):
    # the driver's folder goes on the workers' sys.path: start from one that holds no onnxfast source tree
    monkeypatch_module.chdir(tmp_path_factory.mktemp("ray_driver"))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    try:
        from ray import serve

        serve.shutdown()
    except Exception:  # noqa: BLE001 - serve never started
        pass
    ray.shutdown()


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


@pytest.fixture(scope="module")
def model() -> bytes:
    return two_in_two_out_model()


@pytest.fixture(scope="module")
def table():
    rng = np.random.default_rng(7)
    a = rng.standard_normal((ROWS, 4)).astype(np.float32)
    b = rng.integers(-3, 4, ROWS).astype(np.int64)
    return {"id": np.arange(ROWS, dtype=np.int64), "a": a, "b": b}


def plain_loop(model: bytes, a: np.ndarray, b: np.ndarray, batch: int = 500) -> tuple[np.ndarray, np.ndarray]:
    sess = onnxfast.InferenceSession(model)
    ys, ss = [], []
    for lo in range(0, len(a), batch):
        y, s = sess.run(None, {"a": a[lo:lo + batch], "b": b[lo:lo + batch]})
        ys.append(y)
        ss.append(s)
    return np.concatenate(ys), np.concatenate(ss)


def dataset(table):
    frame = pd.DataFrame({"id": table["id"], "a": list(table["a"]), "b": table["b"]})
    # 20 blocks from the start: a repartition task would wait for a CPU that the actor pool holds
    return ray.data.from_pandas([frame.iloc[lo:lo + ROWS // 20] for lo in range(0, ROWS, ROWS // 20)])


@pytest.mark.parametrize("batch_format", ["numpy", "pandas", "pyarrow"])
def test_batch_inference_equals_plain_loop(cluster, model, table, batch_format):
    from onnxfast.integrations.ray import batch_inference

    out = batch_inference(dataset(table), model, num_actors=2, batch_size=500, batch_format=batch_format,
                          passthrough=["id"]).to_pandas()
    assert len(out) == ROWS
    out = out.sort_values("id")
    assert np.array_equal(out["id"].to_numpy(), table["id"])
    y = np.stack(out["y"].to_numpy())
    s = out["s"].to_numpy()
    want_y, want_s = plain_loop(model, table["a"], table["b"])
    assert y.dtype == np.float32 and s.dtype == np.float32
    np.testing.assert_array_equal(y, want_y)
    np.testing.assert_array_equal(s, want_s)


def test_renamed_and_stacked_columns(cluster, model, table):
    """input_map renames a column and stacks four scalar columns into one [rows, 4] input; float64 and
    int32 columns are cast (same kind); output_map renames an output."""
    from onnxfast.integrations.ray import batch_inference

    n = 1000
    a = table["a"][:n]
    frame = pd.DataFrame({f"f{i}": a[:, i].astype(np.float64) for i in range(4)})
    frame["bias"] = table["b"][:n].astype(np.int32)
    frame["id"] = np.arange(n)
    ds = ray.data.from_pandas(frame)
    out = batch_inference(ds, model, batch_size=128, batch_format="pandas",
                          input_map={"a": ["f0", "f1", "f2", "f3"], "b": "bias"},
                          output_map={"s": "score"}, output_names=["s"], passthrough=["id"]).to_pandas()
    out = out.sort_values("id")
    assert list(out.columns) == ["score", "id"] or set(out.columns) == {"score", "id"}
    _, want_s = plain_loop(model, a, table["b"][:n])
    np.testing.assert_allclose(out["score"].to_numpy(), want_s, rtol=1e-6, atol=1e-6)


def test_predictor_rejects_unknown_names(model):
    from onnxfast.integrations.ray import OnnxPredictor

    with pytest.raises(InvalidArgument, match="input_map names \\['x'\\]"):
        OnnxPredictor(model, input_map={"x": "col"})
    with pytest.raises(InvalidArgument, match="output_names \\['z'\\]"):
        OnnxPredictor(model, output_names=["z"])
    p = OnnxPredictor(model)
    with pytest.raises(InvalidArgument, match="model input 'b' reads column\\(s\\) \\['b'\\]"):
        p({"a": np.zeros((2, 4), np.float32)})
    with pytest.raises(InvalidArgument, match="column 'a' has element type <U1"):
        p({"a": np.array([["x"] * 4] * 2), "b": np.zeros(2, np.int64)})


def test_predictor_refuses_outputs_that_are_not_per_row():
    from onnxfast.integrations.ray import OnnxPredictor

    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["x"], ["total"], keepdims=0)], "whole_batch",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2])],
        [helper.make_tensor_value_info("total", TensorProto.FLOAT, [])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    with pytest.raises(InvalidArgument, match="output 'total' has shape \\[\\]"):
        OnnxPredictor(model)({"x": np.ones((3, 2), np.float32)})


# --- the model reaches each actor once; sessions use the actor's CPUs -------------------------------


@ray.remote(num_cpus=0)
class LoadLog:
    def __init__(self):
        self.loads = []
        self.batches = 0

    def loaded(self, pid, threads, model_type):
        self.loads.append((pid, threads, model_type))

    def batch(self):
        self.batches += 1

    def get(self):
        return self.loads, self.batches


def _counting_predictor():
    from onnxfast.integrations.ray import OnnxPredictor

    class CountingPredictor(OnnxPredictor):
        def __init__(self, model, **kwargs):
            import os

            super().__init__(model, **kwargs)
            ray.get(ray.get_actor("onnxfast_load_log").loaded.remote(os.getpid(), self.intra_op_num_threads,
                                                                     type(model).__name__))

        def __call__(self, batch):
            ray.get(ray.get_actor("onnxfast_load_log").batch.remote())
            return super().__call__(batch)

    return CountingPredictor


@pytest.mark.parametrize("actors,cpus", [(2, 1), (1, 2)])
def test_model_sent_once_per_actor_and_threads_follow_cpus(cluster, model, table, actors, cpus):
    from onnxfast.integrations.ray import model_ref

    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    log = LoadLog.options(name="onnxfast_load_log").remote()
    try:
        ref = model_ref(model)
        ds = dataset(table)
        out = ds.map_batches(_counting_predictor(), fn_constructor_kwargs={"model": ref}, batch_size=500,
                             num_cpus=cpus, compute=ray.data.ActorPoolStrategy(size=actors)).to_pandas()
        assert len(out) == ROWS
        loads, batches = ray.get(log.get.remote())
    finally:
        ray.kill(log)
        ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert batches >= 20  # many batches ...
    assert len(loads) == actors  # ... and the model fetched once per actor
    assert len({pid for pid, _, _ in loads}) == actors
    assert {t for _, t, _ in loads} == {cpus}  # each session's threads = its actor's CPUs
    assert {m for _, _, m in loads} == {"ObjectRef"}  # the actor got a reference, not a copy per task


def test_threads_outside_ray_follow_options(model):
    from onnxfast.integrations.ray import OnnxPredictor

    assert OnnxPredictor(model, intra_op_num_threads=3).intra_op_num_threads == 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def serve_port(cluster) -> int:
    """Serve's HTTP proxy on a free port (one per cluster: Serve keeps the first port it started on)."""
    from ray import serve

    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    return port


# --- the README's two examples, run as written (paths and sizes fitted to this 2-CPU cluster) ------------


def _readme_blocks() -> list[str]:
    import pathlib
    import re

    readme = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Scale out on Ray", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_readme_examples_run(cluster, serve_port, tmp_path, monkeypatch):
    from onnx import TensorProto, helper

    batch_code, serve_code = _readme_blocks()
    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["input", "axes"], ["total"], keepdims=0)], "readme",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("total", TensorProto.FLOAT, ["N"])],
        [numpy_helper.from_array(np.array([1], np.int64), "axes")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    (tmp_path / "model.onnx").write_bytes(model.SerializeToString())
    frame = pd.DataFrame({"f0": np.arange(100, dtype=np.float32), "f1": 1.0, "f2": 2.0, "id": np.arange(100)})
    (tmp_path / "features").mkdir()
    frame.to_parquet(tmp_path / "features" / "part0.parquet")
    monkeypatch.chdir(tmp_path)

    # relative paths resolve in Ray's workers, whose folder is not this one: make them absolute
    batch_code = batch_code.replace('"features/"', repr(str(tmp_path / "features"))).replace(
        '"predictions/"', repr(str(tmp_path / "predictions"))).replace('"model.onnx"', repr(str(tmp_path / "model.onnx")))
    exec(batch_code.replace("ray.init()", "assert ray.is_initialized()")
         .replace("num_actors=4, num_cpus_per_actor=2", "num_actors=1, num_cpus_per_actor=1"), {})
    got = ray.data.read_parquet(str(tmp_path / "predictions")).to_pandas().sort_values("id")
    np.testing.assert_array_equal(got["total"].to_numpy(), np.arange(100, dtype=np.float32) + 3)

    from ray import serve

    port = serve_port
    printed = []
    try:
        exec(serve_code.replace("http://127.0.0.1:8000/", f"http://127.0.0.1:{port}/")
             .replace("num_replicas=2", "num_replicas=1"), {"print": printed.append})
    finally:
        serve.delete("default")
    assert printed[0] == {"total": [pytest.approx(0.6)]}
    assert printed[1]["total"].tolist() == [0.0]


# --- Ray Serve ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(serve_port, model):
    from ray import serve

    from onnxfast.integrations.ray import serve_app

    port = serve_port
    handle = serve.run(serve_app(model, max_batch_size=32, batch_wait_timeout_s=0.02), name="onnxfast_test",
                       route_prefix="/model")
    yield handle, f"http://127.0.0.1:{port}/model"
    serve.delete("onnxfast_test")


def test_serve_answers_200_concurrent_requests_with_batching(served, model):
    import requests

    handle, url = served
    rng = np.random.default_rng(3)
    reqs = []
    for _ in range(200):
        n = int(rng.integers(1, 4))
        reqs.append((rng.standard_normal((n, 4)).astype(np.float32), rng.integers(-3, 4, n).astype(np.int64)))
    sess = onnxfast.InferenceSession(model)

    def post(req):
        a, b = req
        r = requests.post(url, json={"inputs": {"a": a.tolist(), "b": b.tolist()}}, timeout=60)
        return r.status_code, r.json()

    with concurrent.futures.ThreadPoolExecutor(max_workers=64) as pool:
        answers = list(pool.map(post, reqs))
    for (a, b), (status, body) in zip(reqs, answers):
        assert status == 200, body
        want_y, want_s = sess.run(None, {"a": a, "b": b})
        np.testing.assert_allclose(np.array(body["outputs"]["y"], np.float32), want_y, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(np.array(body["outputs"]["s"], np.float32), want_s, rtol=1e-6, atol=1e-6)
    stats = handle.stats.remote().result()
    assert stats["requests"] >= 200
    assert stats["largest_batch"] > 1 and stats["stacked_runs"] >= 1  # requests were batched
    assert stats["intra_op_num_threads"] == 1  # the replica's one CPU


def test_serve_malformed_request_gets_error_and_replica_goes_on(served):
    import requests

    handle, url = served
    good = {"inputs": {"a": [[1, 2, 3, 4]], "b": [1]}}
    bad = [
        ({"inputs": {"x": [[1, 2, 3, 4]], "b": [1]}}, "unknown input name"),
        ({"inputs": {"a": [[1, 2, 3]], "b": [1]}}, "axis 1"),
        ({"inputs": {"a": [["p", "q", "r", "s"]], "b": [1]}}, "not a rectangular array"),
        ({"inputs": {"a": [[1, 2, 3, 4]]}}, "missing input 'b'"),
        ({"data": 1}, "must be"),
    ]
    for body, message in bad:
        r = requests.post(url, json=body, timeout=60)
        assert r.status_code == 400, r.text
        assert message in r.json()["error"]
        r = requests.post(url, json=good, timeout=60)
        assert r.status_code == 200, r.text
        assert r.json()["outputs"]["s"] == [20.0]
    r = requests.post(url, data=b"{not json", timeout=60)
    assert r.status_code == 400
    # the handle API: arrays in and out, InvalidArgument for a bad request
    out = handle.predict.remote({"a": np.ones((2, 4), np.float32), "b": np.zeros(2, np.int64)}).result()
    np.testing.assert_array_equal(out["s"], [8.0, 8.0])
    with pytest.raises(InvalidArgument, match="element type float64"):
        handle.predict.remote({"a": np.ones((2, 4)), "b": np.zeros(2, np.int64)}).result()
    handle.check_health.remote().result()
    assert handle.predict.remote({"a": np.ones((1, 4), np.float32), "b": np.ones(1, np.int64)}).result()["s"][0] == 8


def test_serve_mixed_batch_isolates_the_bad_request(model):
    """Inside one batch, a malformed request and a request whose run fails get their own errors while the
    rest are answered (exercised directly on the batching logic, without a cluster)."""
    from onnxfast.integrations.ray import OnnxServer, _Failure

    server = OnnxServer(model)
    ok1 = {"a": np.ones((2, 4), np.float32), "b": np.zeros(2, np.int64)}
    ok2 = {"a": np.full((1, 4), 2, np.float32), "b": np.ones(1, np.int64)}
    bad = {"a": np.ones((2, 5), np.float32), "b": np.zeros(2, np.int64)}
    results = server._run_requests([ok1, bad, ok2])
    assert isinstance(results[1], _Failure) and "axis 1" in str(results[1].error)
    np.testing.assert_array_equal(results[0]["s"], [8, 8])
    np.testing.assert_array_equal(results[2]["s"], [16])
    assert server.stats()["stacked_runs"] == 1 and server.stats()["errors"] == 1

