// Resize, float32 (opset 10 and later; Upsample 7-9 as Resize-10): modes nearest / linear / cubic, every
// coordinate_transformation_mode and nearest_mode, cubic_coeff_a, exclude_outside, antialias,
// tf_crop_and_resize with roi and extrapolation_value, scales or sizes (constant or fed), and the
// opset-18 axes and keep_aspect_ratio_policy.
//
// Semantics are the numpy kernel's (onnxfast/ops/tensor.py: _resize, _src_coords, _nearest_index,
// _taps): the same output shape (floor(scale * in) for scales, sizes, or int(s * in + 0.5) when the
// aspect ratio is kept), the same axes left alone (scale ~1, same length, not tf_crop_and_resize),
// and per resized axis a tap table built in double precision as numpy does (source coordinate,
// then the nearest index or the linear / cubic taps, weights cast to float32).
//
// Application:
// - nearest: one gather over output rows (every dim but the last) for all resized axes at once;
//   bitwise equal to numpy.
// - linear / cubic: separable passes in the numpy kernel's axis order with its float32 arithmetic
//   (each tap's product by its float weight, added tap by tap), so results agree to rounding. When
//   the last two passes are the tensor's last two axes (NCHW: H then W) they are fused: per output
//   row, the H taps combine input rows into a thread-local row that the W taps then gather. Other
//   passes combine whole rows (outer x taps x inner), with scratch blocks between passes.
// - tf_crop_and_resize: outputs whose source coordinate lies outside the input on any axis are set
//   to extrapolation_value after the passes.
// This file is compiled with -ffp-contract=off (CMakeLists.txt) so no multiply-add is fused.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "../threadpool/threadpool.h"
#include "kernel.h"

