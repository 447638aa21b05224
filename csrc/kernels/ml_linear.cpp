// The numeric ai.onnx.ml operators besides the tree ensembles and SVMs: LinearClassifier and
// LinearRegressor (one GEMM against coefficients packed at session creation, intercepts in its
// epilogue; up to four outputs a dot product per row and output instead), Scaler, Normalizer,
// Binarizer, Imputer, FeatureVectorizer, ArrayFeatureExtractor, OneHotEncoder (integer categories) and
// LabelEncoder (numeric keys and values). Inputs of float64 or integer types are read as float32 where
// onnxruntime does so. String categories, keys and values have their kernels over Python objects
// (csrc/bindings/py_object_kernels.cpp); a classifier's string labels are indexed by the optimizer's
// ClassLabelIndexing pass, or run on the numpy kernels (onnxfast/ops/ml.py) when it is off.
//
// onnxruntime's conventions, mirrored by ml.py: a linear classifier with one score column and two
// labels is binary (label = labels[score > 0], scores [1 - p, p] with p the score, through LOGISTIC when
// asked; PROBIT gives [probit(score), 0]); otherwise the label is the arg-max class and the post
// transform runs on the row. A regressor's single target takes PROBIT only. Binarizer refuses NaN, as
// onnxruntime does.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <unordered_map>

#include "../threadpool/threadpool.h"
#include "gemm.h"
#include "kernel.h"
#include "ml_common.h"

namespace onnxfast {
namespace {

using ml::Post;

bool numeric(int t) { return t == kFloat || t == kDouble || t == kInt64 || t == kInt32; }

void expect_numeric(const Tensor& X, const std::string& who) {
  if (!numeric(X.dtype))
    fail(ErrorKind::kInvalidType,
         who + ": X must be float, double, int64 or int32, got tensor(" + dtype_name(X.dtype) + ")");
}

// X's values as float32: X's own buffer when it is float32, else converted into `buf`.
const float* as_float(const Tensor& X, std::vector<float>& buf) {
  if (X.dtype == kFloat) return static_cast<const float*>(X.data);
  const int64_t n = X.numel();
  buf.resize(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    switch (X.dtype) {
      case kDouble: buf[i] = static_cast<float>(static_cast<const double*>(X.data)[i]); break;
      case kInt64: buf[i] = static_cast<float>(static_cast<const int64_t*>(X.data)[i]); break;
      default: buf[i] = static_cast<float>(static_cast<const int32_t*>(X.data)[i]); break;
    }
  }
  return buf.data();
}

// (rows, features) of an ML input: a vector is one row; higher ranks keep their first dim.
void rows_cols(const Tensor& X, int64_t& n, int64_t& c) {
  if (X.rank() <= 1) {
    n = 1;
    c = X.rank() == 0 ? 1 : X.shape[0];
  } else {
    n = X.shape[0];
    c = 1;
    for (size_t i = 1; i < X.shape.size(); ++i) c *= X.shape[i];
  }
}

// ---- LinearClassifier / LinearRegressor ------------------------------------------------------

class LinearKernel : public Kernel {
 public:
  LinearKernel(const KernelArgs& a, bool classifier) : who_(a.who()), classifier_(classifier) {
    const std::vector<double> coef = attr_floats(a, "coefficients");
    const std::vector<double> icpt = attr_floats(a, "intercepts");
    post_ = ml::read_post(a);
    if (classifier_) {
      labels_ = attr_ints(a, "classlabels_ints");
      const int64_t nl = static_cast<int64_t>(labels_.size());
      outputs_ = !icpt.empty() ? static_cast<int64_t>(icpt.size()) : (nl ? nl : 1);
      binary_ = outputs_ == 1 && nl == 2;
      (void)attr_int(a, "multi_class", 0);
    } else {
      outputs_ = attr_int(a, "targets", 1);
      if (outputs_ < 1) attr_fail(a, "targets", std::to_string(outputs_), "at least 1");
    }
    if (coef.empty() || coef.size() % static_cast<size_t>(outputs_))
      attr_fail(a, "coefficients", std::to_string(coef.size()) + " values",
                "a multiple of the " + std::to_string(outputs_) + (classifier_ ? " classes" : " targets") +
                    " (one row of coefficients each)");
    if (!icpt.empty() && static_cast<int64_t>(icpt.size()) != outputs_)
      attr_fail(a, "intercepts", std::to_string(icpt.size()) + " values",
                std::to_string(outputs_) + " values, one per " + (classifier_ ? "class" : "target"));
    if (classifier_ && !labels_.empty() && !binary_ && static_cast<int64_t>(labels_.size()) != outputs_)
      attr_fail(a, "classlabels_ints", std::to_string(labels_.size()) + " labels",
                std::to_string(outputs_) + " labels, one per class (or 2 with one score column)");
    features_ = static_cast<int64_t>(coef.size()) / outputs_;
    w_.assign(coef.begin(), coef.end());  // (outputs, features), row-major
    if (outputs_ > kDotOutputs) packed_ = sgemm_pack_b(true, features_, outputs_, w_.data(), features_);
    bias_.assign(static_cast<size_t>(outputs_), 0.0f);
    for (size_t i = 0; i < icpt.size(); ++i) bias_[i] = static_cast<float>(icpt[i]);
  }

