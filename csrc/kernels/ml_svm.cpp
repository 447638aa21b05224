// Support vector machines of ai.onnx.ml: SVMClassifier and SVMRegressor (opset 1), the native form of
// onnxfast/ops/ml_svm.py (the numpy kernel stays as the reference and as the fallback for string labels).
//
// Semantics are onnxruntime 1.32's, as the numpy kernel documents them: the input cast to float32; the
// kernel matrix k(x, v) of each row against every support vector (LINEAR x.v, POLY (gamma x.v + coef0)^degree,
// RBF exp(-gamma |x - v|^2), SIGMOID tanh(gamma x.v + coef0)); libsvm's one-vs-one decision values (float32
// products summed in float64, class i's support vectors then class j's, then rho), one vote per pair
// (d > 0: class i), the label the first class with the most votes; with prob_a / prob_b, Platt scaling of each
// pair's decision value and libsvm's pairwise coupling, in float32 step by step; the two-class score
// conventions; the liblinear layout when there are no support vectors (scores X.W + rho[0]); SVMRegressor's
// sum, its liblinear layout and its one-class sign. SIGMOID and the LOGISTIC transform of score rows use
// onnxruntime's (MLAS') rational approximations of tanh and the logistic, as the numpy kernel does.
//
// Prepared at session creation: the attributes checked (the numpy kernel's checks and messages), the support
// vectors laid out for the kernel matrix. RBF: panels of 8 vectors ([feature][8] floats); the squared distances
// computed directly, feature by feature in float32 (onnxruntime's sums exactly; no ||x||^2 + ||v||^2 - 2 x.v
// cancellation for rows close to a support vector), 4 rows x 8 vectors per register tile, then the vectorized
// exp (2 ulp; correctly rounded for PROBIT models, see exp_f32_exact). LINEAR / POLY / SIGMOID: pre-packed for
// the GEMM, whose SIMD tiers sum x.v as MLAS does (one fused multiply-add per feature); on the portable tier
// the dot products emulate MLAS' sums instead (mlas_dots). SVMRegressor sums its terms in float32 as MLAS'
// Gemm does (gemv_mlas): scikit-learn's SVR and OneClassSVM cancel their terms heavily, and onnxruntime's
// float32 rounding is part of the scores it gives.
//
// Rows go in fixed blocks (sized by the model only), in parallel, each row computed alone, so results are
// bitwise the same for every thread count. Per-run scratch is a grow-only per-thread buffer.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "../threadpool/threadpool.h"
#include "gemm.h"
#include "gemm_tiers.h"
#include "kernel.h"
#include "ml_common.h"
#include "vecmath.h"

