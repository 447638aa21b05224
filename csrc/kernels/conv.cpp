// Convolution (1-D/2-D/3-D, strides, dilations, pads, auto_pad, groups, bias), float32.
// 2-D convolutions on AVX2/AVX-512 run directly over phase planes (conv_direct.h); the rest as
// im2col + SGEMM (a 1x1/stride-1/no-pad convolution skips im2col); depthwise has its own loops.
// Attributes are checked at session creation and the geometry computed in checked int64 by
// conv_geometry.h; scratch larger than a GEMM block goes through the allocation guard and is sized
// from the output (a pathological dilation or pad leaves the direct path: direct_fits).
#include <algorithm>
#include <cstdlib>
#include <limits>
#include <memory>
#include <mutex>
#include <cstring>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "../cpu/cpu.h"
#include "conv_depthwise.h"
#include "conv_direct.h"
#include "conv_geometry.h"
#include "epilogue.h"
#include "gemm.h"
#include "kernel.h"
#include "vecmath.h"
#include "../threadpool/threadpool.h"

namespace onnxfast {
namespace {

struct ConvGeom {
  int64_t N, C, M, group;
  Shape in_sp, k_sp, out_sp, strides, dil, pad_begin, pad_end;
};

class ConvKernel : public Kernel {
 public:
  explicit ConvKernel(const KernelArgs& a)
      : name_(a.op_type + " '" + a.node_name + "'"),
        act_(Activation::from_args(a, a.op_type + " '" + a.node_name + "'")),
        act_in_store_(act_.to_micro(micro_act_)),
        attrs_(ConvAttrs::parse(a, ConvFamily::kConv)),  // attributes checked here, at session creation
        group_(attrs_.group) {
    if (a.const_inputs.size() > 1 && a.const_inputs[1] && a.allow_prepack) {
      const Tensor& w = *a.const_inputs[1];
      if (w.dtype == kFloat && w.rank() >= 3 && w.shape[0] % group_ == 0 && w.shape[0] > 0) {
        packed_shape_ = w.shape;
        // Which path runs depends only on attributes and the weight's shape: pack for that one.
        // (A strided direct one may still take im2col on a large input: see direct_declined.)
        if (direct_applies(w.shape)) direct_w_ = pack_direct(w.ptr<float>(), w.shape);
        else std::call_once(packed_once_, [&] { packed_w_ = pack_weights(w); });
      }
    }
  }
  std::string describe() const override {
    std::string d = act_.kind == Activation::kNone ? "native" : "native:fused";
    return packed_shape_.empty() ? d : d + ":prepacked";
  }

  ConvGeom geometry(const Tensor& X, const Tensor& W) const {
    if (X.rank() < 3) kernel_fail(name_ + ": input X must be N x C x D1 x ..., got shape " + shape_str(X.shape));
    if (W.rank() != X.rank())
      kernel_fail(name_ + ": weight rank " + std::to_string(W.rank()) + " differs from input rank " +
                  std::to_string(X.rank()));
    ConvGeom g;
    g.N = X.shape[0];
    g.C = X.shape[1];
    g.M = W.shape[0];
    g.group = group_;
    if (g.C != checked_mul(W.shape[1], group_, name_, "the input channels (W.shape[1] * group)"))
      kernel_fail(name_ + ": input has " + std::to_string(g.C) + " channels but weight " + shape_str(W.shape) +
                  " with group=" + std::to_string(group_) + " expects " + std::to_string(W.shape[1] * group_));
    if (g.M % group_ != 0)
      kernel_fail(name_ + ": output channels " + std::to_string(g.M) + " not divisible by group " +
                  std::to_string(group_));
    // Ranks, kernel_shape against the weight, and every extent in checked int64 (conv_geometry.h).
    SpatialGeometry sg = forward_geometry(attrs_, Shape(X.shape.begin() + 2, X.shape.end()),
                                          Shape(W.shape.begin() + 2, W.shape.end()));
    take_spatial(g, sg);
    g.pad_end = std::move(sg.pad_end);
    return g;
  }

  void infer(const std::vector<const Tensor*>& in, std::vector<OutSpec>& out) const override {
    expect_conv_inputs(in, name_);
    ConvGeom g = geometry(*in[0], *in[1]);
    expect_conv_bias(in, g.M, name_);
    out.resize(1);
    out[0].dtype = kFloat;
    out[0].shape = {g.N, g.M};
    for (int64_t d : g.out_sp) out[0].shape.push_back(d);
    if (in.size() > 3 && in[3]) {
      expect_dtype(*in[3], kFloat, (name_ + " residual input").c_str());
      if (in[3]->shape != out[0].shape)
        kernel_fail(name_ + ": residual input of shape " + shape_str(in[3]->shape) + " differs from the output " +
                    shape_str(out[0].shape));
    }
  }

