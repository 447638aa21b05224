// Devices: every execution provider other than the CPU brings its own allocator and copy functions,
// registered here under the provider's name; a Tensor's `device` is the id of the device its storage
// lives on (0: host memory, the CPU provider's block allocator of memory.h). Storage allocates and
// frees through the device's allocator; the copy kernels the partitioner inserts at device
// boundaries (MemcpyToDevice / MemcpyFromDevice) move bytes with copy_between_devices. A CUDA
// provider adds itself here, declares its kernels for its provider name (kernel.h) and needs no
// change to the planner or the executor.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>

namespace onnxfast {

class DeviceAllocator {
 public:
  virtual ~DeviceAllocator() = default;
  virtual void* allocate(size_t nbytes) = 0;  // null when the device is out of memory
  virtual void release(void* p, size_t nbytes) = 0;
  virtual void copy_from_host(void* dst, const void* src, size_t nbytes) = 0;
  virtual void copy_to_host(void* dst, const void* src, size_t nbytes) = 0;
  virtual void copy_on_device(void* dst, const void* src, size_t nbytes) = 0;
  // Counters for tests and diagnostics (live bytes, allocations, copies, ...).
  virtual std::map<std::string, int64_t> stats() const { return {}; }
};

// Registers a provider's device (static initialization is fine: nothing here throws); returns its id
// (>= 1; the same id again for the same name).
int register_device(const std::string& provider, std::shared_ptr<DeviceAllocator> allocator);
// The device id of a provider: 0 for CPUExecutionProvider, -1 when it registered none.
int device_id(const std::string& provider);
std::string device_provider(int device);  // "" when unknown
DeviceAllocator* device_allocator(int device);  // null for the host (0) and unknown ids
// n bytes from src on src_device to dst on dst_device (either may be the host).
void copy_between_devices(void* dst, int dst_device, const void* src, int src_device, size_t nbytes);

}  // namespace onnxfast
