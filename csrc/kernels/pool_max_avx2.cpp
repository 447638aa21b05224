// AVX2 MaxPool rows (pool_max_impl.h): 8 columns per vector. Compiled with -mavx2 -mfma; only
// called when the CPU has them.
#include "simd_avx2.h"

#include "pool_max_impl.h"

namespace onnxfast {

MaxPoolTier max_pool_tier_avx2() { return MaxPoolTier{"avx2", &pool_impl::vmax<V>, &pool_impl::hmax<V>}; }

}  // namespace onnxfast
