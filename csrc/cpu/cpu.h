// CPU feature detection (CPUID/XGETBV on x86-64) and the ISA tier kernels are chosen for.
// Detected once; ONNXFAST_ISA=portable|avx2|avx512 caps the tier so every tier can be tested
// on one machine.
#pragma once
#include <string>

#if defined(__x86_64__) || defined(_M_X64)
#include <xmmintrin.h>
#endif

namespace onnxfast {

struct CpuFeatures {
  bool avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512bw = false, avx512dq = false, avx512vl = false;
  bool avx512vnni = false, avx512bf16 = false;
};

enum class Isa { kPortable = 0, kAvx2 = 1, kAvx512 = 2 };

const CpuFeatures& cpu_features();
Isa best_isa();     // what the CPU supports
Isa active_isa();   // best_isa capped by ONNXFAST_ISA (read once)
const char* isa_name(Isa isa);

// Flush denormals to zero (FTZ and DAZ in MXCSR) on this thread while in scope, when asked.
class DenormalScope {
 public:
  explicit DenormalScope(bool on) {
#if defined(__x86_64__) || defined(_M_X64)
    if (on) {
      saved_ = _mm_getcsr();
      _mm_setcsr(saved_ | 0x8040);
      active_ = true;
    }
#else
    (void)on;
#endif
  }
  ~DenormalScope() {
#if defined(__x86_64__) || defined(_M_X64)
    if (active_) _mm_setcsr(saved_);
#endif
  }
  DenormalScope(const DenormalScope&) = delete;
  DenormalScope& operator=(const DenormalScope&) = delete;

 private:
  unsigned saved_ = 0;
  bool active_ = false;
};

}  // namespace onnxfast
