// Vector math for float32 rows, written over GCC/Clang lane vectors of the tier's native width. This file is
// compiled once per ISA tier (vecmath_portable.cpp, vecmath_avx2.cpp, vecmath_avx512.cpp), each
// with its own flags and namespace; vecmath.cpp picks the table for the CPU at start-up.
// Accuracy: exp ~2 ulp (subnormal results and overflow to inf included); log ~1 ulp; erf, tanh, sigmoid, gelu and the activations of act_t about 1e-6
// relative (1e-7 absolute near 0); tanh_fast / sigmoid_fast 3e-7 absolute.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#if defined(__AVX512F__) || defined(__AVX__) || defined(__SSE__)
#include <immintrin.h>
#endif

#include "bit_cast.h"
#include "vecmath.h"

#ifndef ONNXFAST_VEC_NS
#error "define ONNXFAST_VEC_NS"
#endif

namespace onnxfast {
namespace ONNXFAST_VEC_NS {

namespace {

// Lane vectors of the tier's register width (16 floats in a zmm, 8 in a ymm, 4 in an xmm / NEON
// register): wider GCC vectors than the registers are split by the compiler, and on AVX2 it
// scalarized parts of 16-wide conversions and selects (erf / exp ran 5-10x slower than needed). The
// element functions below are templates over T = float or lanes_t; rows run in whole vectors, the
// tail through a zero-padded vector, so every element of a row gets the vector arithmetic.
#if defined(__AVX512F__)
constexpr int64_t kLanes = 16;
#elif defined(__AVX__)
constexpr int64_t kLanes = 8;
#else
constexpr int64_t kLanes = 4;
#endif
typedef float lanes_t __attribute__((vector_size(kLanes * sizeof(float))));
typedef int32_t ilanes_t __attribute__((vector_size(kLanes * sizeof(int32_t))));
typedef uint32_t uilanes_t __attribute__((vector_size(kLanes * sizeof(uint32_t))));

inline lanes_t load_lanes(const float* p) {
  lanes_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
inline void store_lanes(float* p, lanes_t v) { std::memcpy(p, &v, sizeof(v)); }
inline lanes_t splat(float f) {
  lanes_t v = {};
  return v + f;
}

template <typename T>
inline T bcast(float f);
template <>
inline float bcast<float>(float f) { return f; }
template <>
inline lanes_t bcast<lanes_t>(float f) { return splat(f); }


// 1 / d: on AVX-512 lanes a 14-bit estimate refined by one Newton step (about 1 ulp), else a division.
inline float recip(float d) { return 1.f / d; }
inline lanes_t recip(lanes_t d) {
#if defined(__AVX512F__)
  const lanes_t r = _mm512_maskz_rcp14_ps(0xFFFF, d);  // (the unmasked form trips -Wmaybe-uninitialized in GCC 12)
  return r * (2.f - d * r);
#else
  return 1.f / d;
#endif
}

// 2^n for integral n in [-126, 127] (float exponent field). Shifted unsigned: a negative n + 127 (never for
// the n used, but shifting a negative int is UB) must not make the shift undefined.
inline float pow2i(int32_t n) { return bit_cast<float>(static_cast<uint32_t>(n + 127) << 23); }
inline lanes_t pow2i(ilanes_t n) { return bit_cast<lanes_t>(bit_cast<uilanes_t>(n + 127) << 23); }
inline int32_t to_int(float f) { return static_cast<int32_t>(f); }
inline ilanes_t to_int(lanes_t f) { return __builtin_convertvector(f, ilanes_t); }

// exp(x): range reduction x = n ln2 + r, |r| <= ln2/2, degree-6 polynomial, scaled by 2^n as
// 2^(n/2) 2^(n - n/2) so that results down to the subnormals round once; inf above ln(FLT_MAX), 0
// below -104, NaN stays NaN.
template <typename T>
inline T exp_t(T x) {
  const T in = x;
  // Clamped so that NaN becomes -104 too: n below is converted to int, and NaN -> int is undefined.
  x = x >= -104.f ? x : bcast<T>(-104.f);
  x = x > 88.7228f ? bcast<T>(88.7228f) : x;
  const T t = x * 1.44269504088896341f + 12582912.f;  // round to nearest via the magic number
  const T n = t - 12582912.f;
  T r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  T p = bcast<T>(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.f;
  const auto ni = to_int(n);
  const auto na = ni >> 1;  // floor(n / 2): both halves within the exponent range
  T y = p * pow2i(na) * pow2i(ni - na);
  y = in >= -104.f ? y : (in != in ? in : bcast<T>(0.f));  // below -104: 0; NaN stays NaN
  return in > 88.7228391f ? bcast<T>(std::numeric_limits<float>::infinity()) : y;
}
inline float exp1(float x) { return exp_t(x); }

// erfc(a) for a >= 0: Chebyshev fit (Numerical Recipes' erfcc), relative error < 1.2e-7.
template <typename T>
inline T erfc_pos(T a) {
  const T t = recip(1.f + 0.5f * a);
  T p = bcast<T>(0.17087277f);
  p = p * t - 0.82215223f;
  p = p * t + 1.48851587f;
  p = p * t - 1.13520398f;
  p = p * t + 0.27886807f;
  p = p * t - 0.18628806f;
  p = p * t + 0.09678418f;
  p = p * t + 0.37409196f;
  p = p * t + 1.00002368f;
  p = p * t - 1.26551223f;
  return t * exp_t(p - a * a);
}

// erf(a) for 0 <= a < 0.5: Taylor series.
template <typename T>
inline T erf_small(T a) {
  const T x2 = a * a;
  return a * (1.12837917f + x2 * (-0.376126389f + x2 * (0.112837917f + x2 * (-0.0268661706f +
                                                                          x2 * (0.00522397762f +
                                                                                x2 * -0.000854832702f)))));
}

// erf(x): Taylor series below |x| = 0.5, 1 - erfc above.
template <typename T>
inline T erf_t(T x) {
  const T a = x < 0.f ? -x : x;
  const T r = a < 0.5f ? erf_small(a) : 1.f - erfc_pos(a);
  return x < 0.f ? -r : r;
}

// 0.5 x (1 + erf(x/sqrt2)), written with erfc(|x|/sqrt2) so negative x keeps its relative
// accuracy: v >= 0 gives v (1 - c/2) and v < 0 gives v c/2, neither of which cancels, so erfc_pos
// (relative error ~1e-7 on erfc for every a >= 0) serves every lane without the Taylor branch.
template <typename T>
inline T gelu_erf(T v) {
  const T a = (v < 0.f ? -v : v) * 0.70710678118654752f;
  const T c = erfc_pos(a);
  return v < 0.f ? 0.5f * v * c : v - 0.5f * v * c;
}

// tanh(x): odd series below |x| = 0.4, 1 - 2 / (exp(2|x|) + 1) above (|x| capped at 9).
template <typename T>
inline T tanh_t(T x) {
  const T a = x < 0.f ? -x : x;
  const T e = exp_t(2.f * (a > 9.f ? bcast<T>(9.f) : a));
  const T big = 1.f - 2.f / (e + 1.f);
  const T x2 = a * a;
  const T small =
      a * (1.f + x2 * (-0.333333333f + x2 * (0.133333333f + x2 * (-0.0539682540f + x2 * (0.0218694885f +
                                                                                         x2 * -0.00886323552f)))));
  const T r = a < 0.4f ? small : big;
  return x < 0.f ? -r : r;
}
inline float tanh1(float x) { return tanh_t(x); }

template <typename T>
inline T sigmoid_t(T x) {
  return 1.f / (1.f + exp_t(-x));
}

// max(lo, x) and min(hi, x), x's NaN kept: one maxps / minps on x86 (their NaN rule returns the second
// operand), where the select forms compile to a compare and a blend.
inline float max_lo(float lo, float x) { return lo > x ? lo : x; }
inline float min_hi(float hi, float x) { return hi < x ? hi : x; }
inline lanes_t max_lo(float lo, lanes_t x) {
#if defined(__AVX512F__)
  return _mm512_maskz_max_ps(0xFFFF, splat(lo), x);  // (unmasked: -Wmaybe-uninitialized in GCC 12)
#elif defined(__AVX__)
  return _mm256_max_ps(splat(lo), x);
#elif defined(__SSE__)
  return _mm_max_ps(splat(lo), x);
#else
  return lo > x ? splat(lo) : x;
#endif
}
inline lanes_t min_hi(float hi, lanes_t x) {
#if defined(__AVX512F__)
  return _mm512_maskz_min_ps(0xFFFF, splat(hi), x);
#elif defined(__AVX__)
  return _mm256_min_ps(splat(hi), x);
#elif defined(__SSE__)
  return _mm_min_ps(splat(hi), x);
#else
  return hi < x ? splat(hi) : x;
#endif
}

// tanh(x) and sigmoid(x) as rational functions x P(x^2) / Q(x^2) on a clamped range (the minimax fits of
// Eigen's ptanh_float and onnxruntime MLAS's logistic kernel, which its recurrent operators use): one
// division and no exp, about twice as fast as tanh_t / sigmoid_t. Absolute error below 3e-7 (tanh) and
// 2e-7 (sigmoid), results clamped to [-1, 1] / [0, 1]; NaN stays NaN. The relative error of a tiny sigmoid
// value (x below -5) is not small: for gates (RNN cells), not for the Sigmoid operator.
template <typename T>
inline T tanh_fast_t(T x) {
  x = min_hi(9.f, max_lo(-9.f, x));
  const T x2 = x * x;
  T p = bcast<T>(-2.76076847742355e-16f);
  p = p * x2 + 2.00018790482477e-13f;
  p = p * x2 + -8.60467152213735e-11f;
  p = p * x2 + 5.12229709037114e-08f;
  p = p * x2 + 1.48572235717979e-05f;
  p = p * x2 + 6.37261928875436e-04f;
  p = p * x2 + 4.89352455891786e-03f;
  T q = bcast<T>(1.19825839466702e-06f);
  q = q * x2 + 1.18534705686654e-04f;
  q = q * x2 + 2.26843463243900e-03f;
  q = q * x2 + 4.89352518554385e-03f;
  return min_hi(1.f, max_lo(-1.f, x * p / q));
}
template <typename T>
inline T sigmoid_fast_t(T x) {
  x = min_hi(18.f, max_lo(-18.f, x));
  const T x2 = x * x;
  T p = bcast<T>(4.37031012579801e-11f);
  p = p * x2 + 1.15627324459942e-07f;
  p = p * x2 + 6.08574864600143e-05f;
  p = p * x2 + 8.51377133304701e-03f;
  p = p * x2 + 2.48287947061529e-01f;
  T q = bcast<T>(6.10247389755681e-13f);
  q = q * x2 + 5.76102136993427e-09f;
  q = q * x2 + 6.29106785017040e-06f;
  q = q * x2 + 1.70198817374094e-03f;
  q = q * x2 + 1.16817656904453e-01f;
  q = q * x2 + 9.93151921023180e-01f;
  return min_hi(1.f, max_lo(0.f, x * p / q + 0.5f));
}

// 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))): Gelu's tanh approximation.
template <typename T>
inline T gelu_tanh(T v) {
  return 0.5f * v * (1.f + tanh_t(0.7978845608f * (v + 0.044715f * v * v * v)));
}

inline int32_t bits_of(float f) { return bit_cast<int32_t>(f); }
inline ilanes_t bits_of(lanes_t v) { return bit_cast<ilanes_t>(v); }
inline uint32_t ubits_of(float f) { return bit_cast<uint32_t>(f); }
inline uilanes_t ubits_of(lanes_t v) { return bit_cast<uilanes_t>(v); }
inline int32_t to_signed(uint32_t u) { return bit_cast<int32_t>(u); }
inline ilanes_t to_signed(uilanes_t u) { return bit_cast<ilanes_t>(u); }
inline float float_of(int32_t i) { return bit_cast<float>(i); }
inline lanes_t float_of(ilanes_t i) { return bit_cast<lanes_t>(i); }
inline float to_float(int32_t i) { return static_cast<float>(i); }
inline lanes_t to_float(ilanes_t i) { return __builtin_convertvector(i, lanes_t); }

// log(x): x = m 2^e with m in [sqrt(1/2), sqrt(2)), log(m) = 2 atanh(s), s = (m - 1) / (m + 1),
// |s| < 0.172, as an odd series to s^9 (error ~1e-10); e ln2 added in two parts. Subnormal x is
// scaled by 2^23 first; 0 -> -inf, negative -> NaN, inf and NaN pass through.
template <typename T>
inline T log_t(T x) {
  const auto tiny = x < 1.17549435e-38f;
  const T xs = tiny ? x * 8388608.f : x;
  // In unsigned arithmetic: the bits of negative x (NaN out below) minus the offset wrap, and k is negative
  // for x < sqrt(1/2); a signed subtraction could overflow and k << 23 shifted a negative value (UB).
  const auto d = ubits_of(xs) - 0x3f3504f3u;
  const auto k = to_signed(d) >> 23;  // arithmetic shift: floor((bits - offset) / 2^23)
  const T m = float_of(to_signed((d & 0x7fffffu) + 0x3f3504f3u));
  const T e = to_float(k) - (tiny ? bcast<T>(23.f) : bcast<T>(0.f));
  const T f = m - 1.f;
  const T sv = f / (2.f + f);
  const T z = sv * sv;
  const T p = sv * (2.f + z * (0.666666667f + z * (0.4f + z * (0.285714286f + z * 0.222222222f))));
  T r = e * 0.693359375f + (p + e * -2.12194440e-4f);
  r = x == 0.f ? bcast<T>(-std::numeric_limits<float>::infinity()) : r;
  r = x < 0.f ? bcast<T>(std::numeric_limits<float>::quiet_NaN()) : r;
  r = x == std::numeric_limits<float>::infinity() ? x : r;
  return x != x ? x : r;
}

// exp(x) - 1 with relative accuracy near 0: Taylor series to x^8 for |x| < 0.35, else exp - 1.
template <typename T>
inline T expm1_t(T x) {
  const T a = x < 0.f ? -x : x;
  const T small =
      x * (1.f + x * (0.5f + x * (0.166666667f + x * (0.0416666667f + x * (0.00833333333f + x * (0.00138888889f +
                                                                       x * (0.000198412698f + x * 2.48015873e-5f)))))));
  return a < 0.35f ? small : exp_t(x) - 1.f;
}

// log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|)); log1p(e) = log(u) e / (u - 1), u = 1 + e (exact
// for the rounding of u), and e itself when u rounds to 1.
template <typename T>
inline T softplus_t(T x) {
  const T a = x < 0.f ? -x : x;
  const T e = exp_t(-a);
  const T u = 1.f + e;
  const T l = u == 1.f ? e : log_t(u) * e / (u - 1.f);
  return (x > 0.f ? x : bcast<T>(0.f)) + l;
}


// clamp to [0, 1], NaN kept
template <typename T>
inline T clamp01(T v) {
  v = v < 0.f ? bcast<T>(0.f) : v;
  return v > 1.f ? bcast<T>(1.f) : v;
}

template <ActKind kKind, typename T>
inline T act_t(T x, float alpha, float beta) {
  switch (kKind) {
    case ActKind::kLog: return log_t(x);
    case ActKind::kReciprocal: return 1.f / x;
    case ActKind::kSoftplus: return softplus_t(x);
    case ActKind::kSoftsign: return x / (1.f + (x < 0.f ? -x : x));
    case ActKind::kElu: return x > 0.f ? x : alpha * expm1_t(x);
    case ActKind::kSelu: return beta * (x > 0.f ? x : alpha * expm1_t(x));  // beta: gamma
    case ActKind::kCelu: {
      const T neg = alpha * expm1_t((x < 0.f ? x : bcast<T>(0.f)) / alpha);
      const T r = (x > 0.f ? x : bcast<T>(0.f)) + (neg < 0.f ? neg : bcast<T>(0.f));
      return x != x ? x : r;
    }
    case ActKind::kMish: return x * tanh_t(softplus_t(x));
    case ActKind::kSwish: {  // x sigmoid(alpha x), sigmoid from e = exp(-|alpha x|) as the numpy kernel
      const T v = alpha * x;
      const T av = v < 0.f ? -v : v;
      const T e = exp_t(-av);
      return x * ((v >= 0.f ? bcast<T>(1.f) : e) / (1.f + e));
    }
    case ActKind::kHardSigmoid: return clamp01(x * alpha + beta);
    case ActKind::kHardSwish: return x * clamp01(x * (1.f / 6.f) + 0.5f);
    case ActKind::kThresholdedRelu: return x > alpha ? x : bcast<T>(0.f);
    case ActKind::kShrink:  // alpha: lambd, beta: bias
      return x < -alpha ? x + beta : (x > alpha ? x - beta : bcast<T>(0.f));
  }
  return x;
}

}  // namespace

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

// y[i] = f(x[i]) in whole vectors; the tail through a zero-padded vector (x may be y).
template <typename F>
inline void map_lanes(const float* x, float* y, int64_t n, F f) {
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) store_lanes(y + i, f(load_lanes(x + i)));
  if (i < n) {
    float t[kLanes] = {};
    std::memcpy(t, x + i, static_cast<size_t>(n - i) * sizeof(float));
    store_lanes(t, f(load_lanes(t)));
    std::memcpy(y + i, t, static_cast<size_t>(n - i) * sizeof(float));
  }
}

void vexp(const float* x, float* y, int64_t n) {
  map_lanes(x, y, n, [](lanes_t v) { return exp_t(v); });
}
void verf(const float* x, float* y, int64_t n) {
  map_lanes(x, y, n, [](lanes_t v) { return erf_t(v); });
}
void vtanh(const float* x, float* y, int64_t n) {
  map_lanes(x, y, n, [](lanes_t v) { return tanh_t(v); });
}
void vsigmoid(const float* x, float* y, int64_t n) {
  map_lanes(x, y, n, [](lanes_t v) { return sigmoid_t(v); });
}
void vtanh_fast(const float* x, float* y, int64_t n) {
  map_lanes(x, y, n, [](lanes_t v) { return tanh_fast_t(v); });
}
void vsigmoid_fast(const float* x, float* y, int64_t n) {
  map_lanes(x, y, n, [](lanes_t v) { return sigmoid_fast_t(v); });
}
void vgelu(const float* x, float* y, int64_t n, bool tanh_approx) {
  if (tanh_approx) map_lanes(x, y, n, [](lanes_t v) { return gelu_tanh(v); });
  else map_lanes(x, y, n, [](lanes_t v) { return gelu_erf(v); });
}

// max pass, then exp and sum in one pass, then the scale pass.
void softmax_row(const float* x, float* y, int64_t n, bool log_softmax) {
  const float m = row_max(x, n);
  lanes_t sv = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    const lanes_t e = exp_t(load_lanes(x + i) - m);
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

// Sum of squares in lanes (the tail added into the first lanes), then one scaling pass, in whole vectors
// then element by element: (x * invstd) * gamma, the same two roundings in both (no sum to contract).
void rmsnorm_row(const float* x, float* y, int64_t n, const float* gamma, float eps, float* invstd_out) {
  lanes_t ss = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    const lanes_t v = load_lanes(x + i);
    ss += v * v;
  }
  for (int64_t j = 0; i + j < n; ++j) ss[j] += x[i + j] * x[i + j];
  const float invstd = 1.f / std::sqrt(lanes_sum(ss) / static_cast<float>(n) + eps);
  i = 0;
  if (gamma) {
    for (; i + kLanes <= n; i += kLanes) store_lanes(y + i, load_lanes(x + i) * invstd * load_lanes(gamma + i));
  } else {
    for (; i + kLanes <= n; i += kLanes) store_lanes(y + i, load_lanes(x + i) * invstd);
  }
  for (; i < n; ++i) y[i] = x[i] * invstd * (gamma ? gamma[i] : 1.f);
  if (invstd_out) *invstd_out = invstd;
}

void skip_sum(const float* x, const float* skip, const float* bias, float* s, int64_t n) {
  int64_t i = 0;
  if (bias) {
    for (; i + kLanes <= n; i += kLanes)
      store_lanes(s + i, load_lanes(x + i) + load_lanes(skip + i) + load_lanes(bias + i));
    for (; i < n; ++i) s[i] = x[i] + skip[i] + bias[i];
  } else {
    for (; i + kLanes <= n; i += kLanes) store_lanes(s + i, load_lanes(x + i) + load_lanes(skip + i));
    for (; i < n; ++i) s[i] = x[i] + skip[i];
  }
}

template <ActKind kKind>
void act_row(const float* x, float* y, int64_t n, float alpha, float beta) {
  map_lanes(x, y, n, [alpha, beta](lanes_t v) { return act_t<kKind>(v, alpha, beta); });
}

void vact(ActKind kind, const float* x, float* y, int64_t n, float alpha, float beta) {
  switch (kind) {
    case ActKind::kLog: return act_row<ActKind::kLog>(x, y, n, alpha, beta);
    case ActKind::kReciprocal: return act_row<ActKind::kReciprocal>(x, y, n, alpha, beta);
    case ActKind::kSoftplus: return act_row<ActKind::kSoftplus>(x, y, n, alpha, beta);
    case ActKind::kSoftsign: return act_row<ActKind::kSoftsign>(x, y, n, alpha, beta);
    case ActKind::kElu: return act_row<ActKind::kElu>(x, y, n, alpha, beta);
    case ActKind::kSelu: return act_row<ActKind::kSelu>(x, y, n, alpha, beta);
    case ActKind::kCelu: return act_row<ActKind::kCelu>(x, y, n, alpha, beta);
    case ActKind::kMish: return act_row<ActKind::kMish>(x, y, n, alpha, beta);
    case ActKind::kSwish: return act_row<ActKind::kSwish>(x, y, n, alpha, beta);
    case ActKind::kHardSigmoid: return act_row<ActKind::kHardSigmoid>(x, y, n, alpha, beta);
    case ActKind::kHardSwish: return act_row<ActKind::kHardSwish>(x, y, n, alpha, beta);
    case ActKind::kThresholdedRelu: return act_row<ActKind::kThresholdedRelu>(x, y, n, alpha, beta);
    case ActKind::kShrink: return act_row<ActKind::kShrink>(x, y, n, alpha, beta);
  }
}

// Mean and 1 / sqrt(variance + eps) of a long row (an instance-norm plane): both passes sum blocks of
// kMomentBlock floats in lanes and add the block sums in double, so a plane of millions of values keeps
// about float precision. The block split depends on n only, so results do not depend on threads.
constexpr int64_t kMomentBlock = 4096;
void moments(const float* x, int64_t n, float eps, float* mean_out, float* invstd_out) {
  double s = 0;
  for (int64_t b = 0; b < n; b += kMomentBlock) s += row_sum(x + b, std::min(kMomentBlock, n - b));
  const float mean = static_cast<float>(s / static_cast<double>(n));
  double v = 0;
  for (int64_t b = 0; b < n; b += kMomentBlock) {
    const int64_t e = std::min(b + kMomentBlock, n);
    lanes_t vv = {};
    int64_t i = b;
    for (; i + kLanes <= e; i += kLanes) {
      const lanes_t d = load_lanes(x + i) - mean;
      vv += d * d;
    }
    for (int64_t j = 0; i + j < e; ++j) {
      const float d = x[i + j] - mean;
      vv[j] += d * d;
    }
    v += lanes_sum(vv);
  }
  *mean_out = mean;
  *invstd_out = 1.f / std::sqrt(static_cast<float>(v / static_cast<double>(n)) + eps);
}

// y = x * a + b (one plane of a per-channel affine map: BatchNormalization, InstanceNormalization).
void affine(const float* x, float* y, int64_t n, float a, float b) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] * a + b;
}

VecMath table() {
  return VecMath{ONNXFAST_VEC_NAME, &vexp, &verf, &vtanh, &vsigmoid, &vgelu, &softmax_row, &layernorm_row,
                 &rmsnorm_row, &skip_sum, &moments, &affine, &vact, &vtanh_fast, &vsigmoid_fast};
}

}  // namespace ONNXFAST_VEC_NS
}  // namespace onnxfast
