// Tensor: a contiguous native buffer with dtype, shape and device tag.
// Storage either owns aligned memory or keeps a Python object (a numpy array) alive; the
// bindings install the hook that releases such an owner (taking the GIL), so tensors may be
// dropped from any thread and this file stays free of Python (C++ unit tests, cross builds).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "dtype.h"
#include "memory.h"

typedef struct _object PyObject;

namespace onnxfast {

using Shape = std::vector<int64_t>;

// The memory limit (memory.h: min of physical RAM, cgroup limit, RLIMIT_AS): no single request
// may exceed it, and live bytes may not exceed 3/4 of it; requests past either raise MemoryError
// (AllocationError) before touching memory, so a model's shapes cannot summon the OOM killer.
size_t max_allocation_bytes();
void set_max_allocation_bytes(size_t n);  // overrides the detected limit (0: detected again)

// Releases a Storage's owner object; installed once by the Python bindings.
using OwnerRelease = void (*)(PyObject* owner);
void set_owner_release(OwnerRelease fn);

// Raw buffers (alloc_block / free_block, declared in memory.h): 16-byte aligned up to 4 KiB, else
// 64-byte aligned; blocks of 64 KiB and more are size-classed, mapped, and recycled through a
// bounded cache. free_block takes the size that was asked for.

// A kernel's scratch buffer for the length of a call (null data when allocation failed).
struct ScratchBlock {
  explicit ScratchBlock(size_t nbytes) : data(alloc_block(nbytes)), nbytes(nbytes) {}
  ~ScratchBlock() { free_block(data, nbytes); }
  ScratchBlock(const ScratchBlock&) = delete;
  ScratchBlock& operator=(const ScratchBlock&) = delete;
  float* floats() const { return static_cast<float*>(data); }
  void* data;
  size_t nbytes;
};

struct Storage {
  void* data = nullptr;
  size_t nbytes = 0;
  PyObject* owner = nullptr;  // numpy array keeping `data` alive, or null when we own it
  bool owned = false;
  // Set for initializers and user inputs: outputs aliasing them are copied before returning.
  bool external = false;
  // Freed into the block cache (false: straight to the system; enable_cpu_mem_arena=False).
  bool cacheable = true;
  int device = 0;  // the device whose allocator owns `data` (device.h; 0: host memory)
  // A slice of another storage (a memory-pattern arena, mem_pattern.h): kept alive, nothing freed here.
  std::shared_ptr<Storage> parent;
  Storage() = default;
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  ~Storage();
  // Host memory through the guard and the block allocator, or the device's allocator.
  static std::shared_ptr<Storage> allocate(size_t nbytes, const std::string& what, int device = 0);
};

int64_t shape_numel(const Shape& shape);
std::string shape_str(const Shape& shape);

struct Tensor {
  std::shared_ptr<Storage> storage;
  void* data = nullptr;
  int dtype = kUndefined;
  Shape shape;
  int device = 0;  // 0 = host CPU; other values are provider devices

  int64_t numel() const { return shape_numel(shape); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_itemsize(dtype); }
  int64_t rank() const { return static_cast<int64_t>(shape.size()); }
  template <typename T>
  T* ptr() { return static_cast<T*>(data); }
  template <typename T>
  const T* ptr() const { return static_cast<const T*>(data); }

  // A new contiguous tensor; `what` names the requester for error messages.
  static Tensor empty(int dtype, Shape shape, const std::string& what, int device = 0);
};

}  // namespace onnxfast
