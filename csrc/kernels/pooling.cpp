// Pooling, float32: MaxPool (with the optional Indices output, row- or column-major per
// storage_order), AveragePool and LpPool over N-d inputs (N x C x D1 x ... x Dn): kernel_shape,
// strides, pads, auto_pad, dilations, ceil_mode, count_include_pad; GlobalAveragePool /
// GlobalMaxPool / GlobalLpPool (p = 1, 2) on the reduction engine of reduce.cpp.
//
// Attributes are checked at session creation and the geometry computed in checked int64 by
// conv_geometry.h (shared with Conv / ConvTranspose); explicit pads must be smaller than the kernel,
// as onnxruntime requires. Geometry follows the numpy kernels (onnxfast/ops/nn.py) exactly. The work is split into output
// rows (one plane, all coordinates but the last fixed): for each valid tap of the leading dims
// (row-major), the input row is combined into the output row, taps of the last dim innermost;
// the columns whose windows lie inside the input run as a branch-free loop along the row that the
// compiler vectorizes (contiguous at stride 1). Each output combines its taps in row-major window
// order, as the numpy kernel does, so averages are the same sums and max ties / NaNs pick the
// same Indices (the first). A 2-D MaxPool without Indices on AVX2 / AVX-512 takes the vector rows of
// pool_max.h instead (the same maxima; only Indices could tell which of equal values won).
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "../cpu/cpu.h"
#include "../threadpool/threadpool.h"
#include "conv_geometry.h"
#include "kernel.h"
#include "pool_max.h"
#include "reduce.h"

namespace onnxfast {

const MaxPoolTier* max_pool_tier() {
#if defined(__x86_64__) || defined(_M_X64)
  static const MaxPoolTier avx512 = max_pool_tier_avx512(), avx2 = max_pool_tier_avx2();
  switch (active_isa()) {
    case Isa::kAvx512: return &avx512;
    case Isa::kAvx2: return &avx2;
    default: break;
  }
#endif
  return nullptr;
}

namespace {

// a + b * c in two's complement: the Indices of a window's first tap, reported for a window with no
// larger value (all padding), may lie far outside the input (a pad of 2^62): defined, never used to read.
inline int64_t wrap_madd(int64_t a, int64_t b, int64_t c) {
  return static_cast<int64_t>(static_cast<uint64_t>(a) + static_cast<uint64_t>(b) * static_cast<uint64_t>(c));
}

struct Geometry {
  int64_t nsp = 0;
  Shape out_shape;
  std::vector<int64_t> in_sp, out_sp, kernel, strides, dil, pb, pe;
};

// LpPool sums |x|^p over the window (padding adds 0), then takes the p-th root.
enum class PoolKind { kMax, kAverage, kLp };

class PoolKernel : public Kernel {
 public:
  PoolKernel(const KernelArgs& a, PoolKind kind)
      : name_(a.op_type + " '" + a.node_name + "'"),
        is_max_(kind == PoolKind::kMax),
        is_lp_(kind == PoolKind::kLp),
        p_(static_cast<float>(a.get_float("p", 2.0))),
        attrs_(ConvAttrs::parse(a, ConvFamily::kPool)),  // attributes checked at session creation
        include_pad_(a.get_int("count_include_pad", 0) != 0),
        storage_order_(a.get_int("storage_order", 0)) {
    // p = 0 sums |x|^0 = 1 and takes the 0th root (onnxruntime: inf; numpy: a division by zero): refused
    // by both kernels. A negative p runs on numpy (the registration's when=), as onnxruntime computes it.
    if (is_lp_ && p_ == 0) kernel_fail(name_ + ": attribute p must not be 0 (|x|^0 has no 0th root; use p >= 1)");
    if (is_lp_ && !(p_ > 0)) kernel_fail(name_ + ": the native kernel computes p > 0");
  }

  void infer(const std::vector<const Tensor*>& in, std::vector<OutSpec>& out) const override {
    Geometry g = geometry(in);
    out.resize(is_max_ ? 2 : 1);
    out[0] = {kFloat, g.out_shape};
    if (is_max_) out[1] = {kInt64, g.out_shape};
  }

