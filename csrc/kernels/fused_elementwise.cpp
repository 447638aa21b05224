// onnxfast::FusedElementwise (float32): a group of elementwise operations that the optimizer's
// ElementwiseFusion pass (onnxfast/optimizer/elementwise.py) put in one node, run as a small
// program over blocks of kBlock elements: every operation on a block while it is in L1, so the
// group reads its inputs and writes its output once instead of once per node.
// Program: attribute `ops` (names), `args` (two slots per op, -1 for a unary op's second), optional
// `constants` (scalar operands). Slots: inputs, then constants, then each op's result; the last
// result is the output. Inputs all have the output's shape (the pass fuses no broadcast).
#include <algorithm>
#include <cmath>
#include <map>

#include "../threadpool/threadpool.h"
#include "kernel.h"
#include "vecmath.h"

namespace onnxfast {
namespace {

enum class EwOp { kAdd, kSub, kMul, kDiv, kRelu, kNeg, kAbs, kExp, kSqrt, kRecip, kSigmoid, kTanh, kErf };

const std::map<std::string, EwOp>& ew_ops() {
  static const std::map<std::string, EwOp> ops = {
      {"Add", EwOp::kAdd},   {"Sub", EwOp::kSub},   {"Mul", EwOp::kMul},          {"Div", EwOp::kDiv},
      {"Relu", EwOp::kRelu}, {"Neg", EwOp::kNeg},   {"Abs", EwOp::kAbs},          {"Exp", EwOp::kExp},
      {"Sqrt", EwOp::kSqrt}, {"Reciprocal", EwOp::kRecip}, {"Sigmoid", EwOp::kSigmoid}, {"Tanh", EwOp::kTanh},
      {"Erf", EwOp::kErf}};
  return ops;
}

bool is_binary(EwOp op) { return op == EwOp::kAdd || op == EwOp::kSub || op == EwOp::kMul || op == EwOp::kDiv; }

constexpr int64_t kBlock = 512;

class FusedElementwiseKernel : public Kernel {
 public:
  explicit FusedElementwiseKernel(const KernelArgs& a) : name_(a.who()) {
    expect_known_attrs(a, {"ops", "args", "constants"});
    const std::vector<std::string> ops = attr_strings(a, "ops");
    const std::vector<int64_t> args = attr_ints(a, "args");
    for (double c : attr_floats(a, "constants")) consts_.push_back(static_cast<float>(c));
    if (ops.empty()) attr_fail(a, "ops", "empty", "a list of at least one operator");
    if (args.size() != 2 * ops.size())
      attr_fail(a, "args", std::to_string(args.size()) + " values", "two per op (" + std::to_string(ops.size()) + " ops)");
    n_in_ = a.input_ranks.empty() ? -1 : static_cast<int64_t>(a.input_ranks.size());
    for (size_t i = 0; i < ops.size(); ++i) {
      auto it = ew_ops().find(ops[i]);
      if (it == ew_ops().end()) attr_fail(a, "ops", "'" + ops[i] + "'", "names of Add, Sub, Mul, Div, Relu, Neg, Abs, "
                                                                         "Exp, Sqrt, Reciprocal, Sigmoid, Tanh, Erf");
      steps_.push_back({it->second, args[2 * i], args[2 * i + 1]});
    }
    if (n_in_ >= 0) check_slots(n_in_);
  }

  void infer(const std::vector<const Tensor*>& in, std::vector<OutSpec>& out) const override {
    if (in.empty() || !in[0]) kernel_fail(name_ + " needs at least one input");
    check_slots(static_cast<int64_t>(in.size()));
    for (size_t i = 0; i < in.size(); ++i) {
      if (!in[i]) kernel_fail(name_ + ": input " + std::to_string(i) + " is missing");
      expect_dtype(*in[i], kFloat, (name_ + " input " + std::to_string(i)).c_str());
      if (in[i]->shape != in[0]->shape)
        kernel_fail(name_ + ": inputs 0 of shape " + shape_str(in[0]->shape) + " and " + std::to_string(i) +
                    " of shape " + shape_str(in[i]->shape) + " differ (the fused group takes no broadcast)");
    }
    out.resize(1);
    out[0] = {kFloat, in[0]->shape};
  }