  void compute(const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) const override {
    const Tensor& X = *in[0];
    const Tensor& W = *in[1];
    const float* bias = (in.size() > 2 && in[2]) ? in[2]->ptr<float>() : nullptr;
    const float* residual = (in.size() > 3 && in[3]) ? in[3]->ptr<float>() : nullptr;
    Tensor& Y = *out[0];
    if (Y.numel() == 0) return;
    ConvGeom g = geometry(X, W);
    const int64_t Cg = g.C / g.group, Mg = g.M / g.group;
    if (g.in_sp.size() == 2 && Cg == 1 && Mg == 1 && g.group > 1) {
      depthwise(g, X.ptr<float>(), W.ptr<float>(), bias, residual, Y.ptr<float>());
      return;
    }
    if (pointwise_small(g)) {
      pointwise_transposed(g, X.ptr<float>(), W, bias, residual, Y.ptr<float>());
      return;
    }
    if (direct_applies(W.shape) && direct_fits(g)) {
      const Planes pl = plan_planes(g);
      if (!direct_declined(g, pl)) {
        direct(g, pl, X.ptr<float>(), W, bias, residual, Y.ptr<float>());
        return;
      }
    }
    std::vector<PackedA> fresh;
    const std::vector<PackedA>* wp = &packed_w_;
    if (!packed_shape_.empty() && packed_shape_ == W.shape) {
      // A constant weight: packed at session creation, or on first use when it was packed for the
      // direct path and this input was direct_declined (most strided convolutions never need it).
      std::call_once(packed_once_, [&] { packed_w_ = pack_weights(W); });
    } else {
      fresh = pack_weights(W);
      wp = &fresh;
    }
    const int64_t out_size = shape_numel(g.out_sp), in_size = shape_numel(g.in_sp);
    const int64_t kdim = Cg * shape_numel(g.k_sp);
    // Tasks: (image, group, block of output channels, chunk of output positions). Each task packs
    // its columns of the im2col matrix one K block at a time straight into GEMM panels (cache-sized,
    // no full im2col buffer), multiplies by the pre-packed weights, then runs the epilogue on the
    // tile. The grid is the GEMM driver's (choose_grid): one thread takes the fewest chunks (of up
    // to kChunkMax positions, equal sizes: 196 positions as one chunk, not 64 + 64 + 64 + 4, each
    // of which streamed all the weights); with threads, a chunk costs its column packing
    // (gathered taps cost more than the 1x1 row copies) and a channel block its weight streaming.
    ThreadPool* pool = current_pool();
    const int64_t mr = (*wp)[0].mr;
    const bool taps = shape_numel(g.k_sp) > 1;
    const TaskGrid grid =
        choose_grid(GridProblem{Mg, out_size, kdim, mr, kGemmPanel, pool ? pool->num_threads() : 1, kChunkMax,
                                g.N * g.group, kStreamWeightCost, taps ? kGatherColumnCost : kCopyColumnCost});
    const int64_t mblocks = grid.mb, nchunks = grid.nb, mblock = grid.mc, chunk = grid.nc;
    const float* x = X.ptr<float>();
    float* y = Y.ptr<float>();
    const double cost = 2.0 * std::min(Mg, mblock) * chunk * kdim / 48.0;
    const bool use_table = table_applies(g);
    parallel_for(g.N * g.group * nchunks * mblocks, cost, [&](int64_t tb, int64_t te) {
      // GEMM panels are read with aligned vector loads: 64-byte aligned buffer.
      ScratchBlock buf(static_cast<size_t>(kGemmKC * ((chunk + 15) / 16) * 16) * sizeof(float));
      if (!buf.data) fail(ErrorKind::kAllocation, name_ + ": out of memory for the column buffer");
      for (int64_t t = tb; t < te; ++t) {
        const int64_t mb = t % mblocks, rest = t / mblocks;
        const int64_t ci = rest % nchunks, gr = (rest / nchunks) % g.group, n = rest / (nchunks * g.group);
        const int64_t j0 = ci * chunk, nc = std::min(chunk, out_size - j0);
        const int64_t m0 = mb * mblock, m1 = std::min(Mg, m0 + mblock);
        const float* xg = x + (n * g.C + gr * Cg) * in_size;
        float* yt = y + (n * g.M + gr * Mg) * out_size + j0;
        if (kdim == 0)
          for (int64_t m = m0; m < m1; ++m) std::fill(yt + m * out_size, yt + m * out_size + nc, 0.f);
        const float* res = residual ? residual + (n * g.M + gr * Mg) * out_size + j0 : nullptr;
        // Bias, residual and a simple activation are applied by the micro-kernel as it stores the
        // last K block (the tile is written once); other activations run as a pass on the tile.
        MicroEpilogue mep = micro_act_;
        const bool fused = kdim > 0 && act_in_store_;
        mep.row_bias = bias ? bias + gr * Mg + m0 : nullptr;
        mep.residual = res ? res + m0 * out_size : nullptr;
        mep.ldr = out_size;
        thread_local ColumnTable table;
        if (use_table) build_table(g, j0, nc, table);  // once per task, for all K blocks
        for (int64_t k0 = 0; k0 < kdim; k0 += kGemmKC) {
          const int64_t kc = std::min(kGemmKC, kdim - k0);
          pack_columns(g, xg, k0, kc, j0, nc, use_table ? &table : nullptr, buf.floats());
          sgemm_kblock((*wp)[gr], m0, m1, k0, kc, buf.floats(), nc, yt + m0 * out_size, out_size, k0 == 0 ? 0.f : 1.f,
                       fused && k0 + kc >= kdim ? &mep : nullptr);
        }
        if (!fused)
          for (int64_t m = m0; m < m1; ++m)
            epilogue(yt + m * out_size, nc, bias ? bias[gr * Mg + m] : 0.f, res ? res + m * out_size : nullptr);
      }
    });
  }

 private:
  // row = act(src + b + residual_row), one output channel (src may be row).
  void epilogue(float* row, int64_t n, float b, const float* res) const { act_.apply(row, row, n, b, res); }
  void epilogue(const float* src, float* row, int64_t n, float b, const float* res) const {
    act_.apply(src, row, n, b, res);
  }

  std::vector<PackedA> pack_weights(const Tensor& W) const {
    const int64_t M = W.shape[0], per = shape_numel(Shape(W.shape.begin() + 1, W.shape.end()));
    const int64_t Mg = M / group_;
    std::vector<PackedA> out;
    for (int64_t gr = 0; gr < group_; ++gr) out.push_back(sgemm_pack_a(Mg, per, W.ptr<float>() + gr * Mg * per, per));
    return out;
  }

  // Rows [k0, k0+kc) x output positions [j0, j0+nc) of one image's and group's im2col matrix,
  // written in packed GEMM panel order (see packed_b_index).
  // 2-D convolutions: per kernel tap, the source offset of every output position of a chunk
  // (-1: padding), and per 16-column panel the offset its run starts at when all 16 sources are
  // inside the image and spaced by the horizontal stride (-1 otherwise: gathered one by one).
  struct ColumnTable {
    std::vector<int32_t> offsets, runs;
    std::vector<int64_t> ih, iw;  // per position: tap (0,0)'s input row and column (may lie far outside)
  };