namespace onnxfast {
namespace {

enum class Mode { kNearest, kLinear, kCubic, kUnknown };
enum class Coord { kHalfPixel, kHalfPixelSymmetric, kPytorchHalfPixel, kAlignCorners, kAsymmetric, kTfCropAndResize, kUnknown };
enum class Rounding { kRoundPreferFloor, kRoundPreferCeil, kFloor, kCeil, kUnknown };
enum class Aspect { kStretch, kNotLarger, kNotSmaller };

Mode parse_mode(const std::string& s) {
  if (s == "nearest") return Mode::kNearest;
  if (s == "linear" || s == "bilinear") return Mode::kLinear;
  if (s == "cubic") return Mode::kCubic;
  return Mode::kUnknown;
}

Coord parse_coord(const std::string& s) {
  if (s == "half_pixel") return Coord::kHalfPixel;
  if (s == "half_pixel_symmetric") return Coord::kHalfPixelSymmetric;
  if (s == "pytorch_half_pixel") return Coord::kPytorchHalfPixel;
  if (s == "align_corners") return Coord::kAlignCorners;
  if (s == "asymmetric") return Coord::kAsymmetric;
  if (s == "tf_crop_and_resize") return Coord::kTfCropAndResize;
  return Coord::kUnknown;
}

Rounding parse_rounding(const std::string& s) {
  if (s == "round_prefer_floor") return Rounding::kRoundPreferFloor;
  if (s == "round_prefer_ceil") return Rounding::kRoundPreferCeil;
  if (s == "floor") return Rounding::kFloor;
  if (s == "ceil") return Rounding::kCeil;
  return Rounding::kUnknown;
}

// A double index into [-2^62, 2^62] (NaN: 0), so absurd coordinates cannot overflow; they are
// clipped to the axis (or extrapolated) afterwards anyway.
int64_t to_index(double v) {
  const double lim = 4611686018427387904.0;
  if (std::isnan(v)) return 0;
  return static_cast<int64_t>(std::max(-lim, std::min(lim, v)));
}

// numpy's float64 sum along a contiguous row (pairwise_sum: sequential below 8 values, eight
// accumulators up to 128, halves above), so normalized weights match numpy's bit for bit.
double pairwise_sum(const double* a, int64_t n) {
  if (n < 8) {
    double res = -0.0;
    for (int64_t i = 0; i < n; ++i) res += a[i];
    return res;
  }
  if (n <= 128) {
    double r[8];
    for (int j = 0; j < 8; ++j) r[j] = a[j];
    int64_t i = 8;
    for (; i < n - (n % 8); i += 8)
      for (int j = 0; j < 8; ++j) r[j] += a[i + j];
    double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; ++i) res += a[i];
    return res;
  }
  int64_t n2 = n / 2;
  n2 -= n2 % 8;
  return pairwise_sum(a, n2) + pairwise_sum(a + n2, n - n2);
}

double cubic_weight(double u, double a) {
  u = std::fabs(u);
  const double u2 = u * u, u3 = u2 * u;
  if (u <= 1) return (a + 2) * u3 - (a + 3) * u2 + 1;
  if (u < 2) return a * u3 - 5 * a * u2 + 8 * a * u - 4 * a;
  return 0.0;
}

// One resized axis: per output index, `taps` source indices (clipped to the axis) and float
// weights (none for nearest), and the flags of outputs to extrapolate (tf_crop_and_resize).
struct AxisTable {
  int64_t axis = 0, in_len = 0, out_len = 0, taps = 1;
  std::vector<int64_t> index;   // out_len x taps
  std::vector<float> weight;    // out_len x taps; empty for nearest
  std::vector<uint8_t> outside; // out_len flags; empty when no output is outside
};

struct Geometry {
  Shape out_shape;
  std::vector<int64_t> axes;   // the axes scales / sizes refer to, in attribute order
  std::vector<double> scale;   // per tensor axis
  std::vector<double> roi;     // starts then ends (2 x rank), or empty: (0, 1) on every axis
};

// Element offsets of a row-major shape.
std::vector<int64_t> strides_of(const Shape& s) {
  std::vector<int64_t> st(s.size(), 1);
  for (size_t i = s.size(); i-- > 1;) st[i - 1] = st[i] * s[i];
  return st;
}

// dst[k] = sum over taps j of rows[j][k] * w[j], row j at base + index[j] * stride; the products
// added tap by tap in float32, as numpy's axis pass does.
void combine_rows(const float* base, int64_t stride, const int64_t* index, const float* w, int64_t taps,
                  int64_t len, float* dst) {
  const float* r0 = base + index[0] * stride;
  const float w0 = w[0];
  if (taps == 2) {
    const float* r1 = base + index[1] * stride;
    const float w1 = w[1];
    for (int64_t k = 0; k < len; ++k) dst[k] = r0[k] * w0 + r1[k] * w1;
    return;
  }
  for (int64_t k = 0; k < len; ++k) dst[k] = r0[k] * w0;
  for (int64_t j = 1; j < taps; ++j) {
    const float* r = base + index[j] * stride;
    const float wj = w[j];
    for (int64_t k = 0; k < len; ++k) dst[k] += r[k] * wj;
  }
}

// dst[o] = sum over taps j of src[index[o][j]] * w[o][j], along one contiguous row.
void gather_row(const float* src, const AxisTable& t, float* dst) {
  const int64_t taps = t.taps;
  const int64_t* ix = t.index.data();
  const float* w = t.weight.data();
  if (taps == 2) {
    for (int64_t o = 0; o < t.out_len; ++o, ix += 2, w += 2) dst[o] = src[ix[0]] * w[0] + src[ix[1]] * w[1];
    return;
  }
  for (int64_t o = 0; o < t.out_len; ++o, ix += taps, w += taps) {
    float acc = src[ix[0]] * w[0];
    for (int64_t j = 1; j < taps; ++j) acc += src[ix[j]] * w[j];
    dst[o] = acc;
  }
}

// Walks output rows (every dim but the last) of `shape` from row `first`, exposing coordinates.
Odometer<1> row_walk(const Shape& shape, int64_t first) {
  Odometer<1> od;
  od.dims.assign(shape.begin(), shape.end() - 1);
  od.strides[0] = strides_of(od.dims);
  od.seek(first);
  return od;
}

class ResizeKernel : public Kernel {
 public:
  // The Resize schema whose semantics apply: Upsample (opset 7-9; deprecated at 10) is Resize-10
  // (asymmetric coordinates, floor rounding, scales only).
  static int schema_version(const KernelArgs& a) { return a.op_type == "Upsample" ? 10 : a.opset; }

