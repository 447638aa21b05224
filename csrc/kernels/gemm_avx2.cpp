// AVX2 + FMA SGEMM micro-kernel: up to 6 rows x 16 columns (12 ymm accumulators); A packed or read in place.
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

// The fused epilogue on 8 of one row's final values (see MicroEpilogue); `res` points at their residual.
template <bool Tail>
inline __m256 finish(const MicroEpilogue& e, int64_t i, const float* res, __m256i m, __m256 r) {
  const float b = e.row_bias ? e.row_bias[i] : 0.f;
  if (e.residual)
    r = _mm256_add_ps(_mm256_add_ps(r, _mm256_set1_ps(b)), Tail ? _mm256_maskload_ps(res, m) : _mm256_loadu_ps(res));
  else if (b != 0.f)
    r = _mm256_add_ps(r, _mm256_set1_ps(b));
  switch (e.op) {
    case MicroEpilogue::kNone: break;
    case MicroEpilogue::kRelu: r = _mm256_max_ps(_mm256_setzero_ps(), r); break;
    case MicroEpilogue::kClip: r = _mm256_min_ps(_mm256_set1_ps(e.p1), _mm256_max_ps(_mm256_set1_ps(e.p0), r)); break;
    case MicroEpilogue::kLeakyRelu:
      r = _mm256_blendv_ps(_mm256_mul_ps(r, _mm256_set1_ps(e.p0)), r, _mm256_cmp_ps(r, _mm256_setzero_ps(), _CMP_GE_OQ));
      break;
  }
  return r;
}

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
#pragma GCC unroll 6
    for (int i = 0; i < R; ++i) {
      float* ci = c + i * ldc;
      __m256 r0 = _mm256_mul_ps(acc0[i], va), r1 = _mm256_mul_ps(acc1[i], va);
      if (read_c) {
        r0 = _mm256_fmadd_ps(_mm256_loadu_ps(ci), vb, r0);
        r1 = _mm256_fmadd_ps(_mm256_loadu_ps(ci + 8), vb, r1);
      }
      if (ep) {
        const float* res = ep->residual ? ep->residual + i * ep->ldr : nullptr;
        r0 = finish<false>(*ep, i, res, __m256i(), r0);
        r1 = finish<false>(*ep, i, res ? res + 8 : nullptr, __m256i(), r1);
      }
      _mm256_storeu_ps(ci, r0);
      _mm256_storeu_ps(ci + 8, r1);
    }
  } else {
    const __m256i m0 = tail_mask(nr), m1 = tail_mask(nr - 8);
#pragma GCC unroll 6
    for (int i = 0; i < R; ++i) {
      float* ci = c + i * ldc;
      __m256 r0 = _mm256_mul_ps(acc0[i], va), r1 = _mm256_mul_ps(acc1[i], va);
      if (read_c) {
        r0 = _mm256_fmadd_ps(_mm256_maskload_ps(ci, m0), vb, r0);
        r1 = _mm256_fmadd_ps(_mm256_maskload_ps(ci + 8, m1), vb, r1);
      }
      if (ep) {
        const float* res = ep->residual ? ep->residual + i * ep->ldr : nullptr;
        r0 = finish<true>(*ep, i, res, m0, r0);
        r1 = finish<true>(*ep, i, res ? res + 8 : nullptr, m1, r1);
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