  void compute(const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) const override {
    const Geometry g = geometry(in);
    const Tensor& X = *in[0];
    const int64_t planes = X.shape[0] * X.shape[1];
    const int64_t nsp = g.nsp;
    int64_t in_plane = 1, out_plane = 1;
    double ktotal = 1;  // cost estimate only (a kernel_shape may be huge: its valid taps are not)
    for (int64_t i = 0; i < nsp; ++i) {
      in_plane *= g.in_sp[i];
      out_plane *= g.out_sp[i];
      ktotal *= static_cast<double>(std::min(g.kernel[i], g.in_sp[i] + 1));
    }
    if (planes == 0 || out_plane == 0) return;
    // Per dim and output coordinate: valid taps [klo, khi) and the average's divisor factor, in
    // closed form (a kernel_shape of 2^40 with a huge stride has few outputs and few valid taps;
    // every coordinate start + k * d lies in [-pad_begin, in + pad_end), see conv_geometry.h).
    // first(A): the first tap k >= 0 with start + k * d >= A (K if none).
    std::vector<std::vector<int64_t>> klo(nsp), khi(nsp), cnt(nsp);
    for (int64_t i = 0; i < nsp; ++i) {
      const int64_t K = g.kernel[i], s = g.strides[i], d = g.dil[i], n = g.in_sp[i];
      for (int64_t o = 0; o < g.out_sp[i]; ++o) {
        const int64_t start = o * s - g.pb[i];
        auto first = [&](int64_t A) { return start >= A ? 0 : std::min(K, ceil_div(A - start, d)); };
        const int64_t lo = first(0), hi = std::max(lo, first(n));
        const int64_t c = include_pad_ ? first(n + g.pe[i]) - first(-g.pb[i]) : hi - lo;
        klo[i].push_back(lo);
        khi[i].push_back(hi);
        cnt[i].push_back(c);
      }
    }
    // Index multipliers of the Indices output (row- or column-major over the spatial dims).
    std::vector<int64_t> imul(nsp, 1), inrow(nsp, 1);
    for (int64_t i = nsp - 1; i > 0; --i) inrow[i - 1] = inrow[i] * g.in_sp[i];
    if (storage_order_ == 1) {
      for (int64_t i = 1; i < nsp; ++i) imul[i] = imul[i - 1] * g.in_sp[i - 1];
    } else {
      imul = inrow;
    }
    const int64_t last = nsp - 1;
    const int64_t OW = g.out_sp[last], K = g.kernel[last], S = g.strides[last],
                  D = g.dil[last], P = g.pb[last];
    // Columns whose whole window is inside the input: [ca, cb).
    int64_t ca = OW, cb = OW;
    for (int64_t o = 0; o < OW; ++o)
      if (klo[last][o] == 0 && khi[last][o] == K) {
        if (ca == OW) ca = o;
        cb = o + 1;
      }
    if (ca == OW) ca = cb = 0;
    const int64_t rows = out_plane / OW;
    const float* x = X.ptr<float>();
    int64_t* yi = is_max_ && out.size() > 1 && out[1] ? out[1]->ptr<int64_t>() : nullptr;
    std::vector<float> scratch;  // Y not read (MaxPool with only Indices wanted): compute it aside
    if ((out.empty() || !out[0]) && !yi) return;
    if (!out[0]) scratch.resize(static_cast<size_t>(planes * out_plane));
    float* y = out[0] ? out[0]->ptr<float>() : scratch.data();
    const float ninf = -std::numeric_limits<float>::infinity();

    // 2-D MaxPool without Indices on a vector tier: per output row, the max of its input rows into a
    // row buffer (contiguous), then the max along the windows of that row. The same values as the
    // loop below (max is exact); among equal values or NaNs another one may be picked (+0 / -0, NaN
    // payloads), which only Indices would show.
    const MaxPoolTier* fast = is_max_ && !yi && nsp == 2 ? max_pool_tier() : nullptr;
    if (fast) {
      const int64_t W = g.in_sp[1];
      parallel_for(planes * rows, static_cast<double>(W * g.kernel[0] + OW * K) + 20.0, [&](int64_t tb, int64_t te) {
        std::vector<float> buf(static_cast<size_t>(W + kMaxPoolPad), 0.f);
        float* t = buf.data();
        for (int64_t r = tb; r < te; ++r) {
          const int64_t plane = r / rows, oh = r % rows;
          float* yr = y + plane * out_plane + oh * OW;
          const int64_t lo = klo[0][oh], hi = khi[0][oh];
          if (lo >= hi) {  // the window's rows are all padding
            std::fill(yr, yr + OW, ninf);
            continue;
          }
          const float* xp = x + plane * in_plane;
          const int64_t top = oh * g.strides[0] - g.pb[0];  // input row of tap 0 (may be a pad row)
          std::copy(xp + (top + lo * g.dil[0]) * W, xp + (top + lo * g.dil[0]) * W + W, t);
          for (int64_t kh = lo + 1; kh < hi; ++kh) fast->vmax(t, xp + (top + kh * g.dil[0]) * W, W);
          for (int64_t o = 0; o < OW; ++o) {
            if (o == ca && cb > ca) {
              fast->hmax(t + ca * S - P, yr + ca, cb - ca, K, S, D);
              o = cb - 1;
              continue;
            }
            float m = ninf;
            for (int64_t k = klo[last][o]; k < khi[last][o]; ++k) {
              const float v = t[o * S - P + k * D];
              m = takes(v, m) ? v : m;
            }
            yr[o] = m;
          }
        }
      });
      return;
    }

    parallel_for(planes * rows, static_cast<double>(OW * ktotal) + 20.0, [&](int64_t tb, int64_t te) {
      std::vector<int64_t> oc(nsp, 0), kc(nsp, 0);
      for (int64_t t = tb; t < te; ++t) {
        const int64_t plane = t / rows, row = t % rows;
        for (int64_t i = last - 1, r = row; i >= 0; --i) {
          oc[i] = r % g.out_sp[i];
          r /= g.out_sp[i];
        }
        float* yr = y + plane * out_plane + row * OW;
        int64_t* ir = yi ? yi + plane * out_plane + row * OW : nullptr;
        const float* xp = x + plane * in_plane;
        const int64_t ibase = plane * in_plane;
        // Leading-dim taps: empty ranges leave only the padding (max: -inf, average: 0 / count).
        bool any = true;
        int64_t div_lead = 1, first_lead = 0;
        for (int64_t i = 0; i < last; ++i) {
          kc[i] = klo[i][oc[i]];
          any = any && kc[i] < khi[i][oc[i]];
          div_lead *= cnt[i][oc[i]];
          first_lead = wrap_madd(first_lead, oc[i] * g.strides[i] - g.pb[i], imul[i]);
        }
        if (is_max_) {
          for (int64_t o = 0; o < OW; ++o) yr[o] = ninf;
          if (ir)
            for (int64_t o = 0; o < OW; ++o) ir[o] = wrap_madd(wrap_madd(ibase, first_lead, 1), o * S - P, imul[last]);
        } else {
          for (int64_t o = 0; o < OW; ++o) yr[o] = 0.f;
        }
        while (any) {
          int64_t off = 0, lin = ibase;
          for (int64_t i = 0; i < last; ++i) {
            const int64_t c = oc[i] * g.strides[i] - g.pb[i] + kc[i] * g.dil[i];
            off += c * inrow[i];
            lin += c * imul[i];
          }
          const float* xr = xp + off;
          if (is_lp_) {
            if (p_ == 2.f) {
              row_sum(xr, yr, OW, K, S, D, P, ca, cb, klo[last], khi[last], [](float v) { return v * v; });
            } else if (p_ == 1.f) {
              row_sum(xr, yr, OW, K, S, D, P, ca, cb, klo[last], khi[last], [](float v) { return std::fabs(v); });
            } else {
              const float p = p_;
              row_sum(xr, yr, OW, K, S, D, P, ca, cb, klo[last], khi[last],
                      [p](float v) { return std::pow(std::fabs(v), p); });
            }
          } else if (!is_max_) {
            row_sum(xr, yr, OW, K, S, D, P, ca, cb, klo[last], khi[last], [](float v) { return v; });
          } else if (ir) {
            row_argmax(xr, yr, ir, lin, imul[last], OW, K, S, D, P, ca, cb, klo[last], khi[last]);
          } else {
            row_max(xr, yr, OW, K, S, D, P, ca, cb, klo[last], khi[last]);
          }
          // next leading tap, row-major
          any = false;
          for (int64_t i = last - 1; i >= 0; --i) {
            if (++kc[i] < khi[i][oc[i]]) {
              any = true;
              break;
            }
            kc[i] = klo[i][oc[i]];
          }
        }
        if (is_lp_) {
          if (p_ == 2.f) {
            for (int64_t o = 0; o < OW; ++o) yr[o] = std::sqrt(yr[o]);
          } else if (p_ != 1.f) {
            const float inv_p = static_cast<float>(1.0 / p_);
            for (int64_t o = 0; o < OW; ++o) yr[o] = std::pow(yr[o], inv_p);
          }
        } else if (!is_max_) {
          for (int64_t o = 0; o < OW; ++o) yr[o] = yr[o] / static_cast<float>(div_lead * cnt[last][o]);
        }
      }
    });
  }