  // The table holds int32 offsets into one channel: 2-D convolutions whose channel has at most
  // INT32_MAX elements. Coordinates are formed in int64 (a stride or pad of 2^32 must not wrap
  // into the image); only offsets inside the channel are narrowed.
  static bool table_applies(const ConvGeom& g) {
    return g.in_sp.size() == 2 && shape_numel(g.in_sp) <= std::numeric_limits<int32_t>::max();
  }

  static void build_table(const ConvGeom& g, int64_t j0, int64_t nc, ColumnTable& t) {
    const int64_t k_size = shape_numel(g.k_sp), in_size = shape_numel(g.in_sp);
    const int64_t H = g.in_sp[0], Wd = g.in_sp[1];
    const int64_t OW = g.out_sp[1], KW = g.k_sp[1], sh = g.strides[0], sw = g.strides[1];
    const int64_t npanels = (nc + 15) / 16;
    t.offsets.resize(static_cast<size_t>(k_size * nc));
    t.runs.assign(static_cast<size_t>(k_size * npanels), -1);
    t.ih.resize(static_cast<size_t>(nc));
    t.iw.resize(static_cast<size_t>(nc));
    int64_t oh = j0 / OW, ow = j0 % OW;  // walked forward once: no divisions per position
    for (int64_t j = 0; j < nc; ++j) {
      t.ih[j] = oh * sh - g.pad_begin[0];  // in [-pad_begin, H + pad_end): no overflow (conv_geometry.h)
      t.iw[j] = ow * sw - g.pad_begin[1];
      if (++ow == OW) {
        ow = 0;
        ++oh;
      }
    }
    const int64_t* ih = t.ih.data();
    const int64_t* iw = t.iw.data();
    for (int64_t tap = 0; tap < k_size; ++tap) {
      const int64_t dh = (tap / KW) * g.dil[0], dw = (tap % KW) * g.dil[1];
      int32_t* row = t.offsets.data() + tap * nc;
      for (int64_t j = 0; j < nc; ++j) {  // branch-free: vectorizes
        const int64_t h = ih[j] + dh, w = iw[j] + dw;
        const bool in = (h >= 0) & (h < H) & (w >= 0) & (w < Wd);
        row[j] = in ? static_cast<int32_t>(h * Wd + w) : -1;
      }
      // A full panel is a run when its 16 sources are sw apart: always so within one output row
      // whose end sources are inside the image; across rows when the offsets happen to line up
      // (1x1 stride-1 unpadded convolutions, whose positions are the input's, in order).
      for (int64_t pj = 0; pj + 1 <= nc / 16; ++pj) {
        const int64_t j = pj * 16;
        const int32_t r0 = row[j];
        if (r0 < 0) continue;
        bool run = ih[j] == ih[j + 15] && row[j + 15] >= 0;
        if (!run && sw < in_size) {  // (l * sw stays below 16 * in_size)
          run = true;
          for (int64_t l = 1; l < 16; ++l) run &= row[j + l] == r0 + l * sw;
        }
        if (run) t.runs[tap * npanels + pj] = r0;
      }
    }
  }

  // Columns [j0, j0+nc) of rows [k0, k0+kc) of the im2col matrix, written as GEMM panels (through
  // the table when there is one: see table_applies).
  static void pack_columns(const ConvGeom& g, const float* x, int64_t k0, int64_t kc, int64_t j0, int64_t nc,
                           const ColumnTable* table, float* buf) {
    const size_t sd = g.in_sp.size();
    const int64_t k_size = shape_numel(g.k_sp), in_size = shape_numel(g.in_sp);
    if (table) {
      const int64_t npanels = (nc + 15) / 16, sw = g.strides[1];
      for (int64_t kk = 0; kk < kc; ++kk) {
        const int64_t k = k0 + kk, c = k / k_size, tap = k % k_size;
        const float* xc = x + c * in_size;
        const int32_t* idx = table->offsets.data() + tap * nc;
        const int32_t* runs = table->runs.data() + tap * npanels;
        for (int64_t pj = 0; pj < npanels; ++pj) {
          float* dst = buf + pj * 16 * kc + kk * 16;
          if (runs[pj] >= 0) {
            const float* src = xc + runs[pj];
            if (sw == 1) std::memcpy(dst, src, 16 * sizeof(float));
            else if (sw == 2)
              for (int l = 0; l < 16; ++l) dst[l] = src[2 * l];
            else
              for (int l = 0; l < 16; ++l) dst[l] = src[l * sw];
            continue;
          }
          const int64_t j = pj * 16, lanes = std::min<int64_t>(16, nc - j);
          for (int64_t l = 0; l < lanes; ++l) {
            const int32_t o = idx[j + l];
            dst[l] = o >= 0 ? xc[o] : 0.f;
          }
        }
      }
      return;
    }
    std::vector<int64_t> kidx(sd);
    for (int64_t kk = 0; kk < kc; ++kk) {
      const int64_t k = k0 + kk, c = k / k_size;
      int64_t rem = k % k_size;
      for (size_t d = sd; d-- > 0;) {
        kidx[d] = rem % g.k_sp[d];
        rem /= g.k_sp[d];
      }
      const float* xc = x + c * in_size;
      for (int64_t j = 0; j < nc; ++j) {
        int64_t r2 = j0 + j, off = 0, stride = 1;
        bool inside = true;
        for (size_t d = sd; d-- > 0;) {
          const int64_t o = r2 % g.out_sp[d];
          r2 /= g.out_sp[d];
          const int64_t i = o * g.strides[d] - g.pad_begin[d] + kidx[d] * g.dil[d];  // fits int64
          if (i < 0 || i >= g.in_sp[d]) {
            inside = false;
            break;
          }
          off += i * stride;
          stride *= g.in_sp[d];
        }
        buf[packed_b_index(j, kk, kc)] = inside ? xc[off] : 0.f;
      }
    }
  }