  void infer(const std::vector<const Tensor*>& in, std::vector<OutSpec>& out) const override {
    if (in.empty() || !in[0]) kernel_fail(who_ + " needs input X");
    expect_numeric(*in[0], who_);
    int64_t n, c;
    rows_cols(*in[0], n, c);
    if (c != features_)
      fail(ErrorKind::kInvalidArgument, who_ + ": X has " + std::to_string(c) + " features, the model " +
                                            std::to_string(features_));
    if (classifier_) {
      out.resize(2);
      out[0] = {kInt64, {n}};
      out[1] = {kFloat, {n, binary_ ? 2 : outputs_}};
    } else {
      out.resize(1);
      out[0] = {kFloat, {n, outputs_}};
    }
  }

  void compute(const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) const override {
    const Tensor& X = *in[0];
    int64_t n, c;
    rows_cols(X, n, c);
    if (n == 0) return;
    std::vector<float> buf;
    const float* x = as_float(X, buf);
    float* z = static_cast<float*>(out[classifier_ ? 1 : 0]->data);
    // binary: one score per row, written to the second column and widened to two columns below
    const int64_t ldz = binary_ ? 2 : outputs_;
    float* zs = binary_ ? z + 1 : z;
    if (outputs_ <= kDotOutputs) {  // few outputs: a dot product per row and output (a GEMM would pad them)
      parallel_for(n, 2.0 * static_cast<double>(features_ * outputs_), [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r)
          for (int64_t o = 0; o < outputs_; ++o)
            zs[r * ldz + o] = dot(x + r * features_, w_.data() + o * features_, features_) + bias_[o];
      });
    } else {
      GemmEpilogue ep;
      ep.col_bias = bias_.data();
      sgemm_packed(false, n, outputs_, features_, 1.0f, x, features_, packed_, 0.0f, z, outputs_, &ep);
    }
    if (!classifier_) {  // a single target takes PROBIT only (onnxruntime)
      if (outputs_ > 1 ? post_ != Post::kNone : post_ == Post::kProbit)
        parallel_for(n, 20.0 * outputs_, [&](int64_t r0, int64_t r1) {
          for (int64_t r = r0; r < r1; ++r) ml::post_row(post_, z + r * outputs_, outputs_);
        });
      return;
    }
    int64_t* y = static_cast<int64_t*>(out[0]->data);
    if (binary_) {
      for (int64_t r = 0; r < n; ++r) {
        const float s = z[2 * r + 1];
        y[r] = labels_[s > 0.0f];
        if (post_ == Post::kProbit) {  // onnxruntime writes the one probit score, the second column stays 0
          z[2 * r] = ml::probit(s);
          z[2 * r + 1] = 0.0f;
          continue;
        }
        const float p = post_ == Post::kLogistic ? ml::logistic(s) : s;
        z[2 * r] = 1.0f - p;
        z[2 * r + 1] = p;
      }
      return;
    }
    for (int64_t r = 0; r < n; ++r) {
      float* row = z + r * outputs_;
      const int64_t best = std::max_element(row, row + outputs_) - row;
      y[r] = labels_.empty() ? best : labels_[best];
      ml::post_row(post_, row, outputs_);
    }
  }

 private:
  static constexpr int64_t kDotOutputs = 4;

  // Eight running sums (vectorizable without reassociating one sum), added pairwise at the end.
  static float dot(const float* a, const float* b, int64_t k) {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t j = 0;
    for (; j + 8 <= k; j += 8)
      for (int l = 0; l < 8; ++l) acc[l] += a[j + l] * b[j + l];
    for (int l = 0; j < k; ++j, ++l) acc[l] += a[j] * b[j];
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
  }

