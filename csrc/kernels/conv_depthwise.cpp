// Depthwise convolution: the portable tier (one-lane traits over conv_depthwise_impl.h, which the
// compiler may still vectorize for the baseline ISA) and the choice of tier for this CPU.
#include "conv_depthwise_impl.h"

#include "../cpu/cpu.h"

namespace onnxfast {
namespace {
struct Scalar {
  using T = float;
  static constexpr int L = 1;
  static T zero() { return 0.f; }
  static T loadu(const float* p) { return *p; }
  static T load_even(const float* p) { return *p; }
  static T bcast(const float* p) { return *p; }
  static T fma(T a, T b, T c) { return a * b + c; }
  static void storeu(float* p, T v) { *p = v; }
};
}  // namespace

DepthwiseTier depthwise_tier_portable() { return DepthwiseTier{"portable", &dw_impl::dw_plane<Scalar>, &dw_impl::scratch_floats<Scalar>}; }

const DepthwiseTier& depthwise_tier() {
  static const DepthwiseTier t = []() {
#if defined(__x86_64__) || defined(_M_X64)
    switch (active_isa()) {
      case Isa::kAvx512: return depthwise_tier_avx512();
      case Isa::kAvx2: return depthwise_tier_avx2();
      default: break;
    }
#endif
    return depthwise_tier_portable();
  }();
  return t;
}

}  // namespace onnxfast