 private:
  static bool takes(float v, float m) { return (v > m) | ((v != v) & (m == m)); }

  // yr[o] += f(x) over the row's valid taps of output column o (f: identity, |x|^p).
  template <typename F>
  static void row_sum(const float* xr, float* yr, int64_t OW, int64_t K, int64_t S, int64_t D, int64_t P,
                      int64_t ca, int64_t cb, const std::vector<int64_t>& lo, const std::vector<int64_t>& hi, F f) {
    for (int64_t o = 0; o < ca; ++o)
      for (int64_t k = lo[o]; k < hi[o]; ++k) yr[o] += f(xr[o * S - P + k * D]);
    // columns [ca, cb) see every tap; none (ca == cb) when the kernel is wider than the row
    for (int64_t k = 0; cb > ca && k < K; ++k) {
      const float* src = xr + ca * S - P + k * D;
      float* dst = yr + ca;
      const int64_t n = cb - ca;
      if (S == 1) {
        for (int64_t j = 0; j < n; ++j) dst[j] += f(src[j]);
      } else {
        for (int64_t j = 0; j < n; ++j) dst[j] += f(src[j * S]);
      }
    }
    for (int64_t o = cb; o < OW; ++o)
      for (int64_t k = lo[o]; k < hi[o]; ++k) yr[o] += f(xr[o * S - P + k * D]);
  }

