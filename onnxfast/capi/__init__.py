"""onnxruntime's ``capi`` import paths, for code written against onnxruntime: its exception classes live
in :mod:`onnxfast.capi.onnxruntime_pybind11_state` as they do in onnxruntime."""