  // 1x1, unpadded, one group, with an output map of under 64 positions (7x7: 49): GEMM panels along
  // the positions would waste a quarter of every vector, so compute Y^T (positions x M) =
  // X^T (positions x C) * W^T (C x M), vectorized along the output channels, then transpose into Y
  // with the epilogue. Strided (the 1x1 stride-2 projections of ResNet) reads a subsampled copy of X.
  bool pointwise_small(const ConvGeom& g) const {
    if (g.group != 1 || shape_numel(g.out_sp) >= 64 || g.M < 64) return false;
    for (size_t d = 0; d < g.k_sp.size(); ++d)
      if (g.k_sp[d] != 1 || g.pad_begin[d] != 0 || g.pad_end[d] != 0) return false;
    return true;
  }

  // x[n][c][out position * strides] into dst[n][c][out position] (1x1 unpadded convolutions).
  static void subsample(const ConvGeom& g, const float* x, float* dst) {
    const size_t sd = g.in_sp.size();
    const int64_t P = shape_numel(g.out_sp), in_size = shape_numel(g.in_sp);
    std::vector<int64_t> offs(static_cast<size_t>(P));
    for (int64_t q = 0; q < P; ++q) {
      int64_t rem = q, off = 0, stride = 1;
      for (size_t d = sd; d-- > 0;) {
        off += (rem % g.out_sp[d]) * g.strides[d] * stride;
        rem /= g.out_sp[d];
        stride *= g.in_sp[d];
      }
      offs[q] = off;
    }
    parallel_for(g.N * g.C, static_cast<double>(P), [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t)
        for (int64_t q = 0; q < P; ++q) dst[t * P + q] = x[t * in_size + offs[q]];
    });
  }

  void pointwise_transposed(const ConvGeom& g, const float* x, const Tensor& W, const float* bias,
                            const float* residual, float* y) const {
    const int64_t P = shape_numel(g.out_sp), C = g.C, M = g.M;
    std::shared_ptr<Storage> sub;
    if (P != shape_numel(g.in_sp)) {  // strided: the positions read, packed together (sized like the output)
      sub = guarded_scratch(g.N * C * P, sizeof(float), name_, "the subsampled input");
      subsample(g, x, static_cast<float*>(sub->data));
      x = static_cast<const float*>(sub->data);
    }
    std::shared_ptr<PackedB> fresh;
    const PackedB* wt;
    if (!packed_shape_.empty() && packed_shape_ == W.shape) {  // a constant weight: W^T packed once
      std::call_once(wt_once_, [&] { packed_wt_ = std::make_shared<PackedB>(sgemm_pack_b(true, C, M, W.ptr<float>(), C)); });
      wt = packed_wt_.get();
    } else {
      fresh = std::make_shared<PackedB>(sgemm_pack_b(true, C, M, W.ptr<float>(), C));
      wt = fresh.get();
    }
    const std::shared_ptr<Storage> ytb = guarded_scratch(P * M, sizeof(float), name_, "the transposed output");
    float* yt = static_cast<float*>(ytb->data);  // Y^T of one image
    for (int64_t n = 0; n < g.N; ++n) {
      sgemm_packed(true, P, M, C, 1.f, x + n * C * P, P, *wt, 0.f, yt, M);
      float* yn = y + n * M * P;
      const float* rn = residual ? residual + n * M * P : nullptr;
      parallel_for(M, 4.0 * P, [&](int64_t b, int64_t e) {
        transpose_f32(yt + b, M, P, e - b, yn + b * P, P);
        for (int64_t m = b; m < e; ++m) epilogue(yn + m * P, P, bias ? bias[m] : 0.f, rn ? rn + m * P : nullptr);
      });
    }
  }

  // ---- Direct 2-D convolution over phase planes (conv_direct.h) ----
  // The zero-padded input is split by stride phase: plane (a, b) of channel c holds padded pixel
  // (yy * sh + a, xx * sw + b) at yy * Wph + xx. Output (oy, ox) under tap (kh, kw) then reads plane
  // ((kh*dh) % sh, (kw*dw) % sw) at (oy + kh*dh / sh) * Wph + ox + kw*dw / sw: every tap is a fixed
  // offset (toff) from the position's base oy * Wph + ox, for every channel (planes cs floats apart).
  // Only the phases some tap reads are built (a 1x1 stride-2 convolution builds one).
  struct Planes {
    int64_t Hph = 0, Wph = 0, cs = 0, slots = 0, maxrx = 0;
    std::vector<int64_t> toff;   // per tap, from channel 0 of the image
    std::vector<int64_t> phase;  // per slot: a * sw + b
  };

  static Planes plan_planes(const ConvGeom& g) {
    Planes p;
    const int64_t KH = g.k_sp[0], KW = g.k_sp[1], sh = g.strides[0], sw = g.strides[1];
    const int64_t maxry = (KH - 1) * g.dil[0] / sh;
    p.maxrx = (KW - 1) * g.dil[1] / sw;
    p.Hph = g.out_sp[0] + maxry;
    p.Wph = g.out_sp[1] + p.maxrx;
    p.cs = p.Hph * p.Wph;
    std::vector<int64_t> slot_of(static_cast<size_t>(sh * sw), -1);
    for (int64_t kh = 0; kh < KH; ++kh)
      for (int64_t kw = 0; kw < KW; ++kw) {
        const int64_t ph = (kh * g.dil[0] % sh) * sw + kw * g.dil[1] % sw;
        if (slot_of[ph] < 0) {
          slot_of[ph] = p.slots++;
          p.phase.push_back(ph);
        }
      }
    for (int64_t kh = 0; kh < KH; ++kh)
      for (int64_t kw = 0; kw < KW; ++kw) {
        const int64_t ph = (kh * g.dil[0] % sh) * sw + kw * g.dil[1] % sw;
        p.toff.push_back(slot_of[ph] * g.C * p.cs + (kh * g.dil[0] / sh) * p.Wph + kw * g.dil[1] / sw);
      }
    return p;
  }