  static void row_max(const float* xr, float* yr, int64_t OW, int64_t K, int64_t S, int64_t D, int64_t P, int64_t ca,
                      int64_t cb, const std::vector<int64_t>& lo, const std::vector<int64_t>& hi) {
    for (int64_t o = 0; o < ca; ++o)
      for (int64_t k = lo[o]; k < hi[o]; ++k) {
        const float v = xr[o * S - P + k * D];
        yr[o] = takes(v, yr[o]) ? v : yr[o];
      }
    // columns [ca, cb) see every tap; none (ca == cb) when the kernel is wider than the row
    for (int64_t k = 0; cb > ca && k < K; ++k) {
      const float* src = xr + ca * S - P + k * D;
      float* dst = yr + ca;
      const int64_t n = cb - ca;
      if (S == 1) {
        for (int64_t j = 0; j < n; ++j) dst[j] = takes(src[j], dst[j]) ? src[j] : dst[j];
      } else {
        for (int64_t j = 0; j < n; ++j) dst[j] = takes(src[j * S], dst[j]) ? src[j * S] : dst[j];
      }
    }
    for (int64_t o = cb; o < OW; ++o)
      for (int64_t k = lo[o]; k < hi[o]; ++k) {
        const float v = xr[o * S - P + k * D];
        yr[o] = takes(v, yr[o]) ? v : yr[o];
      }
  }

  // Max with the flat index (lin + column * mul) of the first maximum / first NaN.
  static void row_argmax(const float* xr, float* yr, int64_t* ir, int64_t lin, int64_t mul, int64_t OW, int64_t K,
                         int64_t S, int64_t D, int64_t P, int64_t ca, int64_t cb, const std::vector<int64_t>& lo,
                         const std::vector<int64_t>& hi) {
    auto one = [&](int64_t o) {
      for (int64_t k = lo[o]; k < hi[o]; ++k) {
        const int64_t c = o * S - P + k * D;
        const float v = xr[c];
        if (takes(v, yr[o])) {
          yr[o] = v;
          ir[o] = lin + c * mul;
        }
      }
    };
    for (int64_t o = 0; o < ca; ++o) one(o);
    // columns [ca, cb) see every tap; none (ca == cb) when the kernel is wider than the row
    for (int64_t k = 0; cb > ca && k < K; ++k) {
      const int64_t c0 = ca * S - P + k * D;
      const float* src = xr + c0;
      for (int64_t j = 0, o = ca; o < cb; ++j, ++o) {
        const float v = src[j * S];
        const bool tk = takes(v, yr[o]);
        yr[o] = tk ? v : yr[o];
        ir[o] = tk ? lin + (c0 + j * S) * mul : ir[o];
      }
    }
    for (int64_t o = cb; o < OW; ++o) one(o);
  }

