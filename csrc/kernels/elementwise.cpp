// Elementwise kernels: broadcasting binary arithmetic (Add, Sub, Mul, Div), variadic Max / Min / Sum /
// Mean, and comparisons (Equal, Less, Greater, LessOrEqual, GreaterOrEqual: bool results) over
// float/double/int32/int64, and float Clip and
// unary activations (Relu, LeakyRelu, Sqrt, Neg, Abs; the transcendental ones are in normalization.cpp),
// Pow (float / double bases), Cast, And / Or / Xor / Not and IsNaN / IsInf. Broadcasting collapses the
// output index space to as few dimensions as possible, then runs a contiguous inner loop.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

#include "bit_cast.h"

#include "kernel.h"
#include "../threadpool/threadpool.h"

namespace onnxfast {
namespace {

// Broadcast iteration plan: output dims (collapsed) and per-input element strides (0 = broadcast).
struct BroadcastPlan {
  std::vector<int64_t> dims, sa, sb;
};

BroadcastPlan make_plan(const Shape& out, const Shape& a, const Shape& b) {
  size_t r = out.size();
  std::vector<int64_t> da(r, 1), db(r, 1);
  for (size_t i = 0; i < a.size(); ++i) da[r - a.size() + i] = a[i];
  for (size_t i = 0; i < b.size(); ++i) db[r - b.size() + i] = b[i];
  // Drop size-1 output dims, then merge neighbours with the same broadcast pattern.
  std::vector<int64_t> od;
  std::vector<int> pa, pb;  // 1 = input varies along this dim
  for (size_t i = 0; i < r; ++i) {
    if (out[i] == 1) continue;
    int fa = da[i] != 1, fb = db[i] != 1;
    if (!od.empty() && pa.back() == fa && pb.back() == fb) {
      od.back() *= out[i];
    } else {
      od.push_back(out[i]);
      pa.push_back(fa);
      pb.push_back(fb);
    }
  }
  BroadcastPlan p;
  if (od.empty()) {
    p.dims = {1};
    p.sa = {0};
    p.sb = {0};
    return p;
  }
  size_t n = od.size();
  p.dims = od;
  p.sa.assign(n, 0);
  p.sb.assign(n, 0);
  int64_t ra = 1, rb = 1;
  for (size_t i = n; i-- > 0;) {
    if (pa[i]) { p.sa[i] = ra; ra *= od[i]; }
    if (pb[i]) { p.sb[i] = rb; rb *= od[i]; }
  }
  return p;
}

// Rows [o0, o1) of the collapsed outer index space (R: the result type, bool for comparisons).
template <typename T, typename R, typename Op>
void run_binary_rows(const BroadcastPlan& p, const T* a, const T* b, R* c, Op op, int64_t o0, int64_t o1) {
  size_t n = p.dims.size();
  int64_t inner = p.dims[n - 1];
  int64_t ia = p.sa[n - 1], ib = p.sb[n - 1];
  std::vector<int64_t> idx(n, 0);
  int64_t oa = 0, ob = 0, rem = o0;
  for (size_t d = n - 1; d-- > 0;) {
    idx[d] = rem % p.dims[d];
    rem /= p.dims[d];
    oa += idx[d] * p.sa[d];
    ob += idx[d] * p.sb[d];
  }
  for (int64_t o = o0; o < o1; ++o) {
    const T* pa = a + oa;
    const T* pb = b + ob;
    R* pc = c + o * inner;
    if (ia && ib) {
      for (int64_t j = 0; j < inner; ++j) pc[j] = op(pa[j], pb[j]);
    } else if (ia) {
      const T vb = pb[0];
      for (int64_t j = 0; j < inner; ++j) pc[j] = op(pa[j], vb);
    } else if (ib) {
      const T va = pa[0];
      for (int64_t j = 0; j < inner; ++j) pc[j] = op(va, pb[j]);
    } else {
      const R v = op(pa[0], pb[0]);
      for (int64_t j = 0; j < inner; ++j) pc[j] = v;
    }
    for (size_t d = n - 1; d-- > 0;) {
      if (++idx[d] < p.dims[d]) {
        oa += p.sa[d];
        ob += p.sb[d];
        break;
      }
      oa -= p.sa[d] * (p.dims[d] - 1);
      ob -= p.sb[d] * (p.dims[d] - 1);
      idx[d] = 0;
    }
  }
}

template <typename T, typename R = T, typename Op>
void run_binary(const BroadcastPlan& p, const T* a, const T* b, R* c, Op op) {
  size_t n = p.dims.size();
  int64_t inner = p.dims[n - 1];
  int64_t outer = 1;
  for (size_t i = 0; i + 1 < n; ++i) outer *= p.dims[i];
  if (outer == 1 && inner >= 65536) {
    // One long row: split it into chunks (same broadcast pattern on every chunk).
    const int64_t ia = p.sa[0], ib = p.sb[0];
    const int64_t chunk = 16384;
    parallel_for((inner + chunk - 1) / chunk, chunk * 0.3, [&](int64_t cb, int64_t ce) {
      for (int64_t t = cb; t < ce; ++t) {
        int64_t j0 = t * chunk, j1 = std::min(inner, j0 + chunk);
        for (int64_t j = j0; j < j1; ++j) c[j] = op(a[ia ? j : 0], b[ib ? j : 0]);
      }
    });
    return;
  }
  parallel_for(outer, std::max<double>(1.0, inner * 0.3), [&](int64_t o0, int64_t o1) {
    run_binary_rows<T, R>(p, a, b, c, op, o0, o1);
  });
}

// The broadcast output shape of a two-input op, after checking both inputs are there and of one type.
Shape binary_shape(const std::vector<const Tensor*>& in, const std::string& name) {
  if (in.size() != 2 || !in[0] || !in[1]) kernel_fail(name + " needs two inputs");
  if (in[0]->dtype != in[1]->dtype)
    fail(ErrorKind::kInvalidType, name + ": input types differ: tensor(" + dtype_name(in[0]->dtype) + ") and tensor(" +
                                      dtype_name(in[1]->dtype) + ")");
  return broadcast_shapes(in[0]->shape, in[1]->shape, name.c_str());
}

enum class BinOp { kAdd, kSub, kMul, kDiv };

class BinaryKernel : public Kernel {
 public:
  BinaryKernel(BinOp op, std::string name) : op_(op), name_(std::move(name)) {}
  void infer(const std::vector<const Tensor*>& in, std::vector<OutSpec>& out) const override {
    const Shape shape = binary_shape(in, name_);
    out.resize(1);
    out[0] = {in[0]->dtype, shape};
  }
  void compute(const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) const override {
    Tensor& c = *out[0];
    if (c.numel() == 0) return;
    BroadcastPlan p = make_plan(c.shape, in[0]->shape, in[1]->shape);
    switch (c.dtype) {
      case kFloat: dispatch<float>(p, *in[0], *in[1], c); break;
      case kDouble: dispatch<double>(p, *in[0], *in[1], c); break;
      case kInt32: dispatch<int32_t>(p, *in[0], *in[1], c); break;
      case kInt64: dispatch<int64_t>(p, *in[0], *in[1], c); break;
      default: fail(ErrorKind::kInvalidType, name_ + ": no native kernel for tensor(" + dtype_name(c.dtype) + ")");
    }
  }

