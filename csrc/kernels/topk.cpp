// TopK (ai.onnx 1, 10, 11+): the k largest (or smallest, largest=0) elements along `axis` and their int64
// indices, in order: by value (descending for largest, ascending otherwise), ties by the lower index, NaN
// after every number (as the numpy kernel's stable sort has it). k is an attribute (1) or a 1-element
// int64 input (10+). float32, float64, int32, int64; the slices in parallel, each a partial sort of
// (value, index) pairs.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "../threadpool/threadpool.h"
#include "kernel.h"

namespace onnxfast {
namespace {

class TopKKernel : public Kernel {
 public:
  explicit TopKKernel(const KernelArgs& a) : who_(a.who()), label_(a.node_label()) {
    const int sv = a.since_version ? a.since_version : a.opset;
    axis_ = attr_int(a, "axis", -1);
    check_axis(a, "axis", axis_, a.rank_of(0));
    if (sv < 10) {
      k_attr_ = attr_int(a, "k", -1);
      if (k_attr_ < 0) attr_fail(a, "k", std::to_string(k_attr_), "a count of at least 0");
    }
    if (sv >= 11) {
      largest_ = expect_int_in(a, "largest", 1, 0, 1) != 0;
      (void)expect_int_in(a, "sorted", 1, 0, 1);  // results are always sorted (the numpy kernel's order)
    }
  }

  void infer(const std::vector<const Tensor*>& in, std::vector<OutSpec>& out) const override {
    if (in.empty() || !in[0]) kernel_fail(who_ + " needs input X");
    const Tensor& X = *in[0];
    if (X.rank() == 0) fail(ErrorKind::kInvalidArgument, label_ + ": X must have at least one dimension");
    const int64_t a = normalize_axis(axis_, X.rank(), who_, "axis");
    const int64_t k = k_of(in);
    if (k < 0 || k > X.shape[a])
      fail(ErrorKind::kInvalidArgument, label_ + ": k=" + std::to_string(k) + " is out of range for axis " +
                                            std::to_string(a) + " of size " + std::to_string(X.shape[a]));
    Shape s = X.shape;
    s[a] = k;
    out.resize(2);
    out[0] = {X.dtype, s};
    out[1] = {kInt64, s};
  }

  void compute(const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) const override {
    switch (in[0]->dtype) {
      case kFloat: run<float>(in, out); break;
      case kDouble: run<double>(in, out); break;
      case kInt32: run<int32_t>(in, out); break;
      default: run<int64_t>(in, out); break;
    }
  }

 private:
  int64_t k_of(const std::vector<const Tensor*>& in) const {
    if (k_attr_ >= 0) return k_attr_;
    if (in.size() < 2 || !in[1]) kernel_fail(who_ + " needs input K");
    const std::vector<int64_t> k = int_values(*in[1], who_, "K");
    if (k.size() != 1) fail(ErrorKind::kInvalidArgument, label_ + ": K must hold one value, got " + list_str(k));
    return k[0];
  }

  template <class T>
  static bool is_nan(T v) {
    if constexpr (std::is_floating_point<T>::value) return std::isnan(v);
    return false;
  }

  template <class T>
  void run(const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) const {
    const Tensor& X = *in[0];
    const int64_t a = normalize_axis(axis_, X.rank(), who_, "axis");
    const int64_t k = k_of(in), n = X.shape[a];
    int64_t outer = 1, inner = 1;
    for (int64_t d = 0; d < a; ++d) outer *= X.shape[d];
    for (int64_t d = a + 1; d < X.rank(); ++d) inner *= X.shape[d];
    const T* x = static_cast<const T*>(X.data);
    T* yv = static_cast<T*>(out[0]->data);
    int64_t* yi = static_cast<int64_t*>(out[1]->data);
    if (k == 0) return;
    const bool largest = largest_;
    auto before = [largest](const std::pair<T, int64_t>& p, const std::pair<T, int64_t>& q) {
      const bool pn = is_nan(p.first), qn = is_nan(q.first);
      if (pn != qn) return qn;  // numbers first
      if (!pn && p.first != q.first) return largest ? p.first > q.first : p.first < q.first;
      return p.second < q.second;
    };
    parallel_for(outer * inner, 4.0 * static_cast<double>(n), [&](int64_t s0, int64_t s1) {
      std::vector<std::pair<T, int64_t>> v(static_cast<size_t>(n));
      for (int64_t s = s0; s < s1; ++s) {
        const int64_t o = s / inner, i = s % inner;
        const T* p = x + o * n * inner + i;
        for (int64_t j = 0; j < n; ++j) v[j] = {p[j * inner], j};
        std::partial_sort(v.begin(), v.begin() + k, v.end(), before);
        for (int64_t j = 0; j < k; ++j) {
          yv[(o * k + j) * inner + i] = v[j].first;
          yi[(o * k + j) * inner + i] = v[j].second;
        }
      }
    });
  }

  std::string who_, label_;
  int64_t axis_ = -1, k_attr_ = -1;
  bool largest_ = true;
};

}  // namespace

ONNXFAST_KERNELS(topk) {
  kernel("TopK").since(1).types({kFloat, kDouble, kInt32, kInt64}).make<TopKKernel>();
}

}  // namespace onnxfast