namespace onnxfast {
namespace {

using ml::Post;

typedef float v8f __attribute__((vector_size(32)));  // two SSE registers on the baseline x86-64 build

inline v8f load8(const float* p) {
  v8f v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void store8(float* p, v8f v) { std::memcpy(p, &v, sizeof v); }

typedef double v2d __attribute__((vector_size(16)));
typedef int64_t v2l __attribute__((vector_size(16)));

// exp of two float64 lanes: range reduction by ln 2 in two parts, the degree-10 Taylor polynomial in Estrin's
// form (a short dependency chain; about 1e-13 relative error), scaled by 2^n through the exponent bits;
// inputs clamped to [-160, 100] (NaN passes through: it compares false).
inline v2d exp2_lanes(v2d x) {
  const double log2e = 1.4426950408889634, ln2_hi = 0.693147180369123816490, ln2_lo = 1.90821492927058770002e-10;
  const v2d magic = {6755399441055744.0, 6755399441055744.0};  // 1.5 * 2^52: t = magic + round(x log2 e)
  const v2d lo = {-160.0, -160.0}, hi = {100.0, 100.0};
  x = x < lo ? lo : x;
  x = x > hi ? hi : x;
  const v2d t = x * log2e + magic;
  const v2d nd = t - magic;
  const v2d r = (x - nd * ln2_hi) - nd * ln2_lo;
  const v2d r2 = r * r, r4 = r2 * r2, r8 = r4 * r4;
  const v2d q0 = r + 1.0, q1 = r * (1.0 / 6) + 0.5, q2 = r * (1.0 / 120) + 1.0 / 24,
            q3 = r * (1.0 / 5040) + 1.0 / 720, q4 = r * (1.0 / 362880) + 1.0 / 40320;
  const v2d p = (q0 + r2 * q1) + r4 * (q2 + r2 * q3) + r8 * (q4 + r2 * (1.0 / 3628800));
  const v2l e = (((v2l)t - (v2l)magic) + 1023) << 52;  // 2^n (vector casts reinterpret the bits)
  return p * (v2d)e;
}

// y[i] = exp(y[i]) for float32 values, evaluated in float64 and rounded once to float32: the correctly rounded
// expf bar about one case in ten million, as glibc's expf that onnxruntime's RBF kernel calls. The vectorized
// float32 exp is 2 ulp off, which PROBIT scores near 0.5 amplify to 1e-4 (Winitzki's erfinv cancels there);
// this one costs several times more on the baseline ISA (float64 in SSE2), so it serves PROBIT models only.
// Overflow gives inf, underflow 0 or a subnormal, NaN stays NaN.
void exp_f32_exact(float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    const v2d a = exp2_lanes(v2d{y[i], y[i + 1]});
    const v2d b = exp2_lanes(v2d{y[i + 2], y[i + 3]});
    y[i] = static_cast<float>(a[0]);
    y[i + 1] = static_cast<float>(a[1]);
    y[i + 2] = static_cast<float>(b[0]);
    y[i + 3] = static_cast<float>(b[1]);
  }
  for (; i < n; ++i) y[i] = static_cast<float>(exp2_lanes(v2d{y[i], 0.0})[0]);
}

// a * b + c rounded once (as a fused multiply-add; the float64 product of two floats is exact).
inline float fma32(float a, float b, float c) {
  return static_cast<float>(static_cast<double>(a) * static_cast<double>(b) + static_cast<double>(c));
}

// MlasComputeTanh: Eigen's rational approximation on [-9, 9] (NaN stays NaN), as onnxruntime's SIGMOID kernel.
inline float mlas_tanh(float v) {
  v = v < -9.f ? -9.f : (v > 9.f ? 9.f : v);
  const float p = v * v;
  float num = fma32(-2.76076847742355e-16f, p, 2.00018790482477e-13f);
  num = fma32(num, p, -8.60467152213735e-11f);
  num = fma32(num, p, 5.12229709037114e-08f);
  num = fma32(num, p, 1.48572235717979e-05f);
  num = fma32(num, p, 6.37261928875436e-04f);
  num = fma32(num, p, 4.89352455891786e-03f);
  num = num * v;
  float den = fma32(1.19825839466702e-06f, p, 1.18534705686654e-04f);
  den = fma32(den, p, 2.26843463243900e-03f);
  den = fma32(den, p, 4.89352518554385e-03f);
  return num / den;
}

// MlasComputeLogistic: Eigen's rational approximation on [-18, 18], clamped to [0, 1] (onnxruntime's LOGISTIC
// transform of score rows).
inline float mlas_logistic(float v) {
  v = v < -18.f ? -18.f : (v > 18.f ? 18.f : v);
  const float p = v * v;
  float num = fma32(p, 4.37031012579801e-11f, 1.15627324459942e-07f);
  num = fma32(num, p, 6.08574864600143e-05f);
  num = fma32(num, p, 8.51377133304701e-03f);
  num = fma32(num, p, 2.48287947061529e-01f);
  num = num * v;
  float den = fma32(p, 6.10247389755681e-13f, 5.76102136993427e-09f);
  den = fma32(den, p, 6.29106785017040e-06f);
  den = fma32(den, p, 1.70198817374094e-03f);
  den = fma32(den, p, 1.16817656904453e-01f);
  den = fma32(den, p, 9.93151921023180e-01f);
  const float out = num / den + 0.5f;
  return out < 0.f ? 0.f : (out > 1.f ? 1.f : out);
}

// sum of float32 products c[i] * k[i] in float64 (onnxruntime: `double sum += float * float`), four partial sums.
inline double dot_f64(const float* c, const float* k, int64_t n) {
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    s0 += static_cast<double>(c[i] * k[i]);
    s1 += static_cast<double>(c[i + 1] * k[i + 1]);
    s2 += static_cast<double>(c[i + 2] * k[i + 2]);
    s3 += static_cast<double>(c[i + 3] * k[i + 3]);
  }
  for (; i < n; ++i) s0 += static_cast<double>(c[i] * k[i]);
  return (s0 + s1) + (s2 + s3);
}

// y[r] = c + A[r] . w for `rows` rows of A (row stride lda, n columns), summed as onnxruntime's Gemm sums a
// single output column with MLAS: a float32 accumulator with one fused multiply-add per term, over slices of
// 1024 terms, each slice's sum added to the output (which starts at c). Emulated with float64 arithmetic, exact
// for the fused multiply-add; four rows at a time, so that the four dependency chains overlap. (The SVMRegressor
// sums its terms in float32 like this, with heavy cancellation in scikit-learn's SVR and OneClassSVM; summing
// them more accurately would leave onnxruntime's scores by more than 1e-5.)
void gemv_mlas(const float* A, int64_t lda, int64_t rows, const float* w, int64_t n, float c, float* y) {
  constexpr int64_t kSlice = 1024;
  int64_t r = 0;
  for (; r + 4 <= rows; r += 4) {
    const float* a0 = A + r * lda;
    const float* a1 = a0 + lda;
    const float* a2 = a1 + lda;
    const float* a3 = a2 + lda;
    float o0 = c, o1 = c, o2 = c, o3 = c;
    for (int64_t s0 = 0; s0 < n; s0 += kSlice) {
      const int64_t s1 = std::min(n, s0 + kSlice);
      float p0 = 0.f, p1 = 0.f, p2 = 0.f, p3 = 0.f;
      for (int64_t m = s0; m < s1; ++m) {
        const double wm = w[m];
        p0 = static_cast<float>(a0[m] * wm + p0);
        p1 = static_cast<float>(a1[m] * wm + p1);
        p2 = static_cast<float>(a2[m] * wm + p2);
        p3 = static_cast<float>(a3[m] * wm + p3);
      }
      o0 += p0;
      o1 += p1;
      o2 += p2;
      o3 += p3;
    }
    y[r] = o0;
    y[r + 1] = o1;
    y[r + 2] = o2;
    y[r + 3] = o3;
  }
  for (; r < rows; ++r) {
    const float* a0 = A + r * lda;
    float o0 = c;
    for (int64_t s0 = 0; s0 < n; s0 += kSlice) {
      const int64_t s1 = std::min(n, s0 + kSlice);
      float p0 = 0.f;
      for (int64_t m = s0; m < s1; ++m) p0 = static_cast<float>(a0[m] * static_cast<double>(w[m]) + p0);
      o0 += p0;
    }
    y[r] = o0;
  }
}

// The post transform of a row of two or more scores (onnxruntime's batched_update_scores_inplace): LOGISTIC with
// MLAS' approximation, PROBIT as probit_ort, the softmaxes as ml_common.h computes them.
void transform_row(Post post, float* z, int64_t c) {
  if (post == Post::kNone) return;
  if (post == Post::kProbit) {
    for (int64_t i = 0; i < c; ++i) z[i] = ml::probit(z[i]);
    return;
  }
  if (post == Post::kLogistic) {
    for (int64_t i = 0; i < c; ++i) z[i] = mlas_logistic(z[i]);
    return;
  }
  ml::post_row<float>(post, z, c);
}

// Grow-only per-thread scratch (no allocation per run once warm).
char* scratch_bytes(size_t n) {
  thread_local std::unique_ptr<char[]> buf;
  thread_local size_t size = 0;
  if (size < n) {
    buf.reset();
    size = 0;
    buf.reset(new (std::nothrow) char[n]);
    if (!buf)
      fail(ErrorKind::kAllocation, "SVM kernel: out of memory for a scratch buffer of " + std::to_string(n) + " bytes");
    size = n;
  }
  return buf.get();
}

inline size_t align64(size_t n) { return (n + 63) / 64 * 64; }

std::string shape_tuple(const Shape& s) {
  std::string out = "(";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + (s.size() == 1 ? ",)" : ")");
}

// "1 value", "3 values": a list length for messages.
std::string count(size_t n) { return std::to_string(n) + (n == 1 ? " value" : " values"); }

std::vector<float> floats32(const KernelArgs& a, const std::string& name) {
  const std::vector<double> d = attr_floats(a, name);
  return std::vector<float>(d.begin(), d.end());
}

// ---- the SVM kernel (kernel_type, kernel_params) and the kernel matrix of a set of vectors ----

enum class KernelType { kLinear, kPoly, kRbf, kSigmoid };

class KernelMatrix {
 public:
  // Reads kernel_type and kernel_params (checked as the numpy kernel checks them).
  void read(const KernelArgs& a) {
    const std::string t = expect_known_string(a, "kernel_type", "LINEAR", {"LINEAR", "POLY", "RBF", "SIGMOID"});
    kind_ = t == "POLY" ? KernelType::kPoly : t == "RBF" ? KernelType::kRbf : t == "SIGMOID" ? KernelType::kSigmoid
                                                                                           : KernelType::kLinear;
    if (!a.has("kernel_params"))  // onnxruntime reads it unconditionally
      attr_fail(a, "kernel_params", "missing", "given ([gamma, coef0, degree], or empty)");
    const std::vector<double> p = attr_floats(a, "kernel_params");
    if (p.size() != 0 && p.size() != 3)
      attr_fail(a, "kernel_params", count(p.size()), "empty or 3 values [gamma, coef0, degree]");
    if (p.size() == 3) {
      gamma_ = static_cast<float>(p[0]);
      coef0_ = static_cast<float>(p[1]);
      degree_ = static_cast<float>(p[2]);
    }
  }

