// Softmax / LogSoftmax (opset < 13: softmax over the flattened trailing dims; >= 13: one axis),
// LayerNormalization (with the optional Mean / InvStdDev outputs), RMS normalization
// (SimplifiedLayerNormalization, RMSNormalization), BatchNormalization (inference),
// InstanceNormalization, Gelu and the vector-math unary ops (Exp, Erf, Tanh, Sigmoid, Log, Reciprocal
// and the activations of ActKind: Softplus, Elu, Selu, HardSwish, ...), float32, on the vecmath row
// functions of the CPU's tier, parallel over rows / planes.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "../threadpool/threadpool.h"
#include "kernel.h"
#include "vecmath.h"

namespace onnxfast {
namespace {

int64_t norm_axis(int64_t axis, int64_t rank, const std::string& who) {
  int64_t a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= std::max<int64_t>(rank, 1))
    kernel_fail(who + ": axis " + std::to_string(axis) + " is out of range for rank " + std::to_string(rank));
  return a;
}

// X split at a normalization axis (LayerNormalization, the RMS norms): the normalized shape (axis on)
// and its size n, the rows before it, and the statistics' shape (X's, with 1 from the axis on).
struct NormSplit {
  Shape norm, stat;
  int64_t n, rows;
};
NormSplit norm_split(const Shape& x, int64_t axis, const std::string& who) {
  const int64_t rank = static_cast<int64_t>(x.size()), a = norm_axis(axis, rank, who);
  NormSplit s{Shape(x.begin() + a, x.end()), x, 0, 0};
  for (int64_t i = a; i < rank; ++i) s.stat[i] = 1;
  s.n = shape_numel(s.norm);
  s.rows = shape_numel(Shape(x.begin(), x.begin() + a));
  return s;
}

// The statistics of rows of no values: NaN, as numpy's mean of an empty row.
void fill_nan(float* p, int64_t rows) {
  if (p) std::fill(p, p + rows, std::numeric_limits<float>::quiet_NaN());
}

class SoftmaxKernel : public Kernel {
 public:
  SoftmaxKernel(const KernelArgs& a, bool log)
      : name_(a.op_type + " '" + a.node_name + "'"),
        log_(log),
        legacy_(a.opset < 13),
        axis_(attr_int(a, "axis", a.opset < 13 ? 1 : -1)) {
    expect_rank_in(a, 0, "input", 1, -1);  // onnxruntime refuses a scalar
    check_axis(a, "axis", axis_, a.rank_of(0));
  }

  void infer(const std::vector<const Tensor*>& in, std::vector<OutSpec>& out) const override {
    if (in.empty() || !in[0]) kernel_fail(name_ + " needs an input");
    expect_dtype(*in[0], kFloat, (name_ + " input").c_str());
    if (in[0]->rank() > 0) norm_axis(axis_, in[0]->rank(), name_);
    out.resize(1);
    out[0] = {kFloat, in[0]->shape};
  }

  void compute(const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) const override {
    const Tensor& X = *in[0];
    if (X.numel() == 0) return;
    const float* x = X.ptr<float>();
    float* y = out[0]->ptr<float>();
    const VecMath& vm = vecmath();
    if (X.rank() == 0) {
      y[0] = log_ ? 0.f : 1.f;
      return;
    }
    int64_t a = norm_axis(axis_, X.rank(), name_);
    int64_t outer = 1, n = 1, inner = 1;
    for (int64_t i = 0; i < a; ++i) outer *= X.shape[i];
    if (legacy_) {
      for (int64_t i = a; i < X.rank(); ++i) n *= X.shape[i];
    } else {
      n = X.shape[a];
      for (int64_t i = a + 1; i < X.rank(); ++i) inner *= X.shape[i];
    }
    if (inner == 1) {
      parallel_for(outer, 8.0 * n, [&](int64_t b, int64_t e) {
        for (int64_t r = b; r < e; ++r) vm.softmax_row(x + r * n, y + r * n, n, log_);
      });
      return;
    }
    // Softmax over a middle axis: gather each column into a contiguous row.
    parallel_for(outer * inner, 10.0 * n, [&](int64_t b, int64_t e) {
      std::vector<float> row(n), res(n);
      for (int64_t t = b; t < e; ++t) {
        int64_t o = t / inner, i = t % inner;
        const float* base = x + o * n * inner + i;
        for (int64_t k = 0; k < n; ++k) row[k] = base[k * inner];
        vm.softmax_row(row.data(), res.data(), n, log_);
        float* dst = y + o * n * inner + i;
        for (int64_t k = 0; k < n; ++k) dst[k * inner] = res[k];
      }
    });
  }

