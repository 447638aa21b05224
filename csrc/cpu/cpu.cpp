// CPU feature detection, the ISA tier and the platform table (see cpu.h).
#include "cpu.h"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#define ONNXFAST_X86 1
#endif
#if defined(__aarch64__) && defined(__linux__)
#include <asm/hwcap.h>
#include <sys/auxv.h>
#endif

namespace onnxfast {

namespace {

CpuFeatures detect() {
  CpuFeatures f;
#ifdef ONNXFAST_X86
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  bool osxsave = c & (1u << 27);
  bool avx = c & (1u << 28);
  f.fma = c & (1u << 12);
  f.f16c = c & (1u << 29);
  unsigned long long xcr0 = 0;
  if (osxsave) {
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    xcr0 = (static_cast<unsigned long long>(hi) << 32) | lo;
  }
  bool ymm_os = (xcr0 & 0x6) == 0x6;
  bool zmm_os = (xcr0 & 0xe6) == 0xe6;
  if (!avx || !ymm_os) {
    f.fma = false;
    f.f16c = false;
    return f;
  }
  if (__get_cpuid_max(0, nullptr) >= 7) {
    __cpuid_count(7, 0, a, b, c, d);
    f.avx2 = b & (1u << 5);
    if (zmm_os) {
      f.avx512f = b & (1u << 16);
      f.avx512dq = b & (1u << 17);
      f.avx512bw = b & (1u << 30);
      f.avx512vl = b & (1u << 31);
      f.avx512vnni = c & (1u << 11);
      __cpuid_count(7, 1, a, b, c, d);
      f.avx512bf16 = a & (1u << 5);
    }
  }
#endif
#if defined(__aarch64__) && defined(__linux__)
  const unsigned long hw = getauxval(AT_HWCAP);
  f.neon = hw & HWCAP_ASIMD;
  f.fp16 = hw & HWCAP_ASIMDHP;
  f.sve = hw & HWCAP_SVE;
#endif
  return f;
}

Isa compute_best() {
  const CpuFeatures& f = cpu_features();
  if (f.avx512f && f.avx512bw && f.avx512dq && f.avx512vl && f.fma) return Isa::kAvx512;
  if (f.avx2 && f.fma) return Isa::kAvx2;
  return Isa::kPortable;
}

Isa compute_active() {
  Isa best = best_isa();
  const char* cap = std::getenv("ONNXFAST_ISA");
  if (!cap || !*cap) return best;
  Isa want = best;
  if (!std::strcmp(cap, "portable")) want = Isa::kPortable;
  else if (!std::strcmp(cap, "avx2")) want = Isa::kAvx2;
  else if (!std::strcmp(cap, "avx512")) want = Isa::kAvx512;
  return static_cast<int>(want) < static_cast<int>(best) ? want : best;
}

// ---- Platform table -------------------------------------------------------------------

// When nothing answers: a common L1d, a middling L2, a small L3 (blocking sized for these is safe
// on larger caches, just not the fastest).
constexpr CacheSizes kDefaultCaches{32 << 10, 1 << 20, 8 << 20};
constexpr int64_t kMinCacheBytes = int64_t(1) << 10, kMaxCacheBytes = int64_t(1) << 40;

// Data or unified cache sizes by level (1..3, 0 unused) and the source that gave each.
struct LevelSizes {
  int64_t bytes[4] = {0, 0, 0, 0};
  const char* source[4] = {nullptr, nullptr, nullptr, nullptr};
  void set(int level, int64_t b, const char* src) {
    if (level >= 1 && level <= 3 && b > 0 && !bytes[level]) {  // the first data/unified cache of a level
      bytes[level] = b;
      source[level] = src;
    }
  }
};

#ifdef ONNXFAST_X86
unsigned max_leaf(unsigned base) { return __get_cpuid_max(base, nullptr); }

// Leaf 4 (Intel "deterministic cache parameters") and AMD's 0x8000001D share a layout: per subleaf,
// EAX[4:0] type (0 none left, 1 data, 2 instruction, 3 unified), EAX[7:5] level; size = ways
// (EBX[31:22] + 1) x partitions (EBX[21:12] + 1) x line (EBX[11:0] + 1) x sets (ECX + 1).
void read_cache_leaf(unsigned leaf, const char* src, LevelSizes& out) {
  for (unsigned sub = 0; sub < 32; ++sub) {
    unsigned a, b, c, d;
    __cpuid_count(leaf, sub, a, b, c, d);
    const unsigned type = a & 31, level = (a >> 5) & 7;
    if (type == 0) break;
    if (type == 2) continue;
    const int64_t bytes = int64_t((b >> 22) + 1) * (((b >> 12) & 0x3ff) + 1) * ((b & 0xfff) + 1) * (int64_t(c) + 1);
    out.set(static_cast<int>(level), bytes, src);
  }
}

// AMD's older leaves: 0x80000005 ECX[31:24] L1d KiB; 0x80000006 ECX[31:16] L2 KiB, EDX[31:18] L3 in
// 512 KiB units. Intel defines only the L2 field.
void read_amd_legacy(bool amd, LevelSizes& out) {
  const unsigned ext = max_leaf(0x80000000);
  unsigned a, b, c, d;
  if (amd && ext >= 0x80000005) {
    __cpuid(0x80000005, a, b, c, d);
    out.set(1, int64_t(c >> 24) << 10, "cpuid 0x80000005");
  }
  if (ext >= 0x80000006) {
    __cpuid(0x80000006, a, b, c, d);
    out.set(2, int64_t(c >> 16) << 10, "cpuid 0x80000006");
    if (amd) out.set(3, int64_t(d >> 18) * (512 << 10), "cpuid 0x80000006");
  }
}
#endif

std::string read_line(const std::string& path) {
  std::ifstream f(path);
  std::string s;
  if (f) std::getline(f, s);
  return s;
}

// Linux: /sys/devices/system/cpu/cpu0/cache/index<i>/{level,type,size}, size as "48K".
void read_sysfs_caches(LevelSizes& out) {
  for (int i = 0; i < 16; ++i) {
    const std::string dir = "/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(i) + "/";
    const std::string level = read_line(dir + "level"), type = read_line(dir + "type");
    if (level.empty()) break;
    if (type != "Data" && type != "Unified") continue;
    out.set(std::atoi(level.c_str()), std::max<int64_t>(0, parse_cache_size(read_line(dir + "size"))), "sysfs");
  }
}

// Whether 512-bit operations run at full rate: one pass of a 512-bit unit, not two passes of a 256-bit
// one. Not in CPUID, so by vendor and family:
//  - Intel: every AVX-512 core executes 512-bit operations whole (Skylake-SP/X through Granite Rapids,
//    Ice/Tiger/Rocket Lake; Intel Optimization Reference Manual, AVX-512 chapter). Xeon Scalable parts
//    with one 512-bit FMA unit (many Bronze/Silver) share model numbers with the two-unit ones, so
//    they count as full rate too, though their 512-bit FMA throughput in flops is only AVX2's; only a
//    timing probe could tell them apart.
//  - AMD family 0x19: of its cores only Zen 4 has AVX-512, and Zen 4 splits each 512-bit operation
//    into two 256-bit halves (AMD's Family 19h Software Optimization Guide, 57647: "double-pumped").
//  - AMD family 0x1A, Zen 5: 512-bit datapaths on the desktop and server parts (Granite Ridge, Turin;
//    AMD's Zen 5 disclosures, 2024; A. Yee's Zen 5 AVX-512 teardown), but the mobile Strix Point
//    (models 0x20-0x2F) and Krackan Point (0x60-0x6F) keep Zen 4's 256-bit ones (AMD, and measured by
//    Chips and Cheese / D. Huang on the Ryzen AI 300 series).
//  - Anything else (other vendors, a later AMD family): unknown, so not assumed.
bool avx512_full_rate(const CpuFeatures& f, const std::string& vendor, int family, int model) {
  if (!f.avx512f) return false;
  if (vendor == "GenuineIntel") return true;
  if (vendor == "AuthenticAMD") {
    if (family == 0x19) return false;
    if (family == 0x1A) return !((model >= 0x20 && model <= 0x2F) || (model >= 0x60 && model <= 0x6F));
  }
  return false;
}

int vector_bytes(Isa isa) {
  switch (isa) {
    case Isa::kAvx512: return 64;
    case Isa::kAvx2: return 32;
    default: return 16;  // the portable kernels' GCC vectors: SSE2 on x86-64, NEON on aarch64
  }
}

struct PlatformInit {
  Platform p;
  CacheSizes startup;  // detected, then ONNXFAST_CACHE_SIZES
};

const PlatformInit& platform_init() {
  static const PlatformInit init = [] {
    PlatformInit r;
    Platform& p = r.p;
    LevelSizes lv;
#ifdef ONNXFAST_X86
    unsigned a, b, c, d;
    if (__get_cpuid(0, &a, &b, &c, &d)) {
      const unsigned max_basic = a;
      char v[13];
      std::memcpy(v, &b, 4);
      std::memcpy(v + 4, &d, 4);
      std::memcpy(v + 8, &c, 4);
      v[12] = 0;
      p.vendor = v;
      if (max_basic >= 1) {
        __cpuid(1, a, b, c, d);
        // as Linux computes x86 family/model (arch/x86/lib/cpu.c)
        p.family = (a >> 8) & 0xf;
        if (p.family == 0xf) p.family += (a >> 20) & 0xff;
        p.model = (a >> 4) & 0xf;
        if (p.family >= 6) p.model += ((a >> 16) & 0xf) << 4;
        p.stepping = a & 0xf;
      }
      if (max_leaf(0x80000000) >= 0x80000004) {
        unsigned r4[12];
        for (unsigned i = 0; i < 3; ++i) __cpuid(0x80000002 + i, r4[4 * i], r4[4 * i + 1], r4[4 * i + 2], r4[4 * i + 3]);
        char name[49];
        std::memcpy(name, r4, 48);
        name[48] = 0;
        std::string s = name;
        const size_t first = s.find_first_not_of(' ');
        const size_t last = s.find_last_not_of(' ');
        p.model_name = first == std::string::npos ? "" : s.substr(first, last - first + 1);
      }
      const bool amd = p.vendor == "AuthenticAMD" || p.vendor == "HygonGenuine";
      if (amd) {
        bool topoext = false;
        if (max_leaf(0x80000000) >= 0x8000001D) {
          __cpuid(0x80000001, a, b, c, d);
          topoext = c & (1u << 22);
        }
        if (topoext) read_cache_leaf(0x8000001D, "cpuid 0x8000001d", lv);
      } else if (max_basic >= 4) {
        read_cache_leaf(4, "cpuid leaf 4", lv);
      }
      read_amd_legacy(amd, lv);  // only fills the levels still missing
    }
#elif defined(__aarch64__) && defined(__linux__)
    // MIDR_EL1 as Linux exposes it: implementer [31:24], variant [23:20], part [15:4], revision [3:0].
    const std::string midr = read_line("/sys/devices/system/cpu/cpu0/regs/identification/midr_el1");
    if (!midr.empty()) {
      const unsigned long m = std::strtoul(midr.c_str(), nullptr, 16);
      char v[8];
      std::snprintf(v, sizeof(v), "0x%02lx", (m >> 24) & 0xff);
      p.vendor = v;
      p.model = static_cast<int>((m >> 4) & 0xfff);
      p.stepping = static_cast<int>(m & 0xf);
    }
#endif
    read_sysfs_caches(lv);  // levels CPUID left empty (all of them off x86)
    const int64_t defaults[4] = {0, kDefaultCaches.l1d, kDefaultCaches.l2, kDefaultCaches.l3};
    for (int l = 1; l <= 3; ++l) lv.set(l, defaults[l], "default");
    p.detected = CacheSizes{lv.bytes[1], lv.bytes[2], lv.bytes[3]};
    // "l1d,l2,l3: cpuid leaf 4", or per group of levels when the sources differ
    const char* names[4] = {nullptr, "l1d", "l2", "l3"};
    bool done[4] = {false, false, false, false};
    for (int l = 1; l <= 3; ++l) {
      if (done[l]) continue;
      std::string levels;
      for (int k = l; k <= 3; ++k)
        if (!done[k] && !std::strcmp(lv.source[k], lv.source[l])) {
          levels += (levels.empty() ? "" : ",") + std::string(names[k]);
          done[k] = true;
        }
      p.cache_source += (p.cache_source.empty() ? "" : "; ") + levels + ": " + lv.source[l];
    }
    p.vector_bytes = vector_bytes(active_isa());
    p.avx512_full_rate = avx512_full_rate(cpu_features(), p.vendor, p.family, p.model);
    r.startup = p.detected;
    const char* env = std::getenv("ONNXFAST_CACHE_SIZES");
    if (env && *env) {
      CacheSizes s = p.detected;
      std::string err;
      if (parse_cache_sizes(env, &s, &err)) r.startup = s;
      else p.cache_env_error = "ONNXFAST_CACHE_SIZES: " + err;
    }
    return r;
  }();
  return init;
}

// The sizes in effect: relaxed atomics, as a test may change them while another thread runs a kernel
// (that kernel then uses the old sizes or the new, each read once per call).
struct LiveCaches {
  std::atomic<int64_t> l1d, l2, l3;
  LiveCaches() {
    const CacheSizes& s = platform_init().startup;
    l1d.store(s.l1d, std::memory_order_relaxed);
    l2.store(s.l2, std::memory_order_relaxed);
    l3.store(s.l3, std::memory_order_relaxed);
  }
};

LiveCaches& live_caches() {
  static LiveCaches c;
  return c;
}

std::string lower(std::string s) {
  for (char& ch : s) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return s;
}

std::string trim(const std::string& s) {
  const size_t a = s.find_first_not_of(" \t"), b = s.find_last_not_of(" \t");
  return a == std::string::npos ? "" : s.substr(a, b - a + 1);
}

}  // namespace

const Platform& platform() { return platform_init().p; }

CacheSizes cache_sizes() {
  const LiveCaches& c = live_caches();
  return CacheSizes{c.l1d.load(std::memory_order_relaxed), c.l2.load(std::memory_order_relaxed),
                    c.l3.load(std::memory_order_relaxed)};
}

CacheSizes set_cache_sizes(const CacheSizes& s) {
  LiveCaches& c = live_caches();
  const CacheSizes& det = platform().detected;
  const CacheSizes old = cache_sizes();
  auto put = [](std::atomic<int64_t>& slot, int64_t v, int64_t detected) {
    if (v >= 0) slot.store(v > 0 ? v : detected, std::memory_order_relaxed);
  };
  put(c.l1d, s.l1d, det.l1d);
  put(c.l2, s.l2, det.l2);
  put(c.l3, s.l3, det.l3);
  return old;
}

int64_t parse_cache_size(const std::string& text) {
  const std::string t = lower(trim(text));
  size_t i = 0;
  while (i < t.size() && std::isdigit(static_cast<unsigned char>(t[i]))) ++i;
  if (i == 0 || i > 15) return -1;  // no digits, or more than any cache has
  int64_t v = std::stoll(t.substr(0, i));
  std::string unit = t.substr(i);
  if (unit.size() >= 2 && unit.compare(unit.size() - 2, 2, "ib") == 0) unit.resize(unit.size() - 2);
  else if (!unit.empty() && unit.back() == 'b') unit.pop_back();
  const int shift = unit.empty() ? 0 : unit == "k" ? 10 : unit == "m" ? 20 : unit == "g" ? 30 : -1;
  if (shift < 0 || v > (kMaxCacheBytes >> shift)) return -1;
  v <<= shift;
  return v >= kMinCacheBytes ? v : -1;
}

bool parse_cache_sizes(const std::string& spec, CacheSizes* out, std::string* error) {
  CacheSizes r = *out;
  bool seen[3] = {false, false, false};
  size_t pos = 0;
  while (pos <= spec.size()) {
    size_t end = spec.find(',', pos);
    if (end == std::string::npos) end = spec.size();
    const std::string entry = trim(spec.substr(pos, end - pos));
    pos = end + 1;
    if (entry.empty()) continue;  // "l2=1M," and the like
    const size_t eq = entry.find('=');
    const std::string key = eq == std::string::npos ? entry : lower(trim(entry.substr(0, eq)));
    const int k = key == "l1d" ? 0 : key == "l2" ? 1 : key == "l3" ? 2 : -1;
    const int64_t v = eq == std::string::npos ? -1 : parse_cache_size(entry.substr(eq + 1));
    std::string why;
    if (k < 0) why = "unknown cache (l1d, l2 or l3)";
    else if (seen[k]) why = "given twice";
    else if (v < 0) why = "not a size from 1K to 1T (bytes, or with a K, M or G suffix: 48K, 2M)";
    if (!why.empty()) {
      if (error) *error = "bad entry '" + entry + "': " + why;
      return false;
    }
    seen[k] = true;
    (k == 0 ? r.l1d : k == 1 ? r.l2 : r.l3) = v;
  }
  *out = r;
  return true;
}

const CpuFeatures& cpu_features() {
  static const CpuFeatures f = detect();
  return f;
}
Isa best_isa() {
  static const Isa i = compute_best();
  return i;
}
Isa active_isa() {
  static const Isa i = compute_active();
  return i;
}
const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kAvx512: return "avx512";
    case Isa::kAvx2: return "avx2";
    default: return "portable";
  }
}

}  // namespace onnxfast