  // The support vectors (m x f, row-major). `linear`: the LINEAR kernel whatever kernel_type says, plus
  // `bias` (the liblinear layout's scores X.W + rho[0]).
  void set_vectors(const float* v, int64_t m, int64_t f, bool linear = false, float bias = 0.f) {
    if (linear) kind_ = KernelType::kLinear;
    bias_ = bias;
    m_ = m;
    f_ = f;
    mpad_ = (m + 7) / 8 * 8;
    // Without a SIMD GEMM tier (the portable one multiplies and adds separately), the dot products emulate
    // onnxruntime's MLAS sums exactly instead: scikit-learn's linear SVR, for one, cancels its terms so
    // heavily that one ulp of a kernel value moves its score by 1e-5. The SIMD tiers sum like MLAS already.
    emulate_ = kind_ != KernelType::kRbf && std::string(gemm_tier().name) == "portable";
    if (kind_ == KernelType::kRbf || emulate_) {
      // panels of 8 vectors: panel p holds features j = 0..f-1 of vectors 8p..8p+7 ([j][8]), zero-padded
      panels_.assign(static_cast<size_t>(mpad_ * std::max<int64_t>(f, 1)), 0.f);
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < f; ++j) panels_[(i / 8) * 8 * f + j * 8 + (i % 8)] = v[i * f + j];
    } else if (f > 0 && m > 0) {
      packed_ = sgemm_pack_b(true, f, m, v, f);
    }
  }

  // RBF: exp correctly rounded (as onnxruntime's expf) rather than the vectorized float32 exp (2 ulp, several
  // times faster): for scores that amplify the last bit (PROBIT).
  void set_exact_exp(bool on) { exact_exp_ = on; }

  int64_t ld() const { return mpad_; }
  int64_t features() const { return f_; }
  int64_t vectors() const { return m_; }

  // K (rows x ld()): k(x_r, v_m) for the rows of x (rows x f float32); columns m >= vectors() are scratch.
  void eval(const float* x, int64_t rows, float* K) const {
    const int64_t ld = mpad_;
    if (kind_ == KernelType::kRbf) {
      rbf_exponents(x, rows, K);
      if (exact_exp_)
        exp_f32_exact(K, rows * ld);
      else
        vecmath().exp(K, K, rows * ld);  // about 2 ulp
      return;
    }
    const bool linear = kind_ == KernelType::kLinear;
    const float g = linear ? 1.f : gamma_, c0 = linear ? bias_ : coef0_;
    if (emulate_) {
      mlas_dots(x, rows, g, c0, K);
    } else {
      if (f_ > 0 && m_ > 0) {
        sgemm_packed(false, rows, m_, f_, 1.f, x, f_, packed_, 0.f, K, ld);
      } else {
        for (int64_t r = 0; r < rows; ++r) std::fill(K + r * ld, K + r * ld + m_, 0.f);
      }
      // alpha x.v + c as MLAS finishes its one K slice: a fused multiply-add (LINEAR: no alpha, c only if given)
      for (int64_t r = 0; r < rows; ++r) {
        float* k = K + r * ld;
        if (linear) {
          if (c0 != 0.f)
            for (int64_t m = 0; m < m_; ++m) k[m] = k[m] + c0;
        } else {
          for (int64_t m = 0; m < m_; ++m) k[m] = fma32(k[m], g, c0);
        }
      }
    }
    if (linear) return;
    for (int64_t r = 0; r < rows; ++r) {
      float* k = K + r * ld;
      if (kind_ == KernelType::kSigmoid) {
        for (int64_t m = 0; m < m_; ++m) k[m] = mlas_tanh(k[m]);
      } else {
        power(k, m_);
      }
    }
  }

