// Chooses the vecmath table for the CPU tier once.
#include "vecmath.h"

#include "../cpu/cpu.h"

namespace onnxfast {

const VecMath& vecmath() {
  static const VecMath t = [] {
#if defined(__x86_64__) || defined(_M_X64)
    switch (active_isa()) {
      case Isa::kAvx512: return vec_avx512::table();
      case Isa::kAvx2: return vec_avx2::table();
      default: break;
    }
#endif
    return vec_portable::table();
  }();
  return t;
}

}  // namespace onnxfast
