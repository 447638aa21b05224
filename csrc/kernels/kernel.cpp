// The native kernel registry and helpers shared by kernels (attributes, dtype checks, broadcasting).
#include "kernel.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <set>
#include <sstream>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "../threadpool/threadpool.h"

namespace onnxfast {

void transpose_f32(const float* src, int64_t lds, int64_t rows, int64_t cols, float* dst, int64_t ldd) {
  for (int64_t i0 = 0; i0 < rows; i0 += 16) {
    const int64_t ie = std::min(rows, i0 + 16);
    int64_t j = 0;
#if defined(__SSE2__)
    for (; j + 4 <= cols; j += 4) {
      int64_t i = i0;
      for (; i + 4 <= ie; i += 4) {
        __m128 r0 = _mm_loadu_ps(src + i * lds + j), r1 = _mm_loadu_ps(src + (i + 1) * lds + j);
        __m128 r2 = _mm_loadu_ps(src + (i + 2) * lds + j), r3 = _mm_loadu_ps(src + (i + 3) * lds + j);
        _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
        _mm_storeu_ps(dst + j * ldd + i, r0);
        _mm_storeu_ps(dst + (j + 1) * ldd + i, r1);
        _mm_storeu_ps(dst + (j + 2) * ldd + i, r2);
        _mm_storeu_ps(dst + (j + 3) * ldd + i, r3);
      }
      for (; i < ie; ++i)
        for (int64_t jj = j; jj < j + 4; ++jj) dst[jj * ldd + i] = src[i * lds + jj];
    }
#endif
    for (; j < cols; ++j)
      for (int64_t i = i0; i < ie; ++i) dst[j * ldd + i] = src[i * lds + j];
  }
}

// ---- The kernel registry ----------------------------------------------------------------------

const char* const kCpuProvider = "CPUExecutionProvider";

namespace {

struct KernelBlock {
  void (*block)();
  const char* file;
};
// Filled during static initialization (function-local static: safe whatever the order of the files).
std::vector<KernelBlock>& kernel_blocks() {
  static std::vector<KernelBlock> blocks;
  return blocks;
}
// The declarations of the block running now (kernel_defs() collects them).
std::vector<KernelDef>* g_collecting = nullptr;
const char* g_collecting_file = "";

bool overlaps(const std::vector<int>& a, const std::vector<int>& b) {
  for (int x : a)
    if (std::find(b.begin(), b.end(), x) != b.end()) return true;
  return false;
}

std::vector<KernelDef> collect_kernel_defs() {
  std::vector<KernelDef> defs;
  struct Collecting {  // reset even when a block throws
    explicit Collecting(std::vector<KernelDef>* d) { g_collecting = d; }
    ~Collecting() { g_collecting = nullptr; }
  } collecting(&defs);
  for (const KernelBlock& b : kernel_blocks()) {
    g_collecting_file = b.file;
    b.block();
  }
  for (size_t i = 0; i < defs.size(); ++i) {
    const KernelDef& d = defs[i];
    if (d.op.empty() || !d.factory || d.types.empty() || d.since < 1 || d.until < d.since)
      throw std::logic_error("kernel declaration '" + d.op + "' in " + d.file +
                             " needs an op name, a factory, input-0 types and since <= until");
    for (size_t j = 0; j < i; ++j) {
      const KernelDef& e = defs[j];
      if (e.domain == d.domain && e.op == d.op && e.provider == d.provider && e.since <= d.until &&
          d.since <= e.until && overlaps(e.types, d.types))
        throw std::logic_error("kernel " + (d.domain.empty() ? std::string("ai.onnx") : d.domain) + "::" + d.op +
                               " for " + d.provider + " is declared twice for overlapping versions and types (" +
                               e.file + " and " + d.file + ")");
    }
  }
  return defs;
}

}  // namespace

bool KernelDef::computes(int dtype) const { return std::find(types.begin(), types.end(), dtype) != types.end(); }

KernelDecl::KernelDecl(std::string op, std::string domain) {
  d_.op = std::move(op);
  d_.domain = std::move(domain);
}

void KernelDecl::make(KernelFactory f) {
  if (!g_collecting) throw std::logic_error("kernel '" + d_.op + "' declared outside an ONNXFAST_KERNELS block");
  d_.factory = std::move(f);
  d_.file = g_collecting_file;
  g_collecting->push_back(std::move(d_));
}

KernelDecl kernel(std::string op, std::string domain) { return KernelDecl(std::move(op), std::move(domain)); }

bool add_kernel_block(void (*block)(), const char* file) {
  const char* rel = std::strstr(file, "csrc/");  // the path from the source root, whatever the build's
  kernel_blocks().push_back({block, rel ? rel : file});
  return true;
}

const std::vector<KernelDef>& kernel_defs() {
  static const std::vector<KernelDef> defs = collect_kernel_defs();
  return defs;
}

const KernelDef* find_kernel(const std::string& domain, const std::string& op, int since_version, int dtype,
                             const std::string& provider) {
  const KernelDef *first = nullptr, *float32 = nullptr;
  for (const KernelDef& d : kernel_defs()) {
    if (d.op != op || d.domain != domain || d.provider != provider || !d.covers(since_version)) continue;
    if (dtype > 0) {
      if (d.computes(dtype)) return &d;
      continue;
    }
    if (d.serves_unknown_type) return &d;
    if (!float32 && d.computes(kFloat)) float32 = &d;
    if (!first) first = &d;
  }
  return float32 ? float32 : first;
}

std::vector<int> run_time_types(const KernelDef& def, int since_version) {
  if (!def.serves_unknown_type) return def.types;
  std::vector<int> types;
  for (const KernelDef& d : kernel_defs())
    if (d.op == def.op && d.domain == def.domain && d.provider == def.provider && d.covers(since_version))
      for (int t : d.types)
        if (std::find(types.begin(), types.end(), t) == types.end()) types.push_back(t);
  return types;
}

std::unique_ptr<Kernel> create_kernel(const KernelDef& def, const KernelArgs& args) {
  for (const auto& [i, allowed] : def.input_types) {
    const int t = i < static_cast<int>(args.const_inputs.size()) && args.const_inputs[i] ? args.const_inputs[i]->dtype
                                                                                          : args.dtype_of(i);
    if (t > 0 && std::find(allowed.begin(), allowed.end(), t) == allowed.end())
    {
      std::string names;
      for (int a : allowed) names += (names.empty() ? "" : ", ") + dtype_name(a);
      fail(ErrorKind::kInvalidType,
           args.who() + ": input " + std::to_string(i) + " is tensor(" + dtype_name(t) + "); it must be one of " + names);
    }
  }
  return def.factory(args);
}

std::unique_ptr<Kernel> create_kernel(const std::string& op, const KernelArgs& args) {
  const int t = args.dtype_of(0);
  const KernelDef* d = find_kernel(args.domain, op, args.since_version > 0 ? args.since_version : kLatestVersion,
                                   t > 0 ? t : kFloat);
  if (!d) throw std::logic_error("no native kernel " + op);
  return create_kernel(*d, args);
}

int64_t KernelArgs::get_int(const std::string& name, int64_t dflt) const {
  auto it = attrs.find(name);
  if (it == attrs.end() || it->second.kind == AttrValue::kNone) return dflt;
  if (it->second.kind == AttrValue::kFloat) return static_cast<int64_t>(it->second.f);
  return it->second.i;
}
double KernelArgs::get_float(const std::string& name, double dflt) const {
  auto it = attrs.find(name);
  if (it == attrs.end() || it->second.kind == AttrValue::kNone) return dflt;
  if (it->second.kind == AttrValue::kInt) return static_cast<double>(it->second.i);
  return it->second.f;
}
std::string KernelArgs::get_string(const std::string& name, const std::string& dflt) const {
  auto it = attrs.find(name);
  if (it == attrs.end() || it->second.kind != AttrValue::kString) return dflt;
  return it->second.s;
}
std::vector<int64_t> KernelArgs::get_ints(const std::string& name) const {
  auto it = attrs.find(name);
  if (it == attrs.end() || it->second.kind != AttrValue::kInts) return {};
  return it->second.ints;
}

void FloatUnaryKernel::infer(const std::vector<const Tensor*>& in, std::vector<OutSpec>& out) const {
  if (in.empty() || !in[0]) kernel_fail(name_ + " needs one input");
  expect_dtype(*in[0], kFloat, (name_ + " input").c_str());
  out.resize(1);
  out[0] = {kFloat, in[0]->shape};
}

void FloatUnaryKernel::compute(const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) const {
  float_chunks(*in[0], *out[0], cost_, [this](const float* x, float* y, int64_t n) { apply(x, y, n); });
}

void float_chunks(const Tensor& X, Tensor& Y, double cost_per_element,
                  const std::function<void(const float*, float*, int64_t)>& f) {
  const float* x = X.ptr<float>();
  float* y = Y.ptr<float>();
  const int64_t total = X.numel();
  const int64_t chunk = 4096;
  parallel_for((total + chunk - 1) / chunk, cost_per_element * chunk, [&](int64_t cb, int64_t ce) {
    const int64_t lo = cb * chunk;
    f(x + lo, y + lo, std::min(total, ce * chunk) - lo);
  });
}

void kernel_fail(const std::string& msg) { fail(ErrorKind::kInvalidArgument, msg); }

void expect_dtype(const Tensor& t, int dtype, const char* what) {
  if (t.dtype != dtype)
    fail(ErrorKind::kInvalidType, std::string(what) + " has type tensor(" + dtype_name(t.dtype) +
                                      "), expected tensor(" + dtype_name(dtype) + ")");
}

std::vector<int64_t> int_values(const Tensor& t, const std::string& who, const char* what) {
  std::vector<int64_t> v(static_cast<size_t>(t.numel()));
  if (t.dtype == kInt64) {
    std::copy(t.ptr<int64_t>(), t.ptr<int64_t>() + t.numel(), v.begin());
  } else if (t.dtype == kInt32) {
    std::copy(t.ptr<int32_t>(), t.ptr<int32_t>() + t.numel(), v.begin());
  } else {
    fail(ErrorKind::kInvalidType, who + ": " + what + " must be tensor(int32) or tensor(int64), got tensor(" +
                                      dtype_name(t.dtype) + ")");
  }
  return v;
}

Tensor output_tensor(const OutSpec& spec, const std::vector<const Tensor*>& in, const std::string& what, int device) {
  if (spec.alias_input < 0) return Tensor::empty(spec.dtype, spec.shape, what, device);
  const Tensor* src = static_cast<size_t>(spec.alias_input) < in.size() ? in[spec.alias_input] : nullptr;
  if (!src || src->dtype != spec.dtype || shape_numel(src->shape) != shape_numel(spec.shape) || src->device != device)
    fail(ErrorKind::kRuntime, "internal error: " + what + " is declared a view of input " +
                                  std::to_string(spec.alias_input) + ", which does not match it");
  Tensor t = *src;  // shares the storage: the input stays alive while the view does
  t.shape = spec.shape;
  return t;
}

int64_t normalize_axis(int64_t axis, int64_t rank, const std::string& who, const char* what) {
  if (axis < -rank || axis >= rank)
    kernel_fail(who + ": " + what + " " + std::to_string(axis) + " is out of range for a tensor of rank " +
                std::to_string(rank) + " (valid: [" + std::to_string(-rank) + ", " + std::to_string(rank - 1) + "])");
  return axis < 0 ? axis + rank : axis;
}

namespace {
template <typename T>
std::string join_list(const std::vector<T>& v) {
  std::ostringstream s;
  s << "[";
  for (size_t i = 0; i < v.size(); ++i) s << (i ? ", " : "") << v[i];
  s << "]";
  return s.str();
}
}  // namespace

std::string list_str(const std::vector<int64_t>& v) { return join_list(v); }
std::string list_str(const std::vector<double>& v) { return join_list(v); }

void expect_conv_inputs(const std::vector<const Tensor*>& in, const std::string& who) {
  if (in.size() < 2 || !in[0] || !in[1]) kernel_fail(who + " needs inputs X and W");
  expect_dtype(*in[0], kFloat, (who + " input X").c_str());
  expect_dtype(*in[1], kFloat, (who + " input W").c_str());
}

void expect_conv_bias(const std::vector<const Tensor*>& in, int64_t M, const std::string& who) {
  if (in.size() <= 2 || !in[2]) return;
  expect_dtype(*in[2], kFloat, (who + " input B").c_str());
  if (in[2]->rank() != 1 || in[2]->shape[0] != M)
    kernel_fail(who + ": bias must have shape (" + std::to_string(M) + ",), got " + shape_str(in[2]->shape));
}

MatMulDims matmul_dims(const Shape& a, const Shape& b, const std::string& who) {
  if (a.empty() || b.empty()) kernel_fail(who + ": inputs must have rank >= 1");
  const Shape a2 = a.size() == 1 ? Shape{1, a[0]} : a;
  const Shape b2 = b.size() == 1 ? Shape{b[0], 1} : b;
  MatMulDims d;
  d.M = a2[a2.size() - 2];
  d.K = a2.back();
  d.N = b2.back();
  const int64_t Kb = b2[b2.size() - 2];
  if (d.K != Kb)
    kernel_fail(who + ": inner dimensions differ: A " + shape_str(a) + " has K=" + std::to_string(d.K) + ", B " +
                shape_str(b) + " has K=" + std::to_string(Kb));
  const Shape ba(a2.begin(), a2.end() - 2), bb(b2.begin(), b2.end() - 2);
  d.batch = broadcast_shapes(ba, bb, (who + " batch dims").c_str());
  d.out = d.batch;
  if (a.size() != 1) d.out.push_back(d.M);
  if (b.size() != 1) d.out.push_back(d.N);
  const size_t r = d.batch.size();
  d.a_stride.assign(r, 0);
  d.b_stride.assign(r, 0);
  int64_t st = d.M * d.K;
  for (size_t i = ba.size(); i-- > 0;) {
    d.a_stride[r - ba.size() + i] = ba[i] == 1 ? 0 : st;
    st *= ba[i];
  }
  st = d.K * d.N;
  for (size_t i = bb.size(); i-- > 0;) {
    d.b_stride[r - bb.size() + i] = bb[i] == 1 ? 0 : st;
    st *= bb[i];
  }
  return d;
}

void MatMulDims::offsets(int64_t t, int64_t* oa, int64_t* ob) const {
  *oa = *ob = 0;
  for (size_t d = batch.size(); d-- > 0;) {
    const int64_t id = t % batch[d];
    t /= batch[d];
    *oa += id * a_stride[d];
    *ob += id * b_stride[d];
  }
}

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* what) {
  size_t r = std::max(a.size(), b.size());
  Shape out(r);
  for (size_t i = 0; i < r; ++i) {
    int64_t da = i < r - a.size() ? 1 : a[i - (r - a.size())];
    int64_t db = i < r - b.size() ? 1 : b[i - (r - b.size())];
    if (da == db || db == 1) out[i] = da;
    else if (da == 1) out[i] = db;
    else
      kernel_fail(std::string(what) + ": shapes " + shape_str(a) + " and " + shape_str(b) +
                  " cannot be broadcast (axis " + std::to_string(i) + ": " + std::to_string(da) + " vs " +
                  std::to_string(db) + ")");
  }
  return out;
}

