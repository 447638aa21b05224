// The AVX-512 vector traits `V` the templated kernels are written over (conv_direct_impl.h,
// micro_epilogue.h), for files compiled with -mavx512f -mavx512bw -mavx512dq -mavx512vl -mfma.
// In an anonymous namespace, so each file's instantiations stay its own.
#pragma once
#include <immintrin.h>

#include <cstdint>

// GCC 12 reports the _mm512_undefined_ps() pass-through inside _mm512_max_ps/_mm512_min_ps as
// "may be used uninitialized" once they are inlined (a false positive).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace {
struct V {
  using T = __m512;
  static constexpr int L = 16;
  static T zero() { return _mm512_setzero_ps(); }
  static T loadu(const float* p) { return _mm512_loadu_ps(p); }
  static T bcast(const float* p) { return _mm512_set1_ps(*p); }
  static T fma(T a, T b, T c) { return _mm512_fmadd_ps(a, b, c); }
  static void storeu(float* p, T v) { _mm512_storeu_ps(p, v); }
  static T set1(float x) { return _mm512_set1_ps(x); }
  // p[0], p[2], ..., p[30] (reads p[0..31]): a stride-2 row of inputs
  static T load_even(const float* p) {
    const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    return _mm512_permutex2var_ps(_mm512_loadu_ps(p), even, _mm512_loadu_ps(p + 16));
  }
  static T add(T a, T b) { return _mm512_add_ps(a, b); }
  static T mul(T a, T b) { return _mm512_mul_ps(a, b); }
  static T max(T a, T b) { return _mm512_max_ps(a, b); }
  static T min(T a, T b) { return _mm512_min_ps(a, b); }
  // x where x > m, or x is NaN and m is not; else m (a NaN, once taken, stays: pool_max.h)
  static T max_nan(T m, T x) {
    const __mmask16 take = _mm512_cmp_ps_mask(x, m, _CMP_GT_OQ) |
                           (_mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q) & _mm512_cmp_ps_mask(m, m, _CMP_ORD_Q));
    return _mm512_mask_blend_ps(take, m, x);
  }
  static T ge0_or(T x, T y) { return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, zero(), _CMP_GE_OQ), y, x); }
  using Mask = __mmask16;
  static Mask first(int64_t n) {  // lanes [0, n), n clamped to [0, 16]
    return n >= 16 ? static_cast<Mask>(0xFFFF) : n <= 0 ? 0 : static_cast<Mask>((1u << n) - 1);
  }
  static Mask lanes(int lo, int hi) { return static_cast<Mask>(first(hi) & ~first(lo)); }  // [lo, hi)
  static T load_lanes(const float* p, Mask m) { return _mm512_maskz_loadu_ps(m, p); }
  static void store_lanes(float* p, Mask m, T v) { _mm512_mask_storeu_ps(p, m, v); }
};
}  // namespace
