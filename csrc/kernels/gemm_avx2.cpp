// AVX2 + FMA SGEMM micro-kernel: up to 6 rows x 16 columns (12 ymm accumulators).
// Compiled with -mavx2 -mfma; only called when the CPU has them.
#include <immintrin.h>

#include "gemm_tiers.h"

namespace onnxfast {
namespace {

inline __m256i tail_mask(int64_t n) {  // first n of 8 lanes
  alignas(32) static const int32_t m[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
  n = n < 0 ? 0 : (n > 8 ? 8 : n);
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(m + 8 - n));
}

template <int R>
void kern(int64_t kc, const float* a, int64_t as, const float* b, float* c, int64_t ldc, int64_t nr, float alpha) {
  __m256 acc0[R], acc1[R];
  for (int i = 0; i < R; ++i) {
    acc0[i] = _mm256_setzero_ps();
    acc1[i] = _mm256_setzero_ps();
  }
  for (int64_t k = 0; k < kc; ++k) {
    const __m256 v0 = _mm256_load_ps(b + k * 16);
    const __m256 v1 = _mm256_load_ps(b + k * 16 + 8);
    const float* ak = a + k * as;
#pragma GCC unroll 6
    for (int i = 0; i < R; ++i) {
      const __m256 av = _mm256_broadcast_ss(ak + i);
      acc0[i] = _mm256_fmadd_ps(av, v0, acc0[i]);
      acc1[i] = _mm256_fmadd_ps(av, v1, acc1[i]);
    }
  }
  const __m256 va = _mm256_set1_ps(alpha);
  if (nr == 16) {
    for (int i = 0; i < R; ++i) {
      float* ci = c + i * ldc;
      _mm256_storeu_ps(ci, _mm256_fmadd_ps(acc0[i], va, _mm256_loadu_ps(ci)));
      _mm256_storeu_ps(ci + 8, _mm256_fmadd_ps(acc1[i], va, _mm256_loadu_ps(ci + 8)));
    }
  } else {
    const __m256i m0 = tail_mask(nr), m1 = tail_mask(nr - 8);
    for (int i = 0; i < R; ++i) {
      float* ci = c + i * ldc;
      _mm256_maskstore_ps(ci, m0, _mm256_fmadd_ps(acc0[i], va, _mm256_maskload_ps(ci, m0)));
      _mm256_maskstore_ps(ci + 8, m1, _mm256_fmadd_ps(acc1[i], va, _mm256_maskload_ps(ci + 8, m1)));
    }
  }
}

void micro(int64_t rows, int64_t kc, const float* a, int64_t as, const float* b0, const float*, float* c, int64_t ldc,
           int64_t nr, float alpha) {
  switch (rows) {
    case 1: kern<1>(kc, a, as, b0, c, ldc, nr, alpha); break;
    case 2: kern<2>(kc, a, as, b0, c, ldc, nr, alpha); break;
    case 3: kern<3>(kc, a, as, b0, c, ldc, nr, alpha); break;
    case 4: kern<4>(kc, a, as, b0, c, ldc, nr, alpha); break;
    case 5: kern<5>(kc, a, as, b0, c, ldc, nr, alpha); break;
    default: kern<6>(kc, a, as, b0, c, ldc, nr, alpha); break;
  }
}

}  // namespace

GemmTier gemm_tier_avx2() { return GemmTier{"avx2", 6, 1, &micro}; }

}  // namespace onnxfast