 private:
  template <typename T>
  void dispatch(const BroadcastPlan& p, const Tensor& a, const Tensor& b, Tensor& c) const {
    const T* pa = a.ptr<T>();
    const T* pb = b.ptr<T>();
    T* pc = c.ptr<T>();
    switch (op_) {
      case BinOp::kAdd: run_binary<T>(p, pa, pb, pc, [](T x, T y) { return x + y; }); break;
      case BinOp::kSub: run_binary<T>(p, pa, pb, pc, [](T x, T y) { return x - y; }); break;
      case BinOp::kMul: run_binary<T>(p, pa, pb, pc, [](T x, T y) { return x * y; }); break;
      case BinOp::kDiv:
        if constexpr (std::is_integral<T>::value) {
          const int64_t nb = b.numel();
          for (int64_t i = 0; i < nb; ++i)
            if (pb[i] == 0) fail(ErrorKind::kZeroDivision, name_ + ": integer division by zero");
          bool has_min = false, has_m1 = false;
          const int64_t na = a.numel();
          for (int64_t i = 0; i < na && !has_min; ++i) has_min = pa[i] == std::numeric_limits<T>::lowest();
          for (int64_t i = 0; i < nb && !has_m1; ++i) has_m1 = pb[i] == T(-1);
          if (has_min && has_m1) {
            // Check the exact pairs only when both values are present somewhere.
            std::atomic<bool> overflow{false};
            run_binary<T>(p, pa, pb, pc, [&overflow](T x, T y) {
              if (x == std::numeric_limits<T>::lowest() && y == T(-1)) {
                overflow.store(true, std::memory_order_relaxed);
                return T(0);
              }
              return T(x / y);
            });
            if (overflow.load())
              fail(ErrorKind::kOverflow, name_ + ": integer division overflows (" +
                                             std::to_string(std::numeric_limits<T>::lowest()) + " / -1)");
          } else {
            run_binary<T>(p, pa, pb, pc, [](T x, T y) { return T(x / y); });
          }
        } else {
          run_binary<T>(p, pa, pb, pc, [](T x, T y) { return x / y; });
        }
        break;
    }
  }
  BinOp op_;
  std::string name_;
};

enum class VarOp { kMax, kMin, kSum, kMean };

// Max / Min / Sum / Mean over 1..N inputs with numpy broadcasting, folded left to right as the numpy
// kernel's functools.reduce does (so Sum's additions happen in the same order); Max / Min propagate
// NaN like np.maximum / np.minimum; Mean divides the sum by N.
class VariadicKernel : public Kernel {
 public:
  VariadicKernel(VarOp op, std::string name) : op_(op), name_(std::move(name)) {}
  void infer(const std::vector<const Tensor*>& in, std::vector<OutSpec>& out) const override {
    Shape shape;
    int dtype = kUndefined;
    bool any = false;
    for (const Tensor* t : in) {
      if (!t) continue;
      if (!any) {
        shape = t->shape;
        dtype = t->dtype;
        any = true;
        continue;
      }
      if (t->dtype != dtype)
        fail(ErrorKind::kInvalidType, name_ + ": input types differ: tensor(" + dtype_name(dtype) + ") and tensor(" +
                                          dtype_name(t->dtype) + ")");
      shape = broadcast_shapes(shape, t->shape, name_.c_str());
    }
    if (!any) kernel_fail(name_ + " needs at least one input");
    out.resize(1);
    out[0] = {dtype, shape};
  }
  void compute(const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) const override {
    Tensor& c = *out[0];
    std::vector<const Tensor*> xs;
    for (const Tensor* t : in)
      if (t) xs.push_back(t);
    if (c.numel() == 0) return;
    switch (c.dtype) {
      case kFloat: dispatch<float>(xs, c); break;
      case kDouble: dispatch<double>(xs, c); break;
      case kInt32: dispatch<int32_t>(xs, c); break;
      case kInt64: dispatch<int64_t>(xs, c); break;
      default: fail(ErrorKind::kInvalidType, name_ + ": no native kernel for tensor(" + dtype_name(c.dtype) + ")");
    }
  }

