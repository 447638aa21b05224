// TestDeviceExecutionProvider: a provider that exists to prove the device design. Its memory is host
// memory behind its own allocator (every block counted, filled with a pattern when allocated so a
// missing copy shows as wrong numbers), its copies count the bytes they move, and its kernels --
// float32 Relu, Mul, Add, MatMul, which run the CPU kernels' code on its memory -- are declared for
// its provider name in the registry like any other. The planner, the executor and the Python
// session treat it as they would a CUDA provider: nothing in them names it. Python sees it only when
// a test registers onnxfast.providers.NativeDeviceProvider under this name.
#include <atomic>
#include <cstdlib>
#include <cstring>

#include "../core/device.h"
#include "kernel.h"

namespace onnxfast {
namespace {

constexpr const char* kTestProvider = "TestDeviceExecutionProvider";

class TestDeviceAllocator : public DeviceAllocator {
 public:
  void* allocate(size_t nbytes) override {
    const size_t n = (std::max<size_t>(nbytes, 1) + 63) / 64 * 64;
    void* p = std::aligned_alloc(64, n);
    if (!p) return nullptr;
    std::memset(p, 0xA5, n);  // not zeros: a kernel reading memory no copy filled gets garbage
    live_ += static_cast<int64_t>(nbytes);
    ++allocations_;
    return p;
  }
  void release(void* p, size_t nbytes) override {
    live_ -= static_cast<int64_t>(nbytes);
    ++releases_;
    std::free(p);
  }
  void copy_from_host(void* dst, const void* src, size_t n) override {
    std::memcpy(dst, src, n);
    to_device_ += static_cast<int64_t>(n);
  }
  void copy_to_host(void* dst, const void* src, size_t n) override {
    std::memcpy(dst, src, n);
    to_host_ += static_cast<int64_t>(n);
  }
  void copy_on_device(void* dst, const void* src, size_t n) override { std::memcpy(dst, src, n); }
  std::map<std::string, int64_t> stats() const override {
    return {{"live_bytes", live_.load()},
            {"allocations", allocations_.load()},
            {"releases", releases_.load()},
            {"bytes_to_device", to_device_.load()},
            {"bytes_to_host", to_host_.load()}};
  }

 private:
  std::atomic<int64_t> live_{0}, allocations_{0}, releases_{0}, to_device_{0}, to_host_{0};
};

[[maybe_unused]] const int kTestDevice = register_device(kTestProvider, std::make_shared<TestDeviceAllocator>());

}  // namespace

ONNXFAST_KERNELS(test_device) {
  struct Op {
    const char* name;
    int since;
  };
  for (const Op& op : {Op{"Relu", 6}, Op{"Mul", 7}, Op{"Add", 7}, Op{"MatMul", 1}}) {
    kernel(op.name).since(op.since).provider(kTestProvider).types({kFloat}).make([](const KernelArgs& a) {
      const int version = a.since_version > 0 ? a.since_version : a.opset > 0 ? a.opset : kLatestVersion;
      const KernelDef* cpu = find_kernel(a.domain, a.op_type, version, kFloat);
      if (!cpu) fail(ErrorKind::kNotImplemented, a.who() + ": no CPU kernel for the test device to run");
      return cpu->factory(a);
    });
  }
}

}  // namespace onnxfast
