// The native executor: a compiled plan of steps run in order with the GIL released.
//
// Steps are native kernels (called directly) or Python callables (numpy kernels, control
// flow), for which the executor takes the GIL for that step only. Values live in a per-run
// table, so concurrent runs of one plan share nothing mutable; a value is released after
// its last reader. Constants (initializers) occupy the first value slots and are shared.
#pragma once
#include <pybind11/pybind11.h>
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "../kernels/kernel.h"
#include "../threadpool/threadpool.h"
#include "tensor.h"

namespace onnxfast {

namespace py = pybind11;

struct Value {
  enum Kind : uint8_t { kEmpty, kTensor, kObject };
  Kind kind = kEmpty;
  Tensor t;
  py::object obj;  // only touched with the GIL held
};

struct RunOptions {
  int log_severity_level = 2;
  int log_verbosity_level = 0;
  std::string logid;
  bool only_execute_path_to_fetches = false;
  std::atomic<bool> terminate{false};
  std::map<std::string, std::string> config;
};

struct InputSpec {
  std::string name;
  int value = -1;
  int dtype = -1;           // element type for tensors; -1 = any / non-tensor
  bool is_tensor = true;    // false: sequence / map / optional-of-non-tensor (passed as Python objects)
  bool has_shape = false;
  std::vector<int64_t> dims;  // -1 = free dimension
  std::vector<std::string> dim_names;
  bool has_default = false;   // overridable initializer: the constant is used when not fed
  int default_value = -1;     // constant slot holding that initializer
  bool optional = false;      // optional type: None accepted
};

struct Step {
  std::string name, op_type;
  std::shared_ptr<Kernel> kernel;  // native
  py::object pyfn;                 // Python kernel (with a native kernel: the fallback for other types)
  std::vector<int> native_dtypes;  // with both: element types of input 0 the native kernel takes
  std::vector<int> inputs, outputs;  // -1 = omitted optional
  std::vector<int> release;          // values that die after this step
  int in_device = 0, out_device = 0;
};

struct ProfileEvent {
  int step = -1;  // -1: the whole run
  int64_t ts_ns = 0, dur_ns = 0;
  std::vector<Shape> in_shapes, out_shapes;
  std::vector<int> in_dtypes, out_dtypes;
  int64_t thread_id = 0;
};

class Plan {
 public:
  // building
  void add_constant(int id, py::object value);
  void add_input(const InputSpec& spec) { inputs_.push_back(spec); input_index_[spec.name] = inputs_.size() - 1; }
  void add_output(const std::string& name, int value) {
    outputs_.push_back({name, value});
    output_index_[name] = outputs_.size() - 1;
  }
  void add_step(Step s) { steps_.push_back(std::move(s)); }
  void finalize(int num_values);

  // running
  py::list run(py::object output_names, py::object feed, py::object run_options);
  py::list run_positional(py::sequence inputs);  // inputs in declared order; all outputs returned

  // introspection
  size_t num_steps() const { return steps_.size(); }
  const Step& step(size_t i) const { return steps_.at(i); }
  std::vector<std::string> input_names() const;
  std::vector<std::string> output_names() const;

  bool profiling = false;
  bool denormal_as_zero = false;
  // SessionOptions.enable_cpu_mem_arena: outputs and intermediates go back to the block cache when
  // freed (true) or straight to the C library (false).
  bool cache_blocks = true;
  std::shared_ptr<ThreadPool> pool;  // intra-op pool (null: single-threaded)
  py::list take_profile();

 private:
  // First member, so destroyed last: the block cache lives while any plan does (memory.h), and
  // is emptied once the last plan and its constants are gone.
  MemoryUser memory_user_;
  struct Run;
  void execute(Run& r, const std::vector<int>& order, RunOptions* ro) const;
  std::shared_ptr<const std::vector<int>> order_for(const std::vector<int>& outs);
  void set_input(Run& r, const InputSpec& spec, py::handle v) const;
  py::list collect(Run& r, const std::vector<int>& outs) const;

  int num_values_ = 0;
  std::vector<Value> constants_;  // ids [0, constants_.size())
  std::vector<InputSpec> inputs_;
  std::map<std::string, size_t> input_index_;
  std::vector<std::pair<std::string, int>> outputs_;
  std::map<std::string, size_t> output_index_;
  std::vector<Step> steps_;
  std::vector<int> producer_;  // value -> producing step or -1
  std::vector<int> all_outputs_;
  std::shared_ptr<const std::vector<int>> full_order_ = std::make_shared<std::vector<int>>();
  std::mutex order_mu_;
  std::map<std::vector<int>, std::shared_ptr<const std::vector<int>>> order_cache_;  // requested outputs -> steps to run

  std::mutex prof_mu_;
  std::vector<ProfileEvent> prof_;
};

// dtype registry shared with Python
void register_numpy_dtype(py::dtype dt, int code, const std::string& name);
bool numpy_to_tensor(py::handle obj, Tensor& t, bool copy_if_needed);  // false: not a native-typed array
py::object tensor_to_numpy(const Tensor& t, bool readonly_view, bool force_copy);
py::object numpy_dtype_for(int code);
int dtype_code_of(py::handle arr);  // -1 when unknown

void set_error_hook(py::object hook);
void set_error_classes(py::dict classes);
void register_error_translator();

}  // namespace onnxfast