  // row[xx] = src[2 * xx] for xx in [lo, hi) (reads stay below src[2 * hi - 1]).
  static void copy_even(const float* src, float* row, int64_t lo, int64_t hi) {
    int64_t xx = lo;
#if defined(__SSE2__)
    for (; xx + 4 < hi; xx += 4)
      _mm_storeu_ps(row + xx, _mm_shuffle_ps(_mm_loadu_ps(src + 2 * xx), _mm_loadu_ps(src + 2 * xx + 4),
                                             _MM_SHUFFLE(2, 0, 2, 0)));
#endif
    for (; xx < hi; ++xx) row[xx] = src[2 * xx];
  }

  // The planes of one image (all channels), in parallel over (slot, channel).
  static void fill_planes(const ConvGeom& g, const Planes& p, const float* x, float* dst) {
    const int64_t H = g.in_sp[0], Wd = g.in_sp[1], sh = g.strides[0], sw = g.strides[1];
    const int64_t pt = g.pad_begin[0], pl = g.pad_begin[1], C = g.C, Wph = p.Wph;
    parallel_for(p.slots * C, static_cast<double>(p.cs), [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) {
        // Channel-major order: the phases of one channel read the same rows while they are in cache.
        const int64_t slot = t % p.slots, c = t / p.slots, a = p.phase[slot] / sw, bp = p.phase[slot] % sw;
        float* d = dst + (slot * C + c) * p.cs;
        const float* xc = x + c * H * Wd;
        // Columns xx with 0 <= xx * sw + bp - pl < Wd.
        const int64_t lo_num = pl - bp, hi_num = Wd - 1 + pl - bp;
        const int64_t hi = hi_num < 0 ? 0 : std::min(Wph, hi_num / sw + 1);
        const int64_t lo = std::min(hi, lo_num <= 0 ? 0 : (lo_num + sw - 1) / sw);
        for (int64_t yy = 0; yy < p.Hph; ++yy) {
          float* row = d + yy * Wph;
          const int64_t iy = yy * sh + a - pt;
          if (iy < 0 || iy >= H) {
            std::memset(row, 0, sizeof(float) * Wph);
            continue;
          }
          const float* src = xc + iy * Wd + bp - pl;  // column xx reads src[xx * sw]
          std::memset(row, 0, sizeof(float) * lo);
          if (sw == 1) std::memcpy(row + lo, src + lo, sizeof(float) * (hi - lo));
          else if (sw == 2) copy_even(src, row, lo, hi);
          else
            for (int64_t xx = lo; xx < hi; ++xx) row[xx] = src[xx * sw];
          std::memset(row + hi, 0, sizeof(float) * (Wph - hi));
        }
      }
    });
  }

  // The direct path: 2-D, not depthwise, not 1x1, on a CPU with a direct tier. Decided from attributes and the weight shape only,
  // so constant weights are packed for it at session creation.
  // Strides above kDirectMaxStride (an attribute) stay on im2col too: the planes are indexed by phase.
  bool direct_applies(const Shape& wshape) const {
    if (direct_mode() < 0 || !conv_direct_tier() || wshape.size() != 4) return false;
    for (int64_t s : attrs_.strides)
      if (s > kDirectMaxStride) return false;
    if (wshape[1] == 1 && wshape[0] == group_ && group_ > 1) return false;  // depthwise
    // 1x1 kernels (any stride) stay on im2col + GEMM: their "im2col" is a copy or a strided
    // gather, and the GEMM driver outruns the direct kernels at K = channels.
    return !(wshape[2] == 1 && wshape[3] == 1);
  }

  // Whether the phase planes (about the zero-padded input: one per phase a tap reads, each
  // (OH + (KH - 1) * dh / sh) x (OW + (KW - 1) * dw / sw)) stay within a small multiple of the input
  // and output: a huge dilation or pad (2^28) with a tiny output takes im2col, whose scratch is
  // sized from the output. A safety bound, applied in every mode (ONNXFAST_CONV_DIRECT too).
  static bool direct_fits(const ConvGeom& g) {
    const double KH = static_cast<double>(g.k_sp[0]), KW = static_cast<double>(g.k_sp[1]);
    const double sh = static_cast<double>(g.strides[0]), sw = static_cast<double>(g.strides[1]);
    const double hph = static_cast<double>(g.out_sp[0]) + (KH - 1) * static_cast<double>(g.dil[0]) / sh;
    const double wph = static_cast<double>(g.out_sp[1]) + (KW - 1) * static_cast<double>(g.dil[1]) / sw;
    const double planes = std::min(KH * KW, sh * sw) * static_cast<double>(g.C) * hph * wph;
    const double data = static_cast<double>(g.C) * static_cast<double>(shape_numel(g.in_sp)) +
                        static_cast<double>(g.M) * static_cast<double>(shape_numel(g.out_sp));
    return planes <= 16 * data + (1 << 20);
  }

  // A strided convolution takes im2col + GEMM in the automatic mode when its phase planes outgrow
  // the L2 (one image's, over 1.5 MiB: 128x56x56 at stride 2 builds four 29x29 planes per channel,
  // 1.7 MiB; tiling B then re-reads them from L3 for every block of output channels), or when it
  // has positions for full GEMM panels (128 and more) and a K of 256 and more: the stride's phases
  // multiply the planes tiling B sweeps per K block, while im2col gathers each column once.
  // Measured against onnxruntime at 1 thread: 128x56x56 -> 128 1.05-1.2x against 1.3-1.5x,
  // 256x28x28 -> 256 1.06-1.10x against 1.20-1.26x; 512x14x14 (49 positions) stays direct (1.2x
  // against 2.3x). The strided stems (K = 27) stay direct too.
  bool direct_declined(const ConvGeom& g, const Planes& pl) const {
    if (direct_mode() != 0 || (g.strides[0] == 1 && g.strides[1] == 1)) return false;
    const int64_t kdim = g.C / g.group * shape_numel(g.k_sp);
    if (shape_numel(g.out_sp) >= 128 && kdim >= 256) return true;
    return static_cast<double>(pl.slots) * g.C * pl.cs * sizeof(float) > 1.5 * 1024 * 1024;
  }

