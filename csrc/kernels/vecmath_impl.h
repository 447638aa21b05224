// Vector math for float32 rows, written as plain loops that the compiler vectorizes. This file is
// compiled once per ISA tier (vecmath_portable.cpp, vecmath_avx2.cpp, vecmath_avx512.cpp), each
// with its own flags and namespace; vecmath.cpp picks the table for the CPU at start-up.
// Accuracy: exp ~2 ulp; erf, tanh, sigmoid, gelu about 1e-6 relative (1e-7 absolute near 0).
#include <cmath>
#include <cstdint>
#include <cstring>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

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

// erf(a) for 0 <= a < 0.5: Taylor series.
inline float erf_small(float a) {
  const float x2 = a * a;
  return a * (1.12837917f + x2 * (-0.376126389f + x2 * (0.112837917f + x2 * (-0.0268661706f +
                                                                              x2 * (0.00522397762f +
                                                                                    x2 * -0.000854832702f)))));
}

// erf(x): Taylor series below |x| = 0.5, 1 - erfc above.
inline float erf1(float x) {
  const float a = x < 0 ? -x : x;
  const float r = a < 0.5f ? erf_small(a) : 1.f - erfc_pos(a);
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

// Reductions keep kLanes independent partial results in a GCC/Clang vector (lane j takes the
// elements i with i % kLanes == j) and combine them in a fixed order: vector code on every tier
// (one zmm, two ymm or four xmm registers) without reassociating anything, and the result does
// not depend on the tier's vector width.
constexpr int64_t kLanes = 16;
typedef float lanes_t __attribute__((vector_size(kLanes * sizeof(float))));

inline lanes_t load_lanes(const float* p) {
  lanes_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

inline lanes_t splat(float f) {
  lanes_t v = {};
  return v + f;
}

// Pairwise in a fixed tree (lane j + lane j + w, w = 8, 4, 2, 1): short dependency chains.
inline float lanes_sum(lanes_t v) {
  float t[kLanes];
  std::memcpy(t, &v, sizeof(t));
  for (int64_t w = kLanes / 2; w >= 1; w /= 2)
    for (int64_t j = 0; j < w; ++j) t[j] += t[j + w];
  return t[0];
}

inline float lanes_max(lanes_t v) {
  float t[kLanes];
  std::memcpy(t, &v, sizeof(t));
  for (int64_t w = kLanes / 2; w >= 1; w /= 2)
    for (int64_t j = 0; j < w; ++j) t[j] = t[j + w] > t[j] ? t[j + w] : t[j];
  return t[0];
}

// Max of a row. NaNs need no special care here: callers feed the row through exp(x - max) and a
// sum, which a NaN element turns into NaN anyway.
inline float row_max(const float* x, int64_t n) {
  lanes_t mv = splat(x[0]);
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    const lanes_t v = load_lanes(x + i);
    mv = v > mv ? v : mv;
  }
  float m = lanes_max(mv);
  for (; i < n; ++i) m = x[i] > m ? x[i] : m;
  return m;
}

inline float row_sum(const float* x, int64_t n) {
  lanes_t sv = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) sv += load_lanes(x + i);
  for (int64_t j = 0; i + j < n; ++j) sv[j] += x[i + j];
  return lanes_sum(sv);
}

inline void store_lanes(float* p, lanes_t v) { std::memcpy(p, &v, sizeof(v)); }

typedef int32_t ilanes_t __attribute__((vector_size(kLanes * sizeof(int32_t))));

