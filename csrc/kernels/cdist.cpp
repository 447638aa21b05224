// com.microsoft CDist: the pairwise distances of the rows of A (n x d) and B (m x d), an n x m matrix,
// 'sqeuclidean' (sum of squared differences) or 'euclidean' (its square root); float32 and float64.
// skl2onnx writes it for k-nearest neighbours and Gaussian processes, and onnxfast's ScanCDistFusion for
// skl2onnx's default Scan form of the same distances. The differences are summed directly (not as
// |a|^2 + |b|^2 - 2 a.b, which cancels for close rows and would change which neighbours are nearest),
// in eight running sums per pair; rows of A in parallel.
#include <cmath>

#include "../threadpool/threadpool.h"
#include "kernel.h"

namespace onnxfast {
namespace {

class CDistKernel : public Kernel {
 public:
  explicit CDistKernel(const KernelArgs& a) : who_(a.who()) {
    expect_known_attrs(a, {"metric"});
    euclid_ = expect_known_string(a, "metric", "sqeuclidean", {"sqeuclidean", "euclidean"}) == "euclidean";
    expect_rank_in(a, 0, "A", 2, 2);
    expect_rank_in(a, 1, "B", 2, 2);
  }

  void infer(const std::vector<const Tensor*>& in, std::vector<OutSpec>& out) const override {
    if (in.size() < 2 || !in[0] || !in[1]) kernel_fail(who_ + " needs inputs A and B");
    const Tensor& A = *in[0];
    const Tensor& B = *in[1];
    if (A.dtype != B.dtype || (A.dtype != kFloat && A.dtype != kDouble))
      fail(ErrorKind::kInvalidType, who_ + ": A and B must both be float or double, got tensor(" +
                                        dtype_name(A.dtype) + ") and tensor(" + dtype_name(B.dtype) + ")");
    if (A.rank() != 2 || B.rank() != 2 || A.shape[1] != B.shape[1])
      fail(ErrorKind::kInvalidArgument, who_ + ": A " + shape_str(A.shape) + " and B " + shape_str(B.shape) +
                                            " must be matrices with as many columns");
    out.resize(1);
    out[0] = {A.dtype, {A.shape[0], B.shape[0]}};
  }

  void compute(const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) const override {
    if (in[0]->dtype == kFloat) run<float>(*in[0], *in[1], *out[0]);
    else run<double>(*in[0], *in[1], *out[0]);
  }

 private:
  template <class T>
  void run(const Tensor& A, const Tensor& B, Tensor& Y) const {
    const int64_t n = A.shape[0], m = B.shape[0], d = A.shape[1];
    const T* a = static_cast<const T*>(A.data);
    const T* b = static_cast<const T*>(B.data);
    T* y = static_cast<T*>(Y.data);
    parallel_for(n, 1.5 * static_cast<double>(m * d), [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        const T* ai = a + i * d;
        for (int64_t j = 0; j < m; ++j) {
          const T* bj = b + j * d;
          T acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
          int64_t k = 0;
          for (; k + 8 <= d; k += 8)
            for (int l = 0; l < 8; ++l) {
              const T t = ai[k + l] - bj[k + l];
              acc[l] += t * t;
            }
          for (int l = 0; k < d; ++k, ++l) {
            const T t = ai[k] - bj[k];
            acc[l] += t * t;
          }
          const T s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
          y[i * m + j] = euclid_ ? std::sqrt(s) : s;
        }
      }
    });
  }

  std::string who_;
  bool euclid_ = false;
};

}  // namespace

ONNXFAST_KERNELS(cdist) {
  kernel("CDist", "com.microsoft").since(1).types({kFloat, kDouble}).make<CDistKernel>();
}

}  // namespace onnxfast
