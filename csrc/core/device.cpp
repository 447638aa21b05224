// The device table (device.h).
#include "device.h"

#include <cstring>
#include <mutex>
#include <vector>

#include "errors.h"

namespace onnxfast {
namespace {

struct DeviceEntry {
  std::string provider;
  std::shared_ptr<DeviceAllocator> allocator;
};
std::mutex& table_mu() {
  static std::mutex mu;
  return mu;
}
// Index = device id; entry 0 is the host.
std::vector<DeviceEntry>& table() {
  static std::vector<DeviceEntry> t{{"CPUExecutionProvider", nullptr}};
  return t;
}

}  // namespace

int register_device(const std::string& provider, std::shared_ptr<DeviceAllocator> allocator) {
  std::lock_guard<std::mutex> lock(table_mu());
  auto& t = table();
  for (size_t i = 0; i < t.size(); ++i)
    if (t[i].provider == provider) return static_cast<int>(i);
  t.push_back({provider, std::move(allocator)});
  return static_cast<int>(t.size() - 1);
}

int device_id(const std::string& provider) {
  std::lock_guard<std::mutex> lock(table_mu());
  const auto& t = table();
  for (size_t i = 0; i < t.size(); ++i)
    if (t[i].provider == provider) return static_cast<int>(i);
  return -1;
}

std::string device_provider(int device) {
  std::lock_guard<std::mutex> lock(table_mu());
  const auto& t = table();
  return device >= 0 && static_cast<size_t>(device) < t.size() ? t[device].provider : std::string();
}

DeviceAllocator* device_allocator(int device) {
  std::lock_guard<std::mutex> lock(table_mu());
  const auto& t = table();
  return device > 0 && static_cast<size_t>(device) < t.size() ? t[device].allocator.get() : nullptr;
}

void copy_between_devices(void* dst, int dst_device, const void* src, int src_device, size_t nbytes) {
  if (nbytes == 0) return;
  if (dst_device == 0 && src_device == 0) {
    std::memcpy(dst, src, nbytes);
    return;
  }
  DeviceAllocator* d = dst_device ? device_allocator(dst_device) : nullptr;
  DeviceAllocator* s = src_device ? device_allocator(src_device) : nullptr;
  if ((dst_device && !d) || (src_device && !s))
    fail(ErrorKind::kRuntime, "copy between devices " + std::to_string(src_device) + " and " +
                                  std::to_string(dst_device) + ": no such device");
  if (src_device == 0) {
    d->copy_from_host(dst, src, nbytes);
  } else if (dst_device == 0) {
    s->copy_to_host(dst, src, nbytes);
  } else if (src_device == dst_device) {
    d->copy_on_device(dst, src, nbytes);
  } else {  // two devices: through a host buffer
    std::vector<char> host(nbytes);
    s->copy_to_host(host.data(), src, nbytes);
    d->copy_from_host(dst, host.data(), nbytes);
  }
}

}  // namespace onnxfast
