// Memory: the limit, the allocation guard, and the block allocator with its cache (see memory.h).
#include "memory.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <vector>

#include "errors.h"

namespace onnxfast {

namespace {

constexpr size_t kKiB = size_t(1) << 10, kMiB = size_t(1) << 20, kGiB = size_t(1) << 30;
// Blocks from this size up are size-classed, mapped and cached.
constexpr size_t kCacheMin = 64 * kKiB;
// Requests from this size up (not served by the cache) are also checked against MemAvailable
// and the address space left under RLIMIT_AS.
constexpr size_t kLargeRequest = 32 * kMiB;
// cgroup v1 writes "no limit" as the largest page-aligned int64; anything this large is none.
constexpr uint64_t kUnlimited = uint64_t(1) << 60;

// ---- small file helpers (no iostreams: these run on the allocation path) ----

bool read_text(const std::string& path, std::string* out, size_t max_bytes = 1 << 20) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  out->clear();
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      ::close(fd);
      return false;
    }
    if (n == 0) break;
    out->append(buf, static_cast<size_t>(n));
    if (out->size() >= max_bytes) break;
  }
  ::close(fd);
  return true;
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  for (;;) {
    size_t e = s.find(sep, start);
    out.push_back(s.substr(start, e == std::string::npos ? std::string::npos : e - start));
    if (e == std::string::npos) break;
    start = e + 1;
  }
  return out;
}

std::string trim(const std::string& s) {
  size_t a = s.find_first_not_of(" \t\r\n"), b = s.find_last_not_of(" \t\r\n");
  return a == std::string::npos ? std::string() : s.substr(a, b - a + 1);
}

// A decimal byte count; nullopt for "max", garbage, or "no limit" values.
std::optional<size_t> parse_limit_value(const std::string& text) {
  std::string t = trim(text);
  if (t.empty() || t.size() > 20) return std::nullopt;
  uint64_t v = 0;
  for (char c : t) {
    if (c < '0' || c > '9') return std::nullopt;  // "max", negative, junk
    uint64_t d = static_cast<uint64_t>(c - '0');
    if (v > (UINT64_MAX - d) / 10) return std::nullopt;
    v = v * 10 + d;
  }
  if (v >= kUnlimited) return std::nullopt;
  return static_cast<size_t>(v);
}