  // The im2col path's task grid (choose_grid): output positions per chunk (a K block of its
  // columns, 256 x 256 floats, stays in L2), and per element the cost, in multiply-adds, of
  // streaming a pre-packed weight and of packing a column copied (1x1) or gathered (taps).
  static constexpr int64_t kChunkMax = 256;
  static constexpr double kStreamWeightCost = 4.0, kCopyColumnCost = 8.0, kGatherColumnCost = 16.0;

  static constexpr int64_t kTileAPositions = 1536;
  static constexpr int64_t kDirectMaxStride = 16;
  // Input channels per block of the direct kernels' K loop: a block's weights (taps x 32 x lb
  // floats, 72 KiB for 3x3 at lb 64) stay in L2 while the kernel sweeps the positions (16 was no
  // faster here: the accumulators are then reloaded twice as often).
  static constexpr int64_t kDirectCb = 32;

  // W (M x Cg x KH x KW) packed per group as [block of lb channels][channel block][tap][c][lb],
  // zero-padded; channel block c0 of output block blk starts at (blk * Cg + c0) * taps * lb.
  std::vector<std::shared_ptr<float>> pack_direct(const float* w, const Shape& ws) const {
    const int64_t lb = conv_direct_tier()->lb;
    const int64_t M = ws[0], Cg = ws[1], T = ws[2] * ws[3], Mg = M / group_, nblk = (Mg + lb - 1) / lb;
    std::vector<std::shared_ptr<float>> out;
    for (int64_t gr = 0; gr < group_; ++gr) {
      const size_t n = static_cast<size_t>(nblk * T * Cg * lb);
      std::shared_ptr<float> buf = alloc_floats(n);
      float* p = buf.get();
      std::fill(p, p + n, 0.f);
      for (int64_t blk = 0; blk < nblk; ++blk)
        for (int64_t c0 = 0; c0 < Cg; c0 += kDirectCb) {
          const int64_t cbn = std::min(kDirectCb, Cg - c0);
          float* d0 = p + (blk * Cg + c0) * T * lb;
          for (int64_t t = 0; t < T; ++t)
            for (int64_t c = 0; c < cbn; ++c) {
              float* d = d0 + (t * cbn + c) * lb;
              for (int64_t j = 0; j < lb && blk * lb + j < Mg; ++j)
                d[j] = w[((gr * Mg + blk * lb + j) * Cg + c0 + c) * T + t];
            }
        }
      out.push_back(std::move(buf));
    }
    return out;
  }

  // koff of a channel block of cbn channels: (tap t, channel c) -> toff[t] + c * cs.
  static std::vector<int64_t> block_offsets(const Planes& pl, int64_t cbn) {
    std::vector<int64_t> k;
    for (int64_t t : pl.toff)
      for (int64_t c = 0; c < cbn; ++c) k.push_back(t + c * pl.cs);
    return k;
  }

  // ONNXFAST_CONV_DIRECT=a|b forces a tiling, =off the im2col path (tests and measurements);
  // read per call so a test can switch it between runs.
  static int direct_mode() {
    const char* e = std::getenv("ONNXFAST_CONV_DIRECT");
    if (!e) return 0;
    const std::string v(e);
    return v == "a" ? 1 : v == "b" ? 2 : v == "off" ? -1 : 0;
  }

