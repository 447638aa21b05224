// onnxfast::FusedAttention (float32): y = softmax(Q @ Kt * scale [+ mask]) @ V over the last axis, as
// the optimizer's AttentionFusion pass (onnxfast/optimizer/attention.py) folds it from MatMul, scale,
// Add, Softmax [, IsNaN / Where] and MatMul nodes. Q (B, H, S, D), Kt (B, H, D, T), V (B, H, T, Dv),
// mask broadcast to (B, H, S, T); the batch dims and the mask broadcast as the operators would.
// Work items are (batch, head, block of query rows): a block's scores (rows x T) live in the worker's
// scratch, never the whole (B, H, S, T) tensor. nan_to_zero: a NaN probability becomes 0
// (Where(IsNaN(p), 0, p): a row whose keys are all masked with -inf).
#include <algorithm>
#include <cmath>

#include "../threadpool/threadpool.h"
#include "gemm.h"
#include "kernel.h"
#include "vecmath.h"

namespace onnxfast {
namespace {

// Query rows per work item: a block's scores (rows x T floats) stay about 128 KiB (L2), and fewer,
// larger blocks pack each head's Kt and V fewer times.
int64_t row_block(int64_t T) { return std::max<int64_t>(16, std::min<int64_t>(256, 32768 / std::max<int64_t>(T, 1))); }

class FusedAttentionKernel : public Kernel {
 public:
  explicit FusedAttentionKernel(const KernelArgs& a)
      : name_(a.who()),
        scale_(static_cast<float>(attr_float(a, "scale", 1.0))),
        nan_to_zero_(attr_int(a, "nan_to_zero", 0) != 0) {
    expect_known_attrs(a, {"scale", "nan_to_zero"});
    expect_rank_in(a, 0, "Q", 4, 4);
    expect_rank_in(a, 1, "Kt", 4, 4);
    expect_rank_in(a, 2, "V", 4, 4);
    expect_rank_in(a, 3, "mask", 0, 4);
  }

  struct Geometry {
    int64_t B, H, S, D, T, Dv;
    Shape mask4;  // the mask's shape left-padded to rank 4 (empty: no mask)
  };

  // out = broadcast of a and b (1 or equal), else fail naming both.
  int64_t bdim(int64_t a, int64_t b, const char* what) const {
    if (a == b || b == 1) return a;
    if (a == 1) return b;
    kernel_fail(name_ + ": " + what + " dims " + std::to_string(a) + " and " + std::to_string(b) + " do not broadcast");
  }

  Geometry geometry(const std::vector<const Tensor*>& in) const {
    if (in.size() < 3 || !in[0] || !in[1] || !in[2]) kernel_fail(name_ + " needs inputs Q, Kt and V");
    const char* names[] = {"Q", "Kt", "V", "mask"};
    for (size_t i = 0; i < in.size() && i < 4; ++i) {
      if (!in[i]) continue;
      expect_dtype(*in[i], kFloat, (name_ + " " + names[i]).c_str());
      if (i < 3 && in[i]->rank() != 4)
        kernel_fail(name_ + ": " + names[i] + " must have rank 4, got shape " + shape_str(in[i]->shape));
    }
    const Shape &q = in[0]->shape, &k = in[1]->shape, &v = in[2]->shape;
    Geometry g;
    g.S = q[2];
    g.D = q[3];
    g.T = k[3];
    g.Dv = v[3];
    if (k[2] != g.D) kernel_fail(name_ + ": Q " + shape_str(q) + " and Kt " + shape_str(k) + " do not multiply");
    if (v[2] != g.T) kernel_fail(name_ + ": V " + shape_str(v) + " does not follow " + std::to_string(g.T) + " keys");
    g.B = bdim(bdim(q[0], k[0], "batch"), v[0], "batch");
    g.H = bdim(bdim(q[1], k[1], "head"), v[1], "head");
    if (in.size() > 3 && in[3]) {
      g.mask4 = in[3]->shape;
      if (g.mask4.size() > 4) kernel_fail(name_ + ": mask of rank > 4: " + shape_str(g.mask4));
      while (g.mask4.size() < 4) g.mask4.insert(g.mask4.begin(), 1);
      g.B = bdim(g.B, g.mask4[0], "mask batch");
      g.H = bdim(g.H, g.mask4[1], "mask head");
      g.S = bdim(g.S, g.mask4[2], "mask query");
      if (g.mask4[3] != g.T && g.mask4[3] != 1)
        kernel_fail(name_ + ": mask " + shape_str(in[3]->shape) + " does not broadcast over " + std::to_string(g.T) +
                    " keys");
    }
    return g;
  }

