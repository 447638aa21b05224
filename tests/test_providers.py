"""A test-only provider on a fake device claims part of a graph: the planner partitions, inserts
copies at the device boundaries, and outputs are unchanged."""

import numpy as np
import pytest
from onnx_helpers import F, make_model, session, vi
from onnx import helper

import onnxfast
from onnxfast.providers import ExecutionProvider, register_provider, unregister_provider


class FakeDeviceProvider(ExecutionProvider):
    name = "OnnxfastTestFakeDeviceExecutionProvider"
    device = 1
    native_only = True
    known_options = frozenset({"ops"})

    def claims(self, node, native_available):
        ops = self.options.get("ops", "Relu,Mul").split(",")
        return native_available and node.op_type in ops


@pytest.fixture
def fake_provider():
    register_provider(FakeDeviceProvider)
    yield FakeDeviceProvider.name
    unregister_provider(FakeDeviceProvider.name)


def model():
    # x -> MatMul(w) -> Relu -> Mul(2) -> Add(b) -> Relu -> y ; Relu/Mul go to the fake device.
    return make_model(
        [
            helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
            helper.make_node("Relu", ["h"], ["h1"], name="relu1"),
            helper.make_node("Mul", ["h1", "two"], ["h2"], name="mul"),
            helper.make_node("Add", ["h2", "b"], ["h3"], name="add"),
            helper.make_node("Relu", ["h3"], ["y"], name="relu2"),
        ],
        [vi("x", F, ["n", 4])],
        [vi("y", F, ["n", 3]), vi("h1", F, ["n", 3])],
        initializers=[
            ("w", np.linspace(-1, 1, 12, dtype=np.float32).reshape(4, 3)),
            ("two", np.array(2, np.float32)),
            ("b", np.array([0.1, -0.2, 0.3], np.float32)),
        ],
    )


def basic():
    """Basic level: the extended fusions (MatMul + Relu -> FusedMatMul) run before partitioning and
    would merge relu1 into the MatMul; these tests are about the partition and its copies."""
    o = onnxfast.SessionOptions()
    o.graph_optimization_level = onnxfast.GraphOptimizationLevel.ORT_ENABLE_BASIC
    return o


def test_fake_device_partition_and_copies(fake_provider, rng):
    assert fake_provider in onnxfast.get_available_providers()
    x = rng.standard_normal((5, 4)).astype(np.float32)
    ref = session(model()).run(None, {"x": x})
    s = session(model(), sess_options=basic(), providers=[fake_provider, "CPUExecutionProvider"])
    assert s.get_providers() == [fake_provider, "CPUExecutionProvider"]
    out = s.run(None, {"x": x})
    for a, b in zip(out, ref):
        np.testing.assert_array_equal(a, b)
    listing = {r["node"]: r for r in s.kernel_listing()}
    assert listing["relu1"]["provider"] == fake_provider
    assert listing["mul"]["provider"] == fake_provider
    assert listing["relu2"]["provider"] == fake_provider
    assert listing["mm"]["provider"] == "CPUExecutionProvider"
    assert listing["add"]["provider"] == "CPUExecutionProvider"
    copies = [r["node"] for r in s.kernel_listing() if r["kernel"] == "native:copy"]
    # h into the device, the constant 'two' into the device, h2 back to the host, h3 in, y and h1 out.
    assert sorted(copies) == sorted([
        "MemcpyToDevice_h", "MemcpyToDevice_two", "MemcpyFromDevice_h2", "MemcpyToDevice_h3",
        "MemcpyFromDevice_y", "MemcpyFromDevice_h1",
    ])
    steps = s._plan.step_info()
    kinds = [(st["op_type"], st["in_device"], st["out_device"]) for st in steps]
    assert ("MemcpyToDevice", 0, 1) in kinds and ("MemcpyFromDevice", 1, 0) in kinds
    assert ("Relu", 1, 1) in kinds


def test_provider_options_reach_the_provider(fake_provider, rng):
    s = session(model(), sess_options=basic(), providers=[(fake_provider, {"ops": "Add"}), "CPUExecutionProvider"])
    assert s.get_provider_options()[fake_provider] == {"ops": "Add"}
    listing = {r["node"]: r["provider"] for r in s.kernel_listing()}
    assert listing["add"] == fake_provider and listing["relu1"] == "CPUExecutionProvider"
    x = rng.standard_normal((2, 4)).astype(np.float32)
    np.testing.assert_array_equal(s.run(None, {"x": x})[0], session(model()).run(None, {"x": x})[0])
