// The _core extension module: dtype registry, error classes, native kernels, the executor
// plan and RunOptions. Everything heavy runs with the GIL released.
#include <pybind11/pybind11.h>
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include "../core/device.h"
#include "../core/executor.h"
#include "py_executor.h"
#include "py_object_kernels.h"
#include "../core/memory.h"
#include "../cpu/cpu.h"
#include "../kernels/gemm.h"
#include "../kernels/gemm_tiers.h"
#include "../kernels/vecmath.h"

namespace py = pybind11;
using namespace onnxfast;

namespace {

AttrValue to_attr(py::handle h) {
  AttrValue a;
  if (py::isinstance<py::bool_>(h) || py::isinstance<py::int_>(h)) {
    a.kind = AttrValue::kInt;
    a.i = h.cast<int64_t>();
  } else if (py::isinstance<py::float_>(h)) {
    a.kind = AttrValue::kFloat;
    a.f = h.cast<double>();
  } else if (py::isinstance<py::str>(h) || py::isinstance<py::bytes>(h)) {
    a.kind = AttrValue::kString;
    a.s = h.cast<std::string>();
  } else if (py::isinstance<py::array>(h)) {
    auto t = std::make_shared<Tensor>();
    if (numpy_to_tensor(h, *t, true)) {  // numeric only (a string tensor stays kNone)
      // a copy the kernel owns, whatever happens to the array
      auto own = std::make_shared<Tensor>(Tensor::empty(t->dtype, t->shape, "tensor attribute"));
      if (t->nbytes()) std::memcpy(own->data, t->data, t->nbytes());
      a.kind = AttrValue::kTensor;
      a.t = own;
    }
  } else if (py::isinstance<py::list>(h) || py::isinstance<py::tuple>(h)) {
    py::sequence seq = py::reinterpret_borrow<py::sequence>(h);
    bool all_int = true, all_num = true;
    for (auto x : seq) {
      if (!(py::isinstance<py::int_>(x))) all_int = false;
      if (!(py::isinstance<py::int_>(x) || py::isinstance<py::float_>(x))) all_num = false;
    }
    if (all_int) {
      a.kind = AttrValue::kInts;
      for (auto x : seq) a.ints.push_back(x.cast<int64_t>());
    } else if (all_num) {
      a.kind = AttrValue::kFloats;
      for (auto x : seq) a.floats.push_back(x.cast<double>());
    } else {
      a.kind = AttrValue::kStrings;
      for (auto x : seq) a.strings.push_back(py::str(x).cast<std::string>());
    }
  }
  return a;
}

struct PyKernel {
  std::shared_ptr<Kernel> k;
  std::string op_type, name;
  std::vector<int> dtypes;  // input-0 types of the declaration it was made from
  std::vector<std::pair<int, int>> inplace;  // its declaration's in-place permissions
};

std::shared_ptr<Tensor> const_tensor(py::handle h) {
  if (h.is_none()) return nullptr;
  auto t = std::make_shared<Tensor>();
  if (!numpy_to_tensor(h, *t, true)) return nullptr;
  return t;
}

py::list run_kernel(const PyKernel& pk, py::sequence inputs, int nout) {
  std::vector<Tensor> held;
  held.reserve(py::len(inputs));
  std::vector<const Tensor*> ins;
  for (auto h : inputs) {
    if (h.is_none()) {
      ins.push_back(nullptr);
      continue;
    }
    Tensor t;
    if (!numpy_to_tensor(h, t, true)) fail(ErrorKind::kInvalidType, pk.op_type + ": inputs must be numeric numpy arrays");
    held.push_back(std::move(t));
  }
  size_t j = 0;
  ins.clear();
  for (auto h : inputs) ins.push_back(h.is_none() ? nullptr : &held[j++]);
  std::vector<Tensor> outs;
  {
    py::gil_scoped_release rel;
    std::vector<OutSpec> specs;
    pk.k->infer(ins, specs);
    std::vector<Tensor*> outp;
    outs.reserve(specs.size());
    for (size_t i = 0; i < specs.size() && static_cast<int>(i) < nout; ++i)
      outs.push_back(output_tensor(specs[i], ins, pk.op_type + " output"));
    for (auto& o : outs) outp.push_back(&o);
    while (static_cast<int>(outp.size()) < nout) outp.push_back(nullptr);
    pk.k->compute(ins, outp);
  }
  py::list res;
  for (auto& o : outs) res.append(tensor_to_numpy(o, false, false));
  return res;
}

py::dict cache_dict(const CacheSizes& c) {
  py::dict d;
  d["l1d"] = c.l1d;
  d["l2"] = c.l2;
  d["l3"] = c.l3;
  return d;
}

// One set_cache_sizes value: None (0: the detected size), bytes, or a string such as "2M".
int64_t cache_size_arg(const std::string& key, py::handle v) {
  if (v.is_none()) return 0;
  int64_t bytes = -1;
  if (py::isinstance<py::str>(v)) {
    bytes = parse_cache_size(v.cast<std::string>());
  } else if (py::isinstance<py::int_>(v) && !py::isinstance<py::bool_>(v)) {
    int overflow = 0;
    const long long x = PyLong_AsLongLongAndOverflow(v.ptr(), &overflow);
    if (!overflow && x > 0) bytes = parse_cache_size(std::to_string(x));  // the same range checks
  }
  if (bytes < 0)
    fail(ErrorKind::kInvalidArgument, "set_cache_sizes: bad entry " + key + "=" + py::repr(v).cast<std::string>() +
                                          ": not a size from 1K to 1T (bytes, or a string like '48K', '2M'), or None");
  return bytes;
}

// KernelArgs of a node as the planner describes it (attributes converted, constant inputs wrapped).
KernelArgs kernel_args(const std::string& op, const std::string& domain, const std::string& name, int opset,
                       int since_version, py::dict attrs, py::sequence consts, bool allow_prepack,
                       py::object input_shapes, int num_outputs, py::object input_types) {
  KernelArgs a;
  a.op_type = op;
  a.domain = domain;
  a.node_name = name;
  a.opset = opset;
  a.since_version = since_version > 0 ? since_version : opset;
  a.num_outputs = num_outputs;
  a.allow_prepack = allow_prepack;
  for (auto kv : attrs) a.attrs[kv.first.cast<std::string>()] = to_attr(kv.second);
  for (auto c : consts) a.const_inputs.push_back(const_tensor(c));
  if (!input_shapes.is_none()) {
    for (auto s : py::reinterpret_borrow<py::sequence>(input_shapes)) {
      if (s.is_none()) {
        a.input_ranks.push_back(-1);
        a.input_dims.emplace_back();
        continue;
      }
      Shape dims;
      for (auto d : py::reinterpret_borrow<py::sequence>(s)) dims.push_back(d.is_none() ? -1 : d.cast<int64_t>());
      a.input_ranks.push_back(static_cast<int64_t>(dims.size()));
      a.input_dims.push_back(std::move(dims));
    }
  }
  if (!input_types.is_none())
    for (auto t : py::reinterpret_borrow<py::sequence>(input_types)) a.input_dtypes.push_back(t.is_none() ? 0 : t.cast<int>());
  return a;
}

// The declaration for a node: by its input 0 type (known at creation, or the constant's, or unknown).
const KernelDef& kernel_def(const KernelArgs& a, const std::string& provider) {
  int t = a.dtype_of(0);
  if (t == 0 && !a.const_inputs.empty() && a.const_inputs[0]) t = a.const_inputs[0]->dtype;
  const KernelDef* d = find_kernel(a.domain, a.op_type, a.since_version, t, provider);
  if (!d) {
    const std::string dom = a.domain.empty() ? "ai.onnx" : a.domain;
    fail(ErrorKind::kNotImplemented, "no native kernel for " + dom + "::" + a.op_type + " (version " +
                                         std::to_string(a.since_version) +
                                         (t > 0 ? ", input type " + dtype_name(t) : std::string()) + ") on " +
                                         provider);
  }
  return *d;
}

py::dict def_dict(const KernelDef& d) {
  py::dict o;
  o["domain"] = d.domain;
  o["op_type"] = d.op;
  o["since"] = d.since;
  o["until"] = d.until;
  o["provider"] = d.provider;
  o["types"] = d.types;
  o["input_types"] = d.input_types;
  o["conditional"] = static_cast<bool>(d.accepts);
  o["aliases"] = d.aliases;
  o["inplace"] = d.inplace;
  o["file"] = d.file;
  return o;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "onnxfast native core: tensors, kernels and the executor";
  set_owner_release(&release_py_owner);
  register_error_translator();

  m.def("register_dtype", &register_numpy_dtype, py::arg("dtype"), py::arg("code"), py::arg("name"));
  m.def("set_error_classes", &set_error_classes);
  m.def("set_error_hook", &set_error_hook);
  m.def("max_allocation_bytes", &max_allocation_bytes, "the memory limit in bytes (see memory_limits)");
  m.def("set_max_allocation_bytes", &set_max_allocation_bytes, py::arg("nbytes"),
        "overrides the detected memory limit (0: the detected one again)");
  m.def("set_memory_limit", &set_memory_limit, py::arg("nbytes"),
        "overrides the detected memory limit (0: the detected one again)");
  m.def("block_cache_bytes", &block_cache_bytes, "bytes of freed buffers the block cache holds for reuse");
  m.def("memory_limits", []() {
    MemoryLimits l = memory_limits();
    py::dict d;
    auto opt = [](const std::optional<size_t>& v) { return v ? py::object(py::int_(*v)) : py::object(py::none()); };
    d["physical"] = l.physical;
    d["cgroup"] = opt(l.cgroup);
    d["rlimit_as"] = opt(l.rlimit_as);
    d["override"] = opt(l.override_);
    d["limit"] = l.limit;
    d["budget"] = l.budget;
    d["source"] = l.source;
    return d;
  }, "the memory limit and where it comes from (physical RAM, cgroup, RLIMIT_AS, an override), and the "
     "budget of live bytes (3/4 of the limit)");
  m.def("memory_stats", []() {
    MemoryStats s = memory_stats();
    py::dict d;
    d["live_bytes"] = s.live_bytes;
    d["cached_bytes"] = s.cached_bytes;
    d["cache_cap"] = s.cache_cap;
    d["peak_recent"] = s.peak_recent;
    d["maps"] = s.maps;
    d["unmaps"] = s.unmaps;
    d["cache_hits"] = s.cache_hits;
    d["users"] = s.users;
    return d;
  }, "the block allocator's counters: live and cached bytes, the cache's bound, blocks mapped / unmapped");
  m.def("check_allocation", [](size_t nbytes, const std::string& what) { check_allocation(nbytes, what); },
        py::arg("nbytes"), py::arg("what"),
        "raises AllocationError when nbytes more must not be allocated now (the guard of native outputs)");
  m.def("release_cached_blocks", &release_cached_blocks, "returns the block cache's memory to the system");
  m.def("_cgroup_memory_limit", [](const std::string& cgroup, const std::string& mountinfo, py::dict files) {
    std::map<std::string, std::string> f;
    for (auto kv : files) f[py::cast<std::string>(kv.first)] = py::cast<std::string>(kv.second);
    std::optional<size_t> v = parse_cgroup_memory_limit(cgroup, mountinfo, [&](const std::string& p, std::string* t) {
      auto it = f.find(p);
      if (it == f.end()) return false;
      *t = it->second;
      return true;
    });
    return v ? py::object(py::int_(*v)) : py::object(py::none());
  }, py::arg("proc_self_cgroup"), py::arg("mountinfo"), py::arg("files"),
     "(testing) the cgroup memory limit parsed from the given /proc/self/cgroup and mountinfo texts, "
     "reading files from the dict {path: contents}; None when unlimited");
  // ZipMap's output (onnxruntime's Python objects): one dict per row of a float32 matrix, label -> float.
  // Built here through the C API: the Python loop it replaces was most of a tree model's run at 256 rows.
  bind_object_kernels(m);

  m.def("kernel_defs", []() {
    py::list out;
    const auto& defs = kernel_defs();
    for (size_t i = 0; i < defs.size(); ++i) {
      py::dict d = def_dict(defs[i]);
      d["index"] = i;
      out.append(d);
    }
    return out;
  }, "every native kernel declaration: domain, op_type, since / until (schema versions), provider, types (of "
     "input 0), input_types (of further inputs), conditional (a `when` on attributes / types), aliases, file");
  m.def("device_id", &device_id, py::arg("provider"),
        "the device id of a provider's allocator (0: CPUExecutionProvider, -1: the provider registered none)");
  m.def("device_stats", [](const std::string& provider) {
    const int id = device_id(provider);
    DeviceAllocator* a = id > 0 ? device_allocator(id) : nullptr;
    if (!a) fail(ErrorKind::kInvalidArgument, "no device allocator registered for '" + provider + "'");
    return a->stats();
  }, py::arg("provider"), "the counters of a provider's device allocator (live bytes, allocations, copies)");
  m.def("native_kernels", []() {
    std::map<std::string, std::vector<int>> ops;
    for (const KernelDef& d : kernel_defs()) {
      auto& t = ops[d.op];
      for (int x : d.types)
        if (std::find(t.begin(), t.end(), x) == t.end()) t.push_back(x);
    }
    return ops;
  }, "op type -> element types of input 0 some native kernel computes (all domains and versions)");
  m.def(
      "kernel_accepts",
      [](size_t index, int since_version, py::dict attrs, py::sequence input_types) {
        const auto& defs = kernel_defs();
        if (index >= defs.size()) fail(ErrorKind::kInvalidArgument, "no kernel declaration " + std::to_string(index));
        const KernelDef& d = defs[index];
        KernelArgs a = kernel_args(d.op, d.domain, "", since_version, since_version, attrs, py::list(), false,
                                   py::none(), 1, input_types);
        return !d.accepts || d.accepts(a);
      },
      py::arg("index"), py::arg("since_version"), py::arg("attrs"), py::arg("input_types"),
      "whether declaration `index` of kernel_defs() computes this node (its `when`, from the attributes and the "
      "input element types; None for unknown)");
  m.def("cpu_info", []() {
    const CpuFeatures& f = cpu_features();
    py::dict d;
    d["avx2"] = f.avx2;
    d["fma"] = f.fma;
    d["avx512f"] = f.avx512f;
    d["avx512bw"] = f.avx512bw;
    d["avx512vnni"] = f.avx512vnni;
    d["avx512bf16"] = f.avx512bf16;
    d["neon"] = f.neon;
    d["sve"] = f.sve;
    d["best_isa"] = isa_name(best_isa());
    d["isa"] = isa_name(active_isa());
    d["gemm"] = gemm_tier().name;
    d["vecmath"] = vecmath().name;
    // the platform table (cpu.h): cache sizes in effect (detected unless overridden), identity
    const Platform& p = platform();
    const CacheSizes c = cache_sizes();
    d["l1d_bytes"] = c.l1d;
    d["l2_bytes"] = c.l2;
    d["l3_bytes"] = c.l3;
    d["cache_source"] = p.cache_source;
    d["vector_bytes"] = p.vector_bytes;
    d["vendor"] = p.vendor;
    d["family"] = p.family;
    d["model"] = p.model;
    d["stepping"] = p.stepping;
    d["model_name"] = p.model_name;
    d["avx512_full_rate"] = p.avx512_full_rate;
    return d;
  });
  m.def("check_platform", []() {
    if (!platform().cache_env_error.empty()) throw py::value_error(platform().cache_env_error);
  }, "ValueError when ONNXFAST_CACHE_SIZES is malformed (called at import)");
  m.def("cache_sizes", [](bool detected) {
    const CacheSizes c = detected ? platform().detected : cache_sizes();
    return cache_dict(c);
  }, py::arg("detected") = false, "{'l1d', 'l2', 'l3'}: bytes in effect (or as detected)");
  m.def("set_cache_sizes", [](py::kwargs kw) {
    // all entries checked before any is applied; omitted ones keep their value
    CacheSizes req{-1, -1, -1};
    for (auto item : kw) {
      const std::string key = py::str(item.first);
      int64_t* slot = key == "l1d" ? &req.l1d : key == "l2" ? &req.l2 : key == "l3" ? &req.l3 : nullptr;
      if (!slot) fail(ErrorKind::kInvalidArgument, "set_cache_sizes: unknown cache '" + key + "' (l1d, l2 or l3)");
      *slot = cache_size_arg(key, item.second);
    }
    return cache_dict(set_cache_sizes(req));
  }, "Override the cache sizes the kernels block for: l1d=, l2=, l3= as bytes or strings like '2M'; None "
     "restores the detected size, an omitted one is left as it is. Returns the previous sizes (pass them back "
     "with ** to restore).");
  m.def("parse_cache_sizes", [](const std::string& spec) {
    CacheSizes c{0, 0, 0};
    std::string err;
    if (!parse_cache_sizes(spec, &c, &err)) fail(ErrorKind::kInvalidArgument, err);
    py::dict d;
    if (c.l1d) d["l1d"] = c.l1d;
    if (c.l2) d["l2"] = c.l2;
    if (c.l3) d["l3"] = c.l3;
    return d;
  }, py::arg("spec"), "The entries of an ONNXFAST_CACHE_SIZES string, in bytes (ValueError naming a bad one)");
  m.def("gemm_blocking", [](int64_t M, int64_t N, int64_t K, int64_t threads, bool prepacked, bool transA) {
    if (M <= 0 || N <= 0 || K < 0 || threads < 1)
      fail(ErrorKind::kInvalidArgument, "gemm_blocking: needs M, N >= 1, K >= 0, threads >= 1");
    const GemmBlocking b = gemm_blocking(transA, M, N, K, threads, prepacked);
    py::dict d;
    d["mc"] = b.grid.mc;
    d["nc"] = b.grid.nc;
    d["kc"] = b.kc;
    d["mb"] = b.grid.mb;
    d["nb"] = b.grid.nb;
    d["nc_max"] = b.nc_max;
    d["mr"] = b.mr;
    d["step"] = b.step;
    return d;
  }, py::arg("M"), py::arg("N"), py::arg("K"), py::arg("threads") = 1, py::arg("prepacked") = false,
     py::arg("transA") = false,
     "The SGEMM driver's blocking for an M x N x K product at the cache sizes in effect: tiles of mc x nc "
     "(mb x nb of them) over K blocks of kc; nc_max from L2");
  m.def("build_info", []() {
    py::dict d;
#if defined(__clang__)
    d["compiler"] = "clang " __clang_version__;
#elif defined(__GNUC__)
    d["compiler"] = "gcc " __VERSION__;
#endif
#if defined(__AVX__)
    d["baseline_avx"] = true;
#else
    d["baseline_avx"] = false;
#endif
    return d;
  });

  py::class_<PyKernel>(m, "NativeKernel")
      .def("describe", [](const PyKernel& k) { return k.k->describe(); })
      .def("packed_inputs", [](const PyKernel& k) { return k.k->packed_inputs(); },
           "constant inputs the kernel holds its own packed copy of (it reads only their shape at run time)")
      .def_readonly("op_type", &PyKernel::op_type)
      .def_readonly("dtypes", &PyKernel::dtypes, "input-0 element types its declaration computes")
      .def("run", &run_kernel, py::arg("inputs"), py::arg("num_outputs") = 1,
           "Run the kernel on numpy arrays (testing aid); returns the outputs.");

  m.def(
      "create_kernel",
      [](const std::string& op, const std::string& name, int opset, py::dict attrs, py::sequence consts,
         bool allow_prepack, py::object input_shapes, int num_outputs, const std::string& domain, int since_version,
         py::object input_types, const std::string& provider) {
        KernelArgs a = kernel_args(op, domain, name, opset, since_version, attrs, consts, allow_prepack, input_shapes,
                                   num_outputs, input_types);
        const KernelDef& d = kernel_def(a, provider);
        PyKernel pk;
        pk.k = std::shared_ptr<Kernel>(create_kernel(d, a));
        pk.op_type = op;
        pk.name = name;
        pk.dtypes = run_time_types(d, a.since_version);
        pk.inplace = d.inplace;
        return pk;
      },
      py::arg("op_type"), py::arg("node_name"), py::arg("opset"), py::arg("attrs"), py::arg("const_inputs"),
      py::arg("allow_prepack") = true, py::arg("input_shapes") = py::none(), py::arg("num_outputs") = 1,
      py::arg("domain") = "", py::arg("since_version") = 0, py::arg("input_types") = py::none(),
      py::arg("provider") = kCpuProvider,
      "A native kernel for a node, from the declaration for its domain, schema version (0: the opset), input "
      "0 type (input_types, per input: an element type or None) and provider. input_shapes: per input, None (rank unknown) "
      "or its dims (-1: unknown dim); the kernel checks its attributes and these ranks now (InvalidModel).");
  m.def(
      "validate_kernel",
      [](const std::string& op, const std::string& name, int opset, py::dict attrs, py::sequence consts,
         py::object input_shapes, int num_outputs, const std::string& domain, int since_version,
         py::object input_types) {
        KernelArgs a = kernel_args(op, domain, name, opset, since_version, attrs, consts, false, input_shapes,
                                   num_outputs, input_types);
        // the node's checks are the same for every input type: a node of a type that runs on numpy is
        // checked by the kernel of the version (its float32 one where declared)
        const KernelDef* d = find_kernel(a.domain, a.op_type, a.since_version, 0);
        if (d) d->factory(a);  // (its declared input types not enforced: this node may run on numpy)
      },
      py::arg("op_type"), py::arg("node_name"), py::arg("opset"), py::arg("attrs"), py::arg("const_inputs"),
      py::arg("input_shapes") = py::none(), py::arg("num_outputs") = 1, py::arg("domain") = "",
      py::arg("since_version") = 0, py::arg("input_types") = py::none(),
      "Create the native kernel only to check the node (attributes, input ranks) and drop it: the "
      "checks of nodes that run on numpy or are fused or folded away.");

  py::class_<ThreadPool, std::shared_ptr<ThreadPool>>(m, "ThreadPool")
      .def_property_readonly("num_threads", &ThreadPool::num_threads)
      .def("set_spin_us", &ThreadPool::set_spin_us);
  m.def("shared_pool", &shared_pool, py::arg("num_threads"),
        "The process-wide pool for this many threads (0: the CPUs this process may use).");
  m.def("default_num_threads", &ThreadPool::default_num_threads);
  m.def(
      "test_parallel_sum",
      [](std::shared_ptr<ThreadPool> pool, int64_t n, int64_t grain) {
        // Testing aid: every index visited exactly once, from several threads.
        std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
        {
          py::gil_scoped_release rel;
          pool->parallel_for(n, grain, [&](int64_t b, int64_t e) {
            for (int64_t i = b; i < e; ++i) hits[i].fetch_add(1);
          });
        }
        int64_t bad = 0;
        for (auto& h : hits) bad += h.load() != 1;
        return bad;
      },
      py::arg("pool"), py::arg("n"), py::arg("grain") = 1);

  py::class_<RunOptions>(m, "RunOptions")
      .def(py::init<>())
      .def_readwrite("log_severity_level", &RunOptions::log_severity_level)
      .def_readwrite("log_verbosity_level", &RunOptions::log_verbosity_level)
      .def_readwrite("logid", &RunOptions::logid)
      .def_readwrite("only_execute_path_to_fetches", &RunOptions::only_execute_path_to_fetches)
      .def_property(
          "terminate", [](const RunOptions& r) { return r.terminate.load(); },
          [](RunOptions& r, bool v) { r.terminate.store(v); })
      .def("add_run_config_entry",
           [](RunOptions& r, const std::string& k, const std::string& v) { r.config[k] = v; })
      .def("get_run_config_entry", [](const RunOptions& r, const std::string& k) {
        auto it = r.config.find(k);
        if (it == r.config.end()) fail(ErrorKind::kInvalidArgument, "run config entry '" + k + "' is not set");
        return it->second;
      });

  py::class_<Plan, std::shared_ptr<Plan>>(m, "Plan")
      .def(py::init<>())
      .def("add_constant", [](Plan& p, int id, py::object v) { p.add_constant(id, value_from_py(v, true)); })
      .def(
          "add_input",
          [](Plan& p, const std::string& name, int value, int dtype, bool is_tensor, py::object dims,
             bool has_default, int default_value, bool optional) {
            InputSpec s;
            s.name = name;
            s.value = value;
            s.dtype = dtype;
            s.is_tensor = is_tensor;
            s.has_default = has_default;
            s.default_value = default_value;
            s.optional = optional;
            if (!dims.is_none()) {
              s.has_shape = true;
              for (auto d : dims) s.dims.push_back(d.cast<int64_t>());
            }
            p.add_input(s);
          },
          py::arg("name"), py::arg("value"), py::arg("dtype"), py::arg("is_tensor"), py::arg("dims"),
          py::arg("has_default") = false, py::arg("default_value") = -1, py::arg("optional") = false)
      .def(
          "add_placeholder",
          [](Plan& p, int id, int dtype, std::vector<int64_t> shape) {
            // A constant only packed kernels read: its dtype and shape, no data (the original is released).
            Tensor t;
            t.dtype = dtype;
            t.shape = std::move(shape);
            p.add_constant(id, Value::of_tensor(std::move(t)));
          },
          py::arg("id"), py::arg("dtype"), py::arg("shape"))
      .def("add_output", &Plan::add_output)
      .def(
          "add_native_step",
          [](Plan& p, const std::string& name, const std::string& op, const PyKernel& k, std::vector<int> ins,
             std::vector<int> outs, int in_dev, int out_dev, py::object fallback, std::vector<int> native_dtypes) {
            Step s;
            s.name = name;
            s.op_type = op;
            s.kernel = k.k;
            s.inplace = k.inplace;
            if (!fallback.is_none()) {
              s.host = python_step(fallback);
              s.native_dtypes = std::move(native_dtypes);
            }
            s.inputs = std::move(ins);
            s.outputs = std::move(outs);
            s.in_device = in_dev;
            s.out_device = out_dev;
            p.add_step(std::move(s));
          },
          py::arg("name"), py::arg("op_type"), py::arg("kernel"), py::arg("inputs"), py::arg("outputs"),
          py::arg("in_device") = 0, py::arg("out_device") = 0, py::arg("fallback") = py::none(),
          py::arg("native_dtypes") = std::vector<int>{})
      .def(
          "add_python_step",
          [](Plan& p, const std::string& name, const std::string& op, py::object fn, std::vector<int> ins,
             std::vector<int> outs) {
            Step s;
            s.name = name;
            s.op_type = op;
            s.host = python_step(std::move(fn));
            s.inputs = std::move(ins);
            s.outputs = std::move(outs);
            p.add_step(std::move(s));
          },
          py::arg("name"), py::arg("op_type"), py::arg("fn"), py::arg("inputs"), py::arg("outputs"))
      .def(
          "add_host_step",
          [](Plan& p, const std::string& name, const std::string& op, std::shared_ptr<HostStep> kernel,
             std::vector<int> ins, std::vector<int> outs) {
            Step s;
            s.name = name;
            s.op_type = op;
            s.host = std::move(kernel);
            s.inputs = std::move(ins);
            s.outputs = std::move(outs);
            p.add_step(std::move(s));
          },
          py::arg("name"), py::arg("op_type"), py::arg("kernel"), py::arg("inputs"), py::arg("outputs"),
          "a native kernel over Python objects (an ObjectKernel from onehot_strings_kernel & co.) as a step")
      .def("finalize", &Plan::finalize)
      .def("run", &run_plan, py::arg("output_names"), py::arg("input_feed"), py::arg("run_options") = py::none())
      .def("run_positional", &run_plan_positional)
      .def_readwrite("profiling", &Plan::profiling)
      .def_readwrite("denormal_as_zero", &Plan::denormal_as_zero)
      .def_readwrite("cache_blocks", &Plan::cache_blocks)
      .def_readwrite("mem_pattern", &Plan::mem_pattern)
      .def("num_patterns", &Plan::num_patterns, "memory patterns held (one per input signature seen, at most 16)")
      .def("arena_bytes_served", &Plan::arena_bytes_served, "bytes runs have taken from memory-pattern arenas")
      .def("inplace_reuses", &Plan::inplace_reuses, "outputs computed in place over an input that died there")
      .def_readwrite("pool", &Plan::pool)
      .def("take_profile", &profile_events)
      .def("num_steps", &Plan::num_steps)
      .def("step_info", [](const Plan& p) {
        py::list l;
        for (size_t i = 0; i < p.num_steps(); ++i) {
          const Step& s = p.step(i);
          py::dict d;
          d["name"] = s.name;
          d["op_type"] = s.op_type;
          d["kernel"] = s.kernel ? (s.host ? s.kernel->describe() + "|numpy" : s.kernel->describe())
                                 : std::string("python");
          d["inputs"] = py::cast(s.inputs);
          d["outputs"] = py::cast(s.outputs);
          d["release"] = py::cast(s.release);
          d["in_device"] = s.in_device;
          d["out_device"] = s.out_device;
          l.append(d);
        }
        return l;
      });
}