  std::string who_;
  bool classifier_, binary_ = false;
  Post post_ = Post::kNone;
  std::vector<int64_t> labels_;
  int64_t outputs_ = 1, features_ = 0;
  std::vector<float> w_;
  PackedB packed_;  // outputs_ > kDotOutputs
  std::vector<float> bias_;
};

// ---- per-feature transforms: Scaler, Imputer, Binarizer, Normalizer ---------------------------

// A per-feature attribute: one value for all, or one per feature (checked against X's features at run time).
struct PerFeature {
  std::vector<double> v;
  std::string attr;
  double at(int64_t j) const { return v.size() == 1 ? v[0] : v[static_cast<size_t>(j)]; }
  void check(const std::string& who, int64_t c) const {
    if (v.size() != 1 && static_cast<int64_t>(v.size()) != c)
      fail(ErrorKind::kInvalidArgument, who + ": " + attr + " has " + std::to_string(v.size()) + " values for " +
                                            std::to_string(c) + " features");
  }
};

class ScalerKernel : public Kernel {
 public:
  explicit ScalerKernel(const KernelArgs& a) : who_(a.who()) {
    scale_.v = attr_floats(a, "scale");
    offset_.v = attr_floats(a, "offset");
    scale_.attr = "scale";
    offset_.attr = "offset";
    if (scale_.v.empty()) scale_.v = {1.0};
    if (offset_.v.empty()) offset_.v = {0.0};
  }
  void infer(const std::vector<const Tensor*>& in, std::vector<OutSpec>& out) const override {
    if (in.empty() || !in[0]) kernel_fail(who_ + " needs input X");
    expect_numeric(*in[0], who_);
    const int64_t c = in[0]->rank() ? in[0]->shape.back() : 1;
    scale_.check(who_, c);
    offset_.check(who_, c);
    out.resize(1);
    out[0] = {kFloat, in[0]->shape};
  }
  void compute(const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) const override {
    const Tensor& X = *in[0];
    const int64_t c = X.rank() ? X.shape.back() : 1, n = c ? X.numel() / c : 0;
    std::vector<float> buf;
    const float* x = as_float(X, buf);
    float* y = static_cast<float*>(out[0]->data);
    std::vector<float> sc(static_cast<size_t>(c)), of(static_cast<size_t>(c));
    for (int64_t j = 0; j < c; ++j) {
      sc[j] = static_cast<float>(scale_.at(j));
      of[j] = static_cast<float>(offset_.at(j));
    }
    parallel_for(n, static_cast<double>(c), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r)
        for (int64_t j = 0; j < c; ++j) y[r * c + j] = (x[r * c + j] - of[j]) * sc[j];
    });
  }

 private:
  std::string who_;
  PerFeature scale_, offset_;
};

class ImputerKernel : public Kernel {
 public:
  explicit ImputerKernel(const KernelArgs& a) : who_(a.who()) {
    fvals_.v = attr_floats(a, "imputed_value_floats");
    fvals_.attr = "imputed_value_floats";
    for (int64_t v : attr_ints(a, "imputed_value_int64s")) ivals_.push_back(v);
    rf_ = attr_float(a, "replaced_value_float", 0.0, true);
    ri_ = attr_int(a, "replaced_value_int64", 0);
  }
  void infer(const std::vector<const Tensor*>& in, std::vector<OutSpec>& out) const override {
    if (in.empty() || !in[0]) kernel_fail(who_ + " needs input X");
    const Tensor& X = *in[0];
    const int64_t c = X.rank() ? X.shape.back() : 1;
    if (X.dtype == kFloat || X.dtype == kDouble) {
      if (fvals_.v.empty()) fail(ErrorKind::kInvalidArgument, who_ + ": imputed_value_floats is needed for a float input");
      fvals_.check(who_, c);
    } else if (X.dtype == kInt64 || X.dtype == kInt32) {
      if (ivals_.empty()) fail(ErrorKind::kInvalidArgument, who_ + ": imputed_value_int64s is needed for an integer input");
      if (ivals_.size() != 1 && static_cast<int64_t>(ivals_.size()) != c)
        fail(ErrorKind::kInvalidArgument, who_ + ": " + std::to_string(ivals_.size()) + " imputed values for " +
                                              std::to_string(c) + " features");
    } else {
      fail(ErrorKind::kInvalidType, who_ + ": X must be float, double, int64 or int32, got tensor(" +
                                        dtype_name(X.dtype) + ")");
    }
    out.resize(1);
    out[0] = {X.dtype, X.shape};
  }
  void compute(const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) const override {
    const Tensor& X = *in[0];
    switch (X.dtype) {
      case kFloat: fill_float<float>(X, *out[0]); break;
      case kDouble: fill_float<double>(X, *out[0]); break;
      case kInt64: fill_int<int64_t>(X, *out[0]); break;
      default: fill_int<int32_t>(X, *out[0]); break;
    }
  }

