// Copy kernels inserted by the partitioner where a value crosses from one provider's device to
// another's. The executor allocates the output on the step's output device; the bytes move through
// the devices' copy functions (core/device.h).
#include "../core/device.h"
#include "kernel.h"

namespace onnxfast {
namespace {

class CopyKernel : public Kernel {
 public:
  explicit CopyKernel(std::string name) : name_(std::move(name)) {}
  void infer(const std::vector<const Tensor*>& in, std::vector<OutSpec>& out) const override {
    if (in.size() != 1 || !in[0]) kernel_fail(name_ + " needs one input");
    out.resize(1);
    out[0].dtype = in[0]->dtype;
    out[0].shape = in[0]->shape;
  }
  void compute(const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) const override {
    copy_between_devices(out[0]->data, out[0]->device, in[0]->data, in[0]->device, in[0]->nbytes());
  }
  std::string describe() const override { return "native:copy"; }

 private:
  std::string name_;
};

}  // namespace

ONNXFAST_KERNELS(memcpy) {
  std::vector<int> all;
  for (int d = 1; d <= 16; ++d)
    if (d != kString) all.push_back(d);
  kernel("MemcpyToDevice", "onnxfast").types(all).make([](const KernelArgs& a) {
    return std::make_unique<CopyKernel>("MemcpyToDevice '" + a.node_name + "'");
  });
  kernel("MemcpyFromDevice", "onnxfast").types(all).make([](const KernelArgs& a) {
    return std::make_unique<CopyKernel>("MemcpyFromDevice '" + a.node_name + "'");
  });
}

}  // namespace onnxfast
