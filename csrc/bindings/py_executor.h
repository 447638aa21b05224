// The Python side of the executor: numpy arrays <-> tensors, Python objects as HostObjects, numpy
// kernels and control flow as HostSteps, run() / run_positional() over a feed dict, error classes.
// The executor itself (csrc/core/executor.*) knows none of this.
#pragma once
#include <pybind11/pybind11.h>
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include "../core/executor.h"

namespace onnxfast {

namespace py = pybind11;

// dtype registry shared with Python
void register_numpy_dtype(py::dtype dt, int code, const std::string& name);
bool numpy_to_tensor(py::handle obj, Tensor& t, bool copy_if_needed);  // false: not a native-typed array
py::object tensor_to_numpy(const Tensor& t, bool readonly_view, bool force_copy);
py::object numpy_dtype_for(int code);
int dtype_code_of(py::handle arr);  // -1 when unknown

// A Python value as an executor value: numeric arrays become tensors (no copy), anything else
// (strings, sequences, maps, None) is kept as a host object. `external`: user- or model-owned.
Value value_from_py(py::handle obj, bool external);

// An executor value as Python: a tensor as a numpy array (read-only view if asked), a host
// object as itself, an empty value as None.
py::object value_to_py(const Value& v, bool readonly_view = true);
// The host objects among the step's dead values, dropped while the GIL is held (a host step's last act;
// the executor releases the tensors).
void release_host_objects(const Step& st, RunState& r);
// A numpy kernel or a control-flow callable as a plan step.
std::shared_ptr<HostStep> python_step(py::object fn);

// Plan.run(output_names or None, feed dict, RunOptions or None) -> list of outputs.
py::list run_plan(Plan& plan, py::object output_names, py::object feed, py::object run_options);
// A nested plan (control-flow body): inputs in declared order, all outputs returned.
py::list run_plan_positional(Plan& plan, py::sequence inputs);
py::list profile_events(Plan& plan);

void set_error_hook(py::object hook);
void set_error_classes(py::dict classes);
void register_error_translator();
// Releases a Storage's numpy owner (installed as the tensors' owner-release hook).
void release_py_owner(PyObject* owner);

}  // namespace onnxfast