// ---- Validation at kernel creation (see kernel.h) -------------------------------------------

void attr_fail(const KernelArgs& a, const std::string& attr, const std::string& value, const std::string& allowed) {
  fail(ErrorKind::kInvalidModel, a.who() + ": attribute '" + attr + "' is " + value + "; it must be " + allowed);
}

void input_fail(const KernelArgs& a, size_t input, const std::string& input_name, const std::string& what,
                const std::string& allowed) {
  fail(ErrorKind::kInvalidModel, a.who() + ": input " + std::to_string(input) + " ('" + input_name + "') " + what +
                                     "; it must be " + allowed);
}

std::string num_str(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

namespace {
const AttrValue* find_attr(const KernelArgs& a, const std::string& attr) {
  auto it = a.attrs.find(attr);
  return it == a.attrs.end() || it->second.kind == AttrValue::kNone ? nullptr : &it->second;
}

const char* kind_name(const AttrValue& v) {
  switch (v.kind) {
    case AttrValue::kInt: return "an integer";
    case AttrValue::kFloat: return "a float";
    case AttrValue::kString: return "a string";
    case AttrValue::kInts: return "a list of integers";
    case AttrValue::kFloats: return "a list of floats";
    case AttrValue::kStrings: return "a list of strings";
    default: return "of no known type";
  }
}

[[noreturn]] void kind_fail(const KernelArgs& a, const std::string& attr, const AttrValue& v, const char* wanted) {
  attr_fail(a, attr, kind_name(v), wanted);
}
}  // namespace

int64_t attr_int(const KernelArgs& a, const std::string& attr, int64_t dflt) {
  const AttrValue* v = find_attr(a, attr);
  if (!v) return dflt;
  if (v->kind != AttrValue::kInt) kind_fail(a, attr, *v, "an integer");
  return v->i;
}

double attr_float(const KernelArgs& a, const std::string& attr, double dflt, bool allow_nan) {
  const AttrValue* v = find_attr(a, attr);
  if (!v) return dflt;
  if (v->kind != AttrValue::kFloat && v->kind != AttrValue::kInt) kind_fail(a, attr, *v, "a float");
  const double f = v->kind == AttrValue::kInt ? static_cast<double>(v->i) : v->f;
  if (!allow_nan && std::isnan(f)) attr_fail(a, attr, "nan", "a number");
  return f;
}

std::vector<int64_t> attr_ints(const KernelArgs& a, const std::string& attr) {
  const AttrValue* v = find_attr(a, attr);
  if (!v) return {};
  if (v->kind == AttrValue::kInts) return v->ints;
  if (v->kind == AttrValue::kFloats && v->floats.empty()) return {};
  kind_fail(a, attr, *v, "a list of integers");
}

std::vector<double> attr_floats(const KernelArgs& a, const std::string& attr) {
  const AttrValue* v = find_attr(a, attr);
  if (!v) return {};
  if (v->kind == AttrValue::kFloats) return v->floats;
  if (v->kind == AttrValue::kInts) return std::vector<double>(v->ints.begin(), v->ints.end());
  kind_fail(a, attr, *v, "a list of floats");
}

std::vector<std::string> attr_strings(const KernelArgs& a, const std::string& attr) {
  const AttrValue* v = find_attr(a, attr);
  if (!v) return {};
  if (v->kind == AttrValue::kStrings) return v->strings;
  if ((v->kind == AttrValue::kFloats && v->floats.empty()) || (v->kind == AttrValue::kInts && v->ints.empty()))
    return {};
  kind_fail(a, attr, *v, "a list of strings");
}

std::string attr_string(const KernelArgs& a, const std::string& attr, const std::string& dflt) {
  const AttrValue* v = find_attr(a, attr);
  if (!v) return dflt;
  if (v->kind != AttrValue::kString) kind_fail(a, attr, *v, "a string");
  return v->s;
}

int64_t expect_int_in(const KernelArgs& a, const std::string& attr, int64_t dflt, int64_t lo, int64_t hi) {
  const int64_t v = attr_int(a, attr, dflt);
  if (v < lo || v > hi)
    attr_fail(a, attr, std::to_string(v), "in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return v;
}

double expect_finite(const KernelArgs& a, const std::string& attr, double dflt) {
  const double v = attr_float(a, attr, dflt, true);
  if (!std::isfinite(v)) attr_fail(a, attr, num_str(v), "a finite number");
  return v;
}

std::string expect_known_string(const KernelArgs& a, const std::string& attr, const std::string& dflt,
                                const std::vector<std::string>& allowed) {
  const std::string v = attr_string(a, attr, dflt);
  if (std::find(allowed.begin(), allowed.end(), v) != allowed.end()) return v;
  std::string list;
  for (size_t i = 0; i < allowed.size(); ++i)
    list += (i ? (i + 1 == allowed.size() ? " or '" : ", '") : "'") + allowed[i] + "'";
  attr_fail(a, attr, "'" + v + "'", "one of " + list);
}

void expect_known_attrs(const KernelArgs& a, const std::vector<std::string>& known) {
  for (const auto& kv : a.attrs) {
    if (std::find(known.begin(), known.end(), kv.first) != known.end()) continue;
    std::string list;
    for (size_t i = 0; i < known.size(); ++i) list += (i ? ", " : "") + known[i];
    attr_fail(a, kv.first, "set", "left out (" + a.op_type + " has " +
                                      (known.empty() ? std::string("no attributes") : "attributes " + list) + ")");
  }
}

int64_t check_axis(const KernelArgs& a, const std::string& attr, int64_t axis, int64_t rank) {
  if (rank >= 0 && (axis < -rank || axis >= rank)) {
    if (rank == 0)
      attr_fail(a, attr, std::to_string(axis), "an axis of the input, which has rank 0 (no axes)");
    attr_fail(a, attr, std::to_string(axis),
              "in [" + std::to_string(-rank) + ", " + std::to_string(rank - 1) + "] for an input of rank " +
                  std::to_string(rank));
  }
  return axis;
}

namespace {
// What a list of axes must be, when it is not that ("" when it is fine).
std::string axes_problem(const std::vector<int64_t>& axes, int64_t rank) {
  std::set<int64_t> seen;
  for (int64_t axis : axes) {
    if (rank >= 0 && (axis < -rank || axis >= rank))
      return "axes in [" + std::to_string(-rank) + ", " + std::to_string(rank - 1) + "] for an input of rank " +
             std::to_string(rank) + " (" + std::to_string(axis) + " is not)";
    // With the rank unknown, -1 and r-1 cannot be told apart: only literal repeats are refused then.
    const int64_t n = rank >= 0 && axis < 0 ? axis + rank : axis;
    if (!seen.insert(n).second) return "distinct axes (axis " + std::to_string(n) + " repeats)";
  }
  return "";
}
}  // namespace

void check_axes(const KernelArgs& a, const std::string& attr, const std::vector<int64_t>& axes, int64_t rank) {
  const std::string p = axes_problem(axes, rank);
  if (!p.empty()) attr_fail(a, attr, list_str(axes), p);
}

void check_axes_input(const KernelArgs& a, size_t input, const std::string& input_name,
                      const std::vector<int64_t>& axes, int64_t rank) {
  const std::string p = axes_problem(axes, rank);
  if (!p.empty()) input_fail(a, input, input_name, "is " + list_str(axes), p);
}

void expect_rank_in(const KernelArgs& a, size_t input, const std::string& input_name, int64_t lo, int64_t hi) {
  const int64_t r = a.rank_of(input);
  if (r < 0 || (r >= lo && (hi < 0 || r <= hi))) return;
  std::string allowed;
  if (hi < 0) allowed = "at least " + std::to_string(lo);
  else if (lo == hi) allowed = std::to_string(lo);
  else allowed = "in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]";
  input_fail(a, input, input_name, "has rank " + std::to_string(r), allowed);
}

void expect_broadcastable(const KernelArgs& a, std::vector<size_t> inputs) {
  if (inputs.empty())
    for (size_t i = 0; i < a.input_ranks.size(); ++i) inputs.push_back(i);
  // Per output dim (aligned from the right): the first input with a known dim other than 1.
  std::vector<std::pair<int64_t, size_t>> known;
  for (size_t i : inputs) {
    if (a.rank_of(i) < 0 || i >= a.input_dims.size()) continue;
    const Shape& d = a.input_dims[i];
    if (d.size() > known.size()) known.insert(known.begin(), d.size() - known.size(), {-1, 0});
    for (size_t k = 0; k < d.size(); ++k) {
      auto& slot = known[known.size() - d.size() + k];
      if (d[k] < 0 || d[k] == 1) continue;
      if (slot.first < 0) slot = {d[k], i};
      else if (slot.first != d[k]) {
        const size_t j = slot.second;
        fail(ErrorKind::kInvalidModel,
             a.who() + ": inputs " + std::to_string(j) + " of shape " + shape_str(a.input_dims[j]) + " and " +
                 std::to_string(i) + " of shape " + shape_str(d) + " cannot be broadcast together (" +
                 std::to_string(slot.first) + " vs " + std::to_string(d[k]) + " in the same output dim)");
      }
    }
  }
}

}  // namespace onnxfast
