// Vector math for float32 rows, written as plain loops that the compiler vectorizes. This file is
// compiled once per ISA tier (vecmath_portable.cpp, vecmath_avx2.cpp, vecmath_avx512.cpp), each
// with its own flags and namespace; vecmath.cpp picks the table for the CPU at start-up.
// Accuracy: exp ~2 ulp; erf, tanh, sigmoid, gelu about 1e-6 relative (1e-7 absolute near 0).
#include <cmath>
#include <cstdint>
#include <cstring>

#include "vecmath.h"

#ifndef ONNXFAST_VEC_NS
#error "define ONNXFAST_VEC_NS"
#endif

namespace onnxfast {
namespace ONNXFAST_VEC_NS {

namespace {

inline float bits_to_float(int32_t i) {
  float f;
  std::memcpy(&f, &i, 4);
  return f;
}

// exp(x): range reduction x = n ln2 + r, |r| <= ln2/2, degree-6 polynomial, scale by 2^n.
inline float exp1(float x) {
  x = x < -87.3f ? -87.3f : (x > 88.3f ? 88.3f : x);
  const float t = x * 1.44269504088896341f + 12582912.f;  // round to nearest via the magic number
  const float n = t - 12582912.f;
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.f;
  return p * bits_to_float((static_cast<int32_t>(n) + 127) << 23);
}

// erfc(a) for a >= 0: Chebyshev fit (Numerical Recipes' erfcc), relative error < 1.2e-7.
inline float erfc_pos(float a) {
  const float t = 1.f / (1.f + 0.5f * a);
  float p = 0.17087277f;
  p = p * t - 0.82215223f;
  p = p * t + 1.48851587f;
  p = p * t - 1.13520398f;
  p = p * t + 0.27886807f;
  p = p * t - 0.18628806f;
  p = p * t + 0.09678418f;
  p = p * t + 0.37409196f;
  p = p * t + 1.00002368f;
  p = p * t - 1.26551223f;
  return t * exp1(p - a * a);
}

// erf(x): Taylor series below |x| = 0.5, 1 - erfc above.
inline float erf1(float x) {
  const float a = x < 0 ? -x : x;
  const float x2 = a * a;
  const float s = a * (1.12837917f + x2 * (-0.376126389f + x2 * (0.112837917f + x2 * (-0.0268661706f +
                                                                                       x2 * (0.00522397762f +
                                                                                             x2 * -0.000854832702f)))));
  const float r = a < 0.5f ? s : 1.f - erfc_pos(a);
  return x < 0 ? -r : r;
}

inline float tanh1(float x) {
  const float a = x < 0 ? -x : x;
  const float e = exp1(2.f * (a > 9.f ? 9.f : a));
  const float big = 1.f - 2.f / (e + 1.f);
  const float x2 = a * a;
  const float small =
      a * (1.f + x2 * (-0.333333333f + x2 * (0.133333333f + x2 * (-0.0539682540f + x2 * (0.0218694885f +
                                                                                         x2 * -0.00886323552f)))));
  const float r = a < 0.4f ? small : big;
  return x < 0 ? -r : r;
}

inline float sigmoid1(float x) { return 1.f / (1.f + exp1(-x)); }

}  // namespace

void vexp(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = exp1(x[i]);
}
void verf(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = erf1(x[i]);
}
void vtanh(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = tanh1(x[i]);
}
void vsigmoid(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = sigmoid1(x[i]);
}
void vgelu(const float* x, float* y, int64_t n, bool tanh_approx) {
  if (tanh_approx) {
    for (int64_t i = 0; i < n; ++i) {
      const float v = x[i];
      y[i] = 0.5f * v * (1.f + tanh1(0.7978845608f * (v + 0.044715f * v * v * v)));
    }
  } else {
    // 0.5 x (1 + erf(x/sqrt2)), written with erfc so negative x keeps its relative accuracy.
    for (int64_t i = 0; i < n; ++i) {
      const float v = x[i];
      const float a = (v < 0 ? -v : v) * 0.70710678118654752f;
      const float c = a < 0.35f ? 1.f - erf1(a) : erfc_pos(a);  // erfc(|x|/sqrt2)
      y[i] = v < 0 ? 0.5f * v * c : v - 0.5f * v * c;
    }
  }
}

void softmax_row(const float* x, float* y, int64_t n, bool log_softmax) {
  float m = x[0];
  for (int64_t i = 1; i < n; ++i) m = x[i] > m ? x[i] : m;
  float s = 0.f;
  if (log_softmax) {
    for (int64_t i = 0; i < n; ++i) s += exp1(x[i] - m);
    const float ls = std::log(s);
    for (int64_t i = 0; i < n; ++i) y[i] = x[i] - m - ls;
  } else {
    for (int64_t i = 0; i < n; ++i) {
      const float e = exp1(x[i] - m);
      y[i] = e;
      s += e;
    }
    const float inv = 1.f / s;
    for (int64_t i = 0; i < n; ++i) y[i] *= inv;
  }
}

void layernorm_row(const float* x, float* y, int64_t n, const float* gamma, const float* beta, float eps,
                   float* mean_out, float* invstd_out) {
  float s = 0.f;
  for (int64_t i = 0; i < n; ++i) s += x[i];
  const float mean = s / static_cast<float>(n);
  float v = 0.f;
  for (int64_t i = 0; i < n; ++i) {
    const float d = x[i] - mean;
    v += d * d;
  }
  const float invstd = 1.f / std::sqrt(v / static_cast<float>(n) + eps);
  if (beta) {
    for (int64_t i = 0; i < n; ++i) y[i] = (x[i] - mean) * invstd * gamma[i] + beta[i];
  } else {
    for (int64_t i = 0; i < n; ++i) y[i] = (x[i] - mean) * invstd * gamma[i];
  }
  if (mean_out) *mean_out = mean;
  if (invstd_out) *invstd_out = invstd;
}

VecMath table() {
  return VecMath{ONNXFAST_VEC_NAME, &vexp, &verf, &vtanh, &vsigmoid, &vgelu, &softmax_row, &layernorm_row};
}

}  // namespace ONNXFAST_VEC_NS
}  // namespace onnxfast
