// The AVX2 + FMA vector traits `V` the templated kernels are written over (conv_direct_impl.h,
// micro_epilogue.h), for files compiled with -mavx2 -mfma. In an anonymous namespace,
// so each file's instantiations stay its own.
#pragma once
#include <immintrin.h>

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
  static T add(T a, T b) { return _mm256_add_ps(a, b); }
  static T mul(T a, T b) { return _mm256_mul_ps(a, b); }
  static T max(T a, T b) { return _mm256_max_ps(a, b); }
  static T min(T a, T b) { return _mm256_min_ps(a, b); }
  static T ge0_or(T x, T y) { return _mm256_blendv_ps(y, x, _mm256_cmp_ps(x, zero(), _CMP_GE_OQ)); }
  using Mask = __m256i;
  static Mask lanes(int lo, int hi) {
    const __m256i i = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_and_si256(_mm256_cmpgt_epi32(_mm256_set1_epi32(hi), i), _mm256_cmpgt_epi32(i, _mm256_set1_epi32(lo - 1)));
  }
  static T load_lanes(const float* p, Mask m) { return _mm256_maskload_ps(p, m); }
  static void store_lanes(float* p, Mask m, T v) { _mm256_maskstore_ps(p, m, v); }
};
}  // namespace
