// Convolution (1-D/2-D/3-D, strides, dilations, pads, auto_pad, groups, bias), float32,
// as im2col + SGEMM; a 1x1/stride-1/no-pad convolution skips im2col. The blocked-layout
// direct convolutions come with the ISA kernels.
#include <algorithm>
#include <cstring>

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

// Epilogue of a fused convolution (onnxfast::FusedConv): y = act(conv + bias + residual).
enum class Act { kNone, kRelu, kClip, kLeakyRelu, kSigmoid, kTanh };

Act parse_act(const std::string& s, const std::string& who) {
  if (s.empty() || s == "None") return Act::kNone;
  if (s == "Relu") return Act::kRelu;
  if (s == "Clip") return Act::kClip;
  if (s == "LeakyRelu") return Act::kLeakyRelu;
  if (s == "Sigmoid") return Act::kSigmoid;
  if (s == "Tanh") return Act::kTanh;
  kernel_fail(who + ": unknown fused activation '" + s + "'");
}

class ConvKernel : public Kernel {
 public:
  explicit ConvKernel(const KernelArgs& a)
      : name_(a.op_type + " '" + a.node_name + "'"),
        act_(parse_act(a.get_string("activation", ""), a.op_type + " '" + a.node_name + "'")),
        act_params_(a.attrs.count("activation_params") ? a.attrs.at("activation_params").floats
                                                       : std::vector<double>{}),
        auto_pad_(a.get_string("auto_pad", "NOTSET")),
        group_(a.get_int("group", 1)),
        kernel_shape_(a.get_ints("kernel_shape")),
        strides_(a.get_ints("strides")),
        dilations_(a.get_ints("dilations")),
        pads_(a.get_ints("pads")) {
    if (group_ < 1) kernel_fail(name_ + ": group must be >= 1, got " + std::to_string(group_));
    if (a.attrs.count("activation_params") && a.attrs.at("activation_params").kind == AttrValue::kInts)
      for (int64_t v : a.attrs.at("activation_params").ints) act_params_.push_back(static_cast<double>(v));
  }
  std::string describe() const override { return act_ == Act::kNone ? "native" : "native:fused"; }

  ConvGeom geometry(const Tensor& X, const Tensor& W) const {
    if (X.rank() < 3) kernel_fail(name_ + ": input X must be N x C x D1 x ..., got shape " + shape_str(X.shape));
    if (W.rank() != X.rank())
      kernel_fail(name_ + ": weight rank " + std::to_string(W.rank()) + " differs from input rank " +
                  std::to_string(X.rank()));
    ConvGeom g;
    size_t sd = X.shape.size() - 2;
    g.N = X.shape[0];
    g.C = X.shape[1];
    g.M = W.shape[0];
    g.group = group_;
    if (g.C != W.shape[1] * group_)
      kernel_fail(name_ + ": input has " + std::to_string(g.C) + " channels but weight " + shape_str(W.shape) +
                  " with group=" + std::to_string(group_) + " expects " + std::to_string(W.shape[1] * group_));
    if (g.M % group_ != 0)
      kernel_fail(name_ + ": output channels " + std::to_string(g.M) + " not divisible by group " +
                  std::to_string(group_));
    g.in_sp.assign(X.shape.begin() + 2, X.shape.end());
    g.k_sp.assign(W.shape.begin() + 2, W.shape.end());
    if (!kernel_shape_.empty() && Shape(kernel_shape_) != g.k_sp)
      kernel_fail(name_ + ": kernel_shape attribute " + shape_str(kernel_shape_) + " differs from weight shape " +
                  shape_str(W.shape));
    g.strides = strides_.empty() ? Shape(sd, 1) : strides_;
    g.dil = dilations_.empty() ? Shape(sd, 1) : dilations_;
    if (g.strides.size() != sd || g.dil.size() != sd)
      kernel_fail(name_ + ": strides/dilations must have " + std::to_string(sd) + " values");
    g.pad_begin.assign(sd, 0);
    g.pad_end.assign(sd, 0);
    g.out_sp.assign(sd, 0);
    for (size_t i = 0; i < sd; ++i) {
      int64_t ek = (g.k_sp[i] - 1) * g.dil[i] + 1;
      if (auto_pad_ == "SAME_UPPER" || auto_pad_ == "SAME_LOWER") {
        int64_t out = (g.in_sp[i] + g.strides[i] - 1) / g.strides[i];
        int64_t total = std::max<int64_t>(0, (out - 1) * g.strides[i] + ek - g.in_sp[i]);
        int64_t small = total / 2, big = total - small;
        g.pad_begin[i] = auto_pad_ == "SAME_UPPER" ? small : big;
        g.pad_end[i] = auto_pad_ == "SAME_UPPER" ? big : small;
      } else if (auto_pad_ == "NOTSET") {
        if (!pads_.empty()) {
          if (pads_.size() != 2 * sd) kernel_fail(name_ + ": pads must have " + std::to_string(2 * sd) + " values");
          g.pad_begin[i] = pads_[i];
          g.pad_end[i] = pads_[i + sd];
        }
      } else if (auto_pad_ != "VALID") {
        kernel_fail(name_ + ": unknown auto_pad '" + auto_pad_ + "'");
      }
      int64_t span = g.in_sp[i] + g.pad_begin[i] + g.pad_end[i] - ek;
      if (span < 0)
        kernel_fail(name_ + ": kernel " + shape_str(g.k_sp) + " (dilated) is larger than padded input " +
                    shape_str(g.in_sp));
      g.out_sp[i] = span / g.strides[i] + 1;
    }
    return g;
  }

