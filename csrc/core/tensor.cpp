// Tensor and Storage: allocation (through the guard and the block allocator of memory.cpp),
// dtype tables, shape helpers.
#include "tensor.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

#include "device.h"
#include "errors.h"
#include "memory.h"

namespace onnxfast {

namespace {
size_t g_itemsize[kMaxDType] = {0, 4, 1, 1, 2, 2, 4, 8, 0, 1, 2, 8, 4, 8, 8, 16, 2};
// ONNX's names for the types numbered below 17; the bindings add the rest (float8, int4, ...).
std::string g_names[kMaxDType] = {"undefined", "float",  "uint8",  "int8",      "uint16",     "int16",
                                  "int32",     "int64",  "string", "bool",      "float16",    "double",
                                  "uint32",    "uint64", "complex64", "complex128", "bfloat16"};
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

size_t max_allocation_bytes() { return memory_limit(); }
void set_max_allocation_bytes(size_t n) { set_memory_limit(n); }

Storage::~Storage() {
  if (owner) {
    if (OwnerRelease fn = g_owner_release.load()) fn(owner);
  } else if (owned && device != 0) {
    if (DeviceAllocator* a = device_allocator(device)) a->release(data, nbytes);
  } else if (owned) {
    free_block(data, nbytes, cacheable);
  }
}

std::shared_ptr<Storage> Storage::allocate(size_t nbytes, const std::string& what, int device) {
  auto s = std::make_shared<Storage>();
  if (device != 0) {
    DeviceAllocator* a = device_allocator(device);
    if (!a) fail(ErrorKind::kRuntime, what + ": device " + std::to_string(device) + " has no allocator");
    s->data = a->allocate(nbytes);
    if (!s->data && nbytes)
      fail(ErrorKind::kAllocation, what + ": " + device_provider(device) + " could not allocate " +
                                       std::to_string(nbytes) + " bytes");
    s->nbytes = nbytes;
    s->owned = true;
    s->device = device;
    return s;
  }
  check_allocation(nbytes, what);  // the limit, the budget of live bytes, memory available now
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
  t.storage = Storage::allocate(static_cast<size_t>(n) * item, what, device);
  t.data = t.storage->data;
  t.shape = std::move(shape);
  return t;
}

}  // namespace onnxfast
