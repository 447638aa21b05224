// float16 / bfloat16 through the float32 kernels: MatMul, Gemm, Conv, FusedConv and ConvTranspose accept half
// inputs by widening them to float32, computing with the float32 kernel (same packing, same
// micro-kernels) and rounding the outputs back to nearest-even. Constant half inputs (weights)
// are widened once at session creation, so the float32 kernel pre-packs them as usual.
// numpy's own float16 matmul is ~200x slower than this. float16 conversions use F16C where the
// CPU has it (half_f16c.cpp).
#include <algorithm>
#include <cstring>

#include "../cpu/cpu.h"
#include "../threadpool/threadpool.h"
#include "bit_cast.h"
#include "kernel.h"

namespace onnxfast {

#if defined(__x86_64__) || defined(_M_X64)
void half_to_float_f16c(const uint16_t* s, float* d, int64_t n);  // half_f16c.cpp
void float_to_half_f16c(const float* s, uint16_t* d, int64_t n);
#endif

namespace {

inline float bits_float(uint32_t u) { return bit_cast<float>(u); }
inline uint32_t float_bits(float f) { return bit_cast<uint32_t>(f); }

inline float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  const uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
  if (exp == 0) {  // zero or subnormal: mant * 2^-24
    const float v = static_cast<float>(mant) * 5.9604644775390625e-8f;
    return bits_float(float_bits(v) | sign);
  }
  if (exp == 31) return bits_float(sign | 0x7f800000u | (mant << 13));  // inf / NaN
  return bits_float(sign | ((exp + 112) << 23) | (mant << 13));
}

inline uint16_t float_to_half(float f) {  // round to nearest even
  const uint32_t u = float_bits(f);
  const uint32_t sign = (u >> 16) & 0x8000;
  uint32_t a = u & 0x7fffffffu;
  if (a >= 0x7f800000u) return static_cast<uint16_t>(sign | (a > 0x7f800000u ? 0x7e00 : 0x7c00));
  if (a >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00);  // rounds to >= 65520: inf
  if (a < 0x38800000u) {
    // Below the smallest normal half: adding 0.5 leaves round(x * 2^24) in the low mantissa bits.
    const uint32_t r = float_bits(bits_float(a) + 0.5f) - 0x3f000000u;
    return static_cast<uint16_t>(sign | r);
  }
  const uint32_t odd = (a >> 13) & 1;
  a += 0xc8000fffu + odd;  // rebias the exponent (15 - 127) and round
  return static_cast<uint16_t>(sign | (a >> 13));
}

inline float bf16_to_float(uint16_t h) { return bits_float(static_cast<uint32_t>(h) << 16); }

inline uint16_t float_to_bf16(float f) {
  const uint32_t u = float_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);  // quiet NaN
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1)) >> 16);
}

// Row converters: the scalar definitions above, or F16C (half_f16c.cpp) where the CPU has it.
template <typename S, typename D, D (*F)(S)>
void convert_row(const S* s, D* d, int64_t n) {
  for (int64_t i = 0; i < n; ++i) d[i] = F(s[i]);
}

struct HalfRows {
  void (*h2f)(const uint16_t*, float*, int64_t) = &convert_row<uint16_t, float, half_to_float>;
  void (*f2h)(const float*, uint16_t*, int64_t) = &convert_row<float, uint16_t, float_to_half>;
};

const HalfRows& half_rows() {
  static const HalfRows r = [] {
    HalfRows t;
#if defined(__x86_64__) || defined(_M_X64)
    if (active_isa() >= Isa::kAvx2 && cpu_features().f16c) {
      t.h2f = &half_to_float_f16c;
      t.f2h = &float_to_half_f16c;
    }
#endif
    return t;
  }();
  return r;
}

}  // namespace

void half_to_float_row(const uint16_t* s, float* d, int64_t n) { half_rows().h2f(s, d, n); }
void float_to_half_row(const float* s, uint16_t* d, int64_t n) { half_rows().f2h(s, d, n); }

namespace {

// dst = row(src) over the whole tensor, in parallel chunks.
template <typename S, typename D>
void convert(const Tensor& src, Tensor& dst, void (*row)(const S*, D*, int64_t)) {
  const S* s = src.ptr<S>();
  D* d = dst.ptr<D>();
  parallel_for(src.numel(), 1.0, [&](int64_t b, int64_t e) { row(s + b, d + b, e - b); });
}

// half -> float32 (dst typed float)
void widen(const Tensor& src, Tensor& dst) {
  if (src.dtype == kBFloat16) convert<uint16_t, float>(src, dst, &convert_row<uint16_t, float, bf16_to_float>);
  else convert<uint16_t, float>(src, dst, half_rows().h2f);
}

// float32 -> half (dst typed float16 or bfloat16)
void narrow(const Tensor& src, Tensor& dst) {
  if (dst.dtype == kBFloat16) convert<float, uint16_t>(src, dst, &convert_row<float, uint16_t, float_to_bf16>);
  else convert<float, uint16_t>(src, dst, half_rows().f2h);
}

bool is_half(int dtype) { return dtype == kFloat16 || dtype == kBFloat16; }

class ViaFloatKernel : public Kernel {
 public:
  ViaFloatKernel(const KernelArgs& a, const KernelFactory& inner) {
    KernelArgs fa = a;
    for (size_t i = 0; i < fa.const_inputs.size(); ++i) {
      const auto& c = a.const_inputs[i];
      if (!c || !is_half(c->dtype)) continue;
      auto f = std::make_shared<Tensor>(Tensor::empty(kFloat, c->shape, "float copy of a constant input"));
      widen(*c, *f);
      fa.const_inputs[i] = f;
      consts_.push_back({c, f});
      half_consts_.push_back(static_cast<int>(i));
    }
    inner_ = inner(fa);
  }
  std::string describe() const override { return inner_->describe(); }
  // The inner kernel's packed inputs, except half constants: compute() finds their float copies by
  // the data pointer of the input it is given, so those must stay real tensors.
  std::vector<int> packed_inputs() const override {
    std::vector<int> out;
    for (int i : inner_->packed_inputs())
      if (std::find(half_consts_.begin(), half_consts_.end(), i) == half_consts_.end()) out.push_back(i);
    return out;
  }