  // a.opset is the model's opset: for Resize (schemas 10, 11, 13, 18, 19) opset >= 11 / >= 18 is the
  // numpy kernel's since_version test.
  explicit ResizeKernel(const KernelArgs& a)
      : name_(a.op_type + " '" + a.node_name + "'"),
        opset_(schema_version(a)),
        mode_name_(a.op_type == "Upsample"
                       ? expect_known_string(a, "mode", "nearest", {"nearest", "linear", "bilinear", "cubic"})
                       : expect_known_string(a, "mode", "nearest", {"nearest", "linear", "cubic"})),
        coord_name_(schema_version(a) >= 11
                        ? expect_known_string(a, "coordinate_transformation_mode", "half_pixel",
                                              {"half_pixel", "half_pixel_symmetric", "pytorch_half_pixel",
                                               "align_corners", "asymmetric", "tf_crop_and_resize"})
                        : "asymmetric"),
        rounding_name_(schema_version(a) >= 11
                           ? expect_known_string(a, "nearest_mode", "round_prefer_floor",
                                                 {"round_prefer_floor", "round_prefer_ceil", "floor", "ceil"})
                           : "floor"),
        mode_(parse_mode(mode_name_)),
        coord_(parse_coord(coord_name_)),
        rounding_(parse_rounding(rounding_name_)),
        cubic_a_(attr_float(a, "cubic_coeff_a", -0.75)),
        // flags: any nonzero value is true, as in onnxruntime
        exclude_outside_(attr_int(a, "exclude_outside", 0) != 0),
        antialias_(schema_version(a) >= 18 && attr_int(a, "antialias", 0) != 0),
        extrapolation_(static_cast<float>(attr_float(a, "extrapolation_value", 0.0, true))),
        has_axes_(schema_version(a) >= 18 && a.has("axes")),
        axes_attr_(has_axes_ ? attr_ints(a, "axes") : std::vector<int64_t>{}) {
    const int64_t r = a.rank_of(0);
    check_axes(a, "axes", axes_attr_, r);
    if (a.op_type == "Upsample" && a.has("scales")) {  // opset 7 and 8: scales is an attribute
      scales_attr_ = attr_floats(a, "scales");
      for (double v : scales_attr_)
        if (!(v > 0.0) || !std::isfinite(v))  // (onnxruntime refuses scales < 1; onnxfast downsamples)
          attr_fail(a, "scales", list_str(scales_attr_), "finite positive scales");
      if (r >= 0 && static_cast<int64_t>(scales_attr_.size()) != r)
        attr_fail(a, "scales", list_str(scales_attr_), "one scale per axis of the input, of rank " + std::to_string(r));
    }
    const std::string policy = schema_version(a) >= 18
                                   ? expect_known_string(a, "keep_aspect_ratio_policy", "stretch",
                                                         {"stretch", "not_larger", "not_smaller"})
                                   : "stretch";
    aspect_ = policy == "stretch" ? Aspect::kStretch : policy == "not_larger" ? Aspect::kNotLarger : Aspect::kNotSmaller;
  }

  void infer(const std::vector<const Tensor*>& in, std::vector<OutSpec>& out) const override {
    out.resize(1);
    out[0] = {kFloat, geometry(in).out_shape};
  }

