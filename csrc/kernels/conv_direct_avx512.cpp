// AVX-512 direct-convolution micro-kernels (conv_direct_impl.h): A = 8 channels x 48 positions,
// B = 6 positions x 64 channels (24 zmm accumulators each).
// Compiled with -mavx512f -mavx512bw -mavx512dq -mavx512vl -mfma; only called on such CPUs.
#include "simd_avx512.h"

#include "conv_direct_impl.h"

namespace onnxfast {

ConvDirectTier conv_direct_tier_avx512() {
  return ConvDirectTier{"avx512", 8, 48, &direct_impl::kern_a<V, 8, 3>, 6, 64, &direct_impl::kern_b<V, 6, 4>};
}

}  // namespace onnxfast