  void infer(const std::vector<const Tensor*>& in, std::vector<OutSpec>& out) const override {
    if (in.size() < 2 || !in[0] || !in[1]) kernel_fail(name_ + " needs inputs X and W");
    expect_dtype(*in[0], kFloat, (name_ + " input X").c_str());
    expect_dtype(*in[1], kFloat, (name_ + " input W").c_str());
    ConvGeom g = geometry(*in[0], *in[1]);
    if (in.size() > 2 && in[2]) {
      expect_dtype(*in[2], kFloat, (name_ + " input B").c_str());
      if (in[2]->rank() != 1 || in[2]->shape[0] != g.M)
        kernel_fail(name_ + ": bias must have shape (" + std::to_string(g.M) + ",), got " + shape_str(in[2]->shape));
    }
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
    size_t sd = g.in_sp.size();
    int64_t in_size = shape_numel(g.in_sp), out_size = shape_numel(g.out_sp), k_size = shape_numel(g.k_sp);
    int64_t Cg = g.C / g.group, Mg = g.M / g.group;
    int64_t kdim = Cg * k_size;
    bool pointwise = k_size == 1;
    for (size_t i = 0; i < sd && pointwise; ++i)
      pointwise = g.strides[i] == 1 && g.pad_begin[i] == 0 && g.pad_end[i] == 0;
    const float* x = X.ptr<float>();
    const float* w = W.ptr<float>();
    float* y = Y.ptr<float>();
    auto one_group = [&](int64_t n, int64_t gr, float* col, bool parallel_im2col) {
      const float* xg = x + (n * g.C + gr * Cg) * in_size;
      const float* src = xg;
      if (!pointwise) {
        im2col(g, xg, Cg, col, parallel_im2col);
        src = col;
      }
      float* yg = y + (n * g.M + gr * Mg) * out_size;
      sgemm(false, false, Mg, out_size, kdim, 1.f, w + gr * Mg * kdim, kdim, src, out_size, 0.f, yg, out_size);
      const float* res = residual ? residual + (n * g.M + gr * Mg) * out_size : nullptr;
      for (int64_t m = 0; m < Mg; ++m)
        epilogue(yg + m * out_size, out_size, bias ? bias[gr * Mg + m] : 0.f, res ? res + m * out_size : nullptr);
    };
    const size_t col_size = pointwise ? 0 : static_cast<size_t>(kdim * out_size);
    if (g.group > 1) {
      // Grouped / depthwise: groups in parallel, each with its own column buffer.
      double cost = 2.0 * Mg * out_size * kdim + static_cast<double>(col_size);
      parallel_for(g.N * g.group, cost, [&](int64_t b, int64_t e) {
        std::vector<float> col(col_size);
        for (int64_t t = b; t < e; ++t) one_group(t / g.group, t % g.group, col.data(), false);
      });
    } else {
      std::vector<float> col(col_size);
      for (int64_t n = 0; n < g.N; ++n) one_group(n, 0, col.data(), true);
    }
  }