  // Work per row in nanoseconds (rough, for parallel_for).
  double row_cost() const {
    const double fm = static_cast<double>(std::max<int64_t>(f_, 1)) * static_cast<double>(mpad_);
    if (kind_ == KernelType::kRbf) return 0.2 * fm + 0.6 * static_cast<double>(mpad_);
    return (emulate_ ? 1.5 : 0.1) * fm + (kind_ == KernelType::kLinear ? 0.0 : 3.0) * static_cast<double>(mpad_);
  }

 private:
  // alpha x_r.v_m + c into K as onnxruntime's Gemm computes it with MLAS (the numpy kernel's _gemm): K in slices
  // (MlasSgemmOperation's strides), each summed in float32 with one fused multiply-add per term (emulated in
  // float64, exact), added to the output with alpha in a fused multiply-add; the output starts at c (c == 0:
  // the first slice is only scaled).
  void mlas_dots(const float* x, int64_t rows, float alpha, float c, float* K) const {
    const int64_t f = f_, ld = mpad_;
    int64_t step_n = 128, step_k = 128;
    if (m_ >= f) {
      while (step_k / 2 >= f) {
        step_n *= 2;
        step_k /= 2;
      }
    } else {
      while (step_n > 16 && step_n / 2 >= m_) {
        step_k *= 2;
        step_n /= 2;
      }
    }
    const double a = alpha;
    for (int64_t r = 0; r < rows; ++r) {
      const float* xr = x + r * f;
      for (int64_t m0 = 0; m0 < mpad_; m0 += 8) {
        const float* P = panels_.data() + m0 * f;
        float out[8];
        for (int l = 0; l < 8; ++l) out[l] = c;
        bool first = c == 0.f;
        for (int64_t s0 = 0; s0 < f; s0 += step_k) {
          const int64_t s1 = std::min(f, s0 + step_k);
          double part[8] = {0, 0, 0, 0, 0, 0, 0, 0};  // float32 values, held in float64
          for (int64_t j = s0; j < s1; ++j) {
            const double xj = xr[j];
            for (int l = 0; l < 8; ++l) part[l] = static_cast<float>(xj * P[j * 8 + l] + part[l]);
          }
          for (int l = 0; l < 8; ++l)
            out[l] = first ? static_cast<float>(part[l]) * alpha : static_cast<float>(part[l] * a + out[l]);
          first = false;
        }
        std::memcpy(K + r * ld + m0, out, sizeof out);
      }
    }
  }

  // -gamma |x_r - v_m|^2 into K: float32 sums of squared differences, feature by feature (as onnxruntime).
  void rbf_exponents(const float* x, int64_t rows, float* K) const {
    const int64_t f = f_, ld = mpad_;
    const float ng = -gamma_;
    for (int64_t m0 = 0; m0 < mpad_; m0 += 8) {
      const float* P = panels_.data() + m0 * f;
      int64_t r = 0;
      for (; r + 4 <= rows; r += 4) {
        const float* x0 = x + r * f;
        const float* x1 = x0 + f;
        const float* x2 = x1 + f;
        const float* x3 = x2 + f;
        v8f a0 = {}, a1 = {}, a2 = {}, a3 = {};
        for (int64_t j = 0; j < f; ++j) {
          const v8f s = load8(P + j * 8);
          const v8f d0 = x0[j] - s, d1 = x1[j] - s, d2 = x2[j] - s, d3 = x3[j] - s;
          a0 += d0 * d0;
          a1 += d1 * d1;
          a2 += d2 * d2;
          a3 += d3 * d3;
        }
        store8(K + r * ld + m0, ng * a0);
        store8(K + (r + 1) * ld + m0, ng * a1);
        store8(K + (r + 2) * ld + m0, ng * a2);
        store8(K + (r + 3) * ld + m0, ng * a3);
      }
      for (; r < rows; ++r) {
        const float* x0 = x + r * f;
        v8f a0 = {};
        for (int64_t j = 0; j < f; ++j) {
          const v8f d0 = x0[j] - load8(P + j * 8);
          a0 += d0 * d0;
        }
        store8(K + r * ld + m0, ng * a0);
      }
    }
  }

  // k^degree in place (the numpy kernel's forms: squarings for small integer degrees, else pow in float64).
  void power(float* k, int64_t n) const {
    const float d = degree_;
    if (d == 2.f) {
      for (int64_t i = 0; i < n; ++i) k[i] = k[i] * k[i];
    } else if (d == 3.f) {
      for (int64_t i = 0; i < n; ++i) k[i] = k[i] * k[i] * k[i];
    } else if (d >= 0.f && d <= 7.f && std::floor(d) == d) {
      const int e0 = static_cast<int>(d);
      for (int64_t i = 0; i < n; ++i) {
        int e = e0;
        float res = (e & 1) ? k[i] : 1.f, sq = k[i];
        e >>= 1;
        while (e) {
          sq = sq * sq;
          if (e & 1) res = res * sq;
          e >>= 1;
        }
        k[i] = res;
      }
    } else {
      for (int64_t i = 0; i < n; ++i)
        k[i] = static_cast<float>(std::pow(static_cast<double>(k[i]), static_cast<double>(d)));
    }
  }