 private:
  template <class T>
  void fill_float(const Tensor& X, Tensor& Y) const {
    const int64_t c = X.rank() ? X.shape.back() : 1, m = X.numel();
    const T* x = static_cast<const T*>(X.data);
    T* y = static_cast<T*>(Y.data);
    const bool nan = std::isnan(rf_);
    const T rep = static_cast<T>(rf_);
    for (int64_t i = 0; i < m; ++i) {
      const bool bad = nan ? std::isnan(x[i]) : x[i] == rep;
      y[i] = bad ? static_cast<T>(fvals_.at(c ? i % c : 0)) : x[i];
    }
  }
  template <class T>
  void fill_int(const Tensor& X, Tensor& Y) const {
    const int64_t c = X.rank() ? X.shape.back() : 1, m = X.numel();
    const T* x = static_cast<const T*>(X.data);
    T* y = static_cast<T*>(Y.data);
    for (int64_t i = 0; i < m; ++i)
      y[i] = static_cast<int64_t>(x[i]) == ri_ ? static_cast<T>(ivals_.size() == 1 ? ivals_[0] : ivals_[c ? i % c : 0])
                                               : x[i];
  }
  std::string who_;
  PerFeature fvals_;
  std::vector<int64_t> ivals_;
  double rf_ = 0;
  int64_t ri_ = 0;
};

class BinarizerKernel : public Kernel {
 public:
  explicit BinarizerKernel(const KernelArgs& a) : who_(a.who()), thr_(attr_float(a, "threshold", 0.0)) {}
  void infer(const std::vector<const Tensor*>& in, std::vector<OutSpec>& out) const override {
    if (in.empty() || !in[0]) kernel_fail(who_ + " needs input X");
    if (in[0]->dtype != kFloat && in[0]->dtype != kDouble)
      fail(ErrorKind::kInvalidType, who_ + ": X must be float or double, got tensor(" + dtype_name(in[0]->dtype) + ")");
    out.resize(1);
    out[0] = {in[0]->dtype, in[0]->shape};
  }
  void compute(const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) const override {
    if (in[0]->dtype == kFloat) run<float>(*in[0], *out[0]);
    else run<double>(*in[0], *out[0]);
  }

 private:
  template <class T>
  void run(const Tensor& X, Tensor& Y) const {
    const T* x = static_cast<const T*>(X.data);
    T* y = static_cast<T*>(Y.data);
    const T t = static_cast<T>(thr_);
    for (int64_t i = 0, m = X.numel(); i < m; ++i) {
      if (std::isnan(x[i]))
        fail(ErrorKind::kInvalidArgument, who_ + ": X holds NaN at index " + std::to_string(i) +
                                              " (onnxruntime refuses NaN too)");
      y[i] = x[i] > t ? T(1) : T(0);
    }
  }
  std::string who_;
  double thr_;
};

