// The AVX2 + FMA vector traits `V` the templated kernels are written over (conv_direct_impl.h,
// micro_epilogue.h), for files compiled with -mavx2 -mfma. In an anonymous namespace,
// so each file's instantiations stay its own.
#pragma once
#include <immintrin.h>

#include <cstdint>

namespace {
struct V {
  using T = __m256;
  static constexpr int L = 8;
  static T zero() { return _mm256_setzero_ps(); }
  static T loadu(const float* p) { return _mm256_loadu_ps(p); }
  static T bcast(const float* p) { return _mm256_broadcast_ss(p); }
  static T fma(T a, T b, T c) { return _mm256_fmadd_ps(a, b, c); }
  static void storeu(float* p, T v) { _mm256_storeu_ps(p, v); }
  static T set1(float x) { return _mm256_set1_ps(x); }
  // p[0], p[2], ..., p[14] (reads p[0..15]): a stride-2 row of inputs
  static T load_even(const float* p) {
    const __m256 a = _mm256_loadu_ps(p), b = _mm256_loadu_ps(p + 8);
    const __m256 e = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));  // a0 a2 b0 b2 | a4 a6 b4 b6
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(e), _MM_SHUFFLE(3, 1, 2, 0)));
  }
  static T add(T a, T b) { return _mm256_add_ps(a, b); }
  static T mul(T a, T b) { return _mm256_mul_ps(a, b); }
  static T max(T a, T b) { return _mm256_max_ps(a, b); }
  static T min(T a, T b) { return _mm256_min_ps(a, b); }
  // x where x > m, or x is NaN and m is not; else m (a NaN, once taken, stays: pool_max.h)
  static T max_nan(T m, T x) {
    const T take = _mm256_or_ps(_mm256_cmp_ps(x, m, _CMP_GT_OQ),
                                _mm256_andnot_ps(_mm256_cmp_ps(m, m, _CMP_UNORD_Q), _mm256_cmp_ps(x, x, _CMP_UNORD_Q)));
    return _mm256_blendv_ps(m, x, take);
  }
  static T ge0_or(T x, T y) { return _mm256_blendv_ps(y, x, _mm256_cmp_ps(x, zero(), _CMP_GE_OQ)); }
  using Mask = __m256i;
  static Mask first(int64_t n) {  // lanes [0, n), n clamped to [0, 8]
    alignas(32) static const int32_t m[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
    n = n < 0 ? 0 : (n > 8 ? 8 : n);
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(m + 8 - n));
  }
  static Mask lanes(int lo, int hi) { return _mm256_andnot_si256(first(lo), first(hi)); }  // [lo, hi)
  static T load_lanes(const float* p, Mask m) { return _mm256_maskload_ps(p, m); }
  static void store_lanes(float* p, Mask m, T v) { _mm256_maskstore_ps(p, m, v); }
};
}  // namespace
