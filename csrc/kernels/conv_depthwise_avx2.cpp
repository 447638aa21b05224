// AVX2 + FMA depthwise convolution (conv_depthwise_impl.h): 8 outputs per vector, 4 vectors per step.
// Compiled with -mavx2 -mfma; only called when the CPU has them.
#include "simd_avx2.h"

#include "conv_depthwise_impl.h"

namespace onnxfast {

DepthwiseTier depthwise_tier_avx2() { return DepthwiseTier{"avx2", &dw_impl::dw_plane<V>, &dw_impl::scratch_floats<V>}; }

}  // namespace onnxfast