  KernelType kind_ = KernelType::kLinear;
  float gamma_ = 0.f, coef0_ = 0.f, degree_ = 0.f, bias_ = 0.f;
  bool emulate_ = false, exact_exp_ = false;
  int64_t m_ = 0, f_ = 0, mpad_ = 0;
  std::vector<float> panels_;  // RBF, and the portable tier's emulated dot products
  PackedB packed_;             // LINEAR, POLY, SIGMOID on the SIMD tiers
};

// ---- shared by both operators: input checks, row blocks ----

class SvmBase : public Kernel {
 protected:
  explicit SvmBase(const KernelArgs& a) : who_(a.who()), label_(a.node_label()) {}

  // Rows and features of X (rank 1: one row), checked against the model's feature count.
  void rows_of(const Tensor& X, int64_t& n) const {
    if (X.rank() != 1 && X.rank() != 2)
      fail(ErrorKind::kInvalidArgument, label_ + ": input shape must have 1 or 2 dimensions, got " +
                                            std::to_string(X.rank()) + " (shape " + shape_tuple(X.shape) + ")");
    const int64_t f = X.rank() == 1 ? X.shape[0] : X.shape[1];
    if (f != n_features_)
      fail(ErrorKind::kInvalidArgument, label_ + ": the input has " + std::to_string(f) +
                                            " features, the model expects " + std::to_string(n_features_) +
                                            " (input shape " + shape_tuple(X.shape) + ")");
    n = X.rank() == 1 ? 1 : X.shape[0];
  }

  void check_type(const Tensor& X, bool classifier) const {
    const int t = X.dtype;
    if (t == kFloat || (classifier && (t == kDouble || t == kInt32 || t == kInt64))) return;
    fail(ErrorKind::kInvalidType, label_ + ": input of type " + dtype_name(t) + " is not supported (expected " +
                                      (classifier ? "float32, float64, int32, int64" : "float32") + ")");
  }

  // Rows [r0, r0 + rows) of X as float32: X itself, or converted into `buf`.
  const float* rows_f32(const Tensor& X, int64_t r0, int64_t rows, float* buf) const {
    const int64_t f = n_features_;
    const int64_t off = r0 * f, cnt = rows * f;
    switch (X.dtype) {
      case kFloat: return static_cast<const float*>(X.data) + off;
      case kDouble: {
        const double* p = static_cast<const double*>(X.data) + off;
        for (int64_t i = 0; i < cnt; ++i) buf[i] = static_cast<float>(p[i]);
        return buf;
      }
      case kInt32: {
        const int32_t* p = static_cast<const int32_t*>(X.data) + off;
        for (int64_t i = 0; i < cnt; ++i) buf[i] = static_cast<float>(p[i]);
        return buf;
      }
      default: {
        const int64_t* p = static_cast<const int64_t*>(X.data) + off;
        for (int64_t i = 0; i < cnt; ++i) buf[i] = static_cast<float>(p[i]);
        return buf;
      }
    }
  }

  // Rows per block: a block's kernel matrix within ~32 KiB (a multiple of the 4-row tile, 4 to 64 rows).
  static int64_t block_rows(int64_t ld) {
    const int64_t b = 8192 / std::max<int64_t>(ld, 1);
    return std::max<int64_t>(4, std::min<int64_t>(64, b / 4 * 4));
  }

  std::string who_, label_;
  int64_t n_features_ = 0;
};

// ---- SVMClassifier ----

