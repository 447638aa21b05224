// The Python side of the executor (py_executor.h): numpy <-> tensor, Python host objects and
// steps, the feed dict, outputs, profile events and error classes.
#include "py_executor.h"

#include <algorithm>
#include <cstring>
#include <exception>
#include <unordered_map>

#include "../core/errors.h"

namespace onnxfast {

namespace {

std::unordered_map<int, int>& num_to_code() {
  static auto* m = new std::unordered_map<int, int>();
  return *m;
}
PyObject* g_code_dtype[kMaxDType] = {nullptr};  // owned forever
PyObject* g_error_hook = nullptr;
PyObject* g_error_classes[16] = {nullptr};

// A Python object carried by the executor; dropped under the GIL from whatever thread.
class PyObjectRef : public HostObject {
 public:
  explicit PyObjectRef(py::object o) : p_(o.release().ptr()) {}
  ~PyObjectRef() override { release_py_owner(p_); }
  py::object get() const { return py::reinterpret_borrow<py::object>(p_); }

 private:
  PyObject* p_;
};

py::object object_of(const Value& v) {
  auto* ref = dynamic_cast<const PyObjectRef*>(v.obj.get());
  if (!ref) fail(ErrorKind::kRuntime, "internal error: a non-Python host object reached Python");
  return ref->get();
}

}  // namespace

void release_py_owner(PyObject* owner) {
  if (!owner || !Py_IsInitialized()) return;
  PyGILState_STATE st = PyGILState_Ensure();
  Py_DECREF(owner);
  PyGILState_Release(st);
}

void register_numpy_dtype(py::dtype dt, int code, const std::string& name) {
  num_to_code()[dt.num()] = code;
  if (code > 0 && code < kMaxDType) {
    if (!g_code_dtype[code]) {
      g_code_dtype[code] = dt.ptr();
      Py_INCREF(dt.ptr());
    }
    if (code != kString) set_dtype_itemsize(code, static_cast<size_t>(dt.itemsize()));
    set_dtype_name(code, name);
  }
}

py::object numpy_dtype_for(int code) {
  if (code <= 0 || code >= kMaxDType || !g_code_dtype[code])
    fail(ErrorKind::kInvalidType, "no numpy dtype registered for element type " + std::to_string(code));
  return py::reinterpret_borrow<py::object>(g_code_dtype[code]);
}

int dtype_code_of(py::handle arr) {
  auto* proxy = py::detail::array_proxy(arr.ptr());
  auto* descr = py::detail::array_descriptor_proxy(proxy->descr);
  auto it = num_to_code().find(descr->type_num);
  if (it == num_to_code().end()) return -1;
  return it->second;
}

static PyObject* PyArray_FromAny_proxy(py::handle obj) {
  static PyObject* asarray = py::object(py::module_::import("numpy").attr("asarray")).release().ptr();
  PyObject* r = PyObject_CallOneArg(asarray, obj.ptr());
  if (!r) throw py::error_already_set();
  return r;
}

bool numpy_to_tensor(py::handle obj, Tensor& t, bool copy_if_needed) {
  py::array arr;
  if (py::isinstance<py::array>(obj)) {
    arr = py::reinterpret_borrow<py::array>(obj);
  } else {
    // numpy scalars (np.float32(1), results of reductions) are 0-d tensors
    static PyObject* generic = py::object(py::module_::import("numpy").attr("generic")).release().ptr();
    if (!PyObject_IsInstance(obj.ptr(), generic)) return false;
    arr = py::reinterpret_steal<py::array>(PyArray_FromAny_proxy(obj));
  }
  int code = dtype_code_of(arr);
  if (code <= 0 || code == kString || dtype_itemsize(code) == 0) return false;
  auto* proxy = py::detail::array_proxy(arr.ptr());
  auto* descr = py::detail::array_descriptor_proxy(proxy->descr);
  constexpr int kContig = py::detail::npy_api::NPY_ARRAY_C_CONTIGUOUS_;
  constexpr int kAligned = py::detail::npy_api::NPY_ARRAY_ALIGNED_;
  bool ok = (proxy->flags & kContig) && (proxy->flags & kAligned) && descr->byteorder != '>';
  if (!ok) {
    if (!copy_if_needed) return false;
    py::object np = py::module_::import("numpy");
    arr = np.attr("ascontiguousarray")(arr, numpy_dtype_for(code));
    proxy = py::detail::array_proxy(arr.ptr());
  }
  auto s = std::make_shared<Storage>();
  s->data = proxy->data;
  s->owner = arr.ptr();
  Py_INCREF(arr.ptr());
  s->nbytes = 0;
  t.storage = std::move(s);
  t.data = proxy->data;
  t.dtype = code;
  t.device = 0;
  t.shape.assign(proxy->dimensions, proxy->dimensions + proxy->nd);
  return true;
}

py::object tensor_to_numpy(const Tensor& t, bool readonly_view, bool force_copy) {
  py::dtype dt = py::reinterpret_borrow<py::dtype>(numpy_dtype_for(t.dtype));
  std::vector<py::ssize_t> shape(t.shape.begin(), t.shape.end());
  if (force_copy || (t.storage && t.storage->external && !readonly_view)) {
    py::array out(dt, shape);
    if (t.nbytes()) std::memcpy(out.mutable_data(), t.data, t.nbytes());
    return std::move(out);
  }
  if (t.storage && t.storage->owner) {
    py::array owner = py::reinterpret_borrow<py::array>(t.storage->owner);
    auto* proxy = py::detail::array_proxy(owner.ptr());
    bool same = proxy->data == t.data && proxy->nd == static_cast<int>(t.shape.size()) &&
                std::equal(t.shape.begin(), t.shape.end(), proxy->dimensions) && dtype_code_of(owner) == t.dtype;
    // Views handed to kernels are read-only; a kernel output that is such a view (Identity,
    // Reshape of an input) is copied before it reaches the user, who gets a writeable array.
    bool writeable = proxy->flags & py::detail::npy_api::NPY_ARRAY_WRITEABLE_;
    if (!readonly_view && !writeable) {
      py::array out(dt, shape);
      if (t.nbytes()) std::memcpy(out.mutable_data(), t.data, t.nbytes());
      return std::move(out);
    }
    if (same && !readonly_view) return std::move(owner);
    py::array view(dt, shape, {}, t.data, owner);
    if (readonly_view) py::detail::array_proxy(view.ptr())->flags &= ~py::detail::npy_api::NPY_ARRAY_WRITEABLE_;
    return std::move(view);
  }
  auto* holder = new std::shared_ptr<Storage>(t.storage);
  py::capsule base(holder, [](void* p) { delete static_cast<std::shared_ptr<Storage>*>(p); });
  py::array view(dt, shape, {}, t.data, base);
  if (readonly_view) py::detail::array_proxy(view.ptr())->flags &= ~py::detail::npy_api::NPY_ARRAY_WRITEABLE_;
  return std::move(view);
}

Value value_from_py(py::handle obj, bool external) {
  Tensor t;
  if (numpy_to_tensor(obj, t, true)) {
    t.storage->external = external;
    return Value::of_tensor(std::move(t));
  }
  return Value::of_object(std::make_shared<PyObjectRef>(py::reinterpret_borrow<py::object>(obj)));
}

py::object value_to_py(const Value& v, bool readonly_view) {
  if (v.kind == Value::kTensor) return tensor_to_numpy(v.t, readonly_view, false);
  if (v.kind == Value::kObject) return object_of(v);
  return py::none();
}

void set_error_hook(py::object hook) {
  Py_XDECREF(g_error_hook);
  g_error_hook = hook.release().ptr();
}

void set_error_classes(py::dict classes) {
  static const char* names[] = {"InvalidArgument", "InvalidType", "NotImplemented", "Allocation", "Index",
                                "ZeroDivision",    "Overflow",    "Terminated",     "Runtime",    "InvalidModel"};
  for (int i = 0; i < 10; ++i) {
    if (classes.contains(names[i])) {
      PyObject* c = classes[names[i]].ptr();
      Py_INCREF(c);
      Py_XDECREF(g_error_classes[i]);
      g_error_classes[i] = c;
    }
  }
}

void register_error_translator() {
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const Error& e) {
      int k = static_cast<int>(e.kind());
      PyObject* cls = g_error_classes[k];
      if (!cls) cls = PyExc_RuntimeError;
      PyErr_SetString(cls, e.what());
    } catch (const std::bad_alloc&) {
      PyObject* cls = g_error_classes[static_cast<int>(ErrorKind::kAllocation)];
      PyErr_SetString(cls ? cls : PyExc_MemoryError, "out of memory");
    }
  });
}

