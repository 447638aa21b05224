"""onnx's BackendTest drives onnxfast through onnxfast.backend (the data-set suites; node cases
are covered by the conformance runner)."""

import numpy as np
import onnx
import onnx.backend.test
from onnx import helper

import onnxfast.backend as backend

backend_test = onnx.backend.test.BackendTest(backend, __name__)
backend_test.include(r"^test_(Conv2d|Linear|ReLU|Softmax|MaxPool2d|BatchNorm2d_eval|operator_add_broadcast|"
                     r"single_relu_model|sequence_model1|expand_shape_model1)")
backend_test.exclude(r"_cuda")
globals().update(backend_test.test_cases)


def test_run_node_and_prepare():
    node = helper.make_node("Add", ["a", "b"], ["c"])
    a = np.arange(3, dtype=np.float32)
    (c,) = backend.run_node(node, [a, a])
    np.testing.assert_array_equal(c, 2 * a)
    assert backend.supports_device("CPU") and not backend.supports_device("CUDA")
    m = helper.make_model(helper.make_graph([node], "g",
                                            [helper.make_tensor_value_info("a", 1, [3]),
                                             helper.make_tensor_value_info("b", 1, [3])],
                                            [helper.make_tensor_value_info("c", 1, [3])]))
    assert backend.is_compatible(m)
    np.testing.assert_array_equal(backend.prepare(m).run([a, a])[0], 2 * a)