class SvmClassifier : public SvmBase {
 public:
  explicit SvmClassifier(const KernelArgs& a) : SvmBase(a) {
    kmat_.read(a);
    post_ = ml::read_post(a);
    kmat_.set_exact_exp(post_ == Post::kProbit);
    const std::vector<int64_t> vpc = attr_ints(a, "vectors_per_class");
    prob_a_ = floats32(a, "prob_a");
    prob_b_ = floats32(a, "prob_b");
    const std::vector<float> sv = floats32(a, "support_vectors");
    if (!a.has("rho"))
      attr_fail(a, "rho", "missing", "given (one value per pair of classes; the liblinear layout reads rho[0])");
    if (!a.has("coefficients")) attr_fail(a, "coefficients", "missing", "given");
    rho_ = floats32(a, "rho");
    coef_ = floats32(a, "coefficients");
    labels_ = attr_ints(a, "classlabels_ints");
    if (labels_.empty())
      fail(ErrorKind::kInvalidModel, who_ + ": one of classlabels_strings and classlabels_ints is required");
    k_ = static_cast<int64_t>(labels_.size());
    if (k_ >= 65536)
      attr_fail(a, "classlabels_ints", std::to_string(k_) + " classes", "at most 65535 classes");
    if (prob_a_.size() != prob_b_.size())
      attr_fail(a, "prob_b", count(prob_b_.size()), count(prob_a_.size()) + ", as many as prob_a");
    if (coef_.empty()) attr_fail(a, "coefficients", "empty", "not empty");
    int64_t n_vectors = 0;
    for (size_t i = 0; i < vpc.size(); ++i) {
      if (vpc[i] < 0)
        attr_fail(a, "vectors_per_class", list_str(vpc),
                  "counts >= 0 (index " + std::to_string(i) + " is " + std::to_string(vpc[i]) + ")");
      n_vectors += vpc[i];
    }
    have_proba_ = !prob_a_.empty();
    n_pairs_ = k_ * (k_ - 1) / 2;
    const int64_t k = k_;
    if (n_vectors > 0) {
      svc_ = true;
      if (static_cast<int64_t>(vpc.size()) != k)
        attr_fail(a, "vectors_per_class", count(vpc.size()),
                  count(static_cast<size_t>(k)) + ", one per class label");
      if (sv.size() % static_cast<size_t>(n_vectors))
        attr_fail(a, "support_vectors", count(sv.size()),
                  "a multiple of the " + std::to_string(n_vectors) + " support vectors that vectors_per_class counts");
      n_features_ = static_cast<int64_t>(sv.size()) / n_vectors;
      if (static_cast<int64_t>(coef_.size()) < (k - 1) * n_vectors)
        attr_fail(a, "coefficients", count(coef_.size()),
                  "at least " + count(static_cast<size_t>((k - 1) * n_vectors)) + " (" + std::to_string(k - 1) +
                      " rows of " + std::to_string(n_vectors) + ", one per support vector)");
      if (static_cast<int64_t>(rho_.size()) < n_pairs_)
        attr_fail(a, "rho", count(rho_.size()),
                  "at least " + count(static_cast<size_t>(n_pairs_)) + ", one per pair of classes");
      if (have_proba_ && static_cast<int64_t>(prob_a_.size()) < n_pairs_)
        attr_fail(a, "prob_a", count(prob_a_.size()),
                  "at least " + count(static_cast<size_t>(n_pairs_)) + ", one per pair of classes (prob_b alike)");
      n_vectors_ = n_vectors;
      starts_.assign(1, 0);
      for (int64_t c : vpc) starts_.push_back(starts_.back() + c);
      coef_.resize(static_cast<size_t>(std::max<int64_t>(k - 1, 0) * n_vectors));
      kmat_.set_vectors(sv.data(), n_vectors, n_features_);
      ld_ = kmat_.ld();
      cols_ = have_proba_ ? k : (k > 2 ? n_pairs_ : 2);
      row_cost_ = kmat_.row_cost() + 0.5 * static_cast<double>((k - 1) * n_vectors) +
                  (have_proba_ ? 30.0 * static_cast<double>(k * k) + 40.0 * static_cast<double>(n_pairs_) : 10.0);
    } else {
      // liblinear: one row of coefficients per class, scores X.W + rho[0]
      if (rho_.empty()) attr_fail(a, "rho", "empty", "at least one value (the liblinear layout's constant)");
      n_features_ = static_cast<int64_t>(coef_.size()) / k;
      all_positive_ = true;
      for (float c : coef_)
        if (!(c >= 0.f)) all_positive_ = false;
      kmat_.set_vectors(coef_.data(), k, n_features_, true, rho_[0]);
      ld_ = kmat_.ld();
      cols_ = k;
      row_cost_ = 0.2 * static_cast<double>(std::max<int64_t>(n_features_, 1) * k) + 5.0 * static_cast<double>(k);
    }
    block_ = block_rows(svc_ ? ld_ : std::max<int64_t>(ld_, n_features_));
  }

  void infer(const std::vector<const Tensor*>& in, std::vector<OutSpec>& out) const override {
    if (in.empty() || !in[0]) kernel_fail(who_ + " needs input X");
    check_type(*in[0], true);
    int64_t n;
    rows_of(*in[0], n);
    out.resize(2);
    out[0] = {kInt64, {n}};
    out[1] = {kFloat, {n, cols_}};
  }