 private:
  template <typename T>
  void dispatch(const std::vector<const Tensor*>& xs, Tensor& c) const {
    T* pc = c.ptr<T>();
    if (xs.size() == 1) {
      std::memcpy(pc, xs[0]->ptr<T>(), sizeof(T) * static_cast<size_t>(c.numel()));
      return;
    }
    for (size_t i = 1; i < xs.size(); ++i) {
      // the running result lives in c (full shape, so reading and writing an element is in place)
      const Tensor& a = i == 1 ? *xs[0] : c;
      fold<T>(make_plan(c.shape, a.shape, xs[i]->shape), a.ptr<T>(), xs[i]->ptr<T>(), pc,
              i + 1 == xs.size() ? static_cast<T>(xs.size()) : T(1));
    }
  }
  // c = op(a, b); Mean's last fold also divides the rounded sum by n (n = 1 on the others).
  template <typename T>
  void fold(const BroadcastPlan& p, const T* a, const T* b, T* c, T n) const {
    switch (op_) {
      case VarOp::kMax: run_binary<T>(p, a, b, c, [](T x, T y) { return (x >= y || x != x) ? x : y; }); break;
      case VarOp::kMin: run_binary<T>(p, a, b, c, [](T x, T y) { return (x <= y || x != x) ? x : y; }); break;
      case VarOp::kSum: run_binary<T>(p, a, b, c, [](T x, T y) { return x + y; }); break;
      case VarOp::kMean:
        if (n == T(1)) run_binary<T>(p, a, b, c, [](T x, T y) { return x + y; });
        else run_binary<T>(p, a, b, c, [n](T x, T y) { return static_cast<T>(x + y) / n; });
        break;
    }
  }
  VarOp op_;
  std::string name_;
};

// Clip, float32: max(x, min) then min(., max), NaN-propagating like np.maximum / np.minimum (min > max
// gives max everywhere). Bounds: attributes before opset 11, optional scalar inputs from 11 on.
class ClipKernel : public Kernel {
 public:
  explicit ClipKernel(const KernelArgs& a)
      : name_(a.op_type + " '" + a.node_name + "'"),
        from_inputs_(a.opset >= 11),
        attr_lo_(from_inputs_ ? 0.f : static_cast<float>(attr_float(a, "min", -std::numeric_limits<float>::infinity()))),
        attr_hi_(from_inputs_ ? 0.f : static_cast<float>(attr_float(a, "max", std::numeric_limits<float>::infinity()))) {
    // Clip-6 bounds are attributes: min > max is refused, as onnxruntime refuses it. (Clip-11's bound
    // inputs are run-time values, clipped as given, as onnxruntime does.)
    if (!from_inputs_ && attr_lo_ > attr_hi_)
      attr_fail(a, "min", num_str(attr_lo_), "<= max (" + num_str(attr_hi_) + ")");
  }

  void infer(const std::vector<const Tensor*>& in, std::vector<OutSpec>& out) const override {
    if (in.empty() || !in[0]) kernel_fail(name_ + " needs an input");
    expect_dtype(*in[0], kFloat, (name_ + " input").c_str());
    bound(in, 1, "min");
    bound(in, 2, "max");
    out.resize(1);
    out[0] = {kFloat, in[0]->shape};
  }
  void compute(const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) const override {
    const float lo = bound(in, 1, "min"), hi = bound(in, 2, "max");
    float_chunks(*in[0], *out[0], 0.3, [lo, hi](const float* x, float* y, int64_t n) {
      for (int64_t i = 0; i < n; ++i) {
        const float v = (x[i] >= lo || x[i] != x[i]) ? x[i] : lo;
        y[i] = (v <= hi || v != v) ? v : hi;
      }
    });
  }

