// CPU feature detection (CPUID/XGETBV on x86-64) and the ISA tier kernels are chosen for.
// Detected once; ONNXFAST_ISA=portable|avx2|avx512 caps the tier so every tier can be tested
// on one machine.
#pragma once
#include <string>

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

}  // namespace onnxfast