// ---- Python steps --------------------------------------------------------------------------

namespace {

class PythonStep : public HostStep {
 public:
  explicit PythonStep(py::object fn) : fn_(std::move(fn)) {}

  void run(const Step& st, RunState& r) override {
    py::gil_scoped_acquire gil;
    r.deferred.clear();  // numpy-owned buffers that died since the last Python step
    py::tuple args(st.inputs.size());
    for (size_t k = 0; k < st.inputs.size(); ++k) {
      int v = st.inputs[k];
      if (v < 0) {
        args[k] = py::none();
        continue;
      }
      const Value& val = r.get(v);
      if (val.kind == Value::kTensor && val.t.device != 0)
        fail(ErrorKind::kRuntime, st.op_type + " '" + st.name + "': input on device " +
                                      std::to_string(val.t.device) + " given to a host kernel (missing copy)");
      args[k] = value_to_py(val, true);
    }
    py::object res;
    try {
      res = fn_.get()(*args);
    } catch (py::error_already_set& e) {
      if (g_error_hook) {
        py::object hook = py::reinterpret_borrow<py::object>(g_error_hook);
        py::object newexc = hook(e.value(), st.name, st.op_type);
        if (!newexc.is_none()) {
          PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(newexc.ptr())), newexc.ptr());
          throw py::error_already_set();
        }
      }
      throw;
    }
    size_t nout = st.outputs.size();
    if (nout == 1) {
      if (st.outputs[0] >= 0) r.at(st.outputs[0]) = value_from_py(res, false);
    } else {
      py::sequence seq = py::reinterpret_borrow<py::sequence>(res);
      size_t got = static_cast<size_t>(py::len(seq));
      for (size_t k = 0; k < nout; ++k) {
        int o = st.outputs[k];
        if (o < 0) continue;
        if (k >= got)
          fail(ErrorKind::kRuntime, st.op_type + " '" + st.name + "': kernel returned " + std::to_string(got) +
                                        " outputs, output " + std::to_string(k) + " is needed");
        py::object item = seq[k];
        if (item.is_none()) r.at(o) = Value();  // an omitted optional output
        else r.at(o) = value_from_py(item, false);
      }
    }
    release_host_objects(st, r);
  }

 private:
  PyObjectRef fn_;  // released under the GIL whichever thread drops the plan
};