  void compute(const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) const override {
    const Geometry g = geometry(in);
    const Tensor& X = *in[0];
    const int64_t r = X.rank();
    // The passes, in the numpy kernel's order (tables are built even for empty outputs, so bad
    // modes fail alike).
    std::vector<AxisTable> tables;
    for (int64_t a : g.axes) {
      const double s = g.scale[a];
      const int64_t n_in = X.shape[a], o = g.out_shape[a];
      const bool unit = std::fabs(s - 1.0) <= 1e-9 * std::max(std::fabs(s), 1.0);  // math.isclose
      if (unit && o == n_in && coord_ != Coord::kTfCropAndResize) continue;
      const double r0 = g.roi.empty() ? 0.0 : g.roi[a], r1 = g.roi.empty() ? 1.0 : g.roi[r + a];
      tables.push_back(table(a, n_in, o, s, r0, r1));
    }
    float* y = out[0]->ptr<float>();
    if (shape_numel(g.out_shape) == 0) return;
    const float* x = X.ptr<float>();
    if (mode_ == Mode::kNearest) {
      gather_nearest(x, X.shape, tables, g.out_shape, y);
    } else {
      interpolate(x, X.shape, tables, y);
    }
    extrapolate(tables, g.out_shape, y);
  }

 private:
  // Inputs: X, then (opset 10) scales or (11+) roi, scales, sizes; empty tensors are absent.
  const Tensor* optional_input(const std::vector<const Tensor*>& in, size_t i) const {
    return i < in.size() && in[i] && in[i]->numel() > 0 ? in[i] : nullptr;
  }

  std::vector<double> reals(const Tensor& t, const char* what) const {
    const int64_t n = t.numel();
    std::vector<double> v(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      switch (t.dtype) {
        case kFloat: v[i] = t.ptr<float>()[i]; break;
        case kDouble: v[i] = t.ptr<double>()[i]; break;
        case kFloat16: v[i] = half_to_float32(t.ptr<uint16_t>()[i]); break;
        default:
          fail(ErrorKind::kInvalidType, name_ + ": " + what + " has type tensor(" + dtype_name(t.dtype) +
                                            "), expected tensor(float), tensor(double) or tensor(float16)");
      }
    }
    return v;
  }

  // An output length from a double (floor'ed or truncated by the caller): too large to hold is an
  // allocation failure, as the numpy kernel's check_alloc reports it.
  int64_t checked_length(double v, int64_t axis) const {
    if (std::isnan(v)) kernel_fail(name_ + ": output length of axis " + std::to_string(axis) + " is not a number");
    if (std::fabs(v) >= 4611686018427387904.0)
      fail(ErrorKind::kAllocation, name_ + ": output length " + std::to_string(v) + " of axis " +
                                       std::to_string(axis) + " is too large to allocate");
    return static_cast<int64_t>(v);
  }

