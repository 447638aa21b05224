// A table of float32 row functions (exp, erf, tanh, sigmoid, gelu, softmax, layer norm, RMS norm, moments,
// affine, the activations of ActKind, the recurrent gates' fast tanh / sigmoid), one
// implementation per ISA tier from the same source (vecmath_impl.h), chosen once at start-up.
#pragma once
#include <cstdint>

namespace onnxfast {

// Elementwise float activations computed by VecMath::act (alpha / beta: the op's attributes, see act_t).
enum class ActKind {
  kLog, kReciprocal, kSoftplus, kSoftsign, kElu, kSelu, kCelu, kMish, kSwish, kHardSigmoid, kHardSwish,
  kThresholdedRelu, kShrink
};

struct VecMath {
  const char* name;
  void (*exp)(const float* x, float* y, int64_t n);
  void (*erf)(const float* x, float* y, int64_t n);
  void (*tanh)(const float* x, float* y, int64_t n);
  void (*sigmoid)(const float* x, float* y, int64_t n);
  void (*gelu)(const float* x, float* y, int64_t n, bool tanh_approx);
  void (*softmax_row)(const float* x, float* y, int64_t n, bool log_softmax);
  void (*layernorm_row)(const float* x, float* y, int64_t n, const float* gamma, const float* beta, float eps,
                        float* mean_out, float* invstd_out);
  // RMS normalization: y = x / sqrt(mean(x^2) + eps) * gamma (gamma null: no scale); the row's
  // 1 / sqrt(mean(x^2) + eps) to invstd_out when not null. x may be y.
  void (*rmsnorm_row)(const float* x, float* y, int64_t n, const float* gamma, float eps, float* invstd_out);
  // s = (x + skip) + bias (bias null: x + skip): the residual sum of the skip norms.
  void (*skip_sum)(const float* x, const float* skip, const float* bias, float* s, int64_t n);
  // Mean and 1 / sqrt(var + eps) of a long row, blocks summed in double (instance norm planes).
  void (*moments)(const float* x, int64_t n, float eps, float* mean_out, float* invstd_out);
  void (*affine)(const float* x, float* y, int64_t n, float a, float b);  // y = x * a + b
  void (*act)(ActKind kind, const float* x, float* y, int64_t n, float alpha, float beta);
  // Rational approximations of tanh / sigmoid, absolute error < 3e-7 (not relative: a sigmoid value near 0
  // may be off by 100%), about twice as fast: the gates of the recurrent kernels (rnn.cpp), as onnxruntime.
  void (*tanh_fast)(const float* x, float* y, int64_t n);
  void (*sigmoid_fast)(const float* x, float* y, int64_t n);
};

const VecMath& vecmath();  // for this CPU, capped by ONNXFAST_ISA

namespace vec_portable { VecMath table(); }
namespace vec_avx2 { VecMath table(); }
namespace vec_avx512 { VecMath table(); }

}  // namespace onnxfast
