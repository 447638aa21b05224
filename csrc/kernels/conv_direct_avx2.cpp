// AVX2 + FMA direct-convolution micro-kernels (conv_direct_impl.h): A = 4 channels x 24 positions,
// B = 6 positions x 16 channels (12 ymm accumulators each).
// Compiled with -mavx2 -mfma; only called when the CPU has them.
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
};
}  // namespace

#include "conv_direct_impl.h"

namespace onnxfast {

ConvDirectTier conv_direct_tier_avx2() {
  return ConvDirectTier{"avx2", 4, 24, &direct_impl::kern_a<V, 4, 3>, 6, 16, &direct_impl::kern_b<V, 6, 2>};
}

}  // namespace onnxfast