  Geometry geometry(const std::vector<const Tensor*>& in) const {
    if (in.empty() || !in[0]) kernel_fail(name_ + " needs an input");
    expect_dtype(*in[0], kFloat, (name_ + " input").c_str());
    const Shape& xs = in[0]->shape;
    const int64_t r = in[0]->rank();
    Geometry g;
    if (has_axes_) {
      for (int64_t a : axes_attr_) {
        const int64_t na = normalize_axis(a, r, name_, "axes");
        if (std::find(g.axes.begin(), g.axes.end(), na) != g.axes.end())
          kernel_fail(name_ + ": axes " + list_str(axes_attr_) + " contains duplicates");
        g.axes.push_back(na);
      }
    } else {
      for (int64_t a = 0; a < r; ++a) g.axes.push_back(a);
    }
    const size_t na = g.axes.size();
    const bool v10 = opset_ < 11;
    const Tensor* roi_t = v10 ? nullptr : optional_input(in, 1);
    const Tensor* scales_t = optional_input(in, v10 ? 1 : 2);
    const Tensor* sizes_t = v10 ? nullptr : optional_input(in, 3);
    if (scales_t && sizes_t) kernel_fail(name_ + ": only one of scales and sizes may be given");
    const bool attr_scales = !scales_t && !scales_attr_.empty();
    if (roi_t) {  // per resized axis or per tensor axis; other lengths are ignored
      const std::vector<double> rv = reals(*roi_t, "roi");
      if (rv.size() == 2 * na) {
        g.roi.assign(r, 0.0);
        g.roi.resize(2 * r, 1.0);
        for (size_t i = 0; i < na; ++i) {
          g.roi[g.axes[i]] = rv[i];
          g.roi[r + g.axes[i]] = rv[na + i];
        }
      } else if (rv.size() == static_cast<size_t>(2 * r)) {
        g.roi = rv;
      }
    }
    g.scale.assign(r, 1.0);
    g.out_shape = xs;
    if (sizes_t) {
      const std::vector<int64_t> sizes = int_values(*sizes_t, name_, "sizes");
      if (sizes.size() != na)
        kernel_fail(name_ + ": sizes " + list_str(sizes) + " must have one entry per resized axis " + list_str(g.axes));
      for (size_t i = 0; i < na; ++i) {
        const int64_t a = g.axes[i];
        if (xs[a] == 0)
          kernel_fail(name_ + ": axis " + std::to_string(a) + " of length 0 cannot be resized to sizes " + list_str(sizes));
        g.scale[a] = static_cast<double>(sizes[i]) / static_cast<double>(xs[a]);
        g.out_shape[a] = sizes[i];
      }
      if (aspect_ != Aspect::kStretch && na > 0) {
        double s = g.scale[g.axes[0]];
        for (int64_t a : g.axes) s = aspect_ == Aspect::kNotLarger ? std::min(s, g.scale[a]) : std::max(s, g.scale[a]);
        for (int64_t a : g.axes) {
          g.scale[a] = s;
          g.out_shape[a] = checked_length(s * static_cast<double>(xs[a]) + 0.5, a);  // Python int(): truncation
        }
      }
    } else if (scales_t || attr_scales) {
      const std::vector<double> scales = scales_t ? reals(*scales_t, "scales") : scales_attr_;
      if (scales.size() != na)
        kernel_fail(name_ + ": scales " + list_str(scales) + " must have one entry per resized axis " + list_str(g.axes));
      for (double s : scales)
        if (s <= 0) kernel_fail(name_ + ": scales " + list_str(scales) + " must be positive");
      for (size_t i = 0; i < na; ++i) {
        const int64_t a = g.axes[i];
        g.scale[a] = scales[i];
        g.out_shape[a] = checked_length(std::floor(scales[i] * static_cast<double>(xs[a])), a);
      }
    } else {
      kernel_fail(name_ + ": one of scales or sizes must be given");
    }
    int64_t total = 1;
    for (int64_t d : g.out_shape)
      if (d < 0) kernel_fail(name_ + ": negative dimension in output shape " + shape_str(g.out_shape));
    for (int64_t d : g.out_shape) {
      if (d == 0) return g;
      if (total > (int64_t(1) << 60) / d)
        fail(ErrorKind::kAllocation, name_ + ": output of shape " + shape_str(g.out_shape) + " is too large to allocate");
      total *= d;
    }
    return g;
  }

  // The source coordinate of each output index (double, as _src_coords) and, for
  // tf_crop_and_resize, which ones lie outside the input.
  void source_coords(int64_t out_len, int64_t in_len, double scale, double r0, double r1, std::vector<double>& src,
                     std::vector<uint8_t>& outside) const {
    src.resize(out_len);
    const double out_w = scale * static_cast<double>(in_len);
    const double last = static_cast<double>(in_len - 1);
    for (int64_t i = 0; i < out_len; ++i) {
      const double x = static_cast<double>(i);
      double s = 0;
      switch (coord_) {
        case Coord::kAlignCorners: s = out_w == 1 ? 0.0 : x * last / (out_w - 1); break;
        case Coord::kAsymmetric: s = x / scale; break;
        case Coord::kTfCropAndResize:
          s = out_w == 1 ? (r1 - r0) * last / 2 : x * (r1 - r0) * last / (out_w - 1);
          s = s + r0 * last;
          break;
        case Coord::kPytorchHalfPixel: s = out_w == 1 ? -0.5 : (x + 0.5) / scale - 0.5; break;
        case Coord::kHalfPixel: s = (x + 0.5) / scale - 0.5; break;
        case Coord::kHalfPixelSymmetric: {
          const double adjustment = static_cast<double>(out_len) / out_w;
          const double offset = (static_cast<double>(in_len) / 2) * (1 - adjustment);
          s = offset + (x + 0.5) / scale - 0.5;
          break;
        }
        case Coord::kUnknown:
          kernel_fail(name_ + ": unknown coordinate_transformation_mode '" + coord_name_ + "'");
      }
      src[i] = s;
    }
    if (coord_ == Coord::kTfCropAndResize) {
      outside.assign(out_len, 0);
      bool any = false;
      for (int64_t i = 0; i < out_len; ++i) {
        outside[i] = src[i] < 0 || src[i] > last;
        any = any || outside[i];
      }
      if (!any) outside.clear();
    }
  }