 private:
  // The lower (i = 1) or upper (i = 2) bound: the attribute before opset 11, else input i as a float32
  // scalar (absent: no bound).
  float bound(const std::vector<const Tensor*>& in, size_t i, const char* what) const {
    if (!from_inputs_) return i == 1 ? attr_lo_ : attr_hi_;
    if (i >= in.size() || !in[i])
      return i == 1 ? -std::numeric_limits<float>::infinity() : std::numeric_limits<float>::infinity();
    expect_dtype(*in[i], kFloat, (name_ + " " + what).c_str());
    if (in[i]->numel() != 1)
      kernel_fail(name_ + ": " + what + " must be a scalar, got shape " + shape_str(in[i]->shape));
    return in[i]->ptr<float>()[0];
  }
  std::string name_;
  bool from_inputs_;
  float attr_lo_, attr_hi_;
};

enum class CmpOp { kEqual, kLess, kGreater, kLessOrEqual, kGreaterOrEqual, kAnd, kOr, kXor };

// Equal / Less / Greater / LessOrEqual / GreaterOrEqual: broadcasting, bool result (NaN compares
// false, as in numpy).
class CompareKernel : public Kernel {
 public:
  CompareKernel(CmpOp op, std::string name) : op_(op), name_(std::move(name)) {}
  void infer(const std::vector<const Tensor*>& in, std::vector<OutSpec>& out) const override {
    out.resize(1);
    out[0] = {kBool, binary_shape(in, name_)};
  }
  void compute(const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) const override {
    Tensor& c = *out[0];
    if (c.numel() == 0) return;
    BroadcastPlan p = make_plan(c.shape, in[0]->shape, in[1]->shape);
    switch (in[0]->dtype) {
      case kFloat: dispatch<float>(p, *in[0], *in[1], c); break;
      case kDouble: dispatch<double>(p, *in[0], *in[1], c); break;
      case kInt32: dispatch<int32_t>(p, *in[0], *in[1], c); break;
      case kInt64: dispatch<int64_t>(p, *in[0], *in[1], c); break;
      case kBool: dispatch<uint8_t>(p, *in[0], *in[1], c); break;
      default:
        fail(ErrorKind::kInvalidType, name_ + ": no native kernel for tensor(" + dtype_name(in[0]->dtype) + ")");
    }
  }

 private:
  template <typename T>
  void dispatch(const BroadcastPlan& p, const Tensor& a, const Tensor& b, Tensor& c) const {
    const T* pa = a.ptr<T>();
    const T* pb = b.ptr<T>();
    bool* pc = c.ptr<bool>();
    switch (op_) {
      case CmpOp::kEqual: run_binary<T, bool>(p, pa, pb, pc, [](T x, T y) { return x == y; }); break;
      case CmpOp::kLess: run_binary<T, bool>(p, pa, pb, pc, [](T x, T y) { return x < y; }); break;
      case CmpOp::kGreater: run_binary<T, bool>(p, pa, pb, pc, [](T x, T y) { return x > y; }); break;
      case CmpOp::kLessOrEqual: run_binary<T, bool>(p, pa, pb, pc, [](T x, T y) { return x <= y; }); break;
      case CmpOp::kGreaterOrEqual: run_binary<T, bool>(p, pa, pb, pc, [](T x, T y) { return x >= y; }); break;
      // And / Or / Xor: bool inputs (bytes 0 / 1)
      case CmpOp::kAnd: run_binary<T, bool>(p, pa, pb, pc, [](T x, T y) { return x != 0 && y != 0; }); break;
      case CmpOp::kOr: run_binary<T, bool>(p, pa, pb, pc, [](T x, T y) { return x != 0 || y != 0; }); break;
      case CmpOp::kXor: run_binary<T, bool>(p, pa, pb, pc, [](T x, T y) { return (x != 0) != (y != 0); }); break;
    }
  }
  CmpOp op_;
  std::string name_;
};

enum class UnOp { kRelu, kLeakyRelu, kSqrt, kNeg, kAbs };

class UnaryKernel : public FloatUnaryKernel {
 public:
  UnaryKernel(UnOp op, std::string name, float alpha)
      : FloatUnaryKernel(std::move(name), op == UnOp::kSqrt ? 4.0 : 0.3),
        op_(op),
        alpha_(alpha) {}

