// Plan::run: feed validation, the step loop (native kernels / Python callbacks), outputs; numpy <-> tensor.
#include "executor.h"

#include <algorithm>
#include <cstring>
#include <exception>
#include <functional>
#include <thread>
#include <unordered_map>

#include "../cpu/cpu.h"
#include "errors.h"

namespace onnxfast {

namespace {

std::unordered_map<int, int>& num_to_code() {
  static auto* m = new std::unordered_map<int, int>();
  return *m;
}
PyObject* g_code_dtype[kMaxDType] = {nullptr};  // owned forever
PyObject* g_error_hook = nullptr;
PyObject* g_error_classes[16] = {nullptr};

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::string names_list(const std::vector<std::string>& names) {
  std::string s = "[";
  for (size_t i = 0; i < names.size(); ++i) {
    if (i) s += ", ";
    s += "'" + names[i] + "'";
  }
  return s + "]";
}


}  // namespace

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

// A Python value into a value slot: numeric arrays become tensors (no copy), anything else
// (strings, sequences, maps, None for an empty optional) is kept as a Python object.
static void assign_value(Value& slot, py::handle obj, bool external) {
  Tensor t;
  if (numpy_to_tensor(obj, t, true)) {
    t.storage->external = external;
    slot.kind = Value::kTensor;
    slot.t = std::move(t);
  } else {
    slot.kind = Value::kObject;
    slot.obj = py::reinterpret_borrow<py::object>(obj);
  }
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

// ---------------------------------------------------------------------------------------------

struct Plan::Run {
  std::vector<Value> vals;  // ids >= nconst
  size_t nconst = 0;
  const std::vector<Value>* consts = nullptr;
  Value& at(int id) { return vals[id - nconst]; }
  const Value& get(int id) const { return id < static_cast<int>(nconst) ? (*consts)[id] : vals[id - nconst]; }
};

void Plan::add_constant(int id, py::object value) {
  if (id != static_cast<int>(constants_.size()))
    fail(ErrorKind::kRuntime, "constants must be added in id order");
  Value v;
  assign_value(v, value, true);
  constants_.push_back(std::move(v));
}

void Plan::finalize(int num_values) {
  num_values_ = num_values;
  producer_.assign(num_values, -1);
  for (size_t i = 0; i < steps_.size(); ++i)
    for (int o : steps_[i].outputs)
      if (o >= 0) producer_[o] = static_cast<int>(i);
  // Lifetimes: a run value dies after its last reader, unless it is a graph output.
  std::vector<int> last(num_values, -1);
  for (size_t i = 0; i < steps_.size(); ++i)
    for (int v : steps_[i].inputs)
      if (v >= 0) last[v] = static_cast<int>(i);
  std::vector<bool> keep(num_values, false);
  for (auto& o : outputs_) keep[o.second] = true;
  for (size_t i = 0; i < steps_.size(); ++i) steps_[i].release.clear();
  for (int v = static_cast<int>(constants_.size()); v < num_values; ++v)
    if (last[v] >= 0 && !keep[v]) steps_[last[v]].release.push_back(v);
  // Outputs produced by nobody and never read are released at once.
  for (size_t i = 0; i < steps_.size(); ++i)
    for (int o : steps_[i].outputs)
      if (o >= 0 && last[o] < 0 && !keep[o]) steps_[i].release.push_back(o);
  all_outputs_.clear();
  for (auto& o : outputs_) all_outputs_.push_back(o.second);
  auto full = std::make_shared<std::vector<int>>();
  for (size_t i = 0; i < steps_.size(); ++i) full->push_back(static_cast<int>(i));
  full_order_ = std::move(full);
}

std::vector<std::string> Plan::input_names() const {
  std::vector<std::string> v;
  for (auto& i : inputs_)
    if (!i.has_default) v.push_back(i.name);
  return v;
}
std::vector<std::string> Plan::output_names() const {
  std::vector<std::string> v;
  for (auto& o : outputs_) v.push_back(o.first);
  return v;
}

// The step subset for a set of requested outputs. The cache holds shared pointers and the caller
// keeps its own reference for the whole run: another thread's run() may clear the (bounded) cache
// while this run still walks its order.
std::shared_ptr<const std::vector<int>> Plan::order_for(const std::vector<int>& outs) {
  if (outs == all_outputs_) return full_order_;
  std::lock_guard<std::mutex> lk(order_mu_);
  auto it = order_cache_.find(outs);
  if (it != order_cache_.end()) return it->second;
  std::vector<bool> need(steps_.size(), false);
  std::vector<int> stack;
  for (int v : outs)
    if (v >= 0 && producer_[v] >= 0) stack.push_back(producer_[v]);
  while (!stack.empty()) {
    int s = stack.back();
    stack.pop_back();
    if (need[s]) continue;
    need[s] = true;
    for (int v : steps_[s].inputs)
      if (v >= 0 && producer_[v] >= 0 && !need[producer_[v]]) stack.push_back(producer_[v]);
  }
  auto order = std::make_shared<std::vector<int>>();
  for (size_t i = 0; i < steps_.size(); ++i)
    if (need[i]) order->push_back(static_cast<int>(i));
  if (order_cache_.size() >= 64) order_cache_.clear();  // bounded; runs in flight keep their own copy
  order_cache_.emplace(outs, order);
  return order;
}

void Plan::set_input(Run& r, const InputSpec& spec, py::handle v) const {
  Value& slot = r.at(spec.value);
  if (v.is_none()) {
    if (spec.optional) {
      slot.kind = Value::kObject;
      slot.obj = py::none();
      return;
    }
    fail(ErrorKind::kInvalidType, "input '" + spec.name + "' is None, but it is not an optional input");
  }
  if (!spec.is_tensor) {
    slot.kind = Value::kObject;
    slot.obj = py::reinterpret_borrow<py::object>(v);
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
  if (spec.dtype > 0 && code != spec.dtype) {
    std::string got = code > 0 ? "tensor(" + dtype_name(code) + ")"
                               : "numpy dtype " + std::string(py::str(arr.attr("dtype")));
    fail(ErrorKind::kInvalidType, "input '" + spec.name + "' has the wrong type: expected tensor(" +
                                      dtype_name(spec.dtype) + "), got " + got);
  }
  if (code == kString || code <= 0) {
    slot.kind = Value::kObject;
    slot.obj = arr;
  } else {
    Tensor t;
    numpy_to_tensor(arr, t, true);
    t.storage->external = true;
    slot.kind = Value::kTensor;
    slot.t = std::move(t);
  }
  if (spec.has_shape) {
    py::array a = py::reinterpret_borrow<py::array>(arr);
    size_t rank = static_cast<size_t>(a.ndim());
    std::vector<int64_t> got(a.shape(), a.shape() + rank);
    if (rank != spec.dims.size())
      fail(ErrorKind::kInvalidArgument, "input '" + spec.name + "' has the wrong rank: expected " +
                                            std::to_string(spec.dims.size()) + " dimensions, got " +
                                            std::to_string(rank) + " (shape " + shape_str(got) + ")");
    for (size_t i = 0; i < rank; ++i) {
      if (spec.dims[i] >= 0 && spec.dims[i] != got[i])
        fail(ErrorKind::kInvalidArgument, "input '" + spec.name + "' has the wrong size on axis " +
                                              std::to_string(i) + ": expected " + std::to_string(spec.dims[i]) +
                                              ", got " + std::to_string(got[i]) + " (shape " + shape_str(got) + ")");
    }
  }
}

namespace {
// The RunOptions of the run() this thread is inside. Control-flow bodies (If / Loop / Scan) run
// through run_positional from a Python step on the same thread, and see the outer run's
// terminate flag through it.
thread_local RunOptions* t_run_options = nullptr;

struct RunOptionsScope {
  RunOptions* saved;
  explicit RunOptionsScope(RunOptions* ro) : saved(t_run_options) {
    if (ro) t_run_options = ro;
  }
  ~RunOptionsScope() { t_run_options = saved; }
};

[[noreturn]] void fail_terminated() {
  fail(ErrorKind::kTerminated, "run() was terminated: RunOptions.terminate is set");
}
}  // namespace

py::list Plan::run(py::object output_names, py::object feed, py::object run_options) {
  RunOptions* ro = run_options.is_none() ? nullptr : run_options.cast<RunOptions*>();
  if (ro && ro->terminate.load()) fail_terminated();
  RunOptionsScope ro_scope(ro);
  std::vector<int> outs;
  if (output_names.is_none()) {
    outs = all_outputs_;
  } else {
    for (py::handle h : output_names) {
      std::string n = py::cast<std::string>(h);
      auto it = output_index_.find(n);
      if (it == output_index_.end())
        fail(ErrorKind::kInvalidArgument, "unknown output name '" + n + "'; the model's outputs are " +
                                              names_list(this->output_names()));
      outs.push_back(outputs_[it->second].second);
    }
  }
  if (!py::isinstance<py::dict>(feed)) {
    std::string tn = py::str(py::type::of(feed).attr("__name__"));
    fail(ErrorKind::kInvalidType, "input_feed must be a dict of input name -> numpy array, got " + tn);
  }
  py::dict fd = py::reinterpret_borrow<py::dict>(feed);
  Run r;
  r.nconst = constants_.size();
  r.consts = &constants_;
  r.vals.resize(num_values_ - r.nconst);
  size_t fed = 0;
  std::vector<bool> given(inputs_.size(), false);
  for (auto item : fd) {
    std::string n = py::cast<std::string>(item.first);
    auto it = input_index_.find(n);
    if (it == input_index_.end()) {
      std::vector<std::string> keys;
      for (auto k : fd) keys.push_back(py::cast<std::string>(k.first));
      fail(ErrorKind::kInvalidArgument, "unknown input name '" + n + "'; the model's inputs are " +
                                            names_list(input_names()) + " (input feed: " + names_list(keys) + ")");
    }
    given[it->second] = true;
    ++fed;
    set_input(r, inputs_[it->second], item.second);
  }
  if (fed < inputs_.size()) {
    std::vector<std::string> missing, keys;
    for (size_t i = 0; i < inputs_.size(); ++i) {
      if (given[i]) continue;
      const InputSpec& s = inputs_[i];
      if (s.has_default) {
        r.at(s.value) = constants_.at(s.default_value);  // overridable initializer not fed
        continue;
      }
      if (s.optional) continue;
      missing.push_back(s.name);
    }
    if (!missing.empty()) {
      for (auto k : fd) keys.push_back(py::cast<std::string>(k.first));
      fail(ErrorKind::kInvalidArgument, "required inputs " + names_list(missing) +
                                            " are missing from the input feed " + names_list(keys));
    }
  }
  const std::shared_ptr<const std::vector<int>> order = order_for(outs);
  std::exception_ptr err;
  {
    py::gil_scoped_release release;
    try {
      DenormalScope dz(denormal_as_zero);
      PoolScope ps(pool.get(), denormal_as_zero);
      execute(r, *order, ro);
    } catch (...) {
      err = std::current_exception();
    }
  }
  if (err) {
    r.vals.clear();
    std::rethrow_exception(err);
  }
  py::list result = collect(r, outs);
  r.vals.clear();
  return result;
}

py::list Plan::collect(Run& r, const std::vector<int>& outs) const {
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
    } else if (v.kind == Value::kObject) {
      result[i] = v.obj;
    } else {
      result[i] = py::none();
    }
  }
  return result;
}

py::list Plan::run_positional(py::sequence inputs) {
  size_t n = 0;
  std::vector<const InputSpec*> specs;
  for (auto& s : inputs_) specs.push_back(&s);
  if (static_cast<size_t>(py::len(inputs)) != specs.size())
    fail(ErrorKind::kInvalidArgument, "subgraph expects " + std::to_string(specs.size()) + " inputs, got " +
                                          std::to_string(py::len(inputs)));
  Run r;
  r.nconst = constants_.size();
  r.consts = &constants_;
  r.vals.resize(num_values_ - r.nconst);
  for (auto h : inputs) {
    const InputSpec& s = *specs[n++];
    if (h.is_none() && !s.optional) {
      // Unset optional values inside subgraphs stay empty.
      continue;
    }
    assign_value(r.at(s.value), h, true);
  }
  std::exception_ptr err;
  {
    py::gil_scoped_release release;
    try {
      DenormalScope dz(denormal_as_zero);
      // A subgraph runs on the pool of the run that called it.
      PoolScope ps(pool ? pool.get() : current_pool(), denormal_as_zero);
      execute(r, *full_order_, t_run_options);
    } catch (...) {
      err = std::current_exception();
    }
  }
  if (err) {
    r.vals.clear();
    std::rethrow_exception(err);
  }
  py::list result = collect(r, all_outputs_);
  r.vals.clear();
  return result;
}

void Plan::execute(Run& r, const std::vector<int>& order, RunOptions* ro) const {
  std::vector<const Tensor*> ins;
  std::vector<Tensor*> outp;
  std::vector<OutSpec> specs;
  const bool prof = profiling;
  int64_t run_start = prof ? now_ns() : 0;
  std::vector<ProfileEvent> events;
  if (ro && ro->terminate.load(std::memory_order_relaxed)) fail_terminated();
  for (int si : order) {
    const Step& st = steps_[si];
    if (ro && ro->terminate.load(std::memory_order_relaxed)) fail_terminated();
    int64_t t0 = prof ? now_ns() : 0;
    bool use_native = static_cast<bool>(st.kernel);
    if (use_native && st.pyfn) {
      // Types were unknown at plan time: the native kernel runs when input 0's type is one it takes.
      const Value* v0 = (!st.inputs.empty() && st.inputs[0] >= 0) ? &r.get(st.inputs[0]) : nullptr;
      use_native = v0 && v0->kind == Value::kTensor &&
                   std::find(st.native_dtypes.begin(), st.native_dtypes.end(), v0->t.dtype) != st.native_dtypes.end();
    }
    if (use_native) {
      ins.clear();
      for (int v : st.inputs) {
        if (v < 0) {
          ins.push_back(nullptr);
          continue;
        }
        const Value& val = r.get(v);
        if (val.kind != Value::kTensor) {
          if (val.kind == Value::kEmpty) {
            ins.push_back(nullptr);
            continue;
          }
          fail(ErrorKind::kInvalidType, st.op_type + " '" + st.name + "': native kernel received a non-tensor value");
        }
        if (val.t.device != st.in_device)
          fail(ErrorKind::kRuntime, st.op_type + " '" + st.name + "': input on device " +
                                        std::to_string(val.t.device) + ", kernel runs on device " +
                                        std::to_string(st.in_device) + " (missing copy)");
        ins.push_back(&val.t);
      }
      try {
        specs.clear();
        st.kernel->infer(ins, specs);
        outp.clear();
        for (size_t k = 0; k < st.outputs.size(); ++k) {
          int o = st.outputs[k];
          if (o < 0 || k >= specs.size()) {
            outp.push_back(nullptr);
            continue;
          }
          Value& ov = r.at(o);
          ov.kind = Value::kTensor;
          ov.t = output_tensor(specs[k], ins, st.op_type + " '" + st.name + "' output", st.out_device);
          if (!cache_blocks && ov.t.storage && specs[k].alias_input < 0) ov.t.storage->cacheable = false;
          outp.push_back(&ov.t);
        }
        st.kernel->compute(ins, outp);
      } catch (const Error&) {
        throw;
      } catch (const std::bad_alloc&) {
        fail(ErrorKind::kAllocation, st.op_type + " '" + st.name + "': out of memory");
      } catch (const std::exception& e) {
        fail(ErrorKind::kRuntime, st.op_type + " '" + st.name + "': " + e.what());
      }
    } else {
      py::gil_scoped_acquire gil;
      py::tuple args(st.inputs.size());
      for (size_t k = 0; k < st.inputs.size(); ++k) {
        int v = st.inputs[k];
        if (v < 0) {
          args[k] = py::none();
          continue;
        }
        const Value& val = r.get(v);
        if (val.kind == Value::kTensor) {
          if (val.t.device != 0)
            fail(ErrorKind::kRuntime, st.op_type + " '" + st.name + "': input on device " +
                                          std::to_string(val.t.device) + " given to a host kernel (missing copy)");
          args[k] = tensor_to_numpy(val.t, true, false);
        } else if (val.kind == Value::kObject) {
          args[k] = val.obj;
        } else {
          args[k] = py::none();
        }
      }
      py::object res;
      try {
        res = st.pyfn(*args);
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
        if (st.outputs[0] >= 0) assign_value(r.at(st.outputs[0]), res, false);
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
          if (item.is_none()) r.at(o).kind = Value::kEmpty;  // an omitted optional output
          else assign_value(r.at(o), item, false);
        }
      }
      // Release dead Python-object values while we hold the GIL.
      for (int v : st.release) {
        Value& dv = r.at(v);
        if (dv.kind == Value::kObject) {
          dv.obj = py::object();
          dv.kind = Value::kEmpty;
        }
      }
    }
    if (prof) {
      ProfileEvent ev;
      ev.step = si;
      ev.ts_ns = t0;
      ev.dur_ns = now_ns() - t0;
      for (int v : st.inputs) {
        const Value* pv = v >= 0 ? &r.get(v) : nullptr;
        ev.in_shapes.push_back(pv && pv->kind == Value::kTensor ? pv->t.shape : Shape{});
        ev.in_dtypes.push_back(pv && pv->kind == Value::kTensor ? pv->t.dtype : 0);
      }
      for (int v : st.outputs) {
        const Value* pv = v >= 0 ? &r.get(v) : nullptr;
        ev.out_shapes.push_back(pv && pv->kind == Value::kTensor ? pv->t.shape : Shape{});
        ev.out_dtypes.push_back(pv && pv->kind == Value::kTensor ? pv->t.dtype : 0);
      }
      ev.thread_id = static_cast<int64_t>(std::hash<std::thread::id>()(std::this_thread::get_id()) % 100000);
      events.push_back(std::move(ev));
    }
    // Release tensors whose last reader has run (object values are released under the GIL).
    for (int v : st.release) {
      Value& dv = r.at(v);
      if (dv.kind == Value::kTensor) {
        dv.t = Tensor();
        dv.kind = Value::kEmpty;
      }
    }
  }
  if (prof) {
    ProfileEvent ev;
    ev.step = -1;
    ev.ts_ns = run_start;
    ev.dur_ns = now_ns() - run_start;
    ev.thread_id = static_cast<int64_t>(std::hash<std::thread::id>()(std::this_thread::get_id()) % 100000);
    events.push_back(std::move(ev));
    std::lock_guard<std::mutex> lk(const_cast<Plan*>(this)->prof_mu_);
    auto& dst = const_cast<Plan*>(this)->prof_;
    for (auto& e : events) dst.push_back(std::move(e));
  }
}

py::list Plan::take_profile() {
  std::vector<ProfileEvent> evs;
  {
    std::lock_guard<std::mutex> lk(prof_mu_);
    evs.swap(prof_);
  }
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