  void infer(const std::vector<const Tensor*>& in, std::vector<OutSpec>& out) const override {
    const int h = half_type(in);
    if (!h) return inner_->infer(in, out);
    // Shape twins typed float32 (infer reads types and shapes only).
    std::vector<Tensor> twins(in.size());
    std::vector<const Tensor*> ptrs(in.size(), nullptr);
    for (size_t i = 0; i < in.size(); ++i) {
      if (!in[i]) continue;
      twins[i] = *in[i];
      if (twins[i].dtype == h) twins[i].dtype = kFloat;
      else if (twins[i].dtype == kFloat) twins[i].dtype = kUndefined;  // mixed types: let the check fail
      ptrs[i] = &twins[i];
    }
    try {
      inner_->infer(ptrs, out);
    } catch (const Error&) {
      // Re-check with the real types so the message names them.
      for (size_t i = 1; i < in.size(); ++i)
        if (in[i] && in[i]->dtype != h) expect_dtype(*in[i], h, "input");
      throw;
    }
    for (OutSpec& o : out)
      if (o.dtype == kFloat) o.dtype = h;
  }

  void compute(const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) const override {
    const int h = half_type(in);
    if (!h) return inner_->compute(in, out);
    std::vector<Tensor> wide(in.size());
    std::vector<const Tensor*> ins(in.size(), nullptr);
    for (size_t i = 0; i < in.size(); ++i) {
      if (!in[i]) continue;
      if (in[i]->dtype != h) {
        ins[i] = in[i];
        continue;
      }
      const Tensor* cached = nullptr;
      for (const auto& c : consts_)
        if (c.first->data == in[i]->data && c.first->shape == in[i]->shape) cached = c.second.get();
      if (cached) {
        ins[i] = cached;
        continue;
      }
      wide[i] = Tensor::empty(kFloat, in[i]->shape, "float copy of a half input");
      widen(*in[i], wide[i]);
      ins[i] = &wide[i];
    }
    std::vector<Tensor> wout(out.size());
    std::vector<Tensor*> outs(out.size(), nullptr);
    for (size_t i = 0; i < out.size(); ++i) {
      if (!out[i]) continue;
      wout[i] = Tensor::empty(kFloat, out[i]->shape, "float32 result");
      outs[i] = &wout[i];
    }
    inner_->compute(ins, outs);
    for (size_t i = 0; i < out.size(); ++i)
      if (out[i]) narrow(wout[i], *out[i]);
  }

 private:
  static int half_type(const std::vector<const Tensor*>& in) {
    return !in.empty() && in[0] && is_half(in[0]->dtype) ? in[0]->dtype : 0;
  }
  std::unique_ptr<Kernel> inner_;
  std::vector<std::pair<std::shared_ptr<Tensor>, std::shared_ptr<Tensor>>> consts_;
  std::vector<int> half_consts_;  // indices of the constant inputs widened into consts_
};

}  // namespace

float half_to_float32(uint16_t h) { return half_to_float(h); }

// float16 / bfloat16 MatMul, Gemm, Conv, FusedConv, ConvTranspose: the float32 kernel declared for
// the node's version, found when the node is created (not when this block runs: no order between files).
ONNXFAST_KERNELS(half) {
  struct Wrapped {
    const char* op;
    const char* domain;
    int since;
  };
  for (const Wrapped& w : {Wrapped{"MatMul", "", 1}, Wrapped{"Gemm", "", 7}, Wrapped{"Conv", "", 1},
                           Wrapped{"FusedConv", "onnxfast", 1}, Wrapped{"ConvTranspose", "", 1}}) {
    // a node of unknown type gets this kernel: float32 inputs go straight to the float32 kernel
    kernel(w.op, w.domain).since(w.since).types({kFloat16, kBFloat16}).serves_unknown_type().make([w](const KernelArgs& a) {
      const int version = a.since_version > 0 ? a.since_version : a.opset > 0 ? a.opset : kLatestVersion;
      const KernelDef* inner = find_kernel(w.domain, w.op, version, kFloat);
      if (!inner) fail(ErrorKind::kNotImplemented, a.who() + ": no float32 kernel to compute float16 through");
      KernelFactory f = inner->factory;
      return std::make_unique<ViaFloatKernel>(a, f);
    });
  }
}

}  // namespace onnxfast