 private:
  std::string name_;
  bool log_, legacy_;
  int64_t axis_;
};

// Values of a tensor broadcast to `n` trailing elements (the normalized shape), or null.
std::vector<float> broadcast_tail(const Tensor* t, const Shape& norm_shape, const std::string& who, const char* what) {
  std::vector<float> out;
  if (!t) return out;
  expect_dtype(*t, kFloat, (who + " " + what).c_str());
  int64_t n = shape_numel(norm_shape);
  if (t->rank() > static_cast<int64_t>(norm_shape.size()))
    kernel_fail(who + ": " + what + " of shape " + shape_str(t->shape) + " has more dimensions than the normalized " +
                "shape " + shape_str(norm_shape));
  Shape b = broadcast_shapes(norm_shape, t->shape, (who + " " + what).c_str());
  if (b != norm_shape)
    kernel_fail(who + ": " + what + " of shape " + shape_str(t->shape) + " does not broadcast to " +
                shape_str(norm_shape));
  out.resize(static_cast<size_t>(n));
  const float* src = t->ptr<float>();
  size_t r = norm_shape.size(), tr = t->shape.size();
  for (int64_t i = 0; i < n; ++i) {
    int64_t rem = i, off = 0, stride = 1;
    for (size_t d = r; d-- > 0;) {
      int64_t idx = rem % norm_shape[d];
      rem /= norm_shape[d];
      size_t td = d + tr - r;
      if (d + tr >= r) {
        int64_t dim = t->shape[td];
        off += (dim == 1 ? 0 : idx) * stride;
        stride *= dim;
      }
    }
    out[static_cast<size_t>(i)] = src[off];
  }
  return out;
}

class LayerNormKernel : public Kernel {
 public:
  explicit LayerNormKernel(const KernelArgs& a)
      : name_("LayerNormalization '" + a.node_name + "'"),
        axis_(attr_int(a, "axis", -1)),
        eps_(static_cast<float>(expect_finite(a, "epsilon", 1e-5))) {
    expect_rank_in(a, 0, "X", 1, -1);
    check_axis(a, "axis", axis_, a.rank_of(0));
    attr_int(a, "stash_type", 1);
  }

  void infer(const std::vector<const Tensor*>& in, std::vector<OutSpec>& out) const override {
    if (in.size() < 2 || !in[0] || !in[1]) kernel_fail(name_ + " needs X and Scale");
    expect_dtype(*in[0], kFloat, (name_ + " input X").c_str());
    const Shape stat = norm_split(in[0]->shape, axis_, name_).stat;
    out.resize(3);
    out[0] = {kFloat, in[0]->shape};
    out[1] = {kFloat, stat};
    out[2] = {kFloat, stat};
  }

  void compute(const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) const override {
    const Tensor& X = *in[0];
    const NormSplit sp = norm_split(X.shape, axis_, name_);
    std::vector<float> gamma = broadcast_tail(in[1], sp.norm, name_, "Scale");
    std::vector<float> beta = broadcast_tail(in.size() > 2 ? in[2] : nullptr, sp.norm, name_, "B");
    const int64_t n = sp.n, rows = sp.rows;
    float* mean = out.size() > 1 && out[1] ? out[1]->ptr<float>() : nullptr;
    float* inv = out.size() > 2 && out[2] ? out[2]->ptr<float>() : nullptr;
    if (n == 0) {
      fill_nan(mean, rows);
      fill_nan(inv, rows);
      return;
    }
    if (rows == 0) return;
    const float* x = X.ptr<float>();
    float* y = out[0]->ptr<float>();
    const VecMath& vm = vecmath();
    const float* g = gamma.data();
    const float* bt = beta.empty() ? nullptr : beta.data();
    parallel_for(rows, 6.0 * n, [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r)
        vm.layernorm_row(x + r * n, y + r * n, n, g, bt, eps_, mean ? mean + r : nullptr, inv ? inv + r : nullptr);
    });
  }

