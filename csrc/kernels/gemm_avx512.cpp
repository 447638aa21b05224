// AVX-512 SGEMM micro-kernel: up to 12 rows x 32 columns (24 zmm accumulators), two packed
// 16-column panels per call; masked loads/stores for column tails.
// Compiled with -mavx512f -mavx512bw -mavx512dq -mavx512vl -mfma; only called on such CPUs.
#include <immintrin.h>

#include "gemm_tiers.h"

namespace onnxfast {
namespace {

inline __mmask16 mask_of(int64_t n) {
  return n >= 16 ? static_cast<__mmask16>(0xFFFF) : n <= 0 ? 0 : static_cast<__mmask16>((1u << n) - 1);
}

template <int R, bool Two>
void kern(int64_t kc, const float* a, int64_t as, const float* b0, const float* b1, float* c, int64_t ldc, int64_t nr,
          float alpha) {
  __m512 acc0[R], acc1[R];
  for (int i = 0; i < R; ++i) {
    acc0[i] = _mm512_setzero_ps();
    if (Two) acc1[i] = _mm512_setzero_ps();
  }
  for (int64_t k = 0; k < kc; ++k) {
    const __m512 v0 = _mm512_load_ps(b0 + k * 16);
    __m512 v1 = _mm512_setzero_ps();
    if (Two) v1 = _mm512_load_ps(b1 + k * 16);
    const float* ak = a + k * as;
#pragma GCC unroll 12
    for (int i = 0; i < R; ++i) {
      const __m512 av = _mm512_set1_ps(ak[i]);
      acc0[i] = _mm512_fmadd_ps(av, v0, acc0[i]);
      if (Two) acc1[i] = _mm512_fmadd_ps(av, v1, acc1[i]);
    }
  }
  const __m512 va = _mm512_set1_ps(alpha);
  const __mmask16 m0 = mask_of(nr), m1 = mask_of(nr - 16);
  for (int i = 0; i < R; ++i) {
    float* ci = c + i * ldc;
    _mm512_mask_storeu_ps(ci, m0, _mm512_fmadd_ps(acc0[i], va, _mm512_maskz_loadu_ps(m0, ci)));
    if (Two) _mm512_mask_storeu_ps(ci + 16, m1, _mm512_fmadd_ps(acc1[i], va, _mm512_maskz_loadu_ps(m1, ci + 16)));
  }
}

template <bool Two>
void dispatch(int64_t rows, int64_t kc, const float* a, int64_t as, const float* b0, const float* b1, float* c,
              int64_t ldc, int64_t nr, float alpha) {
  switch (rows) {
    case 1: kern<1, Two>(kc, a, as, b0, b1, c, ldc, nr, alpha); break;
    case 2: kern<2, Two>(kc, a, as, b0, b1, c, ldc, nr, alpha); break;
    case 3: kern<3, Two>(kc, a, as, b0, b1, c, ldc, nr, alpha); break;
    case 4: kern<4, Two>(kc, a, as, b0, b1, c, ldc, nr, alpha); break;
    case 5: kern<5, Two>(kc, a, as, b0, b1, c, ldc, nr, alpha); break;
    case 6: kern<6, Two>(kc, a, as, b0, b1, c, ldc, nr, alpha); break;
    case 7: kern<7, Two>(kc, a, as, b0, b1, c, ldc, nr, alpha); break;
    case 8: kern<8, Two>(kc, a, as, b0, b1, c, ldc, nr, alpha); break;
    case 9: kern<9, Two>(kc, a, as, b0, b1, c, ldc, nr, alpha); break;
    case 10: kern<10, Two>(kc, a, as, b0, b1, c, ldc, nr, alpha); break;
    case 11: kern<11, Two>(kc, a, as, b0, b1, c, ldc, nr, alpha); break;
    default: kern<12, Two>(kc, a, as, b0, b1, c, ldc, nr, alpha); break;
  }
}

void micro(int64_t rows, int64_t kc, const float* a, int64_t as, const float* b0, const float* b1, float* c,
           int64_t ldc, int64_t nr, float alpha) {
  if (b1) dispatch<true>(rows, kc, a, as, b0, b1, c, ldc, nr, alpha);
  else dispatch<false>(rows, kc, a, as, b0, b1, c, ldc, nr, alpha);
}

}  // namespace

GemmTier gemm_tier_avx512() { return GemmTier{"avx512", 12, 2, &micro}; }

}  // namespace onnxfast
