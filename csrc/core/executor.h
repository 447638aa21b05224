// The native executor: a compiled plan of steps run in order, with no Python in it.
//
// Steps are native kernels (called directly) or host steps (HostStep: the bindings' numpy kernels
// and control flow, which take the GIL for that step only). Values live in a per-run RunState, so
// concurrent runs of one plan share nothing mutable; a value is released after its last reader.
// Constants (initializers) occupy the first value slots and are shared by all runs.
//
// This file and executor.cpp include no Python: the bindings (csrc/bindings/py_executor.*) turn
// numpy arrays into Values, implement HostStep and HostObject for Python, and call execute() with
// the GIL released. tests/cpp/kernel_tests.cpp runs plans with native and C++ host steps.
#pragma once
#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "../kernels/kernel.h"
#include "../threadpool/threadpool.h"
#include "mem_pattern.h"
#include "tensor.h"

namespace onnxfast {

// A value the executor carries but never looks into: a host-language object (for the bindings, a
// Python object: strings, sequences, maps, None for an empty optional). Its destructor takes
// whatever lock the host needs.
class HostObject {
 public:
  virtual ~HostObject() = default;
};

struct Value {
  enum Kind : uint8_t { kEmpty, kTensor, kObject };
  Kind kind = kEmpty;
  Tensor t;
  std::shared_ptr<HostObject> obj;
  static Value of_tensor(Tensor t) {
    Value v;
    v.kind = kTensor;
    v.t = std::move(t);
    return v;
  }
  static Value of_object(std::shared_ptr<HostObject> o) {
    Value v;
    v.kind = kObject;
    v.obj = std::move(o);
    return v;
  }
};

struct RunOptions {
  int log_severity_level = 2;
  int log_verbosity_level = 0;
  std::string logid;
  bool only_execute_path_to_fetches = false;
  std::atomic<bool> terminate{false};
  std::map<std::string, std::string> config;
};

// The RunOptions of the run this thread is inside (null outside runs): control-flow bodies run
// as nested plans on the same thread and see the outer run's terminate flag through it.
RunOptions* current_run_options();

struct InputSpec {
  std::string name;
  int value = -1;
  int dtype = -1;           // element type for tensors; -1 = any / non-tensor
  bool is_tensor = true;    // false: sequence / map / optional-of-non-tensor (host objects)
  bool has_shape = false;
  std::vector<int64_t> dims;  // -1 = free dimension
  std::vector<std::string> dim_names;
  bool has_default = false;   // overridable initializer: the constant is used when not fed
  int default_value = -1;     // constant slot holding that initializer
  bool optional = false;      // optional type: None accepted
};

class HostStep;

struct Step {
  std::string name, op_type;
  std::shared_ptr<Kernel> kernel;    // native
  std::shared_ptr<HostStep> host;    // host kernel (with a native kernel: the fallback for other types)
  std::vector<int> native_dtypes;    // with both: element types of input 0 the native kernel takes
  std::vector<int> inputs, outputs;  // -1 = omitted optional
  std::vector<int> release;          // values that die after this step
  // (output, input) pairs the kernel may compute in place (KernelDef::inplace)
  std::vector<std::pair<int, int>> inplace;
  int in_device = 0, out_device = 0;
};

// The values of one run: ids below nconst are the plan's constants, the rest live here.
struct RunState {
  std::vector<Value> vals;
  size_t nconst = 0;
  const std::vector<Value>* consts = nullptr;
  // Buffers owned by host objects (numpy arrays) whose last reader has run: the executor never
  // drops the last reference to one itself, since that needs the host's lock; the host releases
  // them when it holds it (the next host step, or the end of the run).
  std::vector<std::shared_ptr<Storage>> deferred;
  // Memory pattern (mem_pattern.h): this run records its allocations, or takes them from an arena.
  std::unique_ptr<MemRecord> record;
  std::unique_ptr<MemArena> arena;
  Value& at(int id) { return vals[id - nconst]; }
  const Value& get(int id) const { return id < static_cast<int>(nconst) ? (*consts)[id] : vals[id - nconst]; }
};

// A step the host runs: reads st.inputs from r, writes st.outputs, and releases the host objects
// among st.release (the executor releases the tensors). Called on the executor's thread.
class HostStep {
 public:
  virtual ~HostStep() = default;
  virtual void run(const Step& st, RunState& r) = 0;
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
  void add_constant(int id, Value value);  // tensors are marked external (outputs aliasing them are copied)
  void add_input(const InputSpec& spec) { inputs_.push_back(spec); input_index_[spec.name] = inputs_.size() - 1; }
  void add_output(const std::string& name, int value) {
    outputs_.push_back({name, value});
    output_index_[name] = outputs_.size() - 1;
  }
  void add_step(Step s) { steps_.push_back(std::move(s)); }
  void finalize(int num_values);

