// CPU feature detection (CPUID/XGETBV on x86-64, HWCAP on aarch64) and the ISA tier kernels are chosen for.
// Detected once; ONNXFAST_ISA=portable|avx2|avx512 caps the tier so every tier can be tested
// on one machine.
#pragma once
#include <cstdint>
#include <string>

#if defined(__x86_64__) || defined(_M_X64)
#include <xmmintrin.h>
#endif

namespace onnxfast {

struct CpuFeatures {
  bool avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512bw = false, avx512dq = false, avx512vl = false;
  bool avx512vnni = false, avx512bf16 = false;
  bool neon = false, fp16 = false, sve = false;  // aarch64 (HWCAP)
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
      _mm_setcsr(static_cast<unsigned>(saved_) | 0x8040);
      active_ = true;
    }
#elif defined(__aarch64__)
    if (on) {  // FPCR.FZ flushes denormal inputs and results to zero
      uint64_t v;
      __asm__ volatile("mrs %0, fpcr" : "=r"(v));
      saved_ = v;
      __asm__ volatile("msr fpcr, %0" : : "r"(v | (uint64_t(1) << 24)));
      active_ = true;
    }
#else
    (void)on;
#endif
  }
  ~DenormalScope() {
#if defined(__x86_64__) || defined(_M_X64)
    if (active_) _mm_setcsr(static_cast<unsigned>(saved_));
#elif defined(__aarch64__)
    if (active_) __asm__ volatile("msr fpcr, %0" : : "r"(saved_));
#endif
  }
  DenormalScope(const DenormalScope&) = delete;
  DenormalScope& operator=(const DenormalScope&) = delete;

 private:
  uint64_t saved_ = 0;
  bool active_ = false;
};

}  // namespace onnxfast
