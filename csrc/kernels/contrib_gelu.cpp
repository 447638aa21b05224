// com.microsoft Gelu / FastGelu / BiasGelu (onnxruntime's contrib operators, float32): what
// onnxruntime's optimizer writes into models people ship, and what onnxfast's GeluFusion /
// FastGeluFusion passes write. Gelu(X) = 0.5 X (1 + erf(X / sqrt 2)); BiasGelu(A, B) = Gelu(A + B);
// FastGelu(X[, bias]) = the tanh approximation of Gelu(X + bias). bias is 1-D, added along the last
// axis. Rows in parallel on the vecmath tier's gelu (max error of the erf / tanh polynomials: see
// vecmath_impl.h).
#include <algorithm>

#include "../threadpool/threadpool.h"
#include "kernel.h"
#include "vecmath.h"

namespace onnxfast {
namespace {

class GeluKernel : public Kernel {
 public:
  GeluKernel(const KernelArgs& a, bool tanh_approx)
      : name_(a.op_type + " '" + a.node_name + "'"), tanh_(tanh_approx), needs_bias_(a.op_type == "BiasGelu") {
    expect_known_attrs(a, {});
  }

  void infer(const std::vector<const Tensor*>& in, std::vector<OutSpec>& out) const override {
    if (in.empty() || !in[0]) kernel_fail(name_ + " needs input X");
    expect_dtype(*in[0], kFloat, (name_ + " input X").c_str());
    const Tensor* bias = in.size() > 1 ? in[1] : nullptr;
    if (needs_bias_ && !bias) kernel_fail(name_ + " needs input B");
    if (bias) {
      expect_dtype(*bias, kFloat, (name_ + " bias").c_str());
      const Shape& x = in[0]->shape;
      if (bias->rank() != 1 || x.empty() || bias->shape[0] != x.back())
        kernel_fail(name_ + ": bias must be 1-D with the last dimension of X (" +
                    (x.empty() ? std::string("X is a scalar") : std::to_string(x.back())) + "), got shape " +
                    shape_str(bias->shape));
    }
    out.resize(1);
    out[0] = {kFloat, in[0]->shape};
  }

  void compute(const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) const override {
    const Tensor& X = *in[0];
    Tensor& Y = *out[0];
    const VecMath& vm = vecmath();
    const Tensor* bias = in.size() > 1 ? in[1] : nullptr;
    if (!bias) {
      const bool t = tanh_;
      float_chunks(X, Y, 12.0, [&vm, t](const float* x, float* y, int64_t n) { vm.gelu(x, y, n, t); });
      return;
    }
    const int64_t cols = X.shape.back();
    if (cols == 0) return;
    const int64_t rows = X.numel() / cols;
    const float* x = X.ptr<float>();
    const float* b = bias->ptr<float>();
    float* y = Y.ptr<float>();
    const bool t = tanh_;
    parallel_for(rows, 13.0 * static_cast<double>(cols), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const float* xr = x + r * cols;
        float* yr = y + r * cols;
        for (int64_t j = 0; j < cols; ++j) yr[j] = xr[j] + b[j];
        vm.gelu(yr, yr, cols, t);
      }
    });
  }

 private:
  std::string name_;
  bool tanh_;
  bool needs_bias_;
};

}  // namespace

ONNXFAST_KERNELS(contrib_gelu) {
  auto make = [](bool tanh_approx) {
    return [tanh_approx](const KernelArgs& a) { return std::make_unique<GeluKernel>(a, tanh_approx); };
  };
  kernel("Gelu", "com.microsoft").types({kFloat}).inplace(0, 0).make(make(false));
  kernel("BiasGelu", "com.microsoft").types({kFloat}).inplace(0, 0).make(make(false));
  kernel("FastGelu", "com.microsoft").types({kFloat}).inplace(0, 0).make(make(true));
}

}  // namespace onnxfast