  void compute(const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) const override {
    const int64_t n = out[0]->numel();
    if (n == 0) return;
    const int64_t n_in = static_cast<int64_t>(in.size()), n_const = static_cast<int64_t>(consts_.size());
    const int64_t n_steps = static_cast<int64_t>(steps_.size());
    std::vector<const float*> xs(in.size());
    for (size_t i = 0; i < in.size(); ++i) xs[i] = in[i]->ptr<float>();
    float* y = out[0]->ptr<float>();
    const int64_t blocks = (n + kBlock - 1) / kBlock;
    const VecMath& vm = vecmath();
    parallel_for(blocks, 4.0 * static_cast<double>(kBlock * n_steps), [&](int64_t b0, int64_t b1) {
      // per worker: one block of each constant, one of each intermediate result
      std::vector<float> scratch(static_cast<size_t>((n_const + n_steps) * kBlock));
      for (int64_t c = 0; c < n_const; ++c) std::fill_n(scratch.data() + c * kBlock, kBlock, consts_[c]);
      float* results = scratch.data() + n_const * kBlock;
      for (int64_t blk = b0; blk < b1; ++blk) {
        const int64_t off = blk * kBlock, len = std::min(kBlock, n - off);
        auto src = [&](int64_t slot) -> const float* {
          if (slot < n_in) return xs[slot] + off;
          if (slot < n_in + n_const) return scratch.data() + (slot - n_in) * kBlock;
          return results + (slot - n_in - n_const) * kBlock;
        };
        for (int64_t i = 0; i < n_steps; ++i) {
          const Step& s = steps_[i];
          float* dst = i + 1 == n_steps ? y + off : results + i * kBlock;
          apply(vm, s, src(s.a), s.b >= 0 ? src(s.b) : nullptr, dst, len);
        }
      }
    });
  }

 private:
  struct Step {
    EwOp op;
    int64_t a, b;
  };

  // Every operand slot defined before its op reads it; unary ops have no second operand.
  void check_slots(int64_t n_in) const {
    const int64_t base = n_in + static_cast<int64_t>(consts_.size());
    for (size_t i = 0; i < steps_.size(); ++i) {
      const Step& s = steps_[i];
      const int64_t limit = base + static_cast<int64_t>(i);
      const bool binary = is_binary(s.op);
      if (s.a < 0 || s.a >= limit || (binary && (s.b < 0 || s.b >= limit)) || (!binary && s.b != -1))
        kernel_fail(name_ + ": attribute 'args' of op " + std::to_string(i) + " is [" + std::to_string(s.a) + ", " +
                    std::to_string(s.b) + "]; slots must be defined before use (" + std::to_string(n_in) +
                    " inputs)");
    }
  }

  static void apply(const VecMath& vm, const Step& s, const float* a, const float* b, float* d, int64_t n) {
    switch (s.op) {
      case EwOp::kAdd:
        for (int64_t j = 0; j < n; ++j) d[j] = a[j] + b[j];
        break;
      case EwOp::kSub:
        for (int64_t j = 0; j < n; ++j) d[j] = a[j] - b[j];
        break;
      case EwOp::kMul:
        for (int64_t j = 0; j < n; ++j) d[j] = a[j] * b[j];
        break;
      case EwOp::kDiv:
        for (int64_t j = 0; j < n; ++j) d[j] = a[j] / b[j];
        break;
      case EwOp::kRelu:  // NaN and -0 pass through, as the Relu kernel
        for (int64_t j = 0; j < n; ++j) d[j] = a[j] < 0.f ? 0.f : a[j];
        break;
      case EwOp::kNeg:
        for (int64_t j = 0; j < n; ++j) d[j] = -a[j];
        break;
      case EwOp::kAbs:
        for (int64_t j = 0; j < n; ++j) d[j] = std::fabs(a[j]);
        break;
      case EwOp::kSqrt:
        for (int64_t j = 0; j < n; ++j) d[j] = std::sqrt(a[j]);
        break;
      case EwOp::kRecip:
        for (int64_t j = 0; j < n; ++j) d[j] = 1.f / a[j];
        break;
      case EwOp::kExp: vm.exp(a, d, n); break;
      case EwOp::kSigmoid: vm.sigmoid(a, d, n); break;
      case EwOp::kTanh: vm.tanh(a, d, n); break;
      case EwOp::kErf: vm.erf(a, d, n); break;
    }
  }

  std::string name_;
  std::vector<float> consts_;
  std::vector<Step> steps_;
  int64_t n_in_ = -1;
};

}  // namespace

ONNXFAST_KERNELS(fused_elementwise) {
  kernel("FusedElementwise", "onnxfast").types({kFloat}).make<FusedElementwiseKernel>();
}

}  // namespace onnxfast
