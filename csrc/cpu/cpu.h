// CPU feature detection (CPUID/XGETBV on x86-64, HWCAP on aarch64) and the ISA tier kernels are chosen for.
// Detected once; ONNXFAST_ISA=portable|avx2|avx512 caps the tier so every tier can be tested
// on one machine.
// The platform table (platform()): the CPU's identity, its data-cache sizes and the vector width of
// the tier, filled once at start-up, so kernels size their blocks for the CPU they run on rather
// than for the one they were tuned on. Cache sizes come from CPUID (leaf 4 on Intel, 0x8000001D or
// 0x80000005/6 on AMD), else sysfs (aarch64, or a level CPUID did not answer), else defaults;
// ONNXFAST_CACHE_SIZES="l1d=32K,l2=1M,l3=32M" (any subset) overrides them at start-up and
// set_cache_sizes() at run time (tests), so blocking derived from them can be exercised anywhere.
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

// Data-cache sizes in bytes: L1d and L2 of one core's instance, L3 of one (shared) instance, as
// CPUID and sysfs describe them (sysfs lists the same instances: index*/size). On a hybrid CPU,
// CPUID's are those of the core that ran the detection (sysfs falls back to cpu0's).
struct CacheSizes {
  int64_t l1d = 0, l2 = 0, l3 = 0;
};

struct Platform {
  // x86-64: CPUID's vendor string, family and model computed as Linux's /proc/cpuinfo shows them
  // (extended fields added), brand string (leaves 0x80000002-4). aarch64: MIDR_EL1's implementer
  // (as "0x41") and part number as the model; no brand string.
  std::string vendor, model_name;
  int family = 0, model = 0, stepping = 0;
  CacheSizes detected;       // before any override
  std::string cache_source;  // where each size came from, e.g. "l1d,l2,l3: cpuid leaf 4"
  int vector_bytes = 16;     // widest vector the active tier uses: 64 AVX-512, 32 AVX2, 16 SSE2/NEON
  // Whether a 512-bit operation runs as one pass of a 512-bit unit rather than two passes of a
  // 256-bit one (Zen 4 double-pumps them). CPUID does not say: a family/model table (cpu.cpp).
  // False without AVX-512.
  bool avx512_full_rate = false;
  // ONNXFAST_CACHE_SIZES was set but malformed: why (the detected sizes apply). The Python module
  // raises ValueError with it at import; empty when unset or valid.
  std::string cache_env_error;
};
const Platform& platform();

// The sizes in effect: detected, overridden by ONNXFAST_CACHE_SIZES, then by set_cache_sizes().
// Kernels read them once per call (a relaxed load each), so one call sees one set of sizes.
CacheSizes cache_sizes();
// Each entry > 0 replaces the size in effect, 0 restores the detected size, < 0 leaves it as it is.
// Returns the sizes in effect before the call.
CacheSizes set_cache_sizes(const CacheSizes& sizes);
// Parses "l1d=32K,l2=1M,l3=32M" (any subset, in any order; a size is bytes, or a number with a K, M
// or G suffix, powers of 1024, an optional trailing "B" or "iB") into `out`, whose entries not named
// keep their values. False, with `error` naming the bad entry, on anything else (unknown key, a
// size below 1 KiB or above 1 TiB, a repeated key).
bool parse_cache_sizes(const std::string& spec, CacheSizes* out, std::string* error);
// One size as parse_cache_sizes reads it ("48K", "2M", "2097152"); -1 when malformed or out of range.
int64_t parse_cache_size(const std::string& text);

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
