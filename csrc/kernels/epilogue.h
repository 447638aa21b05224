// The fused epilogue of GEMM and convolution kernels: y = act(x + bias + residual), applied to a
// row of output while it is still in cache. The activation comes from the fused node's
// `activation` / `activation_params` attributes (see onnxfast/optimizer/fusions.py).
#pragma once
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "gemm_tiers.h"
#include "kernel.h"
#include "vecmath.h"

namespace onnxfast {

struct Activation {
  enum Kind { kNone, kRelu, kClip, kLeakyRelu, kSigmoid, kTanh, kGelu, kGeluTanh };
  Kind kind = kNone;
  float p0 = 0.f, p1 = 0.f;  // Clip: lo, hi; LeakyRelu: alpha

  // From the node's attributes; `who` names the node in errors.
  static Activation from_args(const KernelArgs& a, const std::string& who) {
    (void)who;
    Activation act;
    // Checked at creation (kernel.h's validation helpers): a known activation, at most as many
    // parameters as it takes (missing ones take the original operator's defaults), none NaN. (Clip's
    // min may exceed max: Clip-11's bounds are inputs, and then every value becomes max.)
    std::string s = attr_string(a, "activation", "");
    if (!s.empty())
      s = expect_known_string(a, "activation", "None",
                              {"None", "Relu", "Clip", "LeakyRelu", "Sigmoid", "Tanh", "Gelu", "GeluTanh"});
    const std::vector<double> params = attr_floats(a, "activation_params");
    const size_t takes = s == "Clip" ? 2 : s == "LeakyRelu" ? 1 : 0;
    if (params.size() > takes)
      attr_fail(a, "activation_params", list_str(params),
                "at most " + std::to_string(takes) + " values for activation '" + (s.empty() ? "None" : s) + "'");
    for (double p : params)
      if (std::isnan(p)) attr_fail(a, "activation_params", list_str(params), "numbers (no nan)");
    auto param = [&](size_t i, double dflt) { return static_cast<float>(params.size() > i ? params[i] : dflt); };
    if (s.empty() || s == "None") act.kind = kNone;
    else if (s == "Relu") act.kind = kRelu;
    else if (s == "Clip") {
      act.kind = kClip;
      act.p0 = param(0, -3.4028234663852886e38);
      act.p1 = param(1, 3.4028234663852886e38);
    } else if (s == "LeakyRelu") {
      act.kind = kLeakyRelu;
      act.p0 = param(0, 0.01);
    } else if (s == "Sigmoid") act.kind = kSigmoid;
    else if (s == "Tanh") act.kind = kTanh;
    else if (s == "Gelu") act.kind = kGelu;
    else act.kind = kGeluTanh;
    return act;
  }

  // Sets e's op to this activation and returns true when a micro-kernel can apply it in its
  // store (None, Relu, Clip, LeakyRelu); false for the others, which run as a pass.
  // (MicroEpilogue::Op numbers the first four Kinds alike.)
  bool to_micro(MicroEpilogue& e) const {
    if (kind > kLeakyRelu) return false;
    e.op = static_cast<MicroEpilogue::Op>(kind);
    e.p0 = p0;
    e.p1 = p1;
    return true;
  }

  // The activation of a MicroEpilogue (to_micro's inverse).
  static Activation from_micro(const MicroEpilogue& e) {
    Activation act;
    act.kind = static_cast<Kind>(e.op);
    act.p0 = e.p0;
    act.p1 = e.p1;
    return act;
  }

  // row[j] = act(src[j] + b + res[j]) for j < n (res may be null; src may be row).
  void apply(const float* src, float* row, int64_t n, float b, const float* res) const {
    if (res)
      for (int64_t j = 0; j < n; ++j) row[j] = src[j] + b + res[j];
    else if (b != 0.f || src != row)
      for (int64_t j = 0; j < n; ++j) row[j] = src[j] + b;
    apply(row, n);
  }
  // row[j] = act(row[j] + bias[j]) (bias per column; may be null), then + res[j] before act.
  void apply_cols(float* row, int64_t n, const float* bias, const float* res) const {
    if (bias && res)
      for (int64_t j = 0; j < n; ++j) row[j] += bias[j] + res[j];
    else if (bias)
      for (int64_t j = 0; j < n; ++j) row[j] += bias[j];
    else if (res)
      for (int64_t j = 0; j < n; ++j) row[j] += res[j];
    apply(row, n);
  }
  // The activation alone, in place.
  void apply(float* row, int64_t n) const {
    switch (kind) {
      case kNone: break;
      case kRelu:
        for (int64_t j = 0; j < n; ++j) row[j] = row[j] < 0.f ? 0.f : row[j];
        break;
      case kClip:
        for (int64_t j = 0; j < n; ++j) {  // min(hi, max(lo, x)): hi wins when lo > hi, as Clip does
          const float v = row[j] < p0 ? p0 : row[j];
          row[j] = v > p1 ? p1 : v;
        }
        break;
      case kLeakyRelu:
        for (int64_t j = 0; j < n; ++j) row[j] = row[j] >= 0.f ? row[j] : p0 * row[j];
        break;
      case kSigmoid: vecmath().sigmoid(row, row, n); break;
      case kTanh: vecmath().tanh(row, row, n); break;
      case kGelu: vecmath().gelu(row, row, n, false); break;
      case kGeluTanh: vecmath().gelu(row, row, n, true); break;
    }
  }
};

static_assert(static_cast<int>(Activation::kNone) == MicroEpilogue::kNone &&
                  static_cast<int>(Activation::kRelu) == MicroEpilogue::kRelu &&
                  static_cast<int>(Activation::kClip) == MicroEpilogue::kClip &&
                  static_cast<int>(Activation::kLeakyRelu) == MicroEpilogue::kLeakyRelu,
              "MicroEpilogue::Op and Activation::Kind number the simple activations alike");

}  // namespace onnxfast