// exp1 on a lane vector (same reduction and polynomial), for loops that also reduce.
inline lanes_t exp_lanes(lanes_t x) {
  x = x < -87.3f ? splat(-87.3f) : x;
  x = x > 88.3f ? splat(88.3f) : x;
  const lanes_t t = x * 1.44269504088896341f + 12582912.f;
  const lanes_t n = t - 12582912.f;
  lanes_t r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  lanes_t p = splat(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.f;
  const ilanes_t bits = (__builtin_convertvector(n, ilanes_t) + 127) << 23;
  lanes_t scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}

// 1 / d: on AVX-512 a 14-bit estimate refined by one Newton step (about 1 ulp), else a division.
inline lanes_t recip_lanes(lanes_t d) {
#if defined(__AVX512F__)
  const lanes_t r = _mm512_maskz_rcp14_ps(0xFFFF, d);  // (the unmasked form trips -Wmaybe-uninitialized in GCC 12)
  return r * (2.f - d * r);
#else
  return 1.f / d;
#endif
}

// erfc(a) for a >= 0.35 and 1 - erf(a) below, on lanes (as erfc_pos / erf_small), then gelu.
inline lanes_t gelu_lanes(lanes_t v) {
  const lanes_t a = (v < 0.f ? -v : v) * 0.70710678118654752f;
  const lanes_t t = recip_lanes(1.f + 0.5f * a);
  lanes_t p = splat(0.17087277f);
  p = p * t - 0.82215223f;
  p = p * t + 1.48851587f;
  p = p * t - 1.13520398f;
  p = p * t + 0.27886807f;
  p = p * t - 0.18628806f;
  p = p * t + 0.09678418f;
  p = p * t + 0.37409196f;
  p = p * t + 1.00002368f;
  p = p * t - 1.26551223f;
  const lanes_t big = t * exp_lanes(p - a * a);
  const lanes_t x2 = a * a;
  const lanes_t small =
      1.f - a * (1.12837917f + x2 * (-0.376126389f + x2 * (0.112837917f + x2 * (-0.0268661706f +
                                                                                   x2 * (0.00522397762f +
                                                                                         x2 * -0.000854832702f)))));
  const lanes_t c = a < 0.35f ? small : big;
  return v < 0.f ? 0.5f * v * c : v - 0.5f * v * c;
}

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
    // Both branches are straight-line code (one exp, one division), selected per lane.
    int64_t i = 0;
    for (; i + kLanes <= n; i += kLanes) store_lanes(y + i, gelu_lanes(load_lanes(x + i)));
    for (; i < n; ++i) {
      const float v = x[i];
      const float a = (v < 0 ? -v : v) * 0.70710678118654752f;
      const float c = a < 0.35f ? 1.f - erf_small(a) : erfc_pos(a);  // erfc(|x|/sqrt2)
      y[i] = v < 0 ? 0.5f * v * c : v - 0.5f * v * c;
    }
  }
}

// max pass, then exp and sum in one pass, then the scale pass.
void softmax_row(const float* x, float* y, int64_t n, bool log_softmax) {
  const float m = row_max(x, n);
  lanes_t sv = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    const lanes_t e = exp_lanes(load_lanes(x + i) - m);
    store_lanes(y + i, e);
    sv += e;
  }
  for (int64_t j = 0; i + j < n; ++j) {
    y[i + j] = exp1(x[i + j] - m);
    sv[j] += y[i + j];
  }
  const float s = lanes_sum(sv);
  if (log_softmax) {
    const float ls = std::log(s);
    for (int64_t k = 0; k < n; ++k) y[k] = x[k] - m - ls;
  } else {
    const float inv = 1.f / s;
    for (int64_t k = 0; k < n; ++k) y[k] *= inv;
  }
}

void layernorm_row(const float* x, float* y, int64_t n, const float* gamma, const float* beta, float eps,
                   float* mean_out, float* invstd_out) {
  const float mean = row_sum(x, n) / static_cast<float>(n);
  lanes_t vv = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    const lanes_t d = load_lanes(x + i) - mean;
    vv += d * d;
  }
  for (int64_t j = 0; i + j < n; ++j) {
    const float d = x[i + j] - mean;
    vv[j] += d * d;
  }
  const float invstd = 1.f / std::sqrt(lanes_sum(vv) / static_cast<float>(n) + eps);
  if (beta) {
    for (int64_t k = 0; k < n; ++k) y[k] = (x[k] - mean) * invstd * gamma[k] + beta[k];
  } else {
    for (int64_t k = 0; k < n; ++k) y[k] = (x[k] - mean) * invstd * gamma[k];
  }
  if (mean_out) *mean_out = mean;
  if (invstd_out) *invstd_out = invstd;
}

VecMath table() {
  return VecMath{ONNXFAST_VEC_NAME, &vexp, &verf, &vtanh, &vsigmoid, &vgelu, &softmax_row, &layernorm_row};
}

}  // namespace ONNXFAST_VEC_NS
}  // namespace onnxfast
