// MicroEpilogue (gemm_tiers.h) applied to a vector of final values, written once over the vector
// traits `V` (simd_avx2.h / simd_avx512.h): T, L, zero, set1, add, mul, max/min (x86 semantics:
// the second operand when either is NaN), ge0_or (x >= 0 ? x : y), Mask and load_lanes (the
// mask's lanes at p + lane, the others zero). Used by the SGEMM micro-kernels' store and direct
// convolution tiling A's store into Y, in the files compiled for each tier.
#pragma once

#include "gemm_tiers.h"

namespace onnxfast {

// One row's final values r with that row's bias b, in Activation::apply's order (epilogue.h);
// res points at lane 0's residual (null: none), read in the lanes of m.
template <class V>
typename V::T micro_epilogue(const MicroEpilogue& e, float b, const float* res, typename V::Mask m, typename V::T r) {
  if (res) r = V::add(V::add(r, V::set1(b)), V::load_lanes(res, m));
  else if (b != 0.f) r = V::add(r, V::set1(b));
  switch (e.op) {
    case MicroEpilogue::kNone: break;
    case MicroEpilogue::kRelu: r = V::max(V::zero(), r); break;
    case MicroEpilogue::kClip: r = V::min(V::set1(e.p1), V::max(V::set1(e.p0), r)); break;
    case MicroEpilogue::kLeakyRelu: r = V::ge0_or(r, V::mul(r, V::set1(e.p0))); break;
  }
  return r;
}

}  // namespace onnxfast
