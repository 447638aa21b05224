// Shared pieces of the ai.onnx.ml kernels (tree ensembles, linear models, SVMs): the post transforms
// and onnxruntime's score conventions, so every ML kernel finishes its scores the same way.
#pragma once
#include <cmath>
#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "kernel.h"

namespace onnxfast {
namespace ml {

enum class Post { kNone = 0, kSoftmax = 1, kLogistic = 2, kSoftmaxZero = 3, kProbit = 4 };

// post_transform as a string (the legacy operators) or an int (TreeEnsemble, ai.onnx.ml 5).
Post read_post(const KernelArgs& a);

inline float logistic(float v) {
  const float e = 1.0f / (1.0f + std::exp(-std::fabs(v)));
  return v < 0 ? 1.0f - e : e;
}

// onnxruntime's probit: sqrt(2) * erfinv(2p - 1) with Winitzki's closed-form erfinv in float (about 1e-4
// relative error; matched rather than improved on, so scores equal onnxruntime's).
float probit(float p);

// Applies `post` to one row of scores in place (NONE / SOFTMAX / LOGISTIC / SOFTMAX_ZERO / PROBIT), in
// the scores' type (float32, or float64 for TreeEnsemble on doubles); logistic and probit in float32.
template <class S>
void post_row(Post post, S* s, int64_t n) {
  switch (post) {
    case Post::kNone:
      return;
    case Post::kLogistic:
      for (int64_t i = 0; i < n; ++i) s[i] = static_cast<S>(logistic(static_cast<float>(s[i])));
      return;
    case Post::kProbit:
      for (int64_t i = 0; i < n; ++i) s[i] = static_cast<S>(probit(static_cast<float>(s[i])));
      return;
    case Post::kSoftmax: {
      S m = -std::numeric_limits<S>::max();
      for (int64_t i = 0; i < n; ++i) m = std::max(m, s[i]);
      S tot = 0;
      for (int64_t i = 0; i < n; ++i) tot += (s[i] = std::exp(s[i] - m));
      for (int64_t i = 0; i < n; ++i) s[i] /= tot;
      return;
    }
    case Post::kSoftmaxZero: {  // zeros (classes no tree scored) stay zero
      S m = -std::numeric_limits<S>::max();
      for (int64_t i = 0; i < n; ++i) m = std::max(m, s[i]);
      const S e0 = std::exp(-m);
      S tot = 0;
      for (int64_t i = 0; i < n; ++i) {
        if (s[i] > S(1e-7) || s[i] < S(-1e-7))
          tot += (s[i] = std::exp(s[i] - m));
        else
          s[i] *= e0;
      }
      for (int64_t i = 0; i < n; ++i) s[i] /= tot;
      return;
    }
  }
}

// Two-class output from one score `s` (onnxruntime's binary convention): all-positive weights give
// [1 - s, s] (s through the logistic first under LOGISTIC); mixed weights [-s, s], or [logistic(-s), logistic(s)] after LOGISTIC; PROBIT writes
// probit(s) and leaves the second column NaN (onnxruntime leaves it unwritten).
template <class S>
void binary_row(Post post, bool weights_positive, S s, S* z) {
  if (post == Post::kProbit) {
    z[0] = static_cast<S>(probit(static_cast<float>(s)));
    z[1] = std::numeric_limits<S>::quiet_NaN();
  } else if (weights_positive) {
    if (post == Post::kLogistic) s = static_cast<S>(logistic(static_cast<float>(s)));
    z[0] = S(1) - s;
    z[1] = s;
  } else if (post == Post::kLogistic) {
    z[0] = static_cast<S>(logistic(static_cast<float>(-s)));
    z[1] = static_cast<S>(logistic(static_cast<float>(s)));
  } else {
    z[0] = -s;
    z[1] = s;
  }
}

// Integers given as an ints attribute or as an integer tensor attribute (TreeEnsemble's nodes_modes).
std::vector<int64_t> ints_or_tensor(const KernelArgs& a, const std::string& name);

// A float list given as a float / double tensor attribute or as a floats attribute.
std::vector<double> tensor_floats(const KernelArgs& a, const std::string& name);

// Reads a float list given as `name` or as `name`_as_tensor (a double tensor attribute); empty when absent.
std::vector<double> floats_or_tensor(const KernelArgs& a, const std::string& name);

}  // namespace ml
}  // namespace onnxfast