 private:
  void apply(const float* x, float* y, int64_t n) const override {
    const float alpha = alpha_;
    switch (op_) {
      case UnOp::kRelu: for (int64_t i = 0; i < n; ++i) y[i] = x[i] < 0.f ? 0.f : x[i]; break;  // NaN, -0 kept (onnxruntime)
      case UnOp::kLeakyRelu: for (int64_t i = 0; i < n; ++i) y[i] = x[i] >= 0.f ? x[i] : alpha * x[i]; break;
      case UnOp::kSqrt: for (int64_t i = 0; i < n; ++i) y[i] = std::sqrt(x[i]); break;
      case UnOp::kNeg: for (int64_t i = 0; i < n; ++i) y[i] = -x[i]; break;
      case UnOp::kAbs: for (int64_t i = 0; i < n; ++i) y[i] = std::fabs(x[i]); break;
    }
  }

  UnOp op_;
  float alpha_;
};

}  // namespace


// ---- Cast ---------------------------------------------------------------------------------------
// Between bool, int8 .. int64, uint8 .. uint64, float16, float32 and float64 (bfloat16, strings, the
// float8 and 4-bit types stay on the numpy kernel). A cast to the input's own type is a view.
// Integer -> integer keeps the low bits (two's complement), -> bool is != 0, integer -> float rounds
// to nearest. Float -> integer out of range is undefined by the spec; onnxfast's rule is the one
// onnxruntime and numpy give on x86-64 (its truncating conversions), computed explicitly so it is
// the same on every CPU and compiler, and the numpy kernel computes it too (ops/math.py, cast_array):
// NaN and values outside int32 become INT32_MIN for targets of 32 bits or less (narrow targets keep
// the low bits of that int32), outside int64 INT64_MIN for int64; uint32 / uint64 take values of
// 2^31 / 2^63 and more as cvt(x - 2^31) ^ 2^31 (resp. 2^63). (onnxruntime's own results differ
// between its vector loop and its scalar tail; this is its vector loop's rule.) float64 -> float16 goes through a
// float32 rounded to odd, so it rounds once, as numpy does.

namespace {

struct Half {
  uint16_t bits;
};

inline int32_t cvt32(double v) {  // NaN fails both comparisons
  return (v >= -2147483648.0 && v < 2147483648.0) ? static_cast<int32_t>(v) : std::numeric_limits<int32_t>::min();
}
inline int64_t cvt64(double v) {
  return (v >= -9223372036854775808.0 && v < 9223372036854775808.0) ? static_cast<int64_t>(v)
                                                                      : std::numeric_limits<int64_t>::min();
}

template <typename D>
inline D from_float(double v) {
  if constexpr (std::is_same_v<D, bool>) {
    return v != 0;
  } else if constexpr (std::is_floating_point_v<D>) {
    return static_cast<D>(v);
  } else if constexpr (std::is_same_v<D, uint32_t>) {
    return v >= 2147483648.0 ? (static_cast<uint32_t>(cvt32(v - 2147483648.0)) ^ 0x80000000u)
                             : static_cast<uint32_t>(cvt32(v));
  } else if constexpr (std::is_same_v<D, int64_t>) {
    return cvt64(v);
  } else if constexpr (std::is_same_v<D, uint64_t>) {
    return v >= 9223372036854775808.0 ? (static_cast<uint64_t>(cvt64(v - 9223372036854775808.0)) ^ (uint64_t{1} << 63))
                                      : static_cast<uint64_t>(cvt64(v));
  } else {  // 8 .. 32-bit integers: the low bits of the int32 conversion
    return static_cast<D>(static_cast<uint32_t>(cvt32(v)));
  }
}

// One element of S as D (neither is Half).
template <typename S, typename D>
inline D cast_one(S x) {
  if constexpr (std::is_floating_point_v<S>) {
    return from_float<D>(static_cast<double>(x));
  } else if constexpr (std::is_same_v<D, bool>) {
    return x != 0;
  } else if constexpr (std::is_same_v<S, bool>) {
    return static_cast<D>(x ? 1 : 0);
  } else if constexpr (std::is_floating_point_v<D>) {
    return static_cast<D>(x);
  } else {
    return static_cast<D>(static_cast<std::make_unsigned_t<D>>(x));  // low bits
  }
}

// x as a float32 that rounds to the same float16 as x itself (doubles: rounded to odd).
template <typename S>
inline float to_float_for_half(S x) {
  if constexpr (std::is_same_v<S, double>) {
    float f = static_cast<float>(x);
    if (std::isfinite(f) && static_cast<double>(f) != x) {
      uint32_t u = bit_cast<uint32_t>(f);
      if (std::fabs(static_cast<double>(f)) > std::fabs(x)) --u;  // toward zero
      f = bit_cast<float>(u | 1u);                                  // sticky
    }
    return f;
  } else {
    return cast_one<S, float>(x);
  }
}

template <typename F>
void with_cast_type(int dt, const std::string& who, F&& f) {
  switch (dt) {
    case kBool: f(bool{}); break;
    case kInt8: f(int8_t{}); break;
    case kUInt8: f(uint8_t{}); break;
    case kInt16: f(int16_t{}); break;
    case kUInt16: f(uint16_t{}); break;
    case kInt32: f(int32_t{}); break;
    case kUInt32: f(uint32_t{}); break;
    case kInt64: f(int64_t{}); break;
    case kUInt64: f(uint64_t{}); break;
    case kFloat: f(float{}); break;
    case kDouble: f(double{}); break;
    case kFloat16: f(Half{}); break;
    default: kernel_fail(who + ": no native cast for tensor(" + dtype_name(dt) + ")");
  }
}

template <typename S, typename D>
void cast_block(const S* s, D* d, int64_t n) {
  constexpr int64_t kB = 1024;
  float buf[kB];
  if constexpr (std::is_same_v<S, Half>) {
    for (int64_t b = 0; b < n; b += kB) {
      const int64_t m = std::min(kB, n - b);
      half_to_float_row(reinterpret_cast<const uint16_t*>(s + b), buf, m);
      for (int64_t i = 0; i < m; ++i) d[b + i] = cast_one<float, D>(buf[i]);
    }
  } else if constexpr (std::is_same_v<D, Half>) {
    for (int64_t b = 0; b < n; b += kB) {
      const int64_t m = std::min(kB, n - b);
      for (int64_t i = 0; i < m; ++i) buf[i] = to_float_for_half<S>(s[b + i]);
      float_to_half_row(buf, reinterpret_cast<uint16_t*>(d + b), m);
    }
  } else {
    for (int64_t i = 0; i < n; ++i) d[i] = cast_one<S, D>(s[i]);
  }
}

class CastKernel : public Kernel {
 public:
  explicit CastKernel(const KernelArgs& a) : who_(a.who()), to_(static_cast<int>(attr_int(a, "to", 0))) {
    // other targets run on the numpy kernel (the declaration's `when`, at the end of this file)
    static const int native[] = {kBool, kInt8, kUInt8, kInt16, kUInt16, kInt32, kUInt32, kInt64, kUInt64,
                                 kFloat, kDouble, kFloat16};
    if (std::find(std::begin(native), std::end(native), to_) == std::end(native))
      attr_fail(a, "to", std::to_string(to_), "a type the native Cast converts to");
  }
  void infer(const std::vector<const Tensor*>& in, std::vector<OutSpec>& out) const override {
    if (in.empty() || !in[0]) kernel_fail(who_ + ": input 0 is missing");
    out.resize(1);
    out[0].dtype = to_;
    out[0].shape = in[0]->shape;
    if (in[0]->dtype == to_) out[0].alias_input = 0;
  }
  void compute(const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) const override {
    const Tensor& x = *in[0];
    if (!out[0] || x.dtype == to_) return;
    Tensor& y = *out[0];
    with_cast_type(x.dtype, who_, [&](auto s_tag) {
      using S = decltype(s_tag);
      with_cast_type(to_, who_, [&](auto d_tag) {
        using D = decltype(d_tag);
        if constexpr (!std::is_same_v<S, D>) {
          const S* s = static_cast<const S*>(x.data);
          D* d = static_cast<D*>(y.data);
          parallel_for(x.numel(), 1.0, [&](int64_t b, int64_t e) { cast_block<S, D>(s + b, d + b, e - b); });
        }
      });
    });
  }

