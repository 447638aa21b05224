// AVX-512 SGEMM micro-kernel: up to 12 rows x 32 columns (24 zmm accumulators), two packed
// 16-column panels per call; A packed or read in place; masked loads/stores for column tails.
// Compiled with -mavx512f -mavx512bw -mavx512dq -mavx512vl -mfma; only called on such CPUs.
#include "gemm_tiers.h"
#include "micro_epilogue.h"
#include "simd_avx512.h"

namespace onnxfast {
namespace {

template <int R, bool Two, bool Rows>
void kern(int64_t kc, const float* a, int64_t as, const float* b0, const float* b1, float* c, int64_t ldc, int64_t nr,
          float alpha, float beta, const MicroEpilogue* ep) {
  // The row loops that touch the accumulators fully unrolled, so they live in registers from the
  // zeroing to the store (rolled, they were a stack array zeroed with rep stos and spilled around
  // the K loop, which cost small-K calls such as 1x1 convolutions over 16 channels). The prefetch
  // loop stays rolled: unrolled, it cost the K loop a register (one B vector spilled).
  __m512 acc0[R], acc1[R];
#pragma GCC unroll 12
  for (int i = 0; i < R; ++i) {
    acc0[i] = _mm512_setzero_ps();
    if (Two) acc1[i] = _mm512_setzero_ps();
  }
  if (beta != 0.f)  // C is read at the end: start fetching its lines now
    for (int i = 0; i < R; ++i) {
      _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);
      if (Two) _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + 16), _MM_HINT_T0);
    }
  for (int64_t k = 0; k < kc; ++k) {
    _mm_prefetch(reinterpret_cast<const char*>(b0 + (k + 6) * 16), _MM_HINT_T0);
    if (Two) _mm_prefetch(reinterpret_cast<const char*>(b1 + (k + 6) * 16), _MM_HINT_T0);
    const __m512 v0 = _mm512_load_ps(b0 + k * 16);
    __m512 v1 = _mm512_setzero_ps();
    if (Two) v1 = _mm512_load_ps(b1 + k * 16);
#pragma GCC unroll 12
    for (int i = 0; i < R; ++i) {
      const __m512 av = _mm512_set1_ps(Rows ? a[i * as + k] : a[k * as + i]);
      acc0[i] = _mm512_fmadd_ps(av, v0, acc0[i]);
      if (Two) acc1[i] = _mm512_fmadd_ps(av, v1, acc1[i]);
    }
  }
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
  const V::Mask m0 = V::first(nr), m1 = V::first(nr - 16);
#pragma GCC unroll 12
  for (int i = 0; i < R; ++i) {
    float* ci = c + i * ldc;
    __m512 r0 = _mm512_mul_ps(acc0[i], va), r1 = _mm512_setzero_ps();
    if (Two) r1 = _mm512_mul_ps(acc1[i], va);
    if (beta != 0.f) {
      r0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m0, ci), vb, r0);
      if (Two) r1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m1, ci + 16), vb, r1);
    }
    if (ep) {
      const float b = ep->bias(i);
      const float* res = ep->residual_row(i);
      r0 = micro_epilogue<V>(*ep, b, res, m0, r0);
      if (Two) r1 = micro_epilogue<V>(*ep, b, res ? res + 16 : nullptr, m1, r1);
    }
    _mm512_mask_storeu_ps(ci, m0, r0);
    if (Two) _mm512_mask_storeu_ps(ci + 16, m1, r1);
  }
}

template <bool Two, bool Rows>
void dispatch(int64_t rows, int64_t kc, const float* a, int64_t as, const float* b0, const float* b1, float* c,
              int64_t ldc, int64_t nr, float alpha, float beta, const MicroEpilogue* ep) {
  switch (rows) {
#define ONNXFAST_CASE(R) \
  case R: kern<R, Two, Rows>(kc, a, as, b0, b1, c, ldc, nr, alpha, beta, ep); break;
    ONNXFAST_CASE(1) ONNXFAST_CASE(2) ONNXFAST_CASE(3) ONNXFAST_CASE(4) ONNXFAST_CASE(5) ONNXFAST_CASE(6)
    ONNXFAST_CASE(7) ONNXFAST_CASE(8) ONNXFAST_CASE(9) ONNXFAST_CASE(10) ONNXFAST_CASE(11)
#undef ONNXFAST_CASE
    default: kern<12, Two, Rows>(kc, a, as, b0, b1, c, ldc, nr, alpha, beta, ep); break;
  }
}

void micro(int64_t rows, int64_t kc, const float* a, int64_t as, bool a_rows, const float* b0, const float* b1,
           float* c, int64_t ldc, int64_t nr, float alpha, float beta, const MicroEpilogue* ep) {
  if (a_rows) {
    if (b1) dispatch<true, true>(rows, kc, a, as, b0, b1, c, ldc, nr, alpha, beta, ep);
    else dispatch<false, true>(rows, kc, a, as, b0, b1, c, ldc, nr, alpha, beta, ep);
  } else {
    if (b1) dispatch<true, false>(rows, kc, a, as, b0, b1, c, ldc, nr, alpha, beta, ep);
    else dispatch<false, false>(rows, kc, a, as, b0, b1, c, ldc, nr, alpha, beta, ep);
  }
}

}  // namespace

GemmTier gemm_tier_avx512() { return GemmTier{"avx512", 12, 2, &micro}; }

}  // namespace onnxfast