class NormalizerKernel : public Kernel {
 public:
  explicit NormalizerKernel(const KernelArgs& a) : who_(a.who()) {
    const std::string n = expect_known_string(a, "norm", "MAX", {"MAX", "L1", "L2"});
    norm_ = n == "MAX" ? 0 : n == "L1" ? 1 : 2;
  }
  void infer(const std::vector<const Tensor*>& in, std::vector<OutSpec>& out) const override {
    if (in.empty() || !in[0]) kernel_fail(who_ + " needs input X");
    expect_numeric(*in[0], who_);
    out.resize(1);
    out[0] = {kFloat, in[0]->shape};
  }
  void compute(const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) const override {
    const Tensor& X = *in[0];
    int64_t n, c;
    rows_cols(X, n, c);
    std::vector<float> buf;
    const float* x = as_float(X, buf);
    float* y = static_cast<float*>(out[0]->data);
    parallel_for(n, 3.0 * static_cast<double>(c), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const float* xr = x + r * c;
        float* yr = y + r * c;
        double d = 0;  // in float64, as the numpy reference
        if (norm_ == 0) {
          d = c ? xr[0] : 0;
          for (int64_t j = 1; j < c; ++j) d = std::max<double>(d, xr[j]);
        } else if (norm_ == 1) {
          for (int64_t j = 0; j < c; ++j) d += std::fabs(static_cast<double>(xr[j]));
        } else {
          for (int64_t j = 0; j < c; ++j) d += static_cast<double>(xr[j]) * xr[j];
          d = std::sqrt(d);
        }
        for (int64_t j = 0; j < c; ++j) yr[j] = d != 0 ? static_cast<float>(xr[j] / d) : xr[j];
      }
    });
  }

 private:
  std::string who_;
  int norm_ = 0;
};

// ---- FeatureVectorizer -------------------------------------------------------------------------

// Inputs of one type (int32, int64, float, double), each [N, ...] or one row [C]: the first
// inputdimensions[i] values of each row of input i (flattened past the first dim), zero-padded, side by
// side in a float [N, sum(inputdimensions)].
class FeatureVectorizerKernel : public Kernel {
 public:
  explicit FeatureVectorizerKernel(const KernelArgs& a) : who_(a.node_label()) {
    dims_ = attr_ints(a, "inputdimensions");
    if (dims_.empty())
      fail(ErrorKind::kInvalidModel, who_ + ": attribute 'inputdimensions' is required (one width per input)");
    for (size_t i = 0; i < dims_.size(); ++i) {
      if (dims_[i] < 0)
        fail(ErrorKind::kInvalidModel, who_ + ": inputdimensions[" + std::to_string(i) + "] is negative (" +
                                           std::to_string(dims_[i]) + ")");
      total_ += dims_[i];
    }
    if (a.const_inputs.size() != dims_.size())
      fail(ErrorKind::kInvalidModel, who_ + ": " + std::to_string(a.const_inputs.size()) +
                                         " inputs but inputdimensions has " + std::to_string(dims_.size()) + " values");
    int known = 0;
    for (size_t i = 0; i < dims_.size(); ++i) {
      const int t = a.dtype_of(i);
      if (!t) continue;
      if (!numeric(t))
        fail(ErrorKind::kInvalidModel, who_ + ": input type tensor(" + dtype_name(t) +
                                           ") is not allowed (int32, int64, float, double)");
      if (known && t != known)  // one type parameter T1 for all the inputs
        fail(ErrorKind::kInvalidModel, who_ + ": all inputs must have the same element type, got tensor(" +
                                           dtype_name(known) + ") and tensor(" + dtype_name(t) + ")");
      known = t;
    }
  }
  void infer(const std::vector<const Tensor*>& in, std::vector<OutSpec>& out) const override {
    if (in.size() != dims_.size())
      fail(ErrorKind::kInvalidArgument, who_ + ": " + std::to_string(in.size()) + " inputs but inputdimensions has " +
                                            std::to_string(dims_.size()) + " values");
    int64_t n = 0;
    for (size_t i = 0; i < in.size(); ++i) {
      if (!in[i]) kernel_fail(who_ + " needs input " + std::to_string(i));
      const Tensor& X = *in[i];
      expect_numeric(X, who_);
      if (X.dtype != in[0]->dtype)
        fail(ErrorKind::kInvalidType, who_ + ": input " + std::to_string(i) + " has type " + dtype_name(X.dtype) +
                                          ", input 0 " + dtype_name(in[0]->dtype) + " (all inputs must have the same type)");
      if (X.rank() == 0) fail(ErrorKind::kInvalidArgument, who_ + ": input " + std::to_string(i) + " must have at least 1 dimension");
      const int64_t rows = X.rank() == 1 ? 1 : X.shape[0];
      if (i == 0) n = rows;
      else if (rows != n)
        fail(ErrorKind::kInvalidArgument, who_ + ": all inputs must have the same batch size: input 0 has " +
                                              std::to_string(n) + ", input " + std::to_string(i) + " has " +
                                              std::to_string(rows));
    }
    out.resize(1);
    out[0] = {kFloat, Shape{n, total_}};
  }
  void compute(const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) const override {
    float* y = static_cast<float*>(out[0]->data);
    const int64_t n = out[0]->shape[0];
    if (n > 0 && total_ > 0) std::memset(y, 0, static_cast<size_t>(n * total_) * sizeof(float));
    int64_t off = 0;
    std::vector<float> buf;
    for (size_t i = 0; i < in.size(); ++i) {
      const Tensor& X = *in[i];
      const int64_t width = n ? X.numel() / n : 0, w = std::min(width, dims_[i]);
      const float* x = as_float(X, buf);
      for (int64_t r = 0; r < n; ++r)
        for (int64_t j = 0; j < w; ++j) y[r * total_ + off + j] = x[r * width + j];
      off += dims_[i];
    }
  }