 private:
  std::string name_;
  int64_t axis_;
  float eps_;
};

// RMS normalization over the axes from `axis` on: Y = X / sqrt(mean(X^2) + epsilon) * scale.
// onnxruntime's SimplifiedLayerNormalization (ONNX domain, no ONNX schema: its attributes are checked
// here; optional output inv_std_var) and ONNX RMSNormalization (opset 23, one output). float32 X with
// stash_type 1 (float32 statistics, what the row function computes); the others run on numpy.
class RMSNormKernel : public Kernel {
 public:
  explicit RMSNormKernel(const KernelArgs& a)
      : name_(a.op_type + " '" + a.node_name + "'"),
        axis_(attr_int(a, "axis", -1)),
        eps_(static_cast<float>(expect_finite(a, "epsilon", 1e-5))) {
    if (a.domain.empty() && a.op_type == "SimplifiedLayerNormalization")
      expect_known_attrs(a, {"axis", "epsilon", "stash_type"});
    expect_rank_in(a, 0, "X", 1, -1);
    check_axis(a, "axis", axis_, a.rank_of(0));
  }

  void infer(const std::vector<const Tensor*>& in, std::vector<OutSpec>& out) const override {
    if (in.size() < 2 || !in[0] || !in[1]) kernel_fail(name_ + " needs X and scale");
    expect_dtype(*in[0], kFloat, (name_ + " input X").c_str());
    const NormSplit sp = norm_split(in[0]->shape, axis_, name_);
    broadcast_tail(in[1], sp.norm, name_, "scale");  // checked before any output is allocated
    out.resize(2);
    out[0] = {kFloat, in[0]->shape};
    out[1] = {kFloat, sp.stat};
  }

  void compute(const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) const override {
    const Tensor& X = *in[0];
    const NormSplit sp = norm_split(X.shape, axis_, name_);
    std::vector<float> scale = broadcast_tail(in[1], sp.norm, name_, "scale");
    const int64_t n = sp.n, rows = sp.rows;
    float* inv = out.size() > 1 && out[1] ? out[1]->ptr<float>() : nullptr;
    if (n == 0) {  // the mean of no squares (onnxruntime refuses empty rows)
      fill_nan(inv, rows);
      return;
    }
    if (rows == 0) return;
    const float* x = X.ptr<float>();
    float* y = out[0]->ptr<float>();
    const VecMath& vm = vecmath();
    const float* g = scale.data();
    parallel_for(rows, 4.0 * n, [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) vm.rmsnorm_row(x + r * n, y + r * n, n, g, eps_, inv ? inv + r : nullptr);
    });
  }

 private:
  std::string name_;
  int64_t axis_;
  float eps_;
};

// The C values of a per-channel input (scale, bias, mean, var), checked: float32 with C elements.
const float* channel_values(const Tensor* t, int64_t C, const std::string& who, const char* what) {
  if (!t) kernel_fail(who + " needs input " + what);
  expect_dtype(*t, kFloat, (who + " " + what).c_str());
  if (t->numel() != C)
    kernel_fail(who + ": " + what + " of shape " + shape_str(t->shape) + " must have one value per channel (" +
                std::to_string(C) + ")");
  return t->ptr<float>();
}

void check_channels_input(const std::vector<const Tensor*>& in, const std::string& who) {
  if (in.empty() || !in[0]) kernel_fail(who + " needs an input X");
  expect_dtype(*in[0], kFloat, (who + " input X").c_str());
  if (in[0]->rank() < 2)
    kernel_fail(who + ": input X of shape " + shape_str(in[0]->shape) + " needs at least 2 dimensions (N, C, ...)");
}

