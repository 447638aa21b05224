// Native kernels over Python-object values (string tensors, ZipMap's list of dicts): host steps
// whose work is C++ (py_object_kernels.cpp).
#pragma once
#include "py_executor.h"

namespace onnxfast {

// The _core functions that build them (onehot_strings_kernel, string_lookup_kernel,
// number_to_string_kernel, zipmap_kernel) and zipmap_rows for the numpy ZipMap.
void bind_object_kernels(py::module_& m);

// The map a dict fed for a map input is (InferenceSession.run's feed): str or int64 keys, sorted,
// float32-rounded values; the error names the input when the dict cannot be one.
py::dict map_feed_value(const std::string& name, int key_code, int value_code, const std::string& type_str,
                        py::handle value);

// [{labels[j]: p[i * c + j]} for each row i] (labels borrowed; the GIL held).
py::list zipmap_rows(PyObject* const* labels, int64_t c, const float* p, int64_t n);

}  // namespace onnxfast
