// com.microsoft SkipLayerNormalization (float32): what onnxruntime's optimizer writes for a residual
// Add followed by LayerNormalization over the last axis.
//   s = input + skip (+ bias);  output = (s - mean) / sqrt(var + epsilon) * gamma (+ beta)
// skip has input's shape or repeats over its leading axes (its trailing dims equal input's); gamma,
// beta and bias have the hidden size H. Optional outputs: mean and inv_std_var (shape: input's with
// the last dim 1) and input_skip_bias_sum (s). Rows in parallel on the tier's layernorm_row.
// com.microsoft SkipSimplifiedLayerNormalization: the same with RMS normalization (rmsnorm_row), inputs
// input, skip, gamma (, bias), no beta; its mean output is zeros (onnxruntime computes none).
#include <algorithm>

#include "../threadpool/threadpool.h"
#include "kernel.h"
#include "vecmath.h"

namespace onnxfast {
namespace {

class SkipLayerNormKernel : public Kernel {
 public:
  SkipLayerNormKernel(const KernelArgs& a, bool simplified)
      : name_(a.op_type + " '" + a.node_name + "'"),
        eps_(static_cast<float>(expect_finite(a, "epsilon", 1e-12))),  // as LayerNormalization
        simplified_(simplified) {
    expect_known_attrs(a, {"epsilon"});
  }

  void infer(const std::vector<const Tensor*>& in, std::vector<OutSpec>& out) const override {
    if (in.size() < 3 || !in[0] || !in[1] || !in[2]) kernel_fail(name_ + " needs inputs input, skip and gamma");
    const char* full[] = {"input", "skip", "gamma", "beta", "bias"};
    const char* rms[] = {"input", "skip", "gamma", "bias"};
    const char* const* names = simplified_ ? rms : full;
    const size_t n_in = simplified_ ? 4 : 5;
    if (in.size() > n_in) kernel_fail(name_ + " takes at most " + std::to_string(n_in) + " inputs");
    for (size_t i = 0; i < in.size(); ++i)
      if (in[i]) expect_dtype(*in[i], kFloat, (name_ + " " + names[i]).c_str());
    const Shape& x = in[0]->shape;
    if (x.size() < 2) kernel_fail(name_ + ": input must have rank 2 or more, got shape " + shape_str(x));
    const int64_t H = x.back();
    // skip: input's trailing dims after leading 1s are dropped ((B, S, H), (1, S, H), (S, H)).
    const Shape& k = in[1]->shape;
    size_t lead = 0;
    while (lead + 1 < k.size() && k[lead] == 1) ++lead;
    const size_t kr = k.size() - lead;
    const bool skip_ok = !k.empty() && kr <= x.size() && std::equal(k.begin() + lead, k.end(), x.end() - kr);
    if (!skip_ok) kernel_fail(name_ + ": skip of shape " + shape_str(k) + " does not match input " + shape_str(x));
    for (size_t i = 2; i < in.size(); ++i)
      if (in[i] && (in[i]->rank() != 1 || in[i]->shape[0] != H))
        kernel_fail(name_ + ": " + names[i] + " must have shape (" + std::to_string(H) + ",), got " +
                    shape_str(in[i]->shape));
    Shape stat = x;
    stat.back() = 1;
    out.resize(4);
    out[0] = {kFloat, x};
    out[1] = {kFloat, stat};
    out[2] = {kFloat, stat};
    out[3] = {kFloat, x};
  }

  void compute(const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) const override {
    const Tensor& X = *in[0];
    const int64_t H = X.shape.back();
    if (H == 0 || X.numel() == 0) return;
    const int64_t rows = X.numel() / H;
    const int64_t skip_rows = std::max<int64_t>(in[1]->numel() / H, 1);
    const float* x = X.ptr<float>();
    const float* skip = in[1]->ptr<float>();
    const float* gamma = in[2]->ptr<float>();
    const size_t bias_at = simplified_ ? 3 : 4;
    const float* beta = !simplified_ && in.size() > 3 && in[3] ? in[3]->ptr<float>() : nullptr;
    const float* bias = in.size() > bias_at && in[bias_at] ? in[bias_at]->ptr<float>() : nullptr;
    float* y = out[0]->ptr<float>();
    float* mean = out.size() > 1 && out[1] ? out[1]->ptr<float>() : nullptr;
    float* invstd = out.size() > 2 && out[2] ? out[2]->ptr<float>() : nullptr;
    float* sum_out = out.size() > 3 && out[3] ? out[3]->ptr<float>() : nullptr;
    const VecMath& vm = vecmath();
    const float eps = eps_;
    const bool simplified = simplified_;
    parallel_for(rows, 12.0 * static_cast<double>(H), [&](int64_t r0, int64_t r1) {
      std::vector<float> scratch(sum_out ? 0 : static_cast<size_t>(H));
      for (int64_t r = r0; r < r1; ++r) {
        const float* xr = x + r * H;
        const float* kr = skip + (r % skip_rows) * H;
        float* s = sum_out ? sum_out + r * H : scratch.data();
        vm.skip_sum(xr, kr, bias, s, H);  // (in the tier's vectors: this file has the baseline ISA's)
        if (simplified) {
          vm.rmsnorm_row(s, y + r * H, H, gamma, eps, invstd ? invstd + r : nullptr);
          if (mean) mean[r] = 0.f;
        } else {
          vm.layernorm_row(s, y + r * H, H, gamma, beta, eps, mean ? mean + r : nullptr, invstd ? invstd + r : nullptr);
        }
      }
    });
  }

 private:
  std::string name_;
  float eps_;
  bool simplified_;
};

}  // namespace

ONNXFAST_KERNELS(contrib_norm) {
  kernel("SkipLayerNormalization", "com.microsoft").types({kFloat}).make([](const KernelArgs& a) {
    return std::make_unique<SkipLayerNormKernel>(a, false);
  });
  kernel("SkipSimplifiedLayerNormalization", "com.microsoft").types({kFloat}).make([](const KernelArgs& a) {
    return std::make_unique<SkipLayerNormKernel>(a, true);
  });
}

}  // namespace onnxfast