// y = x * a[c] + b[c] over every (n, c) plane of X, in parallel over chunks of planes.
void channel_affine(const Tensor& X, float* y, const std::vector<float>& a, const std::vector<float>& b) {
  const int64_t N = X.shape[0], C = X.shape[1];
  const int64_t plane = X.numel() / std::max<int64_t>(N * C, 1);
  if (X.numel() == 0) return;
  constexpr int64_t kChunk = 16384;
  const int64_t chunks = (plane + kChunk - 1) / kChunk;
  const float* x = X.ptr<float>();
  const VecMath& vm = vecmath();
  parallel_for(N * C * chunks, 1.0 * std::min(plane, kChunk), [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t nc = t / chunks, k0 = (t % chunks) * kChunk;
      const int64_t c = nc % C, off = nc * plane + k0;
      vm.affine(x + off, y + off, std::min(kChunk, plane - k0), a[c], b[c]);
    }
  });
}

// Inference-mode BatchNormalization (training_mode = 0; the planner sends training to numpy):
// y = (x - mean) / sqrt(var + eps) * scale + B per channel, computed as x * a + b with a and b
// folded once per run. Optional extra outputs (opset < 14 training outputs) pass mean / var through.
class BatchNormKernel : public Kernel {
 public:
  explicit BatchNormKernel(const KernelArgs& a)
      : name_("BatchNormalization '" + a.node_name + "'"), eps_(static_cast<float>(expect_finite(a, "epsilon", 1e-5))) {
    attr_float(a, "momentum", 0.9);
    expect_rank_in(a, 0, "X", 2, -1);  // N x C x ...
    const char* what[] = {"scale", "B", "input_mean", "input_var"};
    for (size_t i = 1; i < 5; ++i) expect_rank_in(a, i, what[i - 1], 1, 1);
  }

  void infer(const std::vector<const Tensor*>& in, std::vector<OutSpec>& out) const override {
    check_channels_input(in, name_);
    if (in.size() < 5) kernel_fail(name_ + " needs inputs X, scale, B, input_mean, input_var");
    const int64_t C = in[0]->shape[1];
    const char* what[] = {"scale", "B", "input_mean", "input_var"};
    for (int i = 0; i < 4; ++i) channel_values(in[i + 1], C, name_, what[i]);
    out.resize(5);
    out[0] = {kFloat, in[0]->shape};
    for (int i = 1; i < 5; ++i) out[i] = {kFloat, in[i % 2 ? 3 : 4]->shape};
  }

  void compute(const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) const override {
    const Tensor& X = *in[0];
    const int64_t C = X.shape[1];
    const float* scale = channel_values(in[1], C, name_, "scale");
    const float* bias = channel_values(in[2], C, name_, "B");
    const float* mean = channel_values(in[3], C, name_, "input_mean");
    const float* var = channel_values(in[4], C, name_, "input_var");
    std::vector<float> a(static_cast<size_t>(C)), b(static_cast<size_t>(C));
    for (int64_t c = 0; c < C; ++c) {
      a[c] = scale[c] / std::sqrt(var[c] + eps_);
      b[c] = bias[c] - mean[c] * a[c];
    }
    channel_affine(X, out[0]->ptr<float>(), a, b);
    for (size_t i = 1; i < out.size() && i < 5; ++i) {
      if (!out[i]) continue;
      const Tensor& src = *in[i % 2 ? 3 : 4];
      std::copy(src.ptr<float>(), src.ptr<float>() + src.numel(), out[i]->ptr<float>());
    }
  }

 private:
  std::string name_;
  float eps_;
};

// InstanceNormalization: each (n, c) plane normalized by its own mean and variance (vecmath
// moments: blocks summed in double), then scaled and shifted per channel; parallel over planes.
class InstanceNormKernel : public Kernel {
 public:
  explicit InstanceNormKernel(const KernelArgs& a)
      : name_("InstanceNormalization '" + a.node_name + "'"), eps_(static_cast<float>(expect_finite(a, "epsilon", 1e-5))) {
    expect_rank_in(a, 0, "input", 2, -1);  // N x C x ...
    expect_rank_in(a, 1, "scale", 1, 1);
    expect_rank_in(a, 2, "B", 1, 1);
  }