 private:
  std::string who_;
  std::vector<int64_t> dims_;
  int64_t total_ = 0;
};

// ---- ArrayFeatureExtractor ----------------------------------------------------------------------

class ArrayFeatureExtractorKernel : public Kernel {
 public:
  explicit ArrayFeatureExtractorKernel(const KernelArgs& a) : who_(a.who()), node_label_(a.node_label()) {}
  void infer(const std::vector<const Tensor*>& in, std::vector<OutSpec>& out) const override {
    if (in.size() < 2 || !in[0] || !in[1]) kernel_fail(who_ + " needs inputs X and Y");
    const Tensor& X = *in[0];
    const std::vector<int64_t> idx = int_values_any(*in[1]);
    const int64_t d = X.rank() ? X.shape.back() : 0;
    for (int64_t i : idx)
      if (i < 0 || i >= d)
        fail(ErrorKind::kIndex, node_label_ + ": index " + std::to_string(i) +
                                    " is out of range for the last dimension of size " + std::to_string(d));
    out.resize(1);
    Shape s = X.rank() == 1 ? Shape{1} : Shape(X.shape.begin(), X.shape.end() - 1);
    if (X.rank() == 0) s = {};
    s.push_back(static_cast<int64_t>(idx.size()));
    out[0] = {X.dtype, s};
  }
  void compute(const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) const override {
    const Tensor& X = *in[0];
    const std::vector<int64_t> idx = int_values_any(*in[1]);
    const int64_t d = X.rank() ? X.shape.back() : 0, k = static_cast<int64_t>(idx.size());
    const int64_t rows = d ? X.numel() / d : 0;
    const size_t es = dtype_itemsize(X.dtype);
    const char* x = static_cast<const char*>(X.data);
    char* y = static_cast<char*>(out[0]->data);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t j = 0; j < k; ++j) std::memcpy(y + (r * k + j) * es, x + (r * d + idx[j]) * es, es);
  }
 private:
  std::vector<int64_t> int_values_any(const Tensor& Y) const {
    if (Y.dtype != kInt64 && Y.dtype != kInt32)
      fail(ErrorKind::kInvalidType, who_ + ": Y must be int64 or int32, got tensor(" + dtype_name(Y.dtype) + ")");
    std::vector<int64_t> v(static_cast<size_t>(Y.numel()));
    for (size_t i = 0; i < v.size(); ++i)
      v[i] = Y.dtype == kInt64 ? static_cast<const int64_t*>(Y.data)[i] : static_cast<const int32_t*>(Y.data)[i];
    return v;
  }
  std::string who_, node_label_;
};

// ---- OneHotEncoder (integer categories) -----------------------------------------------------------

