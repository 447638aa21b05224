"""onnx.backend interface, so onnx's own BackendTest (and any tool built on it) drives onnxfast.

    import onnxfast.backend as backend
    rep = backend.prepare(model)           # an InferenceSession behind a BackendRep
    outputs = rep.run([x])
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np
import onnx
from onnx import helper
from onnx.backend.base import Backend, BackendRep

from . import dtypes
from .session import InferenceSession


class OnnxfastBackendRep(BackendRep):
    def __init__(self, session: InferenceSession):
        self.session = session
        self._input_names = [i.name for i in session.get_inputs()]
        self._output_names = [o.name for o in session.get_outputs()]
        self._Outputs = namedtuple("Outputs", [f"o{i}" for i in range(len(self._output_names))], rename=True)

    def run(self, inputs, **kwargs):
        if isinstance(inputs, dict):
            feed = dict(inputs)
        else:
            if isinstance(inputs, np.ndarray):
                inputs = [inputs]
            feed = dict(zip(self._input_names, inputs))
        return list(self.session.run(self._output_names, feed))


class OnnxfastBackend(Backend):
    @classmethod
    def supports_device(cls, device: str) -> bool:
        return device.upper() == "CPU"

    @classmethod
    def is_compatible(cls, model, device: str = "CPU", **kwargs) -> bool:
        if not cls.supports_device(device):
            return False
        try:
            InferenceSession(model)
        except Exception:  # noqa: BLE001 - any failure means "not compatible"
            return False
        return True

    @classmethod
    def prepare(cls, model, device: str = "CPU", **kwargs) -> OnnxfastBackendRep:
        if not cls.supports_device(device):
            raise ValueError(f"onnxfast runs on the CPU only, not on '{device}'")
        if isinstance(model, (str, bytes)):
            model = onnx.load_model_from_string(model) if isinstance(model, bytes) else onnx.load(model)
        return OnnxfastBackendRep(InferenceSession(model, kwargs.get("sess_options")))

    @classmethod
    def run_model(cls, model, inputs, device: str = "CPU", **kwargs):
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def run_node(cls, node, inputs, device: str = "CPU", outputs_info=None, **kwargs):
        """Run one NodeProto on numpy inputs (opset from kwargs['opset_version'] or the latest)."""
        opset = kwargs.get("opset_version", onnx.defs.onnx_opset_version())
        in_vis = []
        for name, x in zip(node.input, inputs):
            if name:
                arr = np.asarray(x)
                in_vis.append(helper.make_tensor_value_info(name, dtypes.onnx_code(arr.dtype), list(arr.shape)))
        out_vis = [helper.make_value_info(o, onnx.TypeProto()) for o in node.output if o]
        graph = helper.make_graph([node], "run_node", in_vis, out_vis)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid(node.domain or "", opset)])
        feed = {n: x for n, x in zip(node.input, inputs) if n}
        sess = InferenceSession(model)
        return sess.run(None, feed)


prepare = OnnxfastBackend.prepare
run_model = OnnxfastBackend.run_model
run_node = OnnxfastBackend.run_node
supports_device = OnnxfastBackend.supports_device
is_compatible = OnnxfastBackend.is_compatible