 private:
  std::string who_;
  int to_;
};

}  // namespace


// ---- Not, IsNaN, IsInf: bool results ------------------------------------------------------------
namespace {

enum class Pred { kNot, kIsNaN, kIsInf };

class PredicateKernel : public Kernel {
 public:
  PredicateKernel(const KernelArgs& a, Pred p)
      : who_(a.who()), p_(p), pos_(p == Pred::kIsInf && attr_int(a, "detect_positive", 1) != 0),
        neg_(p == Pred::kIsInf && attr_int(a, "detect_negative", 1) != 0) {}
  void infer(const std::vector<const Tensor*>& in, std::vector<OutSpec>& out) const override {
    if (in.empty() || !in[0]) kernel_fail(who_ + ": input 0 is missing");
    out.resize(1);
    out[0] = {kBool, in[0]->shape};
  }
  void compute(const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) const override {
    const Tensor& x = *in[0];
    bool* y = out[0]->ptr<bool>();
    switch (x.dtype) {
      case kBool: run(x.ptr<uint8_t>(), y, x.numel(), [](uint8_t v) { return v == 0; }); break;
      case kFloat: run(x.ptr<float>(), y, x.numel(), [this](float v) { return test(v); }); break;
      case kDouble: run(x.ptr<double>(), y, x.numel(), [this](double v) { return test(v); }); break;
      case kFloat16:  // the bits: exponent all ones; mantissa nonzero (NaN) or zero (inf)
        run(x.ptr<uint16_t>(), y, x.numel(), [this](uint16_t h) {
          const uint16_t a = h & 0x7fff;
          if (p_ == Pred::kIsNaN) return a > 0x7c00;
          return a == 0x7c00 && ((h & 0x8000) ? neg_ : pos_);
        });
        break;
      default: fail(ErrorKind::kInvalidType, who_ + ": no native kernel for tensor(" + dtype_name(x.dtype) + ")");
    }
  }