class OneHotEncoderKernel : public Kernel {
 public:
  explicit OneHotEncoderKernel(const KernelArgs& a) : who_(a.who()), label_(a.node_label()) {
    const std::vector<int64_t> cats = attr_ints(a, "cats_int64s");
    if (cats.empty()) attr_fail(a, "cats_int64s", "empty", "at least one category");
    for (size_t i = 0; i < cats.size(); ++i) pos_.emplace(cats[i], static_cast<int64_t>(i));
    ncats_ = static_cast<int64_t>(cats.size());
    zeros_ = attr_int(a, "zeros", 1) != 0;
  }
  void infer(const std::vector<const Tensor*>& in, std::vector<OutSpec>& out) const override {
    if (in.empty() || !in[0]) kernel_fail(who_ + " needs input X");
    expect_numeric(*in[0], who_);
    Shape s = in[0]->shape;
    s.push_back(ncats_);
    out.resize(1);
    out[0] = {kFloat, s};
  }
  void compute(const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) const override {
    const Tensor& X = *in[0];
    const int64_t m = X.numel();
    float* y = static_cast<float*>(out[0]->data);
    std::fill(y, y + m * ncats_, 0.0f);
    for (int64_t i = 0; i < m; ++i) {
      int64_t v;
      switch (X.dtype) {
        case kInt64: v = static_cast<const int64_t*>(X.data)[i]; break;
        case kInt32: v = static_cast<const int32_t*>(X.data)[i]; break;
        case kFloat: v = static_cast<int64_t>(static_cast<const float*>(X.data)[i]); break;
        default: v = static_cast<int64_t>(static_cast<const double*>(X.data)[i]); break;
      }
      auto it = pos_.find(v);
      if (it != pos_.end()) {
        y[i * ncats_ + it->second] = 1.0f;
      } else if (!zeros_) {
        fail(ErrorKind::kInvalidArgument, label_ + ": value " + std::to_string(v) + " is not a known category (zeros=0)");
      }
    }
  }

 private:
  std::string who_, label_;
  std::unordered_map<int64_t, int64_t> pos_;
  int64_t ncats_ = 0;
  bool zeros_ = true;
};

// ---- LabelEncoder (ai.onnx.ml 2+, numeric keys and values) ----------------------------------------

// A numeric attribute list as doubles with its element type: `name` (ints / floats) or name_tensor.
struct NumList {
  std::vector<double> v;
  int dtype = 0;
  std::string attr;  // the attribute it came from
};

bool read_numlist(const KernelArgs& a, const std::string& base, NumList& out) {
  auto tensor = a.attrs.find(base + "_tensor");
  if (tensor != a.attrs.end() && tensor->second.kind == AttrValue::kTensor && tensor->second.t) {
    const Tensor& t = *tensor->second.t;
    out.dtype = t.dtype;
    out.attr = base + "_tensor";
    out.v.resize(static_cast<size_t>(t.numel()));
    for (size_t i = 0; i < out.v.size(); ++i) {
      switch (t.dtype) {
        case kFloat: out.v[i] = static_cast<const float*>(t.data)[i]; break;
        case kDouble: out.v[i] = static_cast<const double*>(t.data)[i]; break;
        case kInt64: out.v[i] = static_cast<double>(static_cast<const int64_t*>(t.data)[i]); break;
        case kInt32: out.v[i] = static_cast<const int32_t*>(t.data)[i]; break;
        default: return false;
      }
    }
    return true;
  }
  if (a.has(base + "_int64s")) {
    for (int64_t x : attr_ints(a, base + "_int64s")) out.v.push_back(static_cast<double>(x));
    out.dtype = kInt64;
    out.attr = base + "_int64s";
    return true;
  }
  if (a.has(base + "_floats")) {
    out.v = attr_floats(a, base + "_floats");
    out.dtype = kFloat;
    out.attr = base + "_floats";
    return true;
  }
  return false;
}

bool numeric_label_encoder(const KernelArgs& a) {
  if (a.since_version < 2 && a.opset < 2) return false;
  NumList k, v;
  if (!read_numlist(a, "keys", k) || !read_numlist(a, "values", v)) return false;
  auto d = a.attrs.find("default_tensor");
  if (d != a.attrs.end() && (d->second.kind != AttrValue::kTensor || !d->second.t)) return false;
  return true;
}