void set_input(const Plan& plan, RunState& r, const InputSpec& spec, py::handle v) {
  Value& slot = r.at(spec.value);
  if (v.is_none()) {
    if (spec.optional) {
      slot = value_from_py(v, true);
      return;
    }
    fail(ErrorKind::kInvalidType, "input '" + spec.name + "' is None, but it is not an optional input");
  }
  if (!spec.is_tensor) {
    slot = Value::of_object(std::make_shared<PyObjectRef>(py::reinterpret_borrow<py::object>(v)));
    return;
  }
  py::object arr = py::reinterpret_borrow<py::object>(v);
  if (!py::isinstance<py::array>(arr)) {
    py::object np = py::module_::import("numpy");
    if (py::isinstance(arr, np.attr("generic"))) {
      arr = np.attr("asarray")(arr);
    } else {
      std::string tn = py::str(py::type::of(arr).attr("__name__"));
      fail(ErrorKind::kInvalidType, "input '" + spec.name + "' must be a numpy array, got " + tn);
    }
  }
  int code = dtype_code_of(arr);
  if (spec.dtype == kString && code != kString &&
      std::string(py::str(arr.attr("dtype").attr("kind"))) == "U") {  // numpy str arrays, as onnxruntime takes them
    arr = arr.attr("astype")(py::module_::import("numpy").attr("dtype")("O"));
    code = kString;
  }
  if (spec.dtype > 0 && code != spec.dtype)
    plan.check_input_type(spec, code, code > 0 ? "tensor(" + dtype_name(code) + ")"
                                               : "numpy dtype " + std::string(py::str(arr.attr("dtype"))));
  if (spec.has_shape) {
    py::array a = py::reinterpret_borrow<py::array>(arr);
    plan.check_input_shape(spec, Shape(a.shape(), a.shape() + a.ndim()));
  }
  if (code == kString || code <= 0) {
    slot = Value::of_object(std::make_shared<PyObjectRef>(arr));
  } else {
    Tensor t;
    numpy_to_tensor(arr, t, true);
    t.storage->external = true;
    slot = Value::of_tensor(std::move(t));
  }
}