 private:
  template <typename T>
  bool test(T v) const {
    if (p_ == Pred::kIsNaN) return std::isnan(v);
    return std::isinf(v) && (v > 0 ? pos_ : neg_);
  }
  template <typename T, typename F>
  static void run(const T* x, bool* y, int64_t n, F f) {
    parallel_for(n, 0.5, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) y[i] = f(x[i]);
    });
  }
  std::string who_;
  Pred p_;
  bool pos_, neg_;
};

}  // namespace

// Pow for float32 / float64 bases. An exponent of the base's type runs std::pow element by element;
// another exponent type (ints, the other float) computes in double and rounds once, as numpy does.
// A constant scalar exponent of 1, 2, 3 or 0.5 (GELU's x**3, variances) is a copy, x*x, x*x*x or
// sqrt: the numpy kernel's same shortcuts, so both paths give the same bits.
class PowKernel : public Kernel {
 public:
  explicit PowKernel(const KernelArgs& a) : who_(a.node_label()) {
    expect_broadcastable(a);
    const auto& e = a.const_inputs.size() > 1 ? a.const_inputs[1] : nullptr;
    if (e && e->numel() == 1) {
      double v = 0;
      if (scalar_as_double(*e, &v) && (v == 1.0 || v == 2.0 || v == 3.0 || v == 0.5)) {
        special_ = v;
        special_rank_ = e->rank();
      }
    }
  }
  void infer(const std::vector<const Tensor*>& in, std::vector<OutSpec>& out) const override {
    if (in.size() != 2 || !in[0] || !in[1]) kernel_fail(who_ + " needs two inputs");
    out.resize(1);
    out[0] = {in[0]->dtype, broadcast_shapes(in[0]->shape, in[1]->shape, who_.c_str())};
  }
  void compute(const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) const override {
    Tensor& c = *out[0];
    if (c.numel() == 0) return;
    if (c.dtype == kFloat) run<float>(*in[0], *in[1], c);
    else if (c.dtype == kDouble) run<double>(*in[0], *in[1], c);
    else fail(ErrorKind::kInvalidType, who_ + ": no native kernel for tensor(" + dtype_name(c.dtype) + ")");
  }

 private:
  static bool scalar_as_double(const Tensor& t, double* v) {
    std::vector<double> d;
    if (!as_doubles(t, d) || d.empty()) return false;
    *v = d[0];
    return true;
  }
  // The exponent's values as doubles (false: a type Pow does not take), through Cast's conversions.
  static bool as_doubles(const Tensor& t, std::vector<double>& d) {
    static const int kNumeric[] = {kFloat, kDouble, kFloat16, kInt8, kUInt8, kInt16, kUInt16, kInt32, kUInt32, kInt64, kUInt64};
    if (std::find(std::begin(kNumeric), std::end(kNumeric), t.dtype) == std::end(kNumeric)) return false;
    d.resize(static_cast<size_t>(t.numel()));
    with_cast_type(t.dtype, "Pow exponent", [&](auto tag) {
      using S = decltype(tag);
      cast_block<S, double>(t.ptr<S>(), d.data(), t.numel());
    });
    return true;
  }
  template <typename T>
  void run(const Tensor& X, const Tensor& E, Tensor& Y) const {
    const T* x = X.ptr<T>();
    T* y = Y.ptr<T>();
    if (special_ != 0.0 && X.rank() >= special_rank_ && Y.numel() == X.numel()) {
      const int64_t n = X.numel();
      const double s = special_;
      parallel_for(n, 1.0, [&](int64_t b, int64_t e) {
        if (s == 2.0) for (int64_t i = b; i < e; ++i) y[i] = x[i] * x[i];
        else if (s == 3.0) for (int64_t i = b; i < e; ++i) y[i] = x[i] * x[i] * x[i];
        else if (s == 0.5) for (int64_t i = b; i < e; ++i) y[i] = std::sqrt(x[i]);
        else std::copy(x + b, x + e, y + b);
      });
      return;
    }
    BroadcastPlan p = make_plan(Y.shape, X.shape, E.shape);
    if (E.dtype == X.dtype) {
      run_binary<T>(p, x, E.ptr<T>(), y, [](T a, T b) { return static_cast<T>(std::pow(a, b)); });
      return;
    }
    std::vector<double> e;
    if (!as_doubles(E, e))
      fail(ErrorKind::kInvalidType, who_ + ": exponent of type tensor(" + dtype_name(E.dtype) + ") is not supported");
    if (std::is_same<T, float>::value && E.dtype == kFloat16) {
      // float32 ** float16 computes in float32 (numpy's promotion)
      std::vector<float> ef(e.begin(), e.end());
      run_binary<float>(p, X.ptr<float>(), ef.data(), Y.ptr<float>(), [](float a, float b) { return std::pow(a, b); });
      return;
    }
    // The base in double too, so one broadcast loop serves; the result is rounded once.
    std::vector<double> xd(x, x + X.numel()), yd(static_cast<size_t>(Y.numel()));
    run_binary<double>(p, xd.data(), e.data(), yd.data(), [](double a, double b) { return std::pow(a, b); });
    for (size_t i = 0; i < yd.size(); ++i) y[i] = static_cast<T>(yd[i]);
  }
  std::string who_;
  double special_ = 0.0;  // 0: none
  int64_t special_rank_ = 0;
};