 private:
  // row = act(row + b + residual_row), one output channel.
  void epilogue(float* row, int64_t n, float b, const float* res) const {
    if (b != 0.f)
      for (int64_t j = 0; j < n; ++j) row[j] += b;
    if (res)
      for (int64_t j = 0; j < n; ++j) row[j] += res[j];
    switch (act_) {
      case Act::kNone: break;
      case Act::kRelu:
        for (int64_t j = 0; j < n; ++j) row[j] = row[j] > 0.f ? row[j] : 0.f;
        break;
      case Act::kClip: {
        const float lo = act_params_.size() > 0 ? static_cast<float>(act_params_[0]) : -3.4028235e38f;
        const float hi = act_params_.size() > 1 ? static_cast<float>(act_params_[1]) : 3.4028235e38f;
        for (int64_t j = 0; j < n; ++j) row[j] = row[j] < lo ? lo : (row[j] > hi ? hi : row[j]);
        break;
      }
      case Act::kLeakyRelu: {
        const float alpha = act_params_.empty() ? 0.01f : static_cast<float>(act_params_[0]);
        for (int64_t j = 0; j < n; ++j) row[j] = row[j] >= 0.f ? row[j] : alpha * row[j];
        break;
      }
      case Act::kSigmoid: vecmath().sigmoid(row, row, n); break;
      case Act::kTanh: vecmath().tanh(row, row, n); break;
    }
  }

  // col[(c, kpos), opos] for one image and one group.
  static void im2col(const ConvGeom& g, const float* x, int64_t Cg, float* col, bool parallel) {
    if (parallel) {
      int64_t per_channel = shape_numel(g.k_sp) * shape_numel(g.out_sp);
      parallel_for(Cg, static_cast<double>(per_channel), [&](int64_t b, int64_t e) {
        im2col_channels(g, x, b, e, col);
      });
    } else {
      im2col_channels(g, x, 0, Cg, col);
    }
  }

  // Channels [c0, c1) of one image and one group into their rows of `col`.
  static void im2col_channels(const ConvGeom& g, const float* x, int64_t c0, int64_t c1, float* col) {
    size_t sd = g.in_sp.size();
    int64_t in_size = shape_numel(g.in_sp), out_size = shape_numel(g.out_sp), k_size = shape_numel(g.k_sp);
    if (sd == 2) {
      int64_t H = g.in_sp[0], Wd = g.in_sp[1], OH = g.out_sp[0], OW = g.out_sp[1];
      int64_t KH = g.k_sp[0], KW = g.k_sp[1];
      for (int64_t c = c0; c < c1; ++c) {
        const float* xc = x + c * in_size;
        for (int64_t kh = 0; kh < KH; ++kh) {
          for (int64_t kw = 0; kw < KW; ++kw) {
            float* dst = col + ((c * KH + kh) * KW + kw) * out_size;
            for (int64_t oh = 0; oh < OH; ++oh) {
              int64_t ih = oh * g.strides[0] - g.pad_begin[0] + kh * g.dil[0];
              float* drow = dst + oh * OW;
              if (ih < 0 || ih >= H) {
                std::memset(drow, 0, sizeof(float) * OW);
                continue;
              }
              const float* srow = xc + ih * Wd;
              int64_t sw = g.strides[1], off = kw * g.dil[1] - g.pad_begin[1];
              for (int64_t ow = 0; ow < OW; ++ow) {
                int64_t iw = ow * sw + off;
                drow[ow] = (iw >= 0 && iw < Wd) ? srow[iw] : 0.f;
              }
            }
          }
        }
      }
      return;
    }
    // Generic N-d path.
    std::vector<int64_t> kidx(sd), oidx(sd);
    for (int64_t c = c0; c < c1; ++c) {
      const float* xc = x + c * in_size;
      for (int64_t kp = 0; kp < k_size; ++kp) {
        int64_t rem = kp;
        for (size_t d = sd; d-- > 0;) {
          kidx[d] = rem % g.k_sp[d];
          rem /= g.k_sp[d];
        }
        float* dst = col + (c * k_size + kp) * out_size;
        for (int64_t op = 0; op < out_size; ++op) {
          int64_t r2 = op, off = 0, stride = 1;
          bool inside = true;
          for (size_t d = sd; d-- > 0;) {
            int64_t o = r2 % g.out_sp[d];
            r2 /= g.out_sp[d];
            int64_t i = o * g.strides[d] - g.pad_begin[d] + kidx[d] * g.dil[d];
            if (i < 0 || i >= g.in_sp[d]) inside = false;
            off += i * stride;
            stride *= g.in_sp[d];
          }
          dst[op] = inside ? xc[off] : 0.f;
        }
      }
    }
  }

  std::string name_;
  Act act_;
  std::vector<double> act_params_;
  std::string auto_pad_;
  int64_t group_;
  Shape kernel_shape_, strides_, dilations_, pads_;
};

}  // namespace

void register_conv_kernels() {
  register_kernel("Conv", {kFloat}, [](const KernelArgs& a) { return std::make_unique<ConvKernel>(a); });
  // Conv + bias + optional residual (input 3) + activation, created by the conv-activation fusion.
  register_kernel("FusedConv", {kFloat}, [](const KernelArgs& a) { return std::make_unique<ConvKernel>(a); });
}

}  // namespace onnxfast