  void compute(const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) const override {
    const Tensor& X = *in[0];
    int64_t n;
    rows_of(X, n);
    if (n == 0) return;
    int64_t* Y = static_cast<int64_t*>(out[0]->data);
    float* Z = static_cast<float*>(out[1]->data);
    const int64_t B = block_, f = n_features_, k = k_;
    const int64_t nblocks = (n + B - 1) / B;
    // scratch: the block's rows as float32, its kernel matrix / scores, per-row work
    const size_t x_bytes = X.dtype == kFloat ? 0 : align64(static_cast<size_t>(B * f) * sizeof(float));
    const size_t k_bytes = align64(static_cast<size_t>(B * ld_) * sizeof(float));
    const size_t d_bytes = align64(static_cast<size_t>(n_pairs_) * sizeof(double));
    const size_t v_bytes = align64(static_cast<size_t>(k) * sizeof(int32_t));
    const size_t p_bytes = have_proba_ ? align64(static_cast<size_t>(2 * k * k + 3 * k) * sizeof(float)) : 0;
    const size_t total = x_bytes + k_bytes + d_bytes + v_bytes + p_bytes;
    parallel_for(nblocks, static_cast<double>(B) * row_cost_, [&](int64_t b0, int64_t b1) {
      char* s = scratch_bytes(total);
      float* xbuf = reinterpret_cast<float*>(s);
      float* K = reinterpret_cast<float*>(s + x_bytes);
      double* dec = reinterpret_cast<double*>(s + x_bytes + k_bytes);
      int32_t* votes = reinterpret_cast<int32_t*>(s + x_bytes + k_bytes + d_bytes);
      float* pw = reinterpret_cast<float*>(s + x_bytes + k_bytes + d_bytes + v_bytes);
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t r0 = b * B, rows = std::min(B, n - r0);
        const float* x = rows_f32(X, r0, rows, xbuf);
        kmat_.eval(x, rows, K);  // kernel rows, or the liblinear layout's scores X.W + rho[0]
        for (int64_t i = 0; i < rows; ++i)
          Y[r0 + i] = svc_ ? finish_svc(K + i * ld_, dec, votes, pw, Z + (r0 + i) * cols_)
                           : finish_linear(K + i * ld_, Z + (r0 + i) * cols_);
      }
    });
  }

 private:
  // One row's decision values, votes, label and scores from its kernel row.
  int64_t finish_svc(const float* kr, double* dec, int32_t* votes, float* pw, float* z) const {
    const int64_t k = k_, nv = n_vectors_;
    std::fill(votes, votes + k, 0);
    int64_t p = 0;
    for (int64_t i = 0; i + 1 < k; ++i) {
      const int64_t si = starts_[i], ni = starts_[i + 1] - si;
      for (int64_t j = i + 1; j < k; ++j) {
        const int64_t sj = starts_[j], nj = starts_[j + 1] - sj;
        double d = dot_f64(coef_.data() + (j - 1) * nv + si, kr + si, ni);
        d += dot_f64(coef_.data() + i * nv + sj, kr + sj, nj);
        d += static_cast<double>(rho_[p]);
        dec[p++] = d;
        ++votes[d > 0 ? i : j];
      }
    }
    int64_t best = 0;
    for (int64_t c = 1; c < k; ++c)
      if (votes[c] > votes[best]) best = c;
    if (have_proba_) {
      probabilities(dec, pw, z);
      if (k >= 2)
        transform_row(post_, z, k);
      else if (post_ == Post::kProbit)
        z[0] = ml::probit(z[0]);
    } else if (k > 2) {
      for (int64_t q = 0; q < n_pairs_; ++q) z[q] = static_cast<float>(dec[q]);
      transform_row(post_, z, n_pairs_);
    } else if (n_pairs_ == 0) {  // a single class: onnxruntime leaves the scores uninitialized
      z[0] = z[1] = 0.f;
    } else {  // one decision value, two columns (onnxruntime's conventions)
      const float s = static_cast<float>(dec[0]);
      switch (post_) {
        case Post::kNone: z[0] = -s; z[1] = s; break;
        case Post::kLogistic: {
          const float pos = ml::logistic(s);
          z[0] = 1.f - pos;
          z[1] = pos;
          break;
        }
        case Post::kProbit: z[0] = ml::probit(s); z[1] = 0.f; break;  // onnxruntime writes column 0 only
        default: z[0] = 1.f - s; z[1] = s; break;                      // SOFTMAX, SOFTMAX_ZERO: the raw value
      }
    }
    return labels_[best];
  }

  // Platt scaling of each pair's decision value, then libsvm's pairwise coupling (multiclass_probability,
  // Wu, Lin and Weng's second method) in float32 step by step: the k class probabilities into z.
  void probabilities(const double* dec, float* pw, float* z) const {
    const int64_t k = k_;
    float* r = pw;           // r[i * k + j] = P(i beats j)
    float* Q = r + k * k;
    float* qp = Q + k * k;
    float* p = z;
    int64_t q = 0;
    for (int64_t i = 0; i + 1 < k; ++i)
      for (int64_t j = i + 1; j < k; ++j, ++q) {
        const float val = static_cast<float>(dec[q]) * prob_a_[q] + prob_b_[q];
        float v = 1.f - ml::logistic(val);
        if (v < 1e-7f) v = 1e-7f;  // std::max / std::min: a NaN stays NaN
        if (1.f - 1e-7f < v) v = 1.f - 1e-7f;
        r[i * k + j] = v;
        r[j * k + i] = 1.f - v;
      }
    for (int64_t i = 0; i < k; ++i) {
      float qii = 0.f;
      for (int64_t j = 0; j < i; ++j) {
        qii += r[j * k + i] * r[j * k + i];
        Q[i * k + j] = Q[j * k + i];
      }
      for (int64_t j = i + 1; j < k; ++j) {
        qii += r[j * k + i] * r[j * k + i];
        Q[i * k + j] = -r[j * k + i] * r[i * k + j];
      }
      Q[i * k + i] = qii;
    }
    const float init = 1.f / static_cast<float>(k), eps = 0.005f / static_cast<float>(k);
    for (int64_t t = 0; t < k; ++t) p[t] = init;
    for (int iter = 0; iter < 100; ++iter) {
      float pqp = 0.f;
      for (int64_t t = 0; t < k; ++t) {
        float acc = 0.f;
        for (int64_t j = 0; j < k; ++j) acc = acc + Q[t * k + j] * p[j];
        qp[t] = acc;
        pqp = pqp + p[t] * acc;
      }
      float max_err = 0.f;
      for (int64_t t = 0; t < k; ++t) {
        const float err = std::fabs(qp[t] - pqp);
        if (err > max_err) max_err = err;  // a NaN error is never larger: NaN probabilities stop at once
      }
      if (max_err < eps) break;
      for (int64_t t = 0; t < k; ++t) {
        const float qtt = Q[t * k + t];
        const float diff = (-qp[t] + pqp) / qtt;
        p[t] = p[t] + diff;
        const float d1 = 1.f + diff;
        pqp = (pqp + diff * (diff * qtt + 2.f * qp[t])) / d1 / d1;
        for (int64_t j = 0; j < k; ++j) {
          qp[j] = (qp[j] + diff * Q[t * k + j]) / d1;
          p[j] = p[j] / d1;
        }
      }
    }
  }

  int64_t finish_linear(const float* s, float* z) const {
    const int64_t k = k_;
    int64_t best = 0;  // std::max_element: the first maximum, a NaN never replacing the current best
    for (int64_t c = 1; c < k; ++c)
      if (s[best] < s[c]) best = c;
    int64_t idx = best;
    if (k == 2 && !have_proba_) {
      const float top = s[best];
      if (all_positive_ ? top >= 0.5f : top > 0.f) idx = 1;
    }
    std::memcpy(z, s, static_cast<size_t>(k) * sizeof(float));
    if (k >= 2)
      transform_row(post_, z, k);
    else if (post_ == Post::kProbit)
      z[0] = ml::probit(z[0]);
    return labels_[idx];
  }

  KernelMatrix kmat_;
  Post post_ = Post::kNone;
  std::vector<float> prob_a_, prob_b_, rho_, coef_;
  std::vector<int64_t> labels_, starts_;
  int64_t k_ = 0, n_pairs_ = 0, n_vectors_ = 0, ld_ = 0, cols_ = 2, block_ = 4;
  bool svc_ = false, have_proba_ = false, all_positive_ = true;
  double row_cost_ = 1.0;
};