  void infer(const std::vector<const Tensor*>& in, std::vector<OutSpec>& out) const override {
    const Geometry g = geometry(in);
    out.resize(1);
    out[0] = {kFloat, Shape{g.B, g.H, g.S, g.Dv}};
  }

  void compute(const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) const override {
    const Geometry g = geometry(in);
    Tensor& Y = *out[0];
    if (Y.numel() == 0) return;
    float* y = Y.ptr<float>();
    if (g.T == 0) {  // no keys: every output row is an empty sum
      std::fill_n(y, Y.numel(), 0.f);
      return;
    }
    const Tensor &Q = *in[0], &K = *in[1], &V = *in[2];
    const Tensor* M = in.size() > 3 ? in[3] : nullptr;
    // element offset of a rank-4 operand's (b, h) matrix, its broadcast dims read at 0
    auto offset = [](const Shape& s, int64_t b, int64_t h) {
      return ((s[0] == 1 ? 0 : b) * s[1] + (s[1] == 1 ? 0 : h)) * s[2] * s[3];
    };
    const int64_t rb = row_block(g.T);
    const int64_t blocks = (g.S + rb - 1) / rb;
    const VecMath& vm = vecmath();
    const double cost = 2.0 * static_cast<double>(std::min(rb, g.S)) * g.T * (g.D + g.Dv) + 20.0 * g.T;
    parallel_for(g.B * g.H * blocks, cost, [&](int64_t t0, int64_t t1) {
      std::vector<float> scores(static_cast<size_t>(rb * g.T));
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t bh = t / blocks, r0 = (t % blocks) * rb, r1 = std::min(g.S, r0 + rb);
        const int64_t b = bh / g.H, h = bh % g.H, rows = r1 - r0;
        const float* q = Q.ptr<float>() + offset(Q.shape, b, h);
        const float* k = K.ptr<float>() + offset(K.shape, b, h);
        const float* v = V.ptr<float>() + offset(V.shape, b, h);
        float* s = scores.data();
        // scores = Q[rows] @ Kt * scale (a query row broadcast over S is the same row each time)
        if (Q.shape[2] == 1) {
          sgemm(false, false, 1, g.T, g.D, scale_, q, g.D, k, g.T, 0.f, s, g.T);
          for (int64_t r = 1; r < rows; ++r) std::copy(s, s + g.T, s + r * g.T);
        } else {
          sgemm(false, false, rows, g.T, g.D, scale_, q + r0 * g.D, g.D, k, g.T, 0.f, s, g.T);
        }
        for (int64_t r = 0; r < rows; ++r) {
          float* row = s + r * g.T;
          if (M) {
            const Shape& m4 = g.mask4;
            const int64_t mb = m4[0] == 1 ? 0 : b, mh = m4[1] == 1 ? 0 : h, mr = m4[2] == 1 ? 0 : r0 + r;
            const float* mrow = M->ptr<float>() + ((mb * m4[1] + mh) * m4[2] + mr) * m4[3];
            if (m4[3] == 1)
              for (int64_t j = 0; j < g.T; ++j) row[j] += mrow[0];
            else
              for (int64_t j = 0; j < g.T; ++j) row[j] += mrow[j];
          }
          vm.softmax_row(row, row, g.T, false);
          if (nan_to_zero_)
            for (int64_t j = 0; j < g.T; ++j) row[j] = std::isnan(row[j]) ? 0.f : row[j];
        }
        float* yb = y + ((b * g.H + h) * g.S + r0) * g.Dv;
        sgemm(false, false, rows, g.Dv, g.T, 1.f, s, g.T, v, g.Dv, 0.f, yb, g.Dv);
      }
    });
  }

 private:
  std::string name_;
  float scale_;
  bool nan_to_zero_;
};

}  // namespace

ONNXFAST_KERNELS(fused_attention) {
  kernel("FusedAttention", "onnxfast").types({kFloat}).make<FusedAttentionKernel>();
}

}  // namespace onnxfast
