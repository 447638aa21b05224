"""A test provider on its own device claims part of a graph: the planner partitions, inserts copies at
the device boundaries, and outputs are unchanged. The provider is _core's TestDeviceExecutionProvider
(csrc/kernels/test_device.cpp): its own allocator (host memory filled with a pattern, every block
counted), its own copy functions and its own kernels declared in the registry under its name; nothing
in the planner, executor or session names it, as a CUDA provider would come in."""

import numpy as np
import pytest
from onnx_helpers import F, make_model, session, vi
from onnx import helper

import onnxfast
from onnxfast import _core
from onnxfast.providers import NativeDeviceProvider, register_provider, unregister_provider


class DeviceUnderTest(NativeDeviceProvider):
    name = "TestDeviceExecutionProvider"
    known_options = frozenset({"ops"})

    def claims(self, node, native_available):
        return node.op_type in self.options.get("ops", "Relu,Mul").split(",")


@pytest.fixture
def fake_provider():
    register_provider(DeviceUnderTest)
    yield DeviceUnderTest.name
    unregister_provider(DeviceUnderTest.name)


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
    dev = _core.device_id(fake_provider)
    assert dev > 0
    assert ("MemcpyToDevice", 0, dev) in kinds and ("MemcpyFromDevice", dev, 0) in kinds
    assert ("Relu", dev, dev) in kinds


def test_provider_options_reach_the_provider(fake_provider, rng):
    s = session(model(), sess_options=basic(), providers=[(fake_provider, {"ops": "Add"}), "CPUExecutionProvider"])
    assert s.get_provider_options()[fake_provider] == {"ops": "Add"}
    listing = {r["node"]: r["provider"] for r in s.kernel_listing()}
    assert listing["add"] == fake_provider and listing["relu1"] == "CPUExecutionProvider"
    x = rng.standard_normal((2, 4)).astype(np.float32)
    np.testing.assert_array_equal(s.run(None, {"x": x})[0], session(model()).run(None, {"x": x})[0])


def test_device_memory_comes_from_the_provider_allocator(fake_provider, rng):
    """Device steps' outputs are allocated by the provider's allocator and released after the run; the
    copies move the bytes through its copy functions (a missing copy would read its 0xA5 pattern)."""
    s = session(model(), sess_options=basic(), providers=[fake_provider, "CPUExecutionProvider"])
    x = rng.standard_normal((6, 4)).astype(np.float32)
    before = _core.device_stats(fake_provider)
    out = s.run(None, {"x": x})
    after = _core.device_stats(fake_provider)
    np.testing.assert_array_equal(out[0], session(model()).run(None, {"x": x})[0])
    # relu1, mul, relu2 outputs and the copies into the device (h, two, h3): 6 blocks
    assert after["allocations"] - before["allocations"] == 6
    assert after["releases"] - before["releases"] == 6 and after["live_bytes"] == before["live_bytes"]
    n = 6 * 3 * 4  # one (6, 3) float32 value
    assert after["bytes_to_device"] - before["bytes_to_device"] == 2 * n + 4  # h, h3, the scalar 'two'
    assert after["bytes_to_host"] - before["bytes_to_host"] == 3 * n  # h2, y, h1


def test_device_provider_takes_only_what_its_kernels_declare(fake_provider, rng):
    """The test device declares float32 Relu / Mul / Add / MatMul; asked to take Softmax too, it cannot,
    and the CPU runs it."""
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("Softmax", ["r"], ["y"], name="sm", axis=-1)]
    m = make_model(nodes, [vi("x", F, [2, 5])], [vi("y", F, [2, 5])])
    s = session(m, providers=[(fake_provider, {"ops": "Relu,Softmax"}), "CPUExecutionProvider"])
    listing = {r["node"]: r["provider"] for r in s.kernel_listing()}
    assert listing["relu"] == fake_provider and listing["sm"] == "CPUExecutionProvider"
    x = rng.standard_normal((2, 5)).astype(np.float32)
    np.testing.assert_allclose(s.run(None, {"x": x})[0], session(m).run(None, {"x": x})[0], rtol=1e-6)
    defs = {(d["op_type"], d["provider"]) for d in _core.kernel_defs()}
    assert ("Relu", fake_provider) in defs and ("Softmax", fake_provider) not in defs


def test_provider_without_a_device_is_refused():
    class NoDevice(NativeDeviceProvider):
        name = "NoSuchDeviceExecutionProvider"

    register_provider(NoDevice)
    try:
        with pytest.raises(onnxfast.errors.InvalidArgument, match="registers no device allocator"):
            session(model(), providers=[NoDevice.name])
    finally:
        unregister_provider(NoDevice.name)
