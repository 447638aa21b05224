// ConvTranspose, float32: 1-D/2-D/3-D (any rank), strides, dilations, pads, auto_pad, output_padding,
// output_shape, groups, bias. This file owns the op's output geometry (the numpy kernel's,
// onnxfast/ops/nn.py conv_transpose_1) and its native computation:
//   per image and group, cols[Mg*Kp, P] = W_g^T[Mg*Kp, Cg] * X_g[Cg, P] with the SGEMM (W_g^T packed
//   once at session creation when W is a constant, per call when it is fed), then col2im: each tap's
//   row of cols is scatter-added into Y at i * stride + k * dilation - pad_begin.
// Tasks are (image, group, block of output channels): each output channel's plane is written by one
// task, walking the input positions in chunks of a size fixed by the shapes alone, so results are
// bitwise identical for any thread count.
#include <algorithm>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "conv_geometry.h"
#include "gemm.h"
#include "kernel.h"
#include "../threadpool/threadpool.h"

namespace onnxfast {
namespace {

struct ConvTransposeGeom {
  int64_t N, C, M, group, Cg, Mg;
  int64_t taps;     // kernel positions per (input channel, output channel) pair: Kp
  int64_t in_size;  // input positions per channel: P
  int64_t out_size;
  Shape in_sp, k_sp, out_sp, strides, dil, pad_begin;
};

// Column-buffer budget of one task (floats): a chunk of input positions is sized so that the
// cols rows of the largest channel block fit in it (512 KiB).
constexpr int64_t kColsFloats = 128 * 1024;
// Rows of cols (output channels x taps) a task aims for before it is split for threads.
constexpr int64_t kTaskRows = 256;
// Input images whose packed X is held at once (floats, 64 MiB).
constexpr int64_t kPackedInputFloats = 16 * 1024 * 1024;

inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

class ConvTransposeKernel : public Kernel {
 public:
  explicit ConvTransposeKernel(const KernelArgs& a)
      : name_("ConvTranspose '" + a.node_name + "'"),
        attrs_(ConvAttrs::parse(a, ConvFamily::kConvTranspose)),  // attributes checked at session creation
        group_(attrs_.group) {
    if (a.const_inputs.size() > 1 && a.const_inputs[1] && a.allow_prepack) {
      const Tensor& w = *a.const_inputs[1];
      // A weight that does not fit the group stays unpacked: compute() reports it against X.
      if (w.dtype == kFloat && w.rank() >= 3 && w.shape[0] % group_ == 0) {
        packed_w_ = pack_weights(w);
        packed_shape_ = w.shape;
      }
    }
  }

  std::string describe() const override { return packed_shape_.empty() ? "native" : "native:prepacked"; }

  ConvTransposeGeom geometry(const Tensor& X, const Tensor& W) const {
    if (X.rank() < 3) kernel_fail(name_ + ": input X must be N x C x D1 x ..., got shape " + shape_str(X.shape));
    if (W.rank() != X.rank())
      kernel_fail(name_ + ": weight " + shape_str(W.shape) + " must have the rank of input X " + shape_str(X.shape));
    ConvTransposeGeom g;
    g.N = X.shape[0];
    g.C = X.shape[1];
    g.group = group_;
    if (W.shape[0] != g.C || g.C % group_ != 0)
      kernel_fail(name_ + ": weight " + shape_str(W.shape) + " does not match input X " + shape_str(X.shape) +
                  " with group=" + std::to_string(group_) + " (W must be C x M/group x k1 x ..., C divisible by group)");
    g.Cg = g.C / group_;
    g.Mg = W.shape[1];
    g.M = checked_mul(g.Mg, group_, name_, "the output channels (W.shape[1] * group)");
    // Ranks, kernel_shape against the weight, extents in checked int64 (conv_geometry.h).
    SpatialGeometry sg = transpose_geometry(attrs_, Shape(X.shape.begin() + 2, X.shape.end()),
                                            Shape(W.shape.begin() + 2, W.shape.end()));
    take_spatial(g, sg);
    g.taps = shape_numel(g.k_sp);
    g.in_size = shape_numel(g.in_sp);
    g.out_size = shape_numel(g.out_sp);
    return g;
  }