class LabelEncoderKernel : public Kernel {
 public:
  explicit LabelEncoderKernel(const KernelArgs& a) : who_(a.who()) {
    NumList k, v;
    read_numlist(a, "keys", k);
    read_numlist(a, "values", v);
    if (k.v.size() != v.v.size())
      attr_fail(a, v.attr, std::to_string(v.v.size()) + " values",
                std::to_string(k.v.size()) + " values, one per key of " + k.attr);
    key_type_ = k.dtype;
    out_type_ = v.dtype;
    for (size_t i = 0; i < k.v.size(); ++i) {
      if (std::isnan(k.v[i])) {  // a NaN key maps NaN inputs from version 4 on (before: never matched)
        if (!has_nan_) nan_value_ = v.v[i];
        has_nan_ = a.since_version >= 4 || (a.since_version == 0 && a.opset >= 4);
      } else {
        table_.emplace(k.v[i], v.v[i]);  // the first of repeated keys wins, as in the numpy kernel
      }
    }
    auto d = a.attrs.find("default_tensor");
    if (d != a.attrs.end()) {
      NumList dl;
      read_numlist(a, "default", dl);
      default_ = dl.v.empty() ? 0 : dl.v[0];
    } else if (out_type_ == kInt64 || out_type_ == kInt32) {
      default_ = static_cast<double>(attr_int(a, "default_int64", -1));
    } else {
      default_ = attr_float(a, "default_float", -0.0, true);
    }
  }
  void infer(const std::vector<const Tensor*>& in, std::vector<OutSpec>& out) const override {
    if (in.empty() || !in[0]) kernel_fail(who_ + " needs input X");
    const int t = in[0]->dtype;
    const bool int_keys = key_type_ == kInt64 || key_type_ == kInt32;
    if (!numeric(t) || int_keys != (t == kInt64 || t == kInt32))
      fail(ErrorKind::kInvalidType, who_ + ": X is tensor(" + dtype_name(t) + "), the keys are " +
                                        (int_keys ? "integers" : "floats"));
    out.resize(1);
    out[0] = {out_type_, in[0]->shape};
  }
  void compute(const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) const override {
    const Tensor& X = *in[0];
    Tensor& Y = *out[0];
    for (int64_t i = 0, m = X.numel(); i < m; ++i) {
      double x;
      switch (X.dtype) {
        case kInt64: x = static_cast<double>(static_cast<const int64_t*>(X.data)[i]); break;
        case kInt32: x = static_cast<const int32_t*>(X.data)[i]; break;
        case kFloat: x = static_cast<const float*>(X.data)[i]; break;
        default: x = static_cast<const double*>(X.data)[i]; break;
      }
      double r = default_;
      if (std::isnan(x)) {
        if (has_nan_) r = nan_value_;
      } else {
        auto it = table_.find(x);
        if (it != table_.end()) r = it->second;
      }
      switch (out_type_) {
        case kInt64: static_cast<int64_t*>(Y.data)[i] = static_cast<int64_t>(r); break;
        case kInt32: static_cast<int32_t*>(Y.data)[i] = static_cast<int32_t>(r); break;
        case kFloat: static_cast<float*>(Y.data)[i] = static_cast<float>(r); break;
        default: static_cast<double*>(Y.data)[i] = r; break;
      }
    }
  }

 private:
  std::string who_;
  int key_type_ = kInt64, out_type_ = kInt64;
  std::unordered_map<double, double> table_;
  bool has_nan_ = false;
  double nan_value_ = 0, default_ = 0;
};

// Nodes whose labels or categories are strings stay on numpy.
bool int_class_labels(const KernelArgs& a) {
  return !a.has("classlabels_strings") || attr_strings(a, "classlabels_strings").empty();
}
bool int_categories(const KernelArgs& a) { return a.has("cats_int64s") && !a.has("cats_strings"); }

}  // namespace

ONNXFAST_KERNELS(ml_linear) {
  const std::vector<int> num = {kFloat, kDouble, kInt64, kInt32};
  kernel("LinearClassifier", "ai.onnx.ml").since(1).types(num).when(int_class_labels).make([](const KernelArgs& a) {
    return std::make_unique<LinearKernel>(a, true);
  });
  kernel("LinearRegressor", "ai.onnx.ml").since(1).types(num).make([](const KernelArgs& a) {
    return std::make_unique<LinearKernel>(a, false);
  });
  kernel("Scaler", "ai.onnx.ml").since(1).types(num).make<ScalerKernel>();
  kernel("Imputer", "ai.onnx.ml").since(1).types(num).make<ImputerKernel>();
  kernel("Binarizer", "ai.onnx.ml").since(1).types({kFloat, kDouble}).make<BinarizerKernel>();
  kernel("Normalizer", "ai.onnx.ml").since(1).types(num).make<NormalizerKernel>();
  kernel("ArrayFeatureExtractor", "ai.onnx.ml").since(1).types(num).make<ArrayFeatureExtractorKernel>();
  kernel("FeatureVectorizer", "ai.onnx.ml").since(1).types(num).make<FeatureVectorizerKernel>();
  kernel("OneHotEncoder", "ai.onnx.ml").since(1).types(num).when(int_categories).make<OneHotEncoderKernel>();
  kernel("LabelEncoder", "ai.onnx.ml").since(2).types(num).when(numeric_label_encoder).make<LabelEncoderKernel>();
}

}  // namespace onnxfast
