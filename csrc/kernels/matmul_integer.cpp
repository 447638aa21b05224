// MatMulInteger (ai.onnx 10+): A (uint8 or int8) @ B (uint8 or int8, independently of A) with
// optional zero points, int32 output, numpy's matmul shape rules.
//
//   Y[.., i, n] = sum_k (A[.., i, k] - a_zp[i]) * (B[.., k, n] - b_zp[n])
//
// a_zero_point has A's type: one value, one per row of A (1-D of M, shared by A's batches), or one per
// row of each of A's matrices (shape A.shape[:-1] + [1]). b_zero_point has B's type: one value, one per
// column (1-D of N), or one per column of each of B's matrices (shape B.shape[:-2] + [1, N]). These
// are the spec's forms; others are refused. Sums are formed modulo 2^32, as onnxruntime's int32
// accumulators wrap.
//
// B minus its zero point is widened once to int16 (every difference of two 8-bit values fits): at
// creation when B and b_zero_point are constants (B is then released; packed_inputs), else per run.
// Each output row is then a sum of K scaled int16 rows, a loop the compiler vectorizes; rows run in
// parallel. This is the mixed-type kernel of the registry (T1 and T2 declared per input), a correct
// baseline for the int8 GEMM (VNNI / AVX2 maddubs) that will replace its inner loop.
#include <algorithm>
#include <cstring>
#include <memory>

#include "../threadpool/threadpool.h"
#include "kernel.h"

namespace onnxfast {
namespace {

bool is_8bit(int t) { return t == kUInt8 || t == kInt8; }

int32_t value8(const void* p, int dtype, int64_t i) {
  return dtype == kUInt8 ? static_cast<const uint8_t*>(p)[i] : static_cast<const int8_t*>(p)[i];
}

// How a zero point maps onto its operand's rows (A) or columns (B).
enum class ZpForm { kOne, kShared, kPerMatrix };

// Index of the zero point for row / column `j` of the operand's matrix number `mat`.
inline int64_t zp_index(ZpForm f, int64_t mat, int64_t j, int64_t per) {
  return f == ZpForm::kOne ? 0 : f == ZpForm::kShared ? j : mat * per + j;
}

class MatMulIntegerKernel : public Kernel {
 public:
  explicit MatMulIntegerKernel(const KernelArgs& a) : who_(a.who()) {
    expect_rank_in(a, 0, "A", 1, -1);
    expect_rank_in(a, 1, "B", 1, -1);
    auto cst = [&](size_t i) { return i < a.const_inputs.size() ? a.const_inputs[i] : nullptr; };
    // B packed when it is constant and so is b_zero_point, or the node has no input 3 at all
    const auto b = cst(1), bzp = cst(3);
    if (a.allow_prepack && b && is_8bit(b->dtype) && b->rank() >= 1 && (bzp || a.const_inputs.size() <= 3)) {
      const ZpForm form = bzp ? zero_point_form(*bzp, *b, 3, "b_zero_point", b->rank() == 1 ? 1 : b->shape.back())
                              : ZpForm::kOne;
      packed_b_ = std::make_shared<std::vector<int16_t>>(widen_b(*b, bzp.get(), form));
      b_dtype_ = b->dtype;
    }
  }
  std::string describe() const override { return packed_b_ ? "native:prepacked" : "native"; }
  std::vector<int> packed_inputs() const override { return packed_b_ ? std::vector<int>{1, 3} : std::vector<int>{}; }

  void infer(const std::vector<const Tensor*>& in, std::vector<OutSpec>& out) const override {
    if (in.size() < 2 || !in[0] || !in[1]) kernel_fail(who_ + " needs inputs A and B");
    const Tensor& A = *in[0];
    const Tensor& B = *in[1];
    if (!is_8bit(A.dtype) || !is_8bit(B.dtype))
      fail(ErrorKind::kInvalidType, who_ + ": A and B must be uint8 or int8, got tensor(" + dtype_name(A.dtype) +
                                        ") and tensor(" + dtype_name(B.dtype) + ")");
    if (packed_b_ && B.dtype != b_dtype_)
      fail(ErrorKind::kInvalidType, who_ + ": B is tensor(" + dtype_name(B.dtype) + "), the constant was tensor(" +
                                        dtype_name(b_dtype_) + ")");
    const MatMulDims d = matmul_dims(A.shape, B.shape, who_);
    if (in.size() > 2 && in[2]) zero_point_form(*in[2], A, 2, "a_zero_point", d.M);
    if (in.size() > 3 && in[3]) zero_point_form(*in[3], B, 3, "b_zero_point", d.N);
    out.resize(1);
    out[0].dtype = kInt32;
    out[0].shape = d.out;
  }

