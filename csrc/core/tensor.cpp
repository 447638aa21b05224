// Tensor and Storage: allocation (with the max-allocation guard and the block cache), dtype
// tables, shape helpers.
#include "tensor.h"

#include <pthread.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <vector>

#include "errors.h"

namespace onnxfast {

namespace {
size_t g_itemsize[kMaxDType] = {0, 4, 1, 1, 2, 2, 4, 8, 0, 1, 2, 8, 4, 8, 8, 16, 2};
std::string g_names[kMaxDType];

size_t default_max_alloc() {
  long pages = sysconf(_SC_PHYS_PAGES);
  long page = sysconf(_SC_PAGESIZE);
  if (pages <= 0 || page <= 0) return size_t(1) << 40;
  return static_cast<size_t>(pages) * static_cast<size_t>(page);
}
std::atomic<size_t> g_max_alloc{default_max_alloc()};
std::atomic<OwnerRelease> g_owner_release{nullptr};
}  // namespace

void set_owner_release(OwnerRelease fn) { g_owner_release.store(fn); }

// ---- Block cache ----
// Large buffers (outputs, intermediate values, kernel scratch) come back with the same sizes on
// every run of a model. Freed to the C library, each would return to the OS and fault its pages
// in again on the next run (a 3 MB output: ~800 page faults, a sizable share of a convolution
// layer). Freed blocks of 64 KiB and more are kept here by exact size, up to a cap
// (ONNXFAST_ALLOC_CACHE_MB, default 512 MiB or an eighth of physical memory, whichever is
// smaller; 0 turns the cache off), and handed out again first.
namespace {
constexpr size_t kCacheMin = size_t(64) << 10;

struct BlockCache {
  std::mutex mu;
  std::map<size_t, std::vector<void*>> free_blocks;
  size_t cached = 0;
  size_t cap = 0;

  BlockCache() {
    size_t c = std::min<size_t>(size_t(512) << 20, default_max_alloc() / 8);
    if (const char* e = std::getenv("ONNXFAST_ALLOC_CACHE_MB")) c = static_cast<size_t>(std::atoll(e)) << 20;
    cap = c;
  }
  void* take(size_t rounded) {
    std::lock_guard<std::mutex> g(mu);
    auto it = free_blocks.find(rounded);
    if (it == free_blocks.end() || it->second.empty()) return nullptr;
    void* p = it->second.back();
    it->second.pop_back();
    cached -= rounded;
    return p;
  }
  bool give(void* p, size_t rounded) {
    std::lock_guard<std::mutex> g(mu);
    if (cached + rounded > cap) return false;
    free_blocks[rounded].push_back(p);
    cached += rounded;
    return true;
  }
};

BlockCache* g_cache = new BlockCache;  // never destroyed: Storage may be freed during exit

// A fork()ed child may inherit the mutex locked by another thread: it starts with an empty cache
// (the parent's cached blocks are leaked in the child, which is harmless).
void reset_cache_in_child() { g_cache = new BlockCache; }
const int g_atfork = pthread_atfork(nullptr, nullptr, &reset_cache_in_child);

size_t rounded_size(size_t nbytes) { return ((nbytes + 63) / 64) * 64; }
}  // namespace

void* alloc_block(size_t nbytes) {
  if (nbytes <= 4096) return std::malloc(nbytes ? nbytes : 1);  // 16-byte aligned, fast path
  const size_t rounded = rounded_size(nbytes);
  if (rounded >= kCacheMin)
    if (void* p = g_cache->take(rounded)) return p;
  return std::aligned_alloc(64, rounded);  // 64-byte aligned
}

size_t block_cache_bytes() {
  std::lock_guard<std::mutex> g(g_cache->mu);
  return g_cache->cached;
}

void free_block(void* p, size_t nbytes) {
  if (!p) return;
  const size_t rounded = rounded_size(nbytes);
  if (rounded >= kCacheMin && g_cache->give(p, rounded)) return;
  std::free(p);
}

size_t dtype_itemsize(int dtype) {
  return (dtype >= 0 && dtype < kMaxDType) ? g_itemsize[dtype] : 0;
}
void set_dtype_itemsize(int dtype, size_t size) {
  if (dtype >= 0 && dtype < kMaxDType) g_itemsize[dtype] = size;
}
const std::string& dtype_name(int dtype) {
  static const std::string unknown = "unknown";
  return (dtype >= 0 && dtype < kMaxDType && !g_names[dtype].empty()) ? g_names[dtype] : unknown;
}
void set_dtype_name(int dtype, const std::string& name) {
  if (dtype >= 0 && dtype < kMaxDType) g_names[dtype] = name;
}

size_t max_allocation_bytes() { return g_max_alloc.load(); }
void set_max_allocation_bytes(size_t n) { g_max_alloc.store(n); }

Storage::~Storage() {
  if (owner) {
    if (OwnerRelease fn = g_owner_release.load()) fn(owner);
  } else if (owned) {
    if (cacheable) free_block(data, nbytes);
    else std::free(data);
  }
}

std::shared_ptr<Storage> Storage::allocate(size_t nbytes, const std::string& what) {
  if (nbytes > max_allocation_bytes()) {
    fail(ErrorKind::kAllocation, what + " asks for " + std::to_string(nbytes) +
                                     " bytes, more than this machine's memory (" +
                                     std::to_string(max_allocation_bytes()) + " bytes)");
  }
  auto s = std::make_shared<Storage>();
  void* p = alloc_block(nbytes);
  if (!p) fail(ErrorKind::kAllocation, what + ": could not allocate " + std::to_string(nbytes) + " bytes");
  s->data = p;
  s->nbytes = nbytes;
  s->owned = true;
  return s;
}

int64_t shape_numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string shape_str(const Shape& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  if (shape.size() == 1) s += ",";
  return s + ")";
}

Tensor Tensor::empty(int dtype, Shape shape, const std::string& what, int device) {
  Tensor t;
  t.dtype = dtype;
  t.device = device;
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) fail(ErrorKind::kInvalidArgument, what + ": negative dimension in shape " + shape_str(shape));
    if (d != 0 && n > (int64_t(1) << 62) / d)
      fail(ErrorKind::kAllocation, what + ": shape " + shape_str(shape) + " is too large");
    n *= d;
  }
  size_t item = dtype_itemsize(dtype);
  if (item == 0) fail(ErrorKind::kInvalidType, what + ": cannot allocate a native tensor of type " + dtype_name(dtype));
  if (n != 0 && static_cast<size_t>(n) > (size_t(1) << 62) / item)
    fail(ErrorKind::kAllocation, what + ": shape " + shape_str(shape) + " is too large");
  t.storage = Storage::allocate(static_cast<size_t>(n) * item, what);
  t.data = t.storage->data;
  t.shape = std::move(shape);
  return t;
}

}  // namespace onnxfast