  AxisTable table(int64_t axis, int64_t in_len, int64_t out_len, double scale, double r0, double r1) const {
    AxisTable t;
    t.axis = axis;
    t.in_len = in_len;
    t.out_len = out_len;
    std::vector<double> src;
    source_coords(out_len, in_len, scale, r0, r1, src, t.outside);
    const int64_t hi = in_len - 1;
    if (mode_ == Mode::kNearest) {
      if (rounding_ == Rounding::kUnknown) kernel_fail(name_ + ": unknown nearest_mode '" + rounding_name_ + "'");
      t.index.resize(out_len);
      for (int64_t i = 0; i < out_len; ++i) {
        const double fl = std::floor(src[i]), frac = src[i] - fl;
        const bool up = rounding_ == Rounding::kRoundPreferFloor ? frac > 0.5
                        : rounding_ == Rounding::kRoundPreferCeil ? frac >= 0.5
                        : rounding_ == Rounding::kCeil            ? frac > 0
                                                                  : false;
        t.index[i] = std::max<int64_t>(0, std::min(hi, to_index(fl) + up));
      }
      return t;
    }
    if (mode_ == Mode::kUnknown) kernel_fail(name_ + ": unknown mode '" + mode_name_ + "'");
    if (out_len == 0) return t;  // (a zero size would make antialias's support infinite)
    // Taps k = start .. start + n - 1 around base = ceil(src) - 1, as _taps (ratio in (0, 1]).
    const double se = antialias_ ? std::min(scale, 1.0) : 1.0;
    const double support = mode_ == Mode::kLinear ? 1.0 : 2.0;
    const int64_t start = to_index(std::floor(-support / se)) + 1;
    const int64_t n = 2 - 2 * start;
    t.taps = n;
    t.index.resize(out_len * n);
    t.weight.resize(out_len * n);
    std::vector<double> w(n);
    for (int64_t i = 0; i < out_len; ++i) {
      double ratio = src[i] - std::floor(src[i]);
      if (ratio == 0) ratio = 1.0;
      const int64_t base = to_index(src[i] - ratio);
      for (int64_t j = 0; j < n; ++j) {
        const double u = (static_cast<double>(start + j) - ratio) * se;
        w[j] = mode_ == Mode::kLinear ? std::min(std::max(1 - std::fabs(u), 0.0), 1.0) : cubic_weight(u, cubic_a_);
      }
      if (antialias_) {
        const double sum = pairwise_sum(w.data(), n);
        for (double& v : w) v = v / sum;
      }
      if (exclude_outside_) {
        for (int64_t j = 0; j < n; ++j) {
          const int64_t src_index = base + start + j;
          if (src_index < 0 || src_index >= in_len) w[j] = 0.0;
        }
        const double sum = pairwise_sum(w.data(), n);
        for (double& v : w) v = v / sum;
      }
      for (int64_t j = 0; j < n; ++j) {
        t.index[i * n + j] = std::max<int64_t>(0, std::min(hi, base + start + j));
        t.weight[i * n + j] = static_cast<float>(w[j]);
      }
    }
    return t;
  }