  void direct(const ConvGeom& g, const Planes& pl, const float* x, const Tensor& W, const float* bias,
              const float* residual, float* y) const {
    const ConvDirectTier& dt = *conv_direct_tier();
    std::vector<std::shared_ptr<float>> fresh;
    const std::vector<std::shared_ptr<float>>* wp = &direct_w_;
    if (direct_w_.empty() || packed_shape_ != W.shape) {
      fresh = pack_direct(W.ptr<float>(), W.shape);
      wp = &fresh;
    }
    const int64_t OH = g.out_sp[0], OW = g.out_sp[1], OHW = OH * OW, Cg = g.C / g.group, Mg = g.M / g.group;
    const int64_t T = static_cast<int64_t>(pl.toff.size()), lb = dt.lb, ra = dt.ra, la = dt.la, rb = dt.rb;
    // K runs in blocks of cb input channels; at least one block, so Cg = 0 still writes bias + epilogue.
    const int64_t cb = std::min(kDirectCb, Cg), ncb = std::max<int64_t>(1, (Cg + kDirectCb - 1) / kDirectCb);
    const std::vector<int64_t> koff_full = block_offsets(pl, cb), koff_last = block_offsets(pl, Cg - (ncb - 1) * cb);
    auto koff = [&](int64_t c0) { return c0 + cb < Cg ? koff_full.data() : koff_last.data(); };
    // Tiling B (channel-vectorized) on small maps, where a plane row's garbage columns would cost
    // a large share of A's vectors; A elsewhere.
    const int mode = direct_mode();
    const bool use_b = mode ? mode == 2 : (Mg >= lb && (OHW <= 256 || Cg * T > 320));
    const size_t plane_floats = static_cast<size_t>(pl.slots * g.C * pl.cs + pl.maxrx + la + 16);
    const std::shared_ptr<Storage> plane_buf =
        guarded_scratch(static_cast<int64_t>(plane_floats), sizeof(float), name_, "the input planes");
    float* const planes = static_cast<float*>(plane_buf->data);
    std::fill(planes + pl.slots * g.C * pl.cs, planes + plane_floats, 0.f);
    ThreadPool* pool = current_pool();
    const int64_t want = 4 * (pool ? pool->num_threads() : 1);
    const double kcost = 2.0 * Cg * T / 48.0;
    for (int64_t n = 0; n < g.N; ++n) {
      fill_planes(g, pl, x + n * g.C * g.in_sp[0] * g.in_sp[1], planes);
      float* yn = y + n * g.M * OHW;
      const float* rn = residual ? residual + n * g.M * OHW : nullptr;
      if (use_b) {
        // Tasks: (group, block of lb output channels, chunk of output positions). A task sweeps its
        // positions once per channel block into a [positions][lb] tile, then transposes it into Y.
        const int64_t nblk = (Mg + lb - 1) / lb;
        int64_t qchunk = ((OHW + rb - 1) / rb) * rb;
        while (qchunk > 4 * rb && g.group * nblk * ((OHW + qchunk - 1) / qchunk) < want)
          qchunk = ((qchunk / 2 + rb - 1) / rb) * rb;
        const int64_t nq = (OHW + qchunk - 1) / qchunk;
        parallel_for(g.group * nblk * nq, kcost * lb * qchunk, [&](int64_t tb, int64_t te) {
          thread_local std::vector<float> tile;
          thread_local std::vector<int64_t> pos;
          if (tile.size() < static_cast<size_t>((qchunk + rb) * lb)) tile.resize(static_cast<size_t>((qchunk + rb) * lb));
          if (pos.size() < static_cast<size_t>(qchunk + rb)) pos.resize(static_cast<size_t>(qchunk + rb));
          for (int64_t t = tb; t < te; ++t) {
            const int64_t qi = t % nq, blk = (t / nq) % nblk, gr = t / (nq * nblk);
            const int64_t q0 = qi * qchunk, q1 = std::min(OHW, q0 + qchunk);
            const int64_t m0 = blk * lb, mn = std::min(lb, Mg - m0);
            for (int64_t q = q0; q < q1; ++q) pos[q - q0] = (q / OW) * pl.Wph + q % OW;
            const float* in = planes + gr * Cg * pl.cs;
            const float* wb = (*wp)[gr].get() + blk * Cg * T * lb;
            const int64_t ncalls = (q1 - q0 + rb - 1) / rb;
            for (int64_t ib = 0, c0 = 0; ib < ncb; ++ib, c0 += cb) {
              const int64_t cbn = std::min(cb, Cg - c0), K = T * cbn;
              // The weights multiplied next (the next channel block, or the next output block's
              // first) follow this block in the packing; the calls on this block prefetch them
              // into L2, a share each (none past the last output block).
              const int64_t c1 = c0 + cbn, next_c = c1 < Cg ? std::min(cb, Cg - c1) : (blk + 1 < nblk ? cb : 0);
              const int64_t lines = T * next_c * lb * static_cast<int64_t>(sizeof(float)) / 64;
              const int64_t share = (lines + ncalls - 1) / ncalls;
              const float* next = wb + c1 * T * lb;
              for (int64_t q = q0, ci = 0; q < q1; q += rb, ++ci)
                dt.b(std::min(rb, q1 - q), K, koff(c0), in + c0 * pl.cs, pos.data() + (q - q0), wb + c0 * T * lb,
                     tile.data() + (q - q0) * lb, ib > 0, next + ci * share * 16,
                     std::max<int64_t>(0, std::min(share, lines - ci * share)));
            }
            // Without a residual the epilogue runs on the tile, whose rows are positions and whose
            // columns are output channels (bias per column), then the tile is transposed into Y;
            // with one (laid out like Y), Y's rows get the epilogue after the transpose.
            float* yb = yn + (gr * Mg + m0) * OHW + q0;
            if (!rn)
              for (int64_t q = 0; q < q1 - q0; ++q)
                act_.apply_cols(tile.data() + q * lb, mn, bias ? bias + gr * Mg + m0 : nullptr, nullptr);
            transpose_f32(tile.data(), lb, q1 - q0, mn, yb, OHW);
            if (rn)
              for (int64_t j = 0; j < mn; ++j) {
                const int64_t m = gr * Mg + m0 + j;
                epilogue(yb + j * OHW, q1 - q0, bias ? bias[m] : 0.f, rn + m * OHW + q0);
              }
          }
        });
        continue;
      }
      // Tiling A. Tasks: (group, block of output channels, chunk of output rows); a chunk's plane
      // positions [oy0 * Wph, oy1 * Wph) go through the kernel la at a time (the last tile only
      // the vectors it needs); the last channel block stores the output columns straight into Y
      // (DirectOut), earlier ones accumulate in a scratch tile (ra x positions).
      // Row chunks of about kTileAPositions plane positions: a chunk's planes stay in cache while
      // every block of output channels sweeps them, and the scratch tile stays in L1/L2; then
      // halve the chunks until there are tasks for every thread.
      const int64_t nra = (Mg + ra - 1) / ra;
      int64_t mchunk = nra;  // in units of ra
      int64_t rchunk = std::max<int64_t>(1, std::min(OH, kTileAPositions / pl.Wph));
      while (rchunk > 1 && g.group * ((nra + mchunk - 1) / mchunk) * ((OH + rchunk - 1) / rchunk) < want)
        rchunk = (rchunk + 1) / 2;
      while (mchunk > 1 && g.group * ((nra + mchunk - 1) / mchunk) * ((OH + rchunk - 1) / rchunk) < want)
        mchunk = (mchunk + 1) / 2;
      const int64_t nr = (OH + rchunk - 1) / rchunk, nm = (nra + mchunk - 1) / mchunk;
      parallel_for(g.group * nm * nr, kcost * ra * mchunk * rchunk * pl.Wph, [&](int64_t tb, int64_t te) {
        thread_local std::vector<float> scratch;
        for (int64_t t = tb; t < te; ++t) {
          const int64_t ri = t % nr, mi = (t / nr) % nm, gr = t / (nr * nm);
          const int64_t oy0 = ri * rchunk, oy1 = std::min(OH, oy0 + rchunk);
          const int64_t np = (oy1 - oy0) * pl.Wph, ntiles = (np + la - 1) / la, ldo = ntiles * la;
          if (ncb > 1 && scratch.size() < static_cast<size_t>(ra * ldo)) scratch.resize(static_cast<size_t>(ra * ldo));
          const float* in = planes + gr * Cg * pl.cs + oy0 * pl.Wph;
          for (int64_t rb0 = mi * mchunk; rb0 < std::min(nra, (mi + 1) * mchunk); ++rb0) {
            const int64_t m0 = rb0 * ra, rows = std::min(ra, Mg - m0);
            const float* w = (*wp)[gr].get() + (m0 / lb) * Cg * T * lb + m0 % lb;
            // The last channel block stores into Y, bias, residual and a simple activation
            // applied on the way (DirectOut); earlier blocks accumulate in the scratch tile.
            DirectOut d;
            d.ep = micro_act_;
            d.ep.row_bias = bias ? bias + gr * Mg + m0 : nullptr;
            d.ep.residual = rn ? rn + (gr * Mg + m0) * OHW : nullptr;
            d.ep.ldr = OHW;
            d.y = yn + (gr * Mg + m0) * OHW;
            d.Wph = pl.Wph;
            d.OW = OW;
            d.row_end = oy1;
            for (int64_t ib = 0, c0 = 0; ib < ncb; ++ib, c0 += cb) {
              const int64_t K = T * std::min(cb, Cg - c0);
              for (int64_t i = 0; i < ntiles; ++i) {
                d.p = oy0 * pl.Wph + i * la;
                dt.a(rows, std::min(la, np - i * la), K, koff(c0), in + c0 * pl.cs + i * la, w + c0 * T * lb, lb,
                     scratch.data() + i * la, ldo, ib > 0, ib + 1 == ncb ? &d : nullptr);
              }
            }
            if (!act_in_store_)  // the activation a micro-kernel does not apply, as a pass over the rows
              for (int64_t r = 0; r < rows; ++r) act_.apply(d.y + r * OHW + oy0 * OW, (oy1 - oy0) * OW);
          }
        }
      });
    }
  }

