// AVX2 + FMA SGEMM micro-kernel: up to 6 rows x 16 columns (12 ymm accumulators); A packed or read in place.
// Compiled with -mavx2 -mfma; only called when the CPU has them.
#include "gemm_tiers.h"
#include "micro_epilogue.h"
#include "simd_avx2.h"

namespace onnxfast {
namespace {

template <int R, bool Rows>
void kern(int64_t kc, const float* a, int64_t as, const float* b, float* c, int64_t ldc, int64_t nr, float alpha,
          float beta, const MicroEpilogue* ep) {
  __m256 acc0[R], acc1[R];  // rows unrolled everywhere: the accumulators stay in registers
#pragma GCC unroll 6
  for (int i = 0; i < R; ++i) {
    acc0[i] = _mm256_setzero_ps();
    acc1[i] = _mm256_setzero_ps();
  }
  if (beta != 0.f)  // C is read at the end: start fetching its lines now
    for (int i = 0; i < R; ++i) _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);
  for (int64_t k = 0; k < kc; ++k) {
    const __m256 v0 = _mm256_load_ps(b + k * 16);
    const __m256 v1 = _mm256_load_ps(b + k * 16 + 8);
#pragma GCC unroll 6
    for (int i = 0; i < R; ++i) {
      const __m256 av = _mm256_broadcast_ss(Rows ? a + i * as + k : a + k * as + i);
      acc0[i] = _mm256_fmadd_ps(av, v0, acc0[i]);
      acc1[i] = _mm256_fmadd_ps(av, v1, acc1[i]);
    }
  }
  const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
  const bool read_c = beta != 0.f;
  if (nr == 16) {
    const V::Mask all = V::first(8);  // the epilogue's residual loads
#pragma GCC unroll 6
    for (int i = 0; i < R; ++i) {
      float* ci = c + i * ldc;
      __m256 r0 = _mm256_mul_ps(acc0[i], va), r1 = _mm256_mul_ps(acc1[i], va);
      if (read_c) {
        r0 = _mm256_fmadd_ps(_mm256_loadu_ps(ci), vb, r0);
        r1 = _mm256_fmadd_ps(_mm256_loadu_ps(ci + 8), vb, r1);
      }
      if (ep) {
        const float b = ep->bias(i);
        const float* res = ep->residual_row(i);
        r0 = micro_epilogue<V>(*ep, b, res, all, r0);
        r1 = micro_epilogue<V>(*ep, b, res ? res + 8 : nullptr, all, r1);
      }
      _mm256_storeu_ps(ci, r0);
      _mm256_storeu_ps(ci + 8, r1);
    }
  } else {
    const V::Mask m0 = V::first(nr), m1 = V::first(nr - 8);
#pragma GCC unroll 6
    for (int i = 0; i < R; ++i) {
      float* ci = c + i * ldc;
      __m256 r0 = _mm256_mul_ps(acc0[i], va), r1 = _mm256_mul_ps(acc1[i], va);
      if (read_c) {
        r0 = _mm256_fmadd_ps(_mm256_maskload_ps(ci, m0), vb, r0);
        r1 = _mm256_fmadd_ps(_mm256_maskload_ps(ci + 8, m1), vb, r1);
      }
      if (ep) {
        const float b = ep->bias(i);
        const float* res = ep->residual_row(i);
        r0 = micro_epilogue<V>(*ep, b, res, m0, r0);
        r1 = micro_epilogue<V>(*ep, b, res ? res + 8 : nullptr, m1, r1);
      }
      _mm256_maskstore_ps(ci, m0, r0);
      _mm256_maskstore_ps(ci + 8, m1, r1);
    }
  }
}

template <bool Rows>
void dispatch(int64_t rows, int64_t kc, const float* a, int64_t as, const float* b0, float* c, int64_t ldc, int64_t nr,
              float alpha, float beta, const MicroEpilogue* ep) {
  switch (rows) {
    case 1: kern<1, Rows>(kc, a, as, b0, c, ldc, nr, alpha, beta, ep); break;
    case 2: kern<2, Rows>(kc, a, as, b0, c, ldc, nr, alpha, beta, ep); break;
    case 3: kern<3, Rows>(kc, a, as, b0, c, ldc, nr, alpha, beta, ep); break;
    case 4: kern<4, Rows>(kc, a, as, b0, c, ldc, nr, alpha, beta, ep); break;
    case 5: kern<5, Rows>(kc, a, as, b0, c, ldc, nr, alpha, beta, ep); break;
    default: kern<6, Rows>(kc, a, as, b0, c, ldc, nr, alpha, beta, ep); break;
  }
}

void micro(int64_t rows, int64_t kc, const float* a, int64_t as, bool a_rows, const float* b0, const float*, float* c,
           int64_t ldc, int64_t nr, float alpha, float beta, const MicroEpilogue* ep) {
  if (a_rows) dispatch<true>(rows, kc, a, as, b0, c, ldc, nr, alpha, beta, ep);
  else dispatch<false>(rows, kc, a, as, b0, c, ldc, nr, alpha, beta, ep);
}

}  // namespace

GemmTier gemm_tier_avx2() { return GemmTier{"avx2", 6, 1, &micro}; }

}  // namespace onnxfast