  void infer(const std::vector<const Tensor*>& in, std::vector<OutSpec>& out) const override {
    check_channels_input(in, name_);
    if (in.size() < 3) kernel_fail(name_ + " needs inputs input, scale, B");
    channel_values(in[1], in[0]->shape[1], name_, "scale");
    channel_values(in[2], in[0]->shape[1], name_, "B");
    out.resize(1);
    out[0] = {kFloat, in[0]->shape};
  }

  void compute(const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) const override {
    const Tensor& X = *in[0];
    const int64_t N = X.shape[0], C = X.shape[1];
    const float* scale = channel_values(in[1], C, name_, "scale");
    const float* bias = channel_values(in[2], C, name_, "B");
    if (X.numel() == 0) return;
    const int64_t plane = X.numel() / (N * C);
    const float* x = X.ptr<float>();
    float* y = out[0]->ptr<float>();
    const VecMath& vm = vecmath();
    parallel_for(N * C, 4.0 * plane, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t c = t % C;
        float mean, invstd;
        vm.moments(x + t * plane, plane, eps_, &mean, &invstd);
        const float a = invstd * scale[c];
        vm.affine(x + t * plane, y + t * plane, plane, a, bias[c] - mean * a);
      }
    });
  }

 private:
  std::string name_;
  float eps_;
};

enum class MathOp { kExp, kErf, kTanh, kSigmoid, kGelu, kGeluTanh };

class VecMathKernel : public FloatUnaryKernel {
 public:
  VecMathKernel(MathOp op, std::string name) : FloatUnaryKernel(std::move(name), 3.0), op_(op) {}

 private:
  void apply(const float* x, float* y, int64_t n) const override {
    const VecMath& vm = vecmath();
    switch (op_) {
      case MathOp::kExp: vm.exp(x, y, n); break;
      case MathOp::kErf: vm.erf(x, y, n); break;
      case MathOp::kTanh: vm.tanh(x, y, n); break;
      case MathOp::kSigmoid: vm.sigmoid(x, y, n); break;
      case MathOp::kGelu: vm.gelu(x, y, n, false); break;
      case MathOp::kGeluTanh: vm.gelu(x, y, n, true); break;
    }
  }

  MathOp op_;
};

// The ActKind activations (and Log, Reciprocal) with their attributes.
class ActKernel : public FloatUnaryKernel {
 public:
  ActKernel(ActKind kind, const KernelArgs& a, float alpha, float beta)
      : FloatUnaryKernel(a.op_type + " '" + a.node_name + "'", kind == ActKind::kReciprocal ? 0.5 : 3.0),
        kind_(kind),
        alpha_(alpha),
        beta_(beta) {}

 private:
  void apply(const float* x, float* y, int64_t n) const override { vecmath().act(kind_, x, y, n, alpha_, beta_); }

  ActKind kind_;
  float alpha_, beta_;
};

}  // namespace

// Parameter inputs first..last float32 or not known at creation (mixed-precision statistics run on numpy).
static bool float_params(const KernelArgs& a, size_t first, size_t last) {
  for (size_t i = first; i <= last; ++i)
    if (a.dtype_of(i) != 0 && a.dtype_of(i) != kFloat) return false;
  return true;
}