  // Nearest: y[o] = x[index_a(o_a) for every axis a] (identity on axes without a table), one
  // output row at a time.
  void gather_nearest(const float* x, const Shape& xs, const std::vector<AxisTable>& tables, const Shape& ys,
                      float* y) const {
    const int64_t r = static_cast<int64_t>(xs.size());
    if (r == 0) {
      y[0] = x[0];
      return;
    }
    std::vector<const AxisTable*> by_axis(r, nullptr);
    for (const AxisTable& t : tables) by_axis[t.axis] = &t;
    const std::vector<int64_t> xst = strides_of(xs);
    const int64_t width = ys[r - 1], rows = shape_numel(ys) / width;
    const AxisTable* last = by_axis[r - 1];
    parallel_for(rows, static_cast<double>(width) + 2.0 * r, [&](int64_t b, int64_t e) {
      Odometer<1> od = row_walk(ys, b);
      for (int64_t row = b; row < e; ++row, od.next()) {
        int64_t off = 0;
        for (int64_t d = 0; d < r - 1; ++d) off += (by_axis[d] ? by_axis[d]->index[od.idx[d]] : od.idx[d]) * xst[d];
        const float* src = x + off;
        float* dst = y + row * width;
        if (!last) {
          std::memcpy(dst, src, static_cast<size_t>(width) * sizeof(float));
        } else {
          const int64_t* ix = last->index.data();
          for (int64_t o = 0; o < width; ++o) dst[o] = src[ix[o]];
        }
      }
    });
  }

  // Linear / cubic: one pass per table in order (the last two fused when they are the tensor's
  // last two axes), scratch blocks between passes, the final pass into y.
  void interpolate(const float* x, const Shape& xs, const std::vector<AxisTable>& tables, float* y) const {
    const int64_t r = static_cast<int64_t>(xs.size());
    if (tables.empty()) {
      std::memcpy(y, x, static_cast<size_t>(shape_numel(xs)) * sizeof(float));
      return;
    }
    std::unique_ptr<ScratchBlock> held[2];  // pass k writes held[k % 2] and reads the other
    const float* cur = x;
    Shape shape = xs;
    for (size_t i = 0, pass = 0; i < tables.size(); ++pass) {
      const AxisTable& t = tables[i];
      const bool fused = i + 2 == tables.size() && t.axis == r - 2 && tables[i + 1].axis == r - 1;
      const size_t used = fused ? 2 : 1;
      Shape next = shape;
      next[t.axis] = t.out_len;
      if (fused) next[r - 1] = tables[i + 1].out_len;
      float* dst = y;
      if (i + used < tables.size()) {
        const int64_t n = shape_numel(next);
        if (static_cast<uint64_t>(n) * sizeof(float) > max_allocation_bytes())
          fail(ErrorKind::kAllocation, name_ + ": intermediate of shape " + shape_str(next) + " is too large to allocate");
        std::unique_ptr<ScratchBlock>& slot = held[pass % 2];
        slot = std::make_unique<ScratchBlock>(static_cast<size_t>(std::max<int64_t>(n, 1)) * sizeof(float));
        if (!slot->data) fail(ErrorKind::kAllocation, name_ + ": out of memory for an intermediate result");
        dst = slot->floats();
      }
      if (shape_numel(next) > 0) {
        if (fused) resize_last_two(cur, shape, t, tables[i + 1], dst);
        else resize_axis(cur, shape, t, dst);
      }
      cur = dst;
      shape = next;
      i += used;
    }
  }