  // Depthwise 2-D convolution (one input and one output channel per group): per channel, the
  // tier's plane kernel (conv_depthwise_impl.h: input rows staged in a small ring), then bias,
  // residual and activation over the plane while it is in cache. Channels are the parallel tasks;
  // each output is computed by one fixed sum, so results do not depend on the thread count.
  void depthwise(const ConvGeom& g, const float* x, const float* w, const float* bias, const float* residual,
                 float* y) const {
    const DwGeom dg{g.in_sp[0], g.in_sp[1], g.out_sp[0], g.out_sp[1], g.k_sp[0], g.k_sp[1], g.strides[0],
                    g.strides[1], g.dil[0], g.dil[1], g.pad_begin[0], g.pad_begin[1]};
    const int64_t C = g.C, plane_in = dg.H * dg.W, plane_out = dg.OH * dg.OW;
    const DepthwiseTier& tier = depthwise_tier();
    const int64_t scratch = tier.scratch_floats(dg);
    parallel_for(g.N * C, 2.0 * plane_out * dg.KH * dg.KW, [&](int64_t b, int64_t e) {
      std::shared_ptr<Storage> rows;
      if (scratch > 0) {
        rows = guarded_scratch(scratch, sizeof(float), name_, "the staged input rows");
        std::memset(rows->data, 0, sizeof(float) * static_cast<size_t>(scratch));
      }
      for (int64_t t = b; t < e; ++t) {
        const int64_t c = t % C;
        float* yc = y + t * plane_out;
        tier.plane(dg, x + t * plane_in, w + c * dg.KH * dg.KW, yc, rows ? static_cast<float*>(rows->data) : nullptr);
        // the plane is contiguous (and so is its residual): one epilogue call while it is in cache
        epilogue(yc, plane_out, bias ? bias[c] : 0.f, residual ? residual + t * plane_out : nullptr);
      }
    });
  }

  std::string name_;
  Activation act_;
  // The activation as the micro-kernels' fused store applies it (op and parameters; the callers
  // fill in bias and residual), when it is one they apply (None, Relu, Clip, LeakyRelu).
  MicroEpilogue micro_act_;
  bool act_in_store_;
  ConvAttrs attrs_;
  int64_t group_;
  // Per group, a constant weight packed for im2col: at session creation when that is its path,
  // else on first use (a strided direct convolution whose input is direct_declined).
  mutable std::once_flag packed_once_;
  mutable std::vector<PackedA> packed_w_;
  std::vector<std::shared_ptr<float>> direct_w_;  // per group, when the weight is a constant (direct path)
  Shape packed_shape_;  // the constant weight's shape (empty: the weight is fed)
  // W^T packed as a GEMM B operand, for pointwise convolutions on small maps (built on first use).
  mutable std::once_flag wt_once_;
  mutable std::shared_ptr<PackedB> packed_wt_;
};

}  // namespace

const ConvDirectTier* conv_direct_tier() {
  static const ConvDirectTier* t = []() -> const ConvDirectTier* {
#if defined(__x86_64__) || defined(_M_X64)
    static ConvDirectTier tier;
    switch (active_isa()) {
      case Isa::kAvx512: tier = conv_direct_tier_avx512(); return &tier;
      case Isa::kAvx2: tier = conv_direct_tier_avx2(); return &tier;
      default: break;
    }
#endif
    return nullptr;
  }();
  return t;
}

ONNXFAST_KERNELS(conv) {
  kernel("Conv").types({kFloat}).make<ConvKernel>();  // float16 / bfloat16 through float32: half.cpp
  // Conv + bias + optional residual (input 3) + activation, created by the conv-activation fusion.
  kernel("FusedConv", "onnxfast").types({kFloat}).make<ConvKernel>();
  // onnxruntime's FusedConv (what its optimizer writes): the same inputs and attributes; HardSigmoid,
  // which the store does not apply, runs on numpy.
  kernel("FusedConv", "com.microsoft").types({kFloat})
      .when([](const KernelArgs& a) { return a.get_string("activation", "") != "HardSigmoid"; })
      .make<ConvKernel>();
}

}  // namespace onnxfast