  void infer(const std::vector<const Tensor*>& in, std::vector<OutSpec>& out) const override {
    expect_conv_inputs(in, name_);
    const ConvTransposeGeom g = geometry(*in[0], *in[1]);
    expect_conv_bias(in, g.M, name_);
    out.resize(1);
    out[0].dtype = kFloat;
    out[0].shape = {g.N, g.M};
    out[0].shape.insert(out[0].shape.end(), g.out_sp.begin(), g.out_sp.end());
  }

  void compute(const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) const override {
    const Tensor& X = *in[0];
    const Tensor& W = *in[1];
    const float* bias = (in.size() > 2 && in[2]) ? in[2]->ptr<float>() : nullptr;
    Tensor& Y = *out[0];
    if (Y.numel() == 0) return;
    const ConvTransposeGeom g = geometry(X, W);
    const float* x = X.ptr<float>();
    float* y = Y.ptr<float>();
    if (g.Cg == 0 || g.in_size == 0) {  // nothing to scatter: Y is the bias
      parallel_for(g.N * g.M, static_cast<double>(g.out_size), [&](int64_t b, int64_t e) {
        for (int64_t t = b; t < e; ++t) std::fill(y + t * g.out_size, y + (t + 1) * g.out_size, bias ? bias[t % g.M] : 0.f);
      });
      return;
    }
    std::vector<PackedA> fresh;
    const std::vector<PackedA>* wp = &packed_w_;
    if (packed_shape_.empty() || packed_shape_ != W.shape) {
      fresh = pack_weights(W);
      wp = &fresh;
    }
    const Col2Im plan(g);
    const int64_t P = g.in_size, Kp = g.taps, Cg = g.Cg, Mg = g.Mg;
    // A task's channel block starts at a row of cols (m0 * Kp) that begins a packed strip of W^T.
    const int64_t mr = (*wp)[0].mr, mstep = mr / std::gcd(Kp, mr);
    // The chunk of input positions depends on the shapes and the GEMM tier only (not the thread
    // count): it fixes the order in which each output element accumulates its terms.
    const int64_t mb_max = std::min(round_up(Mg, mstep), round_up(std::max<int64_t>(1, kTaskRows / Kp), mstep));
    const int64_t chunk = std::min(round_up(P, kGemmPanel),
                                   std::max(kGemmPanel, kColsFloats / (mb_max * Kp) / kGemmPanel * kGemmPanel));
    const int64_t np = round_up(P, kGemmPanel);  // columns of a packed X (see sgemm_pack_b)
    const int64_t per_image = g.group * np * Cg;
    const int64_t batch = std::max<int64_t>(1, std::min(g.N, kPackedInputFloats / std::max<int64_t>(1, per_image)));
    ThreadPool* pool = current_pool();
    const int64_t want = 4 * (pool ? pool->num_threads() : 1);
    for (int64_t n0 = 0; n0 < g.N; n0 += batch) {
      const int64_t nb = std::min(batch, g.N - n0);
      // X of each (image, group) packed once as GEMM B panels, read by every channel block.
      std::vector<PackedB> xpacked(static_cast<size_t>(nb * g.group));
      parallel_for(nb * g.group, static_cast<double>(Cg * P), [&](int64_t b, int64_t e) {
        for (int64_t t = b; t < e; ++t)
          xpacked[t] = sgemm_pack_b(false, Cg, P, x + ((n0 + t / g.group) * g.C + (t % g.group) * Cg) * P, P);
      });
      int64_t mblock = mb_max;
      auto tasks = [&](int64_t mb) { return nb * g.group * ((Mg + mb - 1) / mb); };
      while (mblock > mstep && tasks(mblock) < want) mblock = round_up(mblock / 2, mstep);
      const int64_t mblocks = (Mg + mblock - 1) / mblock;
      const double cost = (2.0 * Cg / 48.0 + 1.0) * mblock * Kp * P;
      parallel_for(tasks(mblock), cost, [&](int64_t tb, int64_t te) {
        ScratchBlock cols(static_cast<size_t>(mblock * Kp * chunk) * sizeof(float));
        if (!cols.data) fail(ErrorKind::kAllocation, name_ + ": out of memory for the column buffer");
        for (int64_t t = tb; t < te; ++t) {
          const int64_t mb = t % mblocks, gr = (t / mblocks) % g.group, n = t / (mblocks * g.group);
          const int64_t m0 = mb * mblock, m1 = std::min(Mg, m0 + mblock);
          const PackedB& xb = xpacked[n * g.group + gr];
          float* yg = y + ((n0 + n) * g.M + gr * Mg + m0) * g.out_size;
          for (int64_t m = 0; m < m1 - m0; ++m)
            std::fill(yg + m * g.out_size, yg + (m + 1) * g.out_size, bias ? bias[gr * Mg + m0 + m] : 0.f);
          for (int64_t j0 = 0; j0 < P; j0 += chunk) {
            const int64_t nc = std::min(chunk, P - j0);
            // cols holds this task's rows of W^T X: rows m0 * Kp .. m1 * Kp.
            for (int64_t k0 = 0; k0 < Cg; k0 += kGemmKC) {
              const int64_t kc = std::min(kGemmKC, Cg - k0);
              sgemm_kblock((*wp)[gr], m0 * Kp, m1 * Kp, k0, kc, xb.data.get() + k0 * np + j0 * kc, nc, cols.floats(),
                           nc, k0 == 0 ? 0.f : 1.f);
            }
            plan.scatter(cols.floats(), nc, j0, m1 - m0, yg);
          }
        }
      });
    }
  }