ONNXFAST_KERNELS(normalization) {
  kernel("Softmax").types({kFloat}).make([](const KernelArgs& a) { return std::make_unique<SoftmaxKernel>(a, false); });
  kernel("LogSoftmax").types({kFloat}).make([](const KernelArgs& a) { return std::make_unique<SoftmaxKernel>(a, true); });
  kernel("LayerNormalization").since(17).types({kFloat}).make<LayerNormKernel>();
  // float32 statistics (stash_type 1) and a float32 scale; others on numpy
  auto rms_fits = [](const KernelArgs& a) { return a.get_int("stash_type", 1) == 1 && float_params(a, 1, 1); };
  kernel("SimplifiedLayerNormalization").types({kFloat}).when(rms_fits).make<RMSNormKernel>();
  kernel("RMSNormalization").since(23).types({kFloat}).when(rms_fits).make<RMSNormKernel>();
  // inference mode with float32 statistics (spatial = 1 before opset 9); training mode on numpy
  kernel("BatchNormalization").since(7).types({kFloat})
      .when([](const KernelArgs& a) {
        return a.get_int("training_mode", 0) == 0 && a.get_int("spatial", 1) == 1 && float_params(a, 1, 4);
      })
      .make<BatchNormKernel>();
  kernel("InstanceNormalization").types({kFloat}).when([](const KernelArgs& a) { return float_params(a, 1, 2); })
      .make<InstanceNormKernel>();
  auto vm = [](const char* name, int since, MathOp op) {
    kernel(name).since(since).types({kFloat}).inplace(0, 0).make([op](const KernelArgs& a) {
      MathOp o = op;
      if (o == MathOp::kGelu && expect_known_string(a, "approximate", "none", {"none", "tanh"}) == "tanh")
        o = MathOp::kGeluTanh;
      return std::make_unique<VecMathKernel>(o, a.op_type + " '" + a.node_name + "'");
    });
  };
  vm("Exp", 6, MathOp::kExp);
  vm("Erf", 9, MathOp::kErf);
  vm("Tanh", 6, MathOp::kTanh);
  vm("Sigmoid", 6, MathOp::kSigmoid);
  vm("Gelu", 20, MathOp::kGelu);
  // name, since, kind, (attribute, default) for alpha and beta
  struct ActSpec {
    const char* name;
    int since;
    ActKind kind;
    const char* alpha_attr;
    double alpha;
    const char* beta_attr;
    double beta;
  };
  static const ActSpec acts[] = {
      {"Log", 6, ActKind::kLog, "", 0, "", 0},
      {"Reciprocal", 6, ActKind::kReciprocal, "", 0, "", 0},
      {"Softplus", 1, ActKind::kSoftplus, "", 0, "", 0},
      {"Softsign", 1, ActKind::kSoftsign, "", 0, "", 0},
      {"Elu", 6, ActKind::kElu, "alpha", 1.0, "", 0},
      {"Selu", 6, ActKind::kSelu, "alpha", 1.67326319217681884765625, "gamma", 1.05070102214813232421875},
      {"Celu", 12, ActKind::kCelu, "alpha", 1.0, "", 0},
      {"Mish", 18, ActKind::kMish, "", 0, "", 0},
      {"Swish", 24, ActKind::kSwish, "alpha", 1.0, "", 0},
      {"HardSigmoid", 6, ActKind::kHardSigmoid, "alpha", 0.2, "beta", 0.5},
      {"HardSwish", 14, ActKind::kHardSwish, "", 0, "", 0},
      {"ThresholdedRelu", 10, ActKind::kThresholdedRelu, "alpha", 1.0, "", 0},
      {"Shrink", 9, ActKind::kShrink, "lambd", 0.5, "bias", 0.0},
  };
  for (const ActSpec& spec : acts) {
    kernel(spec.name).since(spec.since).types({kFloat}).inplace(0, 0).make([spec](const KernelArgs& a) {
      // A NaN parameter is refused (it would make the output NaN for every input of one sign);
      // onnxruntime accepts it. Celu divides by alpha.
      const double alpha = *spec.alpha_attr ? attr_float(a, spec.alpha_attr, spec.alpha) : 0.0;
      const double beta = *spec.beta_attr ? attr_float(a, spec.beta_attr, spec.beta) : 0.0;
      if (spec.kind == ActKind::kCelu && alpha == 0.0) attr_fail(a, "alpha", "0", "nonzero (Celu divides by alpha)");
      return std::make_unique<ActKernel>(spec.kind, a, static_cast<float>(alpha), static_cast<float>(beta));
    });
  }
}

}  // namespace onnxfast
