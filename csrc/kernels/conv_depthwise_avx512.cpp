// AVX-512 depthwise convolution (conv_depthwise_impl.h): 16 outputs per vector, 4 vectors per step.
// Compiled with the AVX-512 flags; only called when the CPU has them.
#include "simd_avx512.h"

#include "conv_depthwise_impl.h"

namespace onnxfast {

DepthwiseTier depthwise_tier_avx512() { return DepthwiseTier{"avx512", &dw_impl::dw_plane<V>, &dw_impl::scratch_floats<V>}; }

}  // namespace onnxfast