  // One axis: dst[outer, o, inner] = sum_j w[o][j] * src[outer, index[o][j], inner].
  void resize_axis(const float* src, const Shape& shape, const AxisTable& t, float* dst) const {
    int64_t outer = 1, inner = 1;
    for (int64_t d = 0; d < t.axis; ++d) outer *= shape[d];
    for (size_t d = t.axis + 1; d < shape.size(); ++d) inner *= shape[d];
    const int64_t n_in = t.in_len, o = t.out_len;
    if (inner == 1) {  // the last axis: gather along each row
      parallel_for(outer, static_cast<double>(o * t.taps) + 5.0, [&](int64_t b, int64_t e) {
        for (int64_t row = b; row < e; ++row) gather_row(src + row * n_in, t, dst + row * o);
      });
      return;
    }
    parallel_for(outer * o, static_cast<double>(inner * t.taps) + 5.0, [&](int64_t b, int64_t e) {
      int64_t ob = b / o, i = b % o;
      for (int64_t row = b; row < e; ++row) {
        combine_rows(src + ob * n_in * inner, inner, &t.index[i * t.taps], &t.weight[i * t.taps], t.taps, inner,
                     dst + row * inner);
        if (++i == o) i = 0, ++ob;
      }
    });
  }

  // The last two axes fused: per output row, the rows taps of h combine into a row of the input
  // width, which w's taps gather into the output row.
  void resize_last_two(const float* src, const Shape& shape, const AxisTable& h, const AxisTable& w,
                       float* dst) const {
    const int64_t r = static_cast<int64_t>(shape.size());
    const int64_t in_w = shape[r - 1], in_h = shape[r - 2];
    if (in_h * in_w == 0) return;  // (then the output is empty too: a length of 0 resizes only to 0)
    const int64_t planes = shape_numel(shape) / (in_h * in_w);
    const int64_t oh = h.out_len, ow = w.out_len;
    parallel_for(planes * oh, static_cast<double>(h.taps * in_w + w.taps * ow) + 5.0, [&](int64_t b, int64_t e) {
      std::vector<float> line(static_cast<size_t>(in_w));
      int64_t plane = b / oh, i = b % oh;
      for (int64_t row = b; row < e; ++row) {
        combine_rows(src + plane * in_h * in_w, in_w, &h.index[i * h.taps], &h.weight[i * h.taps], h.taps, in_w,
                     line.data());
        gather_row(line.data(), w, dst + row * ow);
        if (++i == oh) i = 0, ++plane;
      }
    });
  }

  // tf_crop_and_resize: outputs outside the input on any axis become extrapolation_value.
  void extrapolate(const std::vector<AxisTable>& tables, const Shape& ys, float* y) const {
    const int64_t r = static_cast<int64_t>(ys.size());
    std::vector<const uint8_t*> flags(r, nullptr);
    bool any = false;
    for (const AxisTable& t : tables)
      if (!t.outside.empty()) flags[t.axis] = t.outside.data(), any = true;
    if (!any) return;
    const int64_t width = ys[r - 1], rows = shape_numel(ys) / width;
    const uint8_t* last = flags[r - 1];
    const float value = extrapolation_;
    parallel_for(rows, static_cast<double>(width) + 2.0 * r, [&](int64_t b, int64_t e) {
      Odometer<1> od = row_walk(ys, b);
      for (int64_t row = b; row < e; ++row, od.next()) {
        bool whole = false;
        for (int64_t d = 0; d < r - 1; ++d) whole = whole || (flags[d] && flags[d][od.idx[d]]);
        float* dst = y + row * width;
        if (whole) std::fill(dst, dst + width, value);
        else if (last)
          for (int64_t o = 0; o < width; ++o)
            if (last[o]) dst[o] = value;
      }
    });
  }

  std::string name_;
  int opset_;
  std::string mode_name_, coord_name_, rounding_name_;
  Mode mode_;
  Coord coord_;
  Rounding rounding_;
  double cubic_a_;
  bool exclude_outside_, antialias_;
  float extrapolation_;
  bool has_axes_;
  std::vector<int64_t> axes_attr_;
  std::vector<double> scales_attr_;  // Upsample-7's scales attribute
  Aspect aspect_ = Aspect::kStretch;
};

}  // namespace

ONNXFAST_KERNELS(resize) {
  kernel("Resize").since(10).types({kFloat}).make<ResizeKernel>();
  kernel("Upsample").since(7).types({kFloat}).make<ResizeKernel>();  // as Resize-10
}

}  // namespace onnxfast
