// Memory: how much the runtime may use, and the allocator that hands it out.
//
// Owns
//  - the memory limit: min(physical RAM, the cgroup's memory limit (v1 or v2, every ancestor),
//    RLIMIT_AS), read once at start-up (ONNXFAST_MEMORY_LIMIT_MB or set_memory_limit override it);
//  - the allocation guard (check_allocation): a request larger than the limit, or one that would
//    take the bytes live in this allocator past the budget (3/4 of the limit), is refused with an
//    AllocationError (MemoryError) naming the size asked and the limit, before memory is touched;
//    large requests are also checked against /proc/meminfo's MemAvailable and the address space
//    left under RLIMIT_AS (re-read, so a limit set after start-up counts);
//  - the raw block allocator (alloc_block / free_block) and its block cache: blocks of 64 KiB and
//    more are rounded up to size classes (4 per power of two), mapped with mmap, and kept after
//    being freed for the next request of their class, up to twice the recent peak of live bytes;
//    the cache exists only while a session (a MemoryUser: every Plan) is open and is emptied,
//    with malloc_trim, when the last one closes.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

namespace onnxfast {

struct MemoryLimits {
  size_t physical = 0;                 // physical RAM
  std::optional<size_t> cgroup;        // the cgroup's memory limit, when there is one
  std::optional<size_t> rlimit_as;     // RLIMIT_AS (soft), when finite
  std::optional<size_t> override_;     // ONNXFAST_MEMORY_LIMIT_MB or set_memory_limit
  size_t limit = 0;                    // the smallest of the above (the override wins when set)
  size_t budget = 0;                   // most bytes live in the allocator at once: 3/4 of limit
  std::string source;                  // what sets `limit`, for messages
};

// The limits as of now (RLIMIT_AS re-read; the rest from start-up).
MemoryLimits memory_limits();
size_t memory_limit();
// Overrides the detected limit (0: back to the detected one).
void set_memory_limit(size_t nbytes);

// Throws Error(kAllocation) when `nbytes` more must not be allocated now; `what` names the
// requester ("MatMul 'mm' output").
void check_allocation(size_t nbytes, const std::string& what);

// Raw buffers: 16-byte aligned up to 4 KiB, else 64-byte aligned (blocks of 64 KiB and more are
// page aligned). Null when the system has no memory; the guard is the caller's (check_allocation).
void* alloc_block(size_t nbytes);
// Frees a block from alloc_block (nbytes: the size that was asked for); `cache`: the block may be
// kept for reuse (false: straight back to the system; enable_cpu_mem_arena=False).
void free_block(void* p, size_t nbytes, bool cache = true);

struct MemoryStats {
  size_t live_bytes = 0;     // handed out by alloc_block and not freed (blocks above 4 KiB)
  size_t cached_bytes = 0;   // held by the block cache
  size_t cache_cap = 0;      // the cache's bound now
  size_t peak_recent = 0;    // recent peak of live bytes (the cache's bound is twice this)
  uint64_t maps = 0;         // blocks mapped from the system (cache misses of the cached sizes)
  uint64_t unmaps = 0;
  uint64_t cache_hits = 0;
  int users = 0;             // open MemoryUsers (plans)
};
MemoryStats memory_stats();
size_t block_cache_bytes();  // bytes held by the cache now
// Returns every cached block to the system and trims the C library's heap.
void release_cached_blocks();

// A session's plan holds one: the cache lives while any is open, and empties when the last closes.
class MemoryUser {
 public:
  MemoryUser();
  ~MemoryUser();
  MemoryUser(const MemoryUser&);
  MemoryUser& operator=(const MemoryUser&) { return *this; }
};

// Size class of a cached block (>= 64 KiB): rounded up to a quarter of its power of two (to
// 2 MiB above 64 MiB).
size_t block_size_class(size_t nbytes);

// The memory limit of the cgroup a process is in: `proc_self_cgroup` and `mountinfo` are the
// contents of /proc/self/cgroup and /proc/self/mountinfo; `read_file(path, &text)` reads a
// file under a cgroup mount (false: missing). The smallest limit of the cgroup and its
// ancestors, in either hierarchy (v1: memory.limit_in_bytes and memory.stat's
// hierarchical_memory_limit; v2: memory.max); nullopt when unlimited or unknown.
std::optional<size_t> parse_cgroup_memory_limit(
    const std::string& proc_self_cgroup, const std::string& mountinfo,
    const std::function<bool(const std::string& path, std::string* text)>& read_file);

}  // namespace onnxfast
