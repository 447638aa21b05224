// Plan: building, feed checks, the step loop (native kernels / host steps), lifetimes, profiling.
// No Python here (executor.h); the bindings drive it from csrc/bindings/py_executor.cpp.
#include "executor.h"

#include <cstdlib>

#include <algorithm>
#include <cstring>
#include <exception>
#include <functional>
#include <thread>

#include "../cpu/cpu.h"
#include "errors.h"

namespace onnxfast {

namespace {

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// A test hook for the benchmark gate (ci/bench_gate.py): ONNXFAST_DEBUG_SLOWDOWN="OpType:factor" makes
// every native kernel of that op type take `factor` times its time (it spins for the difference).
// Read once at load; unset, it costs one predictable branch per native step.
struct DebugSlowdown {
  std::string op;
  double factor = 1.0;
  DebugSlowdown() {
    const char* env = std::getenv("ONNXFAST_DEBUG_SLOWDOWN");
    if (!env) return;
    std::string s(env);
    const size_t colon = s.rfind(':');
    if (colon == std::string::npos) return;
    op = s.substr(0, colon);
    factor = std::atof(s.c_str() + colon + 1);
    if (!(factor > 1.0)) op.clear();
  }
};
const DebugSlowdown& debug_slowdown() {
  static const DebugSlowdown d;
  return d;
}

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

int64_t thread_tag() {
  return static_cast<int64_t>(std::hash<std::thread::id>()(std::this_thread::get_id()) % 100000);
}

}  // namespace

RunOptions* current_run_options() { return t_run_options; }

std::string names_list(const std::vector<std::string>& names) {
  std::string s = "[";
  for (size_t i = 0; i < names.size(); ++i) {
    if (i) s += ", ";
    s += "'" + names[i] + "'";
  }
  return s + "]";
}

void Plan::add_constant(int id, Value value) {
  if (id != static_cast<int>(constants_.size()))
    fail(ErrorKind::kRuntime, "constants must be added in id order");
  if (value.kind == Value::kTensor && value.t.storage) value.t.storage->external = true;
  constants_.push_back(std::move(value));
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
  // A memory pattern needs at least two native outputs that die during the run; without them
  // (a one-node model, say) runs skip the signature look-up altogether.
  size_t dying = 0;
  for (const Step& st : steps_)
    if (st.kernel)
      for (int o : st.outputs) dying += o >= 0 && !keep[o];
  pattern_candidates_ = dying >= 2;
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

RunState Plan::new_run() const {
  RunState r;
  r.nconst = constants_.size();
  r.consts = &constants_;
  r.vals.resize(num_values_ - r.nconst);
  return r;
}

std::vector<int> Plan::output_values(const std::vector<std::string>& names) const {
  std::vector<int> outs;
  for (const std::string& n : names) {
    auto it = output_index_.find(n);
    if (it == output_index_.end())
      fail(ErrorKind::kInvalidArgument,
           "unknown output name '" + n + "'; the model's outputs are " + names_list(output_names()));
    outs.push_back(outputs_[it->second].second);
  }
  return outs;
}

int Plan::input_position(const std::string& name) const {
  auto it = input_index_.find(name);
  return it == input_index_.end() ? -1 : static_cast<int>(it->second);
}

void Plan::check_input_type(const InputSpec& spec, int dtype, const std::string& got) const {
  if (spec.dtype > 0 && dtype != spec.dtype)
    fail(ErrorKind::kInvalidType, "input '" + spec.name + "' has the wrong type: expected tensor(" +
                                      dtype_name(spec.dtype) + "), got " + got);
}

void Plan::check_input_shape(const InputSpec& spec, const Shape& got) const {
  if (!spec.has_shape) return;
  const size_t rank = got.size();
  if (rank != spec.dims.size())
    fail(ErrorKind::kInvalidArgument, "input '" + spec.name + "' has the wrong rank: expected " +
                                          std::to_string(spec.dims.size()) + " dimensions, got " +
                                          std::to_string(rank) + " (shape " + shape_str(got) + ")");
  for (size_t i = 0; i < rank; ++i) {
    if (spec.dims[i] >= 0 && spec.dims[i] != got[i])
      fail(ErrorKind::kInvalidArgument, "input '" + spec.name + "' has the wrong size on axis " + std::to_string(i) +
                                            ": expected " + std::to_string(spec.dims[i]) + ", got " +
                                            std::to_string(got[i]) + " (shape " + shape_str(got) + ")");
  }
}

void Plan::complete_inputs(RunState& r, const std::vector<bool>& given, const std::vector<std::string>& fed) const {
  std::vector<std::string> missing;
  for (size_t i = 0; i < inputs_.size(); ++i) {
    if (i < given.size() && given[i]) continue;
    const InputSpec& s = inputs_[i];
    if (s.has_default) {
      r.at(s.value) = constants_.at(s.default_value);  // overridable initializer not fed
      continue;
    }
    if (s.optional) continue;
    missing.push_back(s.name);
  }
  if (!missing.empty())
    fail(ErrorKind::kInvalidArgument,
         "required inputs " + names_list(missing) + " are missing from the input feed " + names_list(fed));
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

void Plan::signature(const RunState& r, const std::vector<int>& outs, std::vector<int64_t>& key) const {
  key.clear();
  for (const InputSpec& in : inputs_) {
    const Value& v = r.get(in.value);
    key.push_back(v.kind);
    if (v.kind != Value::kTensor) continue;
    key.push_back(v.t.dtype);
    key.push_back(v.t.rank());
    key.insert(key.end(), v.t.shape.begin(), v.t.shape.end());
  }
  key.push_back(-1);
  key.insert(key.end(), outs.begin(), outs.end());
}

size_t Plan::num_patterns() {
  std::lock_guard<std::mutex> lk(pattern_mu_);
  return patterns_.size();
}

void Plan::execute(RunState& r, const std::vector<int>& outs, RunOptions* ro) {
  if (ro && ro->terminate.load()) fail_terminated();
  const std::shared_ptr<const std::vector<int>> order = order_for(outs);
  RunOptionsScope ro_scope(ro);
  DenormalScope dz(denormal_as_zero);
  // A nested plan (a control-flow body) without a pool of its own runs on the pool of its caller.
  PoolScope ps(pool ? pool.get() : current_pool(), denormal_as_zero);
  std::vector<int64_t> key;  // (a local: a control-flow body's plan runs its own execute() on this thread)
  const bool use_pattern = mem_pattern && pattern_candidates_;
  if (use_pattern) {
    signature(r, outs, key);
    std::shared_ptr<const MemPattern> pattern;
    bool known = false;
    {
      std::lock_guard<std::mutex> lk(pattern_mu_);
      auto it = patterns_.find(key);
      if (it != patterns_.end()) {
        known = true;
        pattern = it->second.first;
        it->second.second = ++pattern_clock_;
      }
    }
    if (!known) r.record = std::make_unique<MemRecord>();
    else if (pattern) {
      try {
        r.arena = std::make_unique<MemArena>(pattern, cache_blocks);
      } catch (const Error&) {
        // the arena at once is over the memory guard's budget now: ordinary allocations, one by one
      }
    }
  }
  run_steps(r, *order, current_run_options());
  if (r.arena) {
    arena_served_ += r.arena->handed_out();
    if (r.arena->mostly_unused()) {  // data-dependent sizes: this signature runs without an arena from now on
      std::lock_guard<std::mutex> lk(pattern_mu_);
      auto it = patterns_.find(key);
      if (it != patterns_.end() && it->second.first.get() == r.arena->pattern()) it->second.first = nullptr;
    }
  }
  if (r.record) {
    std::shared_ptr<const MemPattern> pattern = plan_memory(*r.record);  // null: nothing to share (kept as such)
    r.record.reset();
    std::lock_guard<std::mutex> lk(pattern_mu_);
    if (patterns_.size() >= kMaxPatterns && !patterns_.count(key)) {
      auto oldest = patterns_.begin();
      for (auto it = patterns_.begin(); it != patterns_.end(); ++it)
        if (it->second.second < oldest->second.second) oldest = it;
      patterns_.erase(oldest);
    }
    patterns_[key] = {std::move(pattern), ++pattern_clock_};
  }
}

// In-place reuse: output k takes the buffer of an input the kernel may overwrite when that input dies
// at this step, has the output's type and size, and nothing else holds its storage (not a constant or
// user input, not a numpy-owned buffer, no view of it alive).
bool Plan::take_input_buffer(const Step& st, int k, const OutSpec& spec, RunState& r, Value& ov) const {
  for (const auto& [out, in] : st.inplace) {
    if (out != k || in >= static_cast<int>(st.inputs.size())) continue;
    const int v = st.inputs[in];
    if (v < static_cast<int>(r.nconst) || std::find(st.release.begin(), st.release.end(), v) == st.release.end())
      continue;
    const Value& iv = r.get(v);
    const Tensor& t = iv.t;
    if (iv.kind != Value::kTensor || !t.storage || t.storage.use_count() != 1 || t.storage->external ||
        t.storage->owner || t.device != st.out_device || t.data != t.storage->data || t.dtype != spec.dtype ||
        t.numel() != shape_numel(spec.shape))
      continue;
    ov.t = Tensor();
    ov.t.storage = t.storage;
    ov.t.data = t.data;
    ov.t.dtype = spec.dtype;
    ov.t.shape = spec.shape;
    ov.t.device = st.out_device;
    inplace_reuses_.fetch_add(1, std::memory_order_relaxed);
    return true;
  }
  return false;
}

void Plan::run_native(const Step& st, int pos, RunState& r, std::vector<const Tensor*>& ins,
                      std::vector<Tensor*>& outp, std::vector<OutSpec>& specs) const {
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
      fail(ErrorKind::kRuntime, st.op_type + " '" + st.name + "': input on device " + std::to_string(val.t.device) +
                                    ", kernel runs on device " + std::to_string(st.in_device) + " (missing copy)");
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
      const OutSpec& spec = specs[k];
      if (spec.alias_input < 0 && take_input_buffer(st, static_cast<int>(k), spec, r, ov)) {
        outp.push_back(&ov.t);
        continue;
      }
      const bool fresh = spec.alias_input < 0 && st.out_device == 0;
      std::shared_ptr<Storage> slice;
      if (fresh && r.arena) {
        const size_t item = dtype_itemsize(spec.dtype);
        const int64_t n = shape_numel(spec.shape);
        bool ok = item > 0 && n > 0;
        for (int64_t d : spec.shape) ok = ok && d >= 0;
        if (ok) slice = r.arena->take(pos, static_cast<int>(k), static_cast<size_t>(n) * item);
      }
      if (slice) {
        ov.t = Tensor();
        ov.t.storage = std::move(slice);
        ov.t.data = ov.t.storage->data;
        ov.t.dtype = spec.dtype;
        ov.t.shape = spec.shape;
      } else {
        ov.t = output_tensor(spec, ins, st.op_type + " '" + st.name + "' output", st.out_device);
        if (fresh && ov.t.storage) {
          if (!cache_blocks) ov.t.storage->cacheable = false;
          if (r.record) r.record->allocated(ov.t.storage.get(), pos, static_cast<int>(k), ov.t.storage->nbytes);
        }
      }
      outp.push_back(&ov.t);
    }
    const DebugSlowdown& slow = debug_slowdown();
    if (__builtin_expect(!slow.op.empty(), 0) && slow.op == st.op_type) {
      const int64_t t0 = now_ns();
      st.kernel->compute(ins, outp);
      const int64_t until = t0 + static_cast<int64_t>(static_cast<double>(now_ns() - t0) * slow.factor);
      while (now_ns() < until) {
      }
    } else {
      st.kernel->compute(ins, outp);
    }
  } catch (const Error&) {
    throw;
  } catch (const std::bad_alloc&) {
    fail(ErrorKind::kAllocation, st.op_type + " '" + st.name + "': out of memory");
  } catch (const std::exception& e) {
    fail(ErrorKind::kRuntime, st.op_type + " '" + st.name + "': " + e.what());
  }
}

void Plan::run_steps(RunState& r, const std::vector<int>& order, RunOptions* ro) const {
  std::vector<const Tensor*> ins;
  std::vector<Tensor*> outp;
  std::vector<OutSpec> specs;
  const bool prof = profiling;
  int64_t run_start = prof ? now_ns() : 0;
  std::vector<ProfileEvent> events;
  for (size_t pos = 0; pos < order.size(); ++pos) {
    const int si = order[pos];
    const Step& st = steps_[si];
    if (ro && ro->terminate.load(std::memory_order_relaxed)) fail_terminated();
    int64_t t0 = prof ? now_ns() : 0;
    bool use_native = static_cast<bool>(st.kernel);
    if (use_native && st.host) {
      // Types were unknown at plan time: the native kernel runs when input 0's type is one it takes.
      const Value* v0 = (!st.inputs.empty() && st.inputs[0] >= 0) ? &r.get(st.inputs[0]) : nullptr;
      use_native = v0 && v0->kind == Value::kTensor &&
                   std::find(st.native_dtypes.begin(), st.native_dtypes.end(), v0->t.dtype) != st.native_dtypes.end();
    }
    if (use_native) {
      run_native(st, static_cast<int>(pos), r, ins, outp, specs);
    } else if (st.host) {
      st.host->run(st, r);
    } else {
      fail(ErrorKind::kRuntime, st.op_type + " '" + st.name + "': step has no kernel");
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
      ev.thread_id = thread_tag();
      events.push_back(std::move(ev));
    }
    // Release tensors whose last reader has run. Host objects were released by the host step that
    // read them; a buffer a host object owns is handed to the host when this was its last reference.
    for (int v : st.release) {
      Value& dv = r.at(v);
      if (dv.kind != Value::kTensor) continue;
      if (dv.t.storage && dv.t.storage.use_count() == 1) {
        if (r.record) r.record->freed(dv.t.storage.get(), static_cast<int>(pos));
        if (dv.t.storage->owner) r.deferred.push_back(std::move(dv.t.storage));
      }
      dv.t = Tensor();
      dv.kind = Value::kEmpty;
    }
  }
  if (prof) {
    ProfileEvent ev;
    ev.step = -1;
    ev.ts_ns = run_start;
    ev.dur_ns = now_ns() - run_start;
    ev.thread_id = thread_tag();
    events.push_back(std::move(ev));
    std::lock_guard<std::mutex> lk(const_cast<Plan*>(this)->prof_mu_);
    auto& dst = const_cast<Plan*>(this)->prof_;
    for (auto& e : events) dst.push_back(std::move(e));
  }
}

std::vector<ProfileEvent> Plan::take_profile() {
  std::vector<ProfileEvent> evs;
  std::lock_guard<std::mutex> lk(prof_mu_);
  evs.swap(prof_);
  return evs;
}

}  // namespace onnxfast