 private:
  // Per group, W_g^T (Mg*Kp x Cg) packed as the GEMM's A operand.
  std::vector<PackedA> pack_weights(const Tensor& W) const {
    const int64_t C = W.shape[0], Cg = C / group_, rows = shape_numel(Shape(W.shape.begin() + 1, W.shape.end()));
    std::vector<float> wt(static_cast<size_t>(rows * Cg));
    std::vector<PackedA> out;
    for (int64_t gr = 0; gr < group_; ++gr) {
      if (rows * Cg > 0) transpose_f32(W.ptr<float>() + gr * Cg * rows, rows, Cg, rows, wt.data(), Cg);
      out.push_back(sgemm_pack_a(rows, Cg, wt.data(), Cg));
    }
    return out;
  }

  // col2im: scatter-adds a chunk of cols (rows: output channel x tap, columns: input positions)
  // into the output planes. Positions are walked as runs along the last spatial axis; per tap, the
  // input columns landing inside an output row are precomputed, so the inner loop is a plain
  // (strided) add with no division or bounds test.
  struct Col2Im {
    explicit Col2Im(const ConvTransposeGeom& geom) : g(geom) {
      const size_t sd = g.in_sp.size();
      in_w = g.in_sp[sd - 1];
      out_w = g.out_sp[sd - 1];
      k_w = g.k_sp[sd - 1];
      s_w = g.strides[sd - 1];
      outer_taps = g.taps / k_w;
      for (int64_t kw = 0; kw < k_w; ++kw) {
        const int64_t off = kw * g.dil[sd - 1] - g.pad_begin[sd - 1];  // input column iw lands at iw * s_w + off
        const int64_t lo = off >= 0 ? 0 : ceil_div(-off, s_w);
        const int64_t hi = out_w - 1 - off >= 0 ? std::min(in_w, (out_w - 1 - off) / s_w + 1) : 0;
        col_off.push_back(off);
        col_lo.push_back(lo);
        col_hi.push_back(std::max(lo, hi));
      }
      // Per outer tap (all axes but the last), its offset along each outer axis.
      const size_t so = sd - 1;
      row_off.assign(static_cast<size_t>(outer_taps * so), 0);
      for (int64_t t = 0; t < outer_taps; ++t) {
        int64_t rem = t;
        for (size_t d = so; d-- > 0;) {
          row_off[t * so + d] = (rem % g.k_sp[d]) * g.dil[d] - g.pad_begin[d];
          rem /= g.k_sp[d];
        }
      }
      out_stride.assign(so, 0);
      for (size_t d = so, s = static_cast<size_t>(out_w); d-- > 0;) {
        out_stride[d] = static_cast<int64_t>(s);
        s *= static_cast<size_t>(g.out_sp[d]);
      }
    }