  // running: new_run, set the inputs (check_input_* first), complete_inputs, execute, read outputs
  RunState new_run() const;
  // value ids of the named outputs (InvalidArgument naming an unknown one)
  std::vector<int> output_values(const std::vector<std::string>& names) const;
  const std::vector<int>& all_output_values() const { return all_outputs_; }
  // position of the named input in inputs(), -1 when the model has no such input
  int input_position(const std::string& name) const;
  const std::vector<InputSpec>& inputs() const { return inputs_; }
  // A fed input's element type (-1: not a known tensor type; `got` words it for the message) and shape.
  void check_input_type(const InputSpec& spec, int dtype, const std::string& got) const;
  void check_input_shape(const InputSpec& spec, const Shape& shape) const;
  // After the feed: overridable initializers not fed take their value; InvalidArgument naming the
  // required inputs that are missing (`fed`: the feed's names, for the message).
  void complete_inputs(RunState& r, const std::vector<bool>& given, const std::vector<std::string>& fed) const;
  // Runs the steps the requested output values need (on this plan's pool, or the caller's pool
  // for a nested plan). Blocking; call without any host lock held.
  void execute(RunState& r, const std::vector<int>& outs, RunOptions* ro);

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
  // SessionOptions.enable_mem_pattern: per input signature, intermediates laid out in one arena by
  // their lifetimes (mem_pattern.h), the layouts of the last kMaxPatterns signatures kept.
  bool mem_pattern = true;
  static constexpr size_t kMaxPatterns = 16;
  // (testing) patterns held, and the bytes runs took from arenas so far
  size_t num_patterns();
  size_t arena_bytes_served() const { return arena_served_.load(); }
  size_t inplace_reuses() const { return inplace_reuses_.load(); }  // (testing) outputs written over an input
  std::shared_ptr<ThreadPool> pool;  // intra-op pool (null: single-threaded, or the caller's for a nested plan)
  std::vector<ProfileEvent> take_profile();

 private:
  // First member, so destroyed last: the block cache lives while any plan does (memory.h), and
  // is emptied once the last plan and its constants are gone.
  MemoryUser memory_user_;
  void run_steps(RunState& r, const std::vector<int>& order, RunOptions* ro) const;
  void run_native(const Step& st, int pos, RunState& r, std::vector<const Tensor*>& ins,
                  std::vector<Tensor*>& outp, std::vector<OutSpec>& specs) const;
  void signature(const RunState& r, const std::vector<int>& outs, std::vector<int64_t>& key) const;
  bool take_input_buffer(const Step& st, int k, const OutSpec& spec, RunState& r, Value& ov) const;
  std::shared_ptr<const std::vector<int>> order_for(const std::vector<int>& outs);

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

  std::mutex pattern_mu_;
  std::map<std::vector<int64_t>, std::pair<std::shared_ptr<const MemPattern>, uint64_t>> patterns_;  // -> (layout, last use)
  uint64_t pattern_clock_ = 0;
  std::atomic<size_t> arena_served_{0};
  bool pattern_candidates_ = false;  // finalize(): at least two native outputs die during a run
  mutable std::atomic<size_t> inplace_reuses_{0};

  std::mutex prof_mu_;
  std::vector<ProfileEvent> prof_;
};

// "['a', 'b']", for messages.
std::string names_list(const std::vector<std::string>& names);

}  // namespace onnxfast
