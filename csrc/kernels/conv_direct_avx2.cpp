// AVX2 + FMA direct-convolution micro-kernels (conv_direct_impl.h): A = 4 channels x 24 positions,
// B = 6 positions x 16 channels (12 ymm accumulators each).
// Compiled with -mavx2 -mfma; only called when the CPU has them.
#include "simd_avx2.h"

#include "conv_direct_impl.h"

namespace onnxfast {

ConvDirectTier conv_direct_tier_avx2() {
  return ConvDirectTier{"avx2", 4, 24, &direct_impl::kern_a<V, 4, 3>, 6, 16, &direct_impl::kern_b<V, 6, 2>};
}

}  // namespace onnxfast