py::list collect(const RunState& r, const std::vector<int>& outs) {
  py::list result(outs.size());
  std::vector<const Storage*> handed;  // outputs that share a buffer (views) each get their own copy
  for (size_t i = 0; i < outs.size(); ++i) {
    const Value& v = r.get(outs[i]);
    if (v.kind == Value::kTensor) {
      if (v.t.device != 0)
        fail(ErrorKind::kRuntime, "internal error: graph output on device " + std::to_string(v.t.device));
      const Storage* st = v.t.storage.get();
      const bool shared = st && std::find(handed.begin(), handed.end(), st) != handed.end();
      if (st) handed.push_back(st);
      result[i] = tensor_to_numpy(v.t, false, shared);
    } else {
      result[i] = value_to_py(v, false);
    }
  }
  return result;
}

// Runs the plan with the GIL released; the state (and the numpy buffers it defers) is released
// by the caller, with the GIL held.
void execute_released(Plan& plan, RunState& r, const std::vector<int>& outs, RunOptions* ro) {
  std::exception_ptr err;
  {
    py::gil_scoped_release release;
    try {
      plan.execute(r, outs, ro);
    } catch (...) {
      err = std::current_exception();
    }
  }
  if (err) std::rethrow_exception(err);
}

std::vector<std::string> feed_names(const py::dict& fd) {
  std::vector<std::string> keys;
  for (auto k : fd) keys.push_back(py::str(k.first).cast<std::string>());
  return keys;
}

}  // namespace

void release_host_objects(const Step& st, RunState& r) {
  for (int v : st.release) {
    Value& dv = r.at(v);
    if (dv.kind == Value::kObject) dv = Value();
  }
}

std::shared_ptr<HostStep> python_step(py::object fn) { return std::make_shared<PythonStep>(std::move(fn)); }

py::list run_plan(Plan& plan, py::object output_names, py::object feed, py::object run_options) {
  RunOptions* ro = run_options.is_none() ? nullptr : run_options.cast<RunOptions*>();
  const std::vector<int> outs = output_names.is_none()
                                    ? plan.all_output_values()
                                    : plan.output_values(output_names.cast<std::vector<std::string>>());
  if (!py::isinstance<py::dict>(feed)) {
    std::string tn = py::str(py::type::of(feed).attr("__name__"));
    fail(ErrorKind::kInvalidType, "input_feed must be a dict of input name -> numpy array, got " + tn);
  }
  py::dict fd = py::reinterpret_borrow<py::dict>(feed);
  RunState r = plan.new_run();
  const auto& specs = plan.inputs();
  size_t fed = 0;
  std::vector<bool> given(specs.size(), false);
  for (auto item : fd) {
    std::string n = py::cast<std::string>(item.first);
    int pos = plan.input_position(n);
    if (pos < 0)
      fail(ErrorKind::kInvalidArgument, "unknown input name '" + n + "'; the model's inputs are " +
                                            names_list(plan.input_names()) + " (input feed: " +
                                            names_list(feed_names(fd)) + ")");
    given[pos] = true;
    ++fed;
    set_input(plan, r, specs[pos], item.second);
  }
  if (fed < specs.size()) plan.complete_inputs(r, given, feed_names(fd));
  execute_released(plan, r, outs, ro);
  return collect(r, outs);
}

py::list run_plan_positional(Plan& plan, py::sequence inputs) {
  const auto& specs = plan.inputs();
  if (static_cast<size_t>(py::len(inputs)) != specs.size())
    fail(ErrorKind::kInvalidArgument, "subgraph expects " + std::to_string(specs.size()) + " inputs, got " +
                                          std::to_string(py::len(inputs)));
  RunState r = plan.new_run();
  size_t n = 0;
  for (auto h : inputs) {
    const InputSpec& s = specs[n++];
    if (h.is_none() && !s.optional) continue;  // unset optional values inside subgraphs stay empty
    r.at(s.value) = value_from_py(h, true);
  }
  execute_released(plan, r, plan.all_output_values(), current_run_options());
  return collect(r, plan.all_output_values());
}

py::list profile_events(Plan& plan) {
  std::vector<ProfileEvent> evs = plan.take_profile();
  py::list out;
  auto shapes = [](const std::vector<Shape>& ss) {
    py::list l;
    for (auto& s : ss) l.append(py::cast(s));
    return l;
  };
  for (auto& e : evs) {
    py::dict d;
    d["step"] = e.step;
    d["ts_ns"] = e.ts_ns;
    d["dur_ns"] = e.dur_ns;
    d["tid"] = e.thread_id;
    d["in_shapes"] = shapes(e.in_shapes);
    d["out_shapes"] = shapes(e.out_shapes);
    d["in_dtypes"] = py::cast(e.in_dtypes);
    d["out_dtypes"] = py::cast(e.out_dtypes);
    out.append(d);
  }
  return out;
}

}  // namespace onnxfast