  Geometry geometry(const std::vector<const Tensor*>& in) const {
    if (in.empty() || !in[0]) kernel_fail(name_ + " needs an input");
    const Tensor& X = *in[0];
    expect_dtype(X, kFloat, (name_ + " input").c_str());
    Geometry g;
    const int64_t nsp = static_cast<int64_t>(attrs_.kernel_shape.size());
    if (X.rank() != nsp + 2)
      kernel_fail(name_ + ": kernel_shape " + list_str(attrs_.kernel_shape) + " does not match input of shape " +
                  shape_str(X.shape) + " (expected rank " + std::to_string(nsp + 2) + ")");
    g.nsp = nsp;
    // Ranks, extents in checked int64, the kernel inside the padded input (conv_geometry.h).
    SpatialGeometry sg = forward_geometry(attrs_, Shape(X.shape.begin() + 2, X.shape.end()), attrs_.kernel_shape);
    g.kernel = std::move(sg.kernel);
    g.strides = std::move(sg.strides);
    g.dil = std::move(sg.dil);
    g.in_sp = std::move(sg.in);
    g.pb = std::move(sg.pad_begin);
    g.pe = std::move(sg.pad_end);
    g.out_sp = std::move(sg.out);
    g.out_shape = {X.shape[0], X.shape[1]};
    g.out_shape.insert(g.out_shape.end(), g.out_sp.begin(), g.out_sp.end());
    return g;
  }

  std::string name_;
  bool is_max_, is_lp_;
  float p_;
  ConvAttrs attrs_;
  bool include_pad_;
  int64_t storage_order_;
};

class GlobalPoolKernel : public Kernel {
 public:
  GlobalPoolKernel(const KernelArgs& a, ReduceKind kind) : name_(a.op_type + " '" + a.node_name + "'"), kind_(kind) {}

  void infer(const std::vector<const Tensor*>& in, std::vector<OutSpec>& out) const override {
    check(in);
    out.resize(1);
    out[0].dtype = kFloat;
    out[0].shape = in[0]->shape;
    for (size_t i = 2; i < out[0].shape.size(); ++i) out[0].shape[i] = 1;
  }

  void compute(const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) const override {
    const Tensor& X = *in[0];
    std::vector<bool> red(X.shape.size(), false);
    for (size_t i = 2; i < red.size(); ++i) red[i] = true;
    reduce_float(kind_, X.ptr<float>(), X.shape, red, out[0]->ptr<float>());
  }

 private:
  void check(const std::vector<const Tensor*>& in) const {
    if (in.empty() || !in[0]) kernel_fail(name_ + " needs an input");
    expect_dtype(*in[0], kFloat, (name_ + " input").c_str());
    if (in[0]->rank() < 2)
      kernel_fail(name_ + ": input of shape " + shape_str(in[0]->shape) + " has no channel dimension (N x C x ...)");
  }
  std::string name_;
  ReduceKind kind_;
};

}  // namespace

ONNXFAST_KERNELS(pooling) {
  // float32; MaxPool computes Indices too when the node asks for them
  kernel("MaxPool").types({kFloat}).make([](const KernelArgs& a) { return std::make_unique<PoolKernel>(a, PoolKind::kMax); });
  kernel("AveragePool").types({kFloat}).make([](const KernelArgs& a) {
    return std::make_unique<PoolKernel>(a, PoolKind::kAverage);
  });
  // p < 0 runs on numpy; p = 0 is refused by both kernels at session creation
  kernel("LpPool").types({kFloat}).when([](const KernelArgs& a) { return a.get_float("p", 2.0) >= 0; })
      .make([](const KernelArgs& a) { return std::make_unique<PoolKernel>(a, PoolKind::kLp); });
  // the reduction engine's L1 / L2; other p on numpy
  auto p_is_1_or_2 = [](const KernelArgs& a) {
    const double p = a.get_float("p", 2.0);
    return p == 1.0 || p == 2.0;
  };
  kernel("GlobalLpPool").types({kFloat}).when(p_is_1_or_2).make([](const KernelArgs& a) {
    const double p = a.get_float("p", 2.0);
    if (p != 1.0 && p != 2.0) kernel_fail("GlobalLpPool '" + a.node_name + "': the native kernel computes p = 1 or 2");
    return std::make_unique<GlobalPoolKernel>(a, p == 1.0 ? ReduceKind::kL1 : ReduceKind::kL2);
  });
  kernel("GlobalAveragePool").types({kFloat}).make([](const KernelArgs& a) {
    return std::make_unique<GlobalPoolKernel>(a, ReduceKind::kMean);
  });
  kernel("GlobalMaxPool").types({kFloat}).make([](const KernelArgs& a) {
    return std::make_unique<GlobalPoolKernel>(a, ReduceKind::kMax);
  });
}

}  // namespace onnxfast