    // cols: nm channels' rows (channel m, tap t at row m * taps + t, nc columns: input positions
    // [j0, j0 + nc)); y: the first of their nm output planes.
    void scatter(const float* cols, int64_t nc, int64_t j0, int64_t nm, float* y) const {
      const size_t so = g.in_sp.size() - 1;
      std::vector<int64_t> outer(so);  // the run's input index along the outer axes
      for (int64_t m = 0; m < nm; ++m) {
        const float* cm = cols + m * g.taps * nc;
        float* ym = y + m * g.out_size;
        int64_t rest = j0 / in_w, a = j0 % in_w;
        for (size_t d = so; d-- > 0;) {
          outer[d] = rest % g.in_sp[d];
          rest /= g.in_sp[d];
        }
        for (int64_t pos = 0; pos < nc;) {
          const int64_t b = std::min(in_w, a + nc - pos);  // this run: input columns [a, b)
          for (int64_t ot = 0; ot < outer_taps; ++ot) {
            int64_t row = 0;
            bool inside = true;
            for (size_t d = 0; d < so && inside; ++d) {
              const int64_t o = outer[d] * g.strides[d] + row_off[ot * so + d];
              inside = o >= 0 && o < g.out_sp[d];
              row += o * out_stride[d];
            }
            if (!inside) continue;
            float* yr = ym + row;
            for (int64_t kw = 0; kw < k_w; ++kw) {
              const int64_t lo = std::max(col_lo[kw], a), hi = std::min(col_hi[kw], b);
              if (lo >= hi) continue;
              const float* src = cm + (ot * k_w + kw) * nc + pos + (lo - a);
              float* dst = yr + lo * s_w + col_off[kw];
              const int64_t n = hi - lo;
              if (s_w == 1)
                for (int64_t i = 0; i < n; ++i) dst[i] += src[i];
              else
                for (int64_t i = 0; i < n; ++i) dst[i * s_w] += src[i];
            }
          }
          pos += b - a;
          a = 0;
          for (size_t d = so; d-- > 0;) {  // next run: advance the outer index
            if (++outer[d] < g.in_sp[d]) break;
            outer[d] = 0;
          }
        }
      }
    }

    const ConvTransposeGeom& g;
    int64_t in_w, out_w, k_w, s_w, outer_taps;
    std::vector<int64_t> col_off, col_lo, col_hi;  // per last-axis tap
    std::vector<int64_t> row_off;                   // per outer tap and outer axis
    std::vector<int64_t> out_stride;                // per outer axis, in output elements
  };

  std::string name_;
  ConvAttrs attrs_;
  int64_t group_;
  std::vector<PackedA> packed_w_;  // per group, when W is a constant
  Shape packed_shape_;             // that constant's shape (empty: W is fed)
};

}  // namespace

ONNXFAST_KERNELS(conv_transpose) {
  kernel("ConvTranspose").types({kFloat}).make<ConvTransposeKernel>();  // float16 / bfloat16: half.cpp
}

}  // namespace onnxfast
