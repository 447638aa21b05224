// Tensor and Storage: allocation (with the max-allocation guard), dtype tables, shape helpers.
#include "tensor.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <unistd.h>

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
    std::free(data);
  }
}

std::shared_ptr<Storage> Storage::allocate(size_t nbytes, const std::string& what) {
  if (nbytes > max_allocation_bytes()) {
    fail(ErrorKind::kAllocation, what + " asks for " + std::to_string(nbytes) +
                                     " bytes, more than this machine's memory (" +
                                     std::to_string(max_allocation_bytes()) + " bytes)");
  }
  auto s = std::make_shared<Storage>();
  // Small buffers come from malloc (16-byte aligned, fast path); larger ones are 64-byte aligned.
  void* p;
  if (nbytes <= 4096) {
    p = std::malloc(nbytes ? nbytes : 1);
  } else {
    size_t rounded = ((nbytes + 63) / 64) * 64;
    p = std::aligned_alloc(64, rounded);
  }
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
