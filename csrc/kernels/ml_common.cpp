// Post transforms and score conventions of the ai.onnx.ml kernels (see ml_common.h).
#include "ml_common.h"

#include <algorithm>
#include <cstring>
#include <limits>

namespace onnxfast {
namespace ml {

Post read_post(const KernelArgs& a) {
  auto it = a.attrs.find("post_transform");
  if (it == a.attrs.end()) return Post::kNone;
  if (it->second.kind == AttrValue::kInt) {
    const int64_t v = expect_int_in(a, "post_transform", 0, 0, 4);
    return static_cast<Post>(v);
  }
  const std::string s = expect_known_string(a, "post_transform", "NONE",
                                            {"NONE", "SOFTMAX", "LOGISTIC", "SOFTMAX_ZERO", "PROBIT"});
  if (s == "SOFTMAX") return Post::kSoftmax;
  if (s == "LOGISTIC") return Post::kLogistic;
  if (s == "SOFTMAX_ZERO") return Post::kSoftmaxZero;
  if (s == "PROBIT") return Post::kProbit;
  return Post::kNone;
}

float probit(float p) {
  float x = 2.0f * p - 1.0f;
  const float sgn = x < 0 ? -1.0f : 1.0f;
  x = (1.0f - x) * (1.0f + x);
  const float lg = std::log(x);
  const float v = 2.0f / (3.14159265358979f * 0.147f) + 0.5f * lg;  // pi as a float, as onnxruntime
  const float v2 = 1.0f / 0.147f * lg;
  const float v3 = -v + std::sqrt(v * v - v2);
  return 1.41421356f * (sgn * std::sqrt(v3));
}

std::vector<int64_t> ints_or_tensor(const KernelArgs& a, const std::string& name) {
  auto it = a.attrs.find(name);
  if (it == a.attrs.end() || it->second.kind != AttrValue::kTensor || !it->second.t) return attr_ints(a, name);
  const Tensor& t = *it->second.t;
  std::vector<int64_t> v(static_cast<size_t>(t.numel()));
  for (size_t i = 0; i < v.size(); ++i) {
    switch (t.dtype) {
      case kUInt8: v[i] = static_cast<const uint8_t*>(t.data)[i]; break;
      case kInt8: v[i] = static_cast<const int8_t*>(t.data)[i]; break;
      case kInt32: v[i] = static_cast<const int32_t*>(t.data)[i]; break;
      case kInt64: v[i] = static_cast<const int64_t*>(t.data)[i]; break;
      default: attr_fail(a, name, "a tensor(" + dtype_name(t.dtype) + ")", "integers");
    }
  }
  return v;
}

std::vector<double> tensor_floats(const KernelArgs& a, const std::string& name) {
  auto it = a.attrs.find(name);
  if (it == a.attrs.end() || it->second.kind != AttrValue::kTensor || !it->second.t) return attr_floats(a, name);
  const Tensor& t = *it->second.t;
  std::vector<double> v(static_cast<size_t>(t.numel()));
  if (t.dtype == kDouble) {
    if (!v.empty()) std::memcpy(v.data(), t.data, v.size() * sizeof(double));
  } else if (t.dtype == kFloat) {
    const float* p = static_cast<const float*>(t.data);
    for (size_t i = 0; i < v.size(); ++i) v[i] = p[i];
  } else {
    attr_fail(a, name, "a tensor(" + dtype_name(t.dtype) + ")", "a double or float tensor");
  }
  return v;
}

std::vector<double> floats_or_tensor(const KernelArgs& a, const std::string& name) {
  if (a.has(name + "_as_tensor")) return tensor_floats(a, name + "_as_tensor");
  return attr_floats(a, name);
}

}  // namespace ml
}  // namespace onnxfast
