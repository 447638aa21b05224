// ArgMax / ArgMin (ai.onnx 1+): the index of the largest / smallest element along `axis` (int64), the
// first one, or the last with select_last_index (12+); keepdims keeps the axis as 1. NaN counts as
// the extreme for both, as numpy's argmax / argmin (the numpy kernel) have it: the first (or last) NaN
// wins. float32, float64, int32 and int64; the reduced rows in parallel.
#include <cmath>

#include "../threadpool/threadpool.h"
#include "kernel.h"

namespace onnxfast {
namespace {

class ArgExtremeKernel : public Kernel {
 public:
  ArgExtremeKernel(const KernelArgs& a, bool max) : who_(a.who()), label_(a.node_label()), max_(max) {
    axis_ = attr_int(a, "axis", 0);
    check_axis(a, "axis", axis_, a.rank_of(0));
    keepdims_ = expect_int_in(a, "keepdims", 1, 0, 1) != 0;
    last_ = a.since_version >= 12 || (a.since_version == 0 && a.opset >= 12)
                ? expect_int_in(a, "select_last_index", 0, 0, 1) != 0
                : false;
  }

  void infer(const std::vector<const Tensor*>& in, std::vector<OutSpec>& out) const override {
    if (in.empty() || !in[0]) kernel_fail(who_ + " needs input data");
    const Tensor& X = *in[0];
    const int64_t a = normalize_axis(axis_, X.rank(), who_, "axis");
    if (X.shape[a] == 0)
      fail(ErrorKind::kInvalidArgument, label_ + ": cannot compute " + (max_ ? "ArgMax" : "ArgMin") +
                                            " over an empty axis " + std::to_string(a) + " (shape " +
                                            shape_str(X.shape) + ")");
    Shape s;
    for (int64_t d = 0; d < X.rank(); ++d) {
      if (d != a) s.push_back(X.shape[d]);
      else if (keepdims_) s.push_back(1);
    }
    out.resize(1);
    out[0] = {kInt64, s};
  }

  void compute(const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) const override {
    const Tensor& X = *in[0];
    switch (X.dtype) {
      case kFloat: run<float>(X, *out[0]); break;
      case kDouble: run<double>(X, *out[0]); break;
      case kInt32: run<int32_t>(X, *out[0]); break;
      default: run<int64_t>(X, *out[0]); break;
    }
  }

 private:
  template <class T>
  static bool is_nan(T v) {
    if constexpr (std::is_floating_point<T>::value) return std::isnan(v);
    return false;
  }

  template <class T>
  void run(const Tensor& X, Tensor& Y) const {
    const int64_t a = normalize_axis(axis_, X.rank(), who_, "axis");
    int64_t outer = 1, inner = 1;
    for (int64_t d = 0; d < a; ++d) outer *= X.shape[d];
    for (int64_t d = a + 1; d < X.rank(); ++d) inner *= X.shape[d];
    const int64_t n = X.shape[a];
    const T* x = static_cast<const T*>(X.data);
    int64_t* y = static_cast<int64_t*>(Y.data);
    parallel_for(outer * inner, static_cast<double>(n), [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        const int64_t o = i / inner, in = i % inner;
        const T* p = x + o * n * inner + in;
        int64_t best = 0;
        T bv = p[0];
        bool nan = is_nan(bv);
        for (int64_t k = 1; k < n && (!nan || last_); ++k) {
          const T v = p[k * inner];
          if (is_nan(v)) {
            if (!nan || last_) best = k;
            nan = true;
            bv = v;
            continue;
          }
          if (nan) continue;
          const bool better = max_ ? (last_ ? v >= bv : v > bv) : (last_ ? v <= bv : v < bv);
          if (better) {
            best = k;
            bv = v;
          }
        }
        y[i] = best;
      }
    });
  }

  std::string who_, label_;
  bool max_;
  int64_t axis_ = 0;
  bool keepdims_ = true, last_ = false;
};

}  // namespace

ONNXFAST_KERNELS(argminmax) {
  const std::vector<int> types = {kFloat, kDouble, kInt32, kInt64};
  kernel("ArgMax").since(1).types(types).make([](const KernelArgs& a) {
    return std::make_unique<ArgExtremeKernel>(a, true);
  });
  kernel("ArgMin").since(1).types(types).make([](const KernelArgs& a) {
    return std::make_unique<ArgExtremeKernel>(a, false);
  });
}

}  // namespace onnxfast
