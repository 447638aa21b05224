// AVX-512 MaxPool rows (pool_max_impl.h): 16 columns per vector. Compiled with the AVX-512 flags;
// only called when the CPU has them.
#include "simd_avx512.h"

#include "pool_max_impl.h"

namespace onnxfast {

MaxPoolTier max_pool_tier_avx512() { return MaxPoolTier{"avx512", &pool_impl::vmax<V>, &pool_impl::hmax<V>}; }

}  // namespace onnxfast