  void compute(const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) const override {
    const Tensor& A = *in[0];
    const Tensor& B = *in[1];
    Tensor& Y = *out[0];
    if (Y.numel() == 0) return;
    const MatMulDims d = matmul_dims(A.shape, B.shape, who_);
    const int64_t M = d.M, K = d.K, N = d.N;
    uint32_t* y = static_cast<uint32_t*>(Y.data);
    if (K == 0) {
      std::memset(y, 0, Y.nbytes());
      return;
    }
    std::vector<int16_t> run_b;
    const int16_t* bw;
    if (packed_b_) {
      bw = packed_b_->data();
    } else {
      const Tensor* bzp = in.size() > 3 ? in[3] : nullptr;
      run_b = widen_b(B, bzp, bzp ? zero_point_form(*bzp, B, 3, "b_zero_point", N) : ZpForm::kOne);
      bw = run_b.data();
    }
    const Tensor* azp = in.size() > 2 ? in[2] : nullptr;
    const ZpForm a_form = azp ? zero_point_form(*azp, A, 2, "a_zero_point", M) : ZpForm::kOne;
    const int64_t rows = shape_numel(d.batch) * M;
    parallel_for(rows, static_cast<double>(K * N) * 0.5 + 8, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t t = r / M, i = r % M;
        int64_t oa, ob;
        d.offsets(t, &oa, &ob);
        const int64_t a_row = oa + i * K;
        const int32_t za = azp ? value8(azp->data, azp->dtype, zp_index(a_form, oa / (M * K), i, M)) : 0;
        uint32_t* yr = y + r * N;
        std::fill(yr, yr + N, 0u);
        for (int64_t k = 0; k < K; ++k) {
          const uint32_t av = static_cast<uint32_t>(value8(A.data, A.dtype, a_row + k) - za);
          if (av == 0) continue;
          const int16_t* br = bw + ob + k * N;
          for (int64_t n = 0; n < N; ++n) yr[n] += av * static_cast<uint32_t>(static_cast<int32_t>(br[n]));
        }
      }
    });
  }

 private:
  // A zero point's form (InvalidType / InvalidArgument when it has none of the spec's): the operand's
  // type; one value, `per` values (1-D), or the operand's shape with its row (A) / column (B) axis 1.
  ZpForm zero_point_form(const Tensor& z, const Tensor& operand, int index, const char* name, int64_t per) const {
    if (z.dtype != operand.dtype)
      fail(ErrorKind::kInvalidType, who_ + ": " + name + " is tensor(" + dtype_name(z.dtype) + "); it must have " +
                                        (index == 2 ? "A" : "B") + "'s type, tensor(" + dtype_name(operand.dtype) + ")");
    if (z.numel() == 1 && z.rank() <= std::max<int64_t>(operand.rank(), 1)) return ZpForm::kOne;
    if (z.rank() == 1 && z.numel() == per) return ZpForm::kShared;
    Shape per_matrix = operand.shape;
    if (per_matrix.size() >= 2) per_matrix[per_matrix.size() - (index == 2 ? 1 : 2)] = 1;
    if (operand.rank() >= 2 && z.shape == per_matrix) return ZpForm::kPerMatrix;
    kernel_fail(who_ + ": " + name + " has shape " + shape_str(z.shape) + "; it must be a scalar, 1-D of " +
                std::to_string(per) + " elements (" + (index == 2 ? "rows of A" : "columns of B") + ")" +
                (operand.rank() >= 2 ? " or of shape " + shape_str(per_matrix) : std::string()));
  }
  // B - b_zp (per column n of each of B's matrices) for every element of B, as int16.
  static std::vector<int16_t> widen_b(const Tensor& B, const Tensor* bzp, ZpForm form) {
    const int64_t n = B.numel(), N = B.rank() == 1 ? 1 : B.shape.back();
    const int64_t KN = B.rank() == 1 ? B.shape[0] : B.shape[B.rank() - 2] * N;
    std::vector<int16_t> w(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      const int32_t z = bzp ? value8(bzp->data, bzp->dtype, zp_index(form, i / KN, i % N, N)) : 0;
      w[static_cast<size_t>(i)] = static_cast<int16_t>(value8(B.data, B.dtype, i) - z);
    }
    return w;
  }

  std::string who_;
  std::shared_ptr<std::vector<int16_t>> packed_b_;  // B - b_zp when both are constants
  int b_dtype_ = 0;
};

}  // namespace

ONNXFAST_KERNELS(matmul_integer) {
  const std::vector<int> t8 = {kUInt8, kInt8};
  // T1 (A, a_zero_point) and T2 (B, b_zero_point) each uint8 or int8, in any combination
  kernel("MatMulInteger").since(10).types(t8).input(1, t8).input(2, t8).input(3, t8).make<MatMulIntegerKernel>();
}

}  // namespace onnxfast