// ---- SVMRegressor ----

class SvmRegressor : public SvmBase {
 public:
  explicit SvmRegressor(const KernelArgs& a) : SvmBase(a) {
    kmat_.read(a);
    (void)ml::read_post(a);  // checked, then ignored: onnxruntime applies no post transform here
    n_vectors_ = attr_int(a, "n_supports", 0);
    const std::vector<float> sv = floats32(a, "support_vectors");
    if (!a.has("rho")) attr_fail(a, "rho", "missing", "given (rho[0] is the constant)");
    if (!a.has("coefficients")) attr_fail(a, "coefficients", "missing", "given");
    const std::vector<float> rho = floats32(a, "rho");
    coef_ = floats32(a, "coefficients");
    one_class_ = attr_int(a, "one_class", 0) != 0;
    if (coef_.empty()) attr_fail(a, "coefficients", "empty", "not empty");
    if (rho.empty()) attr_fail(a, "rho", "empty", "at least one value (rho[0] is the constant)");
    rho0_ = rho[0];
    if (n_vectors_ > 0) {
      if (static_cast<int64_t>(coef_.size()) < n_vectors_)
        attr_fail(a, "coefficients", count(coef_.size()),
                  "at least " + count(static_cast<size_t>(n_vectors_)) + ", one per support vector (n_supports)");
      if (sv.size() % static_cast<size_t>(n_vectors_))
        attr_fail(a, "support_vectors", count(sv.size()),
                  "a multiple of n_supports (" + std::to_string(n_vectors_) + ")");
      n_features_ = static_cast<int64_t>(sv.size()) / n_vectors_;
      coef_.resize(static_cast<size_t>(n_vectors_));
      kmat_.set_vectors(sv.data(), n_vectors_, n_features_);
      ld_ = kmat_.ld();
      row_cost_ = kmat_.row_cost() + 0.5 * static_cast<double>(n_vectors_);
    } else {  // liblinear layout: one coefficient per feature, the LINEAR kernel whatever kernel_type says
      n_vectors_ = 0;
      n_features_ = static_cast<int64_t>(coef_.size());
      ld_ = 1;
      row_cost_ = 0.5 * static_cast<double>(std::max<int64_t>(n_features_, 1));
    }
    block_ = block_rows(n_vectors_ > 0 ? ld_ : n_features_);
  }

  void infer(const std::vector<const Tensor*>& in, std::vector<OutSpec>& out) const override {
    if (in.empty() || !in[0]) kernel_fail(who_ + " needs input X");
    check_type(*in[0], false);
    int64_t n;
    rows_of(*in[0], n);
    out.resize(1);
    out[0] = {kFloat, {n, 1}};
  }

  void compute(const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) const override {
    const Tensor& X = *in[0];
    int64_t n;
    rows_of(X, n);
    if (n == 0) return;
    float* Y = static_cast<float*>(out[0]->data);
    const int64_t B = block_, f = n_features_;
    const int64_t nblocks = (n + B - 1) / B;
    const size_t k_bytes = n_vectors_ > 0 ? align64(static_cast<size_t>(B * ld_) * sizeof(float)) : 0;
    parallel_for(nblocks, static_cast<double>(B) * row_cost_, [&](int64_t b0, int64_t b1) {
      float* K = reinterpret_cast<float*>(scratch_bytes(std::max<size_t>(k_bytes, 64)));
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t r0 = b * B, rows = std::min(B, n - r0);
        const float* x = static_cast<const float*>(X.data) + r0 * f;
        if (n_vectors_ > 0) {
          kmat_.eval(x, rows, K);
          gemv_mlas(K, ld_, rows, coef_.data(), n_vectors_, rho0_, Y + r0);
        } else {
          gemv_mlas(x, f, rows, coef_.data(), f, rho0_, Y + r0);
        }
        if (one_class_)
          for (int64_t i = 0; i < rows; ++i) Y[r0 + i] = Y[r0 + i] > 0.f ? 1.f : -1.f;
      }
    });
  }

 private:
  KernelMatrix kmat_;
  std::vector<float> coef_;
  float rho0_ = 0.f;
  int64_t n_vectors_ = 0, ld_ = 1, block_ = 4;
  bool one_class_ = false;
  double row_cost_ = 1.0;
};

// String class labels stay on the numpy kernel (the native executor holds no string tensors); onnxruntime
// reads classlabels_strings first when both are given.
bool no_string_labels(const KernelArgs& a) {
  auto it = a.attrs.find("classlabels_strings");
  if (it == a.attrs.end()) return true;
  const AttrValue& v = it->second;
  return v.kind == AttrValue::kStrings ? v.strings.empty()
                                       : (v.kind == AttrValue::kInts && v.ints.empty()) ||
                                             (v.kind == AttrValue::kFloats && v.floats.empty());
}

}  // namespace

ONNXFAST_KERNELS(ml_svm) {
  kernel("SVMClassifier", "ai.onnx.ml").since(1).types({kFloat, kDouble, kInt32, kInt64}).when(no_string_labels)
      .make<SvmClassifier>();
  kernel("SVMRegressor", "ai.onnx.ml").since(1).types({kFloat}).make<SvmRegressor>();
}

}  // namespace onnxfast