// mountinfo escapes blanks in paths as \040 (octal).
std::string unescape_mount_path(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size() && s[i + 1] >= '0' && s[i + 1] <= '7' &&
        s[i + 2] >= '0' && s[i + 2] <= '7' && s[i + 3] >= '0' && s[i + 3] <= '7') {
      out.push_back(static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0')));
      i += 3;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

std::string human(size_t n) {
  char buf[64];
  if (n >= kGiB) std::snprintf(buf, sizeof buf, "%.1f GiB", double(n) / double(kGiB));
  else if (n >= kMiB) std::snprintf(buf, sizeof buf, "%.1f MiB", double(n) / double(kMiB));
  else std::snprintf(buf, sizeof buf, "%.1f KiB", double(n) / double(kKiB));
  return buf;
}

std::string bytes_str(size_t n) { return std::to_string(n) + " bytes (" + human(n) + ")"; }

}  // namespace

std::optional<size_t> parse_cgroup_memory_limit(
    const std::string& proc_self_cgroup, const std::string& mountinfo,
    const std::function<bool(const std::string& path, std::string* text)>& read_file) {
  // The process's cgroup path in the v1 memory hierarchy and in the v2 (unified) hierarchy.
  std::optional<std::string> v1_path, v2_path;
  for (const std::string& raw : split(proc_self_cgroup, '\n')) {
    std::string line = trim(raw);
    if (line.empty()) continue;
    size_t c1 = line.find(':');
    if (c1 == std::string::npos) continue;
    size_t c2 = line.find(':', c1 + 1);
    if (c2 == std::string::npos) continue;
    const std::string id = line.substr(0, c1), controllers = line.substr(c1 + 1, c2 - c1 - 1);
    const std::string path = line.substr(c2 + 1);
    if (path.empty() || path[0] != '/') continue;
    if (id == "0" && controllers.empty()) {
      v2_path = path;
    } else {
      for (const std::string& c : split(controllers, ','))
        if (c == "memory") v1_path = path;
    }
  }
  struct Mount {
    std::string root, point;
  };
  std::optional<Mount> v1_mount, v2_mount;
  for (const std::string& raw : split(mountinfo, '\n')) {
    std::vector<std::string> f;
    for (const std::string& x : split(trim(raw), ' '))
      if (!x.empty()) f.push_back(x);
    size_t dash = 0;
    while (dash < f.size() && f[dash] != "-") ++dash;
    if (dash < 5 || dash + 1 >= f.size()) continue;
    const std::string& fstype = f[dash + 1];
    Mount m{unescape_mount_path(f[3]), unescape_mount_path(f[4])};
    if (fstype == "cgroup2") {
      if (!v2_mount) v2_mount = m;
    } else if (fstype == "cgroup" && dash + 3 < f.size()) {
      for (const std::string& o : split(f[dash + 3], ','))
        if (o == "memory" && !v1_mount) v1_mount = m;
    }
  }

  std::optional<size_t> best;
  auto consider = [&](std::optional<size_t> v) {
    if (v && (!best || *v < *best)) best = v;
  };
  // The cgroup's folder under the mount, then each ancestor up to the mount point.
  auto walk = [&](const Mount& m, const std::string& cg_path, bool v1) {
    std::string rel = cg_path;
    if (m.root != "/") {
      if (rel.compare(0, m.root.size(), m.root) == 0 && (rel.size() == m.root.size() || rel[m.root.size()] == '/'))
        rel = rel.substr(m.root.size());
      else
        rel = "";  // a cgroup namespace: the mount shows the process's own cgroup at its root
    }
    if (rel == "/") rel = "";
    std::string point = m.point;
    while (point.size() > 1 && point.back() == '/') point.pop_back();
    std::string dir = point + rel;
    std::string text;
    bool leaf = true;
    for (;;) {
      if (v1) {
        if (read_file(dir + "/memory.limit_in_bytes", &text)) consider(parse_limit_value(text));
        if (leaf && read_file(dir + "/memory.stat", &text)) {
          for (const std::string& line : split(text, '\n')) {
            const std::string key = "hierarchical_memory_limit ";
            if (line.compare(0, key.size(), key) == 0) consider(parse_limit_value(line.substr(key.size())));
          }
        }
      } else {
        if (read_file(dir + "/memory.max", &text)) consider(parse_limit_value(text));
      }
      leaf = false;
      if (dir.size() <= point.size()) break;
      size_t slash = dir.rfind('/');
      if (slash == std::string::npos || slash < point.size()) break;
      dir = dir.substr(0, slash);
    }
  };
  if (v1_path && v1_mount) walk(*v1_mount, *v1_path, true);
  if (v2_path && v2_mount) walk(*v2_mount, *v2_path, false);
  return best;
}

namespace {

struct Detected {
  size_t physical = 0;
  std::optional<size_t> cgroup;
  std::optional<size_t> env_override;
};

Detected detect() {
  Detected d;
  long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  d.physical = (pages > 0 && page > 0) ? static_cast<size_t>(pages) * static_cast<size_t>(page) : (size_t(1) << 40);
  std::string cg, mi;
  if (read_text("/proc/self/cgroup", &cg) && read_text("/proc/self/mountinfo", &mi, 4 << 20))
    d.cgroup = parse_cgroup_memory_limit(cg, mi, [](const std::string& p, std::string* t) { return read_text(p, t); });
  if (const char* e = std::getenv("ONNXFAST_MEMORY_LIMIT_MB")) {
    char* end = nullptr;
    unsigned long long mb = std::strtoull(e, &end, 10);
    if (end != e && mb > 0 && mb < (uint64_t(1) << 40)) d.env_override = static_cast<size_t>(mb) * kMiB;
  }
  return d;
}

const Detected& detected() {
  static const Detected d = detect();
  return d;
}
[[maybe_unused]] const Detected& g_detected_at_start = detected();  // read once, at load

std::atomic<size_t> g_override{0};  // set_memory_limit; 0 = none
// The limit and budget as of the last memory_limits() (at load, set_memory_limit, and every
// check that is not on the fast path): small requests are checked against these without a syscall.
std::atomic<size_t> g_limit{0}, g_budget{0};

std::optional<size_t> current_rlimit_as() {
  struct rlimit rl;
  if (getrlimit(RLIMIT_AS, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) return std::nullopt;
  return static_cast<size_t>(rl.rlim_cur);
}

// Virtual memory of this process now (/proc/self/statm: size in pages).
size_t current_vm_bytes() {
  std::string t;
  if (!read_text("/proc/self/statm", &t, 256)) return 0;
  return static_cast<size_t>(std::strtoull(t.c_str(), nullptr, 10)) * static_cast<size_t>(sysconf(_SC_PAGESIZE));
}

std::optional<size_t> mem_available() {
  std::string t;
  if (!read_text("/proc/meminfo", &t, 16384)) return std::nullopt;
  size_t at = t.find("MemAvailable:");
  if (at == std::string::npos) return std::nullopt;
  return static_cast<size_t>(std::strtoull(t.c_str() + at + 13, nullptr, 10)) * kKiB;
}

std::atomic<size_t> g_live{0};  // bytes handed out by alloc_block and not freed
std::atomic<int> g_users{0};

void* map_block(size_t cls) {
  void* p = mmap(nullptr, cls, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? nullptr : p;
}

// ---- Block cache ----
// Buffers (outputs, intermediate values, kernel scratch) come back with the same sizes on every
// run of a model. Freed to the system, each would fault its pages in again on the next run (a 3 MB
// output: ~800 page faults, a sizable share of a convolution layer), so freed blocks of 64 KiB and
// more are kept and handed out again first. They are rounded up to size classes (a quarter of
// their power of two: at most 25% more address space, and a batch size that changes a little
// still finds its block) and mapped with mmap, so that a block the cache lets go returns its
// pages to the system at once (no heap fragmentation holding them). The cache is bounded by twice
// the recent peak of live bytes (at least 4 MiB, at most ONNXFAST_ALLOC_CACHE_MB, default 512 MiB
// or an eighth of physical memory; 0 turns caching off): a process cycling through shapes does not
// keep a block for every shape it ever saw. The oldest blocks go first. The peak is "recent": it
// is taken over the last two windows of 1024 cached-size allocations.
constexpr size_t kMinCap = 4 * kMiB;
constexpr uint64_t kWindow = 1024;

struct BlockCache {
  struct Entry {
    void* p;
    uint64_t seq;
  };
  std::mutex mu;
  std::map<size_t, std::deque<Entry>> free_blocks;  // size class -> blocks, oldest first
  size_t cached = 0;
  size_t hard_cap = 0;
  uint64_t seq = 0;
  uint64_t window_allocs = 0;
  size_t peak_cur = 0, peak_prev = 0;
  uint64_t maps = 0, unmaps = 0, hits = 0;

  BlockCache() {
    size_t c = std::min<size_t>(512 * kMiB, detected().physical / 8);
    if (const char* e = std::getenv("ONNXFAST_ALLOC_CACHE_MB")) c = static_cast<size_t>(std::atoll(e)) * kMiB;
    hard_cap = c;
  }
  size_t peak_recent() const { return std::max(peak_cur, peak_prev); }
  size_t cap() const {
    if (hard_cap == 0) return 0;
    return std::min(hard_cap, std::max(kMinCap, 2 * peak_recent()));
  }
  // Unmaps the oldest blocks until `cached + incoming <= limit`. Called with mu held.
  void evict_to(size_t limit, size_t incoming) {
    while (cached > 0 && cached + incoming > limit) {
      auto oldest = free_blocks.end();
      for (auto it = free_blocks.begin(); it != free_blocks.end(); ++it)
        if (!it->second.empty() && (oldest == free_blocks.end() || it->second.front().seq < oldest->second.front().seq))
          oldest = it;
      if (oldest == free_blocks.end()) break;
      munmap(oldest->second.front().p, oldest->first);
      ++unmaps;
      cached -= oldest->first;
      oldest->second.pop_front();
      if (oldest->second.empty()) free_blocks.erase(oldest);
    }
  }
  // A block of class `cls` for a request of `nbytes` (live bytes already counted).
  void* take(size_t cls) {
    std::lock_guard<std::mutex> g(mu);
    peak_cur = std::max(peak_cur, g_live.load(std::memory_order_relaxed));
    if (++window_allocs >= kWindow) {
      window_allocs = 0;
      peak_prev = peak_cur;
      peak_cur = g_live.load(std::memory_order_relaxed);
      evict_to(cap(), 0);
    }
    auto it = free_blocks.find(cls);
    if (it != free_blocks.end() && !it->second.empty()) {
      void* p = it->second.back().p;
      it->second.pop_back();
      if (it->second.empty()) free_blocks.erase(it);
      cached -= cls;
      ++hits;
      return p;
    }
    ++maps;
    return nullptr;
  }
  // Keeps a freed block of class `cls`; false: the caller unmaps it.
  bool give(void* p, size_t cls) {
    std::lock_guard<std::mutex> g(mu);
    if (g_users.load(std::memory_order_relaxed) <= 0) return false;
    const size_t c = cap();
    if (cls > c) return false;
    evict_to(c, cls);
    free_blocks[cls].push_back({p, ++seq});
    cached += cls;
    return true;
  }
  void release_all() {
    std::lock_guard<std::mutex> g(mu);
    for (auto& kv : free_blocks)
      for (const Entry& e : kv.second) {
        munmap(e.p, kv.first);
        ++unmaps;
      }
    free_blocks.clear();
    cached = 0;
    peak_cur = peak_prev = g_live.load(std::memory_order_relaxed);
  }
};

BlockCache* g_cache = new BlockCache;  // never destroyed: blocks may be freed during exit

// A fork()ed child may inherit the mutex locked by another thread: it starts with an empty cache
// (the parent's cached blocks stay mapped in the child, which is harmless).
void reset_cache_in_child() { g_cache = new BlockCache; }
const int g_atfork = pthread_atfork(nullptr, nullptr, &reset_cache_in_child);

size_t rounded_size(size_t nbytes) { return ((nbytes + 63) / 64) * 64; }

}  // namespace

size_t block_size_class(size_t nbytes) {
  if (nbytes <= kCacheMin) return kCacheMin;
  if (nbytes > 64 * kMiB) {
    const size_t step = 2 * kMiB;
    return nbytes > SIZE_MAX - step ? SIZE_MAX : ((nbytes + step - 1) / step) * step;
  }
  int k = 63 - __builtin_clzll(static_cast<unsigned long long>(nbytes));  // 2^k <= nbytes
  const size_t step = size_t(1) << (k - 2);
  return ((nbytes + step - 1) / step) * step;
}

MemoryLimits memory_limits() {
  const Detected& d = detected();
  MemoryLimits m;
  m.physical = d.physical;
  m.cgroup = d.cgroup;
  m.rlimit_as = current_rlimit_as();
  if (size_t o = g_override.load(std::memory_order_relaxed)) m.override_ = o;
  else m.override_ = d.env_override;
  m.limit = m.physical;
  m.source = "physical memory";
  if (m.cgroup && *m.cgroup < m.limit) {
    m.limit = *m.cgroup;
    m.source = "the cgroup memory limit";
  }
  if (m.rlimit_as && *m.rlimit_as < m.limit) {
    m.limit = *m.rlimit_as;
    m.source = "the address-space limit (RLIMIT_AS)";
  }
  if (m.override_) {
    m.limit = *m.override_;
    m.source = g_override.load(std::memory_order_relaxed) ? "the limit set by set_memory_limit"
                                                          : "ONNXFAST_MEMORY_LIMIT_MB";
  }
  m.budget = m.limit / 4 * 3;
  g_limit.store(m.limit, std::memory_order_relaxed);
  g_budget.store(m.budget, std::memory_order_relaxed);
  return m;
}

size_t memory_limit() { return memory_limits().limit; }
void set_memory_limit(size_t nbytes) {
  g_override.store(nbytes, std::memory_order_relaxed);
  memory_limits();
}

namespace {
[[maybe_unused]] const size_t g_limit_at_start = memory_limits().limit;
}  // namespace

void check_allocation(size_t nbytes, const std::string& what) {
  // Fast path (every output of every run): a small request well inside the budget.
  if (nbytes < kLargeRequest && nbytes <= g_limit.load(std::memory_order_relaxed) &&
      g_live.load(std::memory_order_relaxed) + nbytes <= g_budget.load(std::memory_order_relaxed))
    return;
  const MemoryLimits m = memory_limits();  // RLIMIT_AS re-read
  if (nbytes > m.limit) {
    fail(ErrorKind::kAllocation, what + " asks for " + bytes_str(nbytes) + ", more than the memory limit of " +
                                     bytes_str(m.limit) + ", " + m.source);
  }
  size_t live = g_live.load(std::memory_order_relaxed);
  if (live + nbytes > m.budget) {
    fail(ErrorKind::kAllocation,
         what + " asks for " + bytes_str(nbytes) + " while " + bytes_str(live) +
             " are in use: together more than the allocation budget of " + bytes_str(m.budget) +
             " (3/4 of the memory limit of " + bytes_str(m.limit) + ", " + m.source + ")");
  }
  if (nbytes < kLargeRequest) return;
  // A cached block of its class is already ours (in RSS and address space).
  {
    const size_t cls = block_size_class(nbytes);
    std::lock_guard<std::mutex> g(g_cache->mu);
    auto it = g_cache->free_blocks.find(cls);
    if (it != g_cache->free_blocks.end() && !it->second.empty()) return;
  }
  if (m.rlimit_as) {
    size_t vm = current_vm_bytes(), need = block_size_class(nbytes);
    if (vm + need > *m.rlimit_as) {
      release_cached_blocks();
      vm = current_vm_bytes();
    }
    if (vm + need > *m.rlimit_as) {
      const size_t left = vm < *m.rlimit_as ? *m.rlimit_as - vm : 0;
      fail(ErrorKind::kAllocation, what + " asks for " + bytes_str(nbytes) + " but only " + bytes_str(left) +
                                       " of address space are left under the address-space limit (RLIMIT_AS) of " +
                                       bytes_str(*m.rlimit_as));
    }
  }
  std::optional<size_t> avail = mem_available();
  if (avail && nbytes > *avail && block_cache_bytes() > 0) {
    release_cached_blocks();
    avail = mem_available();
  }
  if (avail && nbytes > *avail) {
    fail(ErrorKind::kAllocation, what + " asks for " + bytes_str(nbytes) +
                                     ", more than the memory available on this machine now (" + bytes_str(*avail) +
                                     ", MemAvailable in /proc/meminfo; memory limit " + bytes_str(m.limit) + ", " +
                                     m.source + ")");
  }
}

// Blocks up to 4 KiB come from malloc and are not counted as live (the run path's fast path; a
// few KiB per value cannot matter to the budget).
constexpr size_t kSmallBlock = 4096;

void* alloc_block(size_t nbytes) {
  void* p;
  if (nbytes <= kSmallBlock) return std::malloc(nbytes ? nbytes : 1);  // 16-byte aligned, fast path
  if (nbytes < kCacheMin) {
    p = std::aligned_alloc(64, rounded_size(nbytes));  // 64-byte aligned
  } else {
    const size_t cls = block_size_class(nbytes);
    g_live.fetch_add(nbytes, std::memory_order_relaxed);
    p = g_cache->take(cls);
    if (!p) p = map_block(cls);
    if (!p) g_live.fetch_sub(nbytes, std::memory_order_relaxed);
    return p;
  }
  if (p) g_live.fetch_add(nbytes, std::memory_order_relaxed);
  return p;
}

void free_block(void* p, size_t nbytes, bool cache) {
  if (!p) return;
  if (nbytes <= kSmallBlock) {
    std::free(p);
    return;
  }
  g_live.fetch_sub(nbytes, std::memory_order_relaxed);
  if (nbytes < kCacheMin) {
    std::free(p);
    return;
  }
  const size_t cls = block_size_class(nbytes);
  if (cache && g_cache->give(p, cls)) return;
  munmap(p, cls);
  std::lock_guard<std::mutex> g(g_cache->mu);
  ++g_cache->unmaps;
}

MemoryStats memory_stats() {
  MemoryStats s;
  s.live_bytes = g_live.load(std::memory_order_relaxed);
  s.users = g_users.load(std::memory_order_relaxed);
  std::lock_guard<std::mutex> g(g_cache->mu);
  s.cached_bytes = g_cache->cached;
  s.cache_cap = g_cache->cap();
  s.peak_recent = g_cache->peak_recent();
  s.maps = g_cache->maps;
  s.unmaps = g_cache->unmaps;
  s.cache_hits = g_cache->hits;
  return s;
}

size_t block_cache_bytes() {
  std::lock_guard<std::mutex> g(g_cache->mu);
  return g_cache->cached;
}

void release_cached_blocks() {
  g_cache->release_all();
#if defined(__GLIBC__)
  malloc_trim(0);
#endif
}

MemoryUser::MemoryUser() { g_users.fetch_add(1, std::memory_order_relaxed); }
MemoryUser::MemoryUser(const MemoryUser&) { g_users.fetch_add(1, std::memory_order_relaxed); }
MemoryUser::~MemoryUser() {
  if (g_users.fetch_sub(1, std::memory_order_acq_rel) == 1) release_cached_blocks();
}

}  // namespace onnxfast