ONNXFAST_KERNELS(elementwise) {
  // Cast between bool, the 8..64-bit integers, float16, float32 and float64 (others: numpy).
  static const std::vector<int> cast_types = {kBool,  kInt8,   kUInt8, kInt16,  kUInt16, kInt32,
                                              kUInt32, kInt64, kUInt64, kFloat, kDouble, kFloat16};
  kernel("Cast").since(6).types(cast_types)
      .when([](const KernelArgs& a) {
        const int64_t to = a.get_int("to", 0);
        return std::find(cast_types.begin(), cast_types.end(), static_cast<int>(to)) != cast_types.end();
      })
      .alias(0, 0)  // a cast to the input's own type
      .make<CastKernel>();
  const std::vector<int> num = {kFloat, kDouble, kInt32, kInt64};
  // Add .. Div from the opset that brought numpy broadcasting (7)
  auto bin = [&](const char* name, BinOp op) {
    // in place over a full-size input: c[i] = a[i] op b[j(i)] reads a[i] before writing c[i]
    kernel(name).since(7).types(num).inplace(0, 0).inplace(0, 1).make([op](const KernelArgs& a) {
      expect_broadcastable(a);
      return std::make_unique<BinaryKernel>(op, a.op_type + " '" + a.node_name + "'");
    });
  };
  bin("Add", BinOp::kAdd);
  bin("Sub", BinOp::kSub);
  bin("Mul", BinOp::kMul);
  bin("Div", BinOp::kDiv);
  kernel("Pow").since(7).types({kFloat, kDouble}).make<PowKernel>();  // any numeric exponent
  kernel("Clip").since(6).types({kFloat}).make<ClipKernel>();
  // Max .. Mean from opset 8 (broadcasting)
  auto var = [&](const char* name, VarOp op, std::vector<int> types) {
    kernel(name).since(8).types(std::move(types)).make([op](const KernelArgs& a) {
      expect_broadcastable(a);
      return std::make_unique<VariadicKernel>(op, a.op_type + " '" + a.node_name + "'");
    });
  };
  var("Max", VarOp::kMax, num);
  var("Min", VarOp::kMin, num);
  var("Sum", VarOp::kSum, num);
  var("Mean", VarOp::kMean, {kFloat, kDouble});
  auto cmp = [&](const char* name, int since, CmpOp op, std::vector<int> types) {
    kernel(name).since(since).types(std::move(types)).make([op](const KernelArgs& a) {
      expect_broadcastable(a);
      return std::make_unique<CompareKernel>(op, a.op_type + " '" + a.node_name + "'");
    });
  };
  cmp("Equal", 7, CmpOp::kEqual, {kFloat, kDouble, kInt32, kInt64, kBool});
  cmp("Less", 7, CmpOp::kLess, num);
  cmp("Greater", 7, CmpOp::kGreater, num);
  cmp("LessOrEqual", 12, CmpOp::kLessOrEqual, num);
  cmp("GreaterOrEqual", 12, CmpOp::kGreaterOrEqual, num);
  cmp("And", 7, CmpOp::kAnd, {kBool});
  cmp("Or", 7, CmpOp::kOr, {kBool});
  cmp("Xor", 7, CmpOp::kXor, {kBool});
  kernel("Not").since(1).types({kBool}).make([](const KernelArgs& a) {
    return std::make_unique<PredicateKernel>(a, Pred::kNot);
  });
  kernel("IsNaN").since(9).types({kFloat, kDouble, kFloat16}).make([](const KernelArgs& a) {
    return std::make_unique<PredicateKernel>(a, Pred::kIsNaN);
  });
  kernel("IsInf").since(10).types({kFloat, kDouble, kFloat16}).make([](const KernelArgs& a) {
    return std::make_unique<PredicateKernel>(a, Pred::kIsInf);
  });
  auto un = [&](const char* name, UnOp op) {
    kernel(name).since(6).types({kFloat}).inplace(0, 0).make([op](const KernelArgs& a) {
      return std::make_unique<UnaryKernel>(op, a.op_type + " '" + a.node_name + "'",
                                           static_cast<float>(attr_float(a, "alpha", 0.01)));
    });
  };
  un("Relu", UnOp::kRelu);  // Exp, Erf, Tanh, Sigmoid, Log, Softplus, Elu, ...: vectorized in normalization.cpp
  un("LeakyRelu", UnOp::kLeakyRelu);
  un("Sqrt", UnOp::kSqrt);
  un("Neg", UnOp::kNeg);
  un("Abs", UnOp::kAbs);
}

}  // namespace onnxfast
