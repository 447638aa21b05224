// The convolution family's attribute checks and int64-checked spatial geometry (conv_geometry.h).
#include "conv_geometry.h"

#include <algorithm>
#include <cstdint>
#include <limits>

namespace onnxfast {

int64_t checked_add(int64_t a, int64_t b, const std::string& who, const char* what) {
  int64_t r;
  if (__builtin_add_overflow(a, b, &r))
    kernel_fail(who + ": " + what + " overflows int64 (" + std::to_string(a) + " + " + std::to_string(b) + ")");
  return r;
}

int64_t checked_mul(int64_t a, int64_t b, const std::string& who, const char* what) {
  int64_t r;
  if (__builtin_mul_overflow(a, b, &r))
    kernel_fail(who + ": " + what + " overflows int64 (" + std::to_string(a) + " * " + std::to_string(b) + ")");
  return r;
}

std::shared_ptr<Storage> guarded_scratch(int64_t count, size_t item, const std::string& who, const char* what) {
  const std::string label = who + ": " + what;
  if (count < 0 || (item && static_cast<uint64_t>(count) > std::numeric_limits<size_t>::max() / 2 / item))
    fail(ErrorKind::kAllocation, label + " of " + std::to_string(count) + " elements is too large");
  return Storage::allocate(static_cast<size_t>(count) * item, label);
}

namespace {

// A list attribute (ints): absent or empty -> {}; another kind -> error.
Shape ints_attr(const KernelArgs& a, const std::string& who, const char* name) {
  auto it = a.attrs.find(name);
  if (it == a.attrs.end() || it->second.kind == AttrValue::kNone) return {};
  if (it->second.kind != AttrValue::kInts)
    kernel_fail(who + ": attribute " + name + " must be a list of integers");
  return it->second.ints;
}

void at_least(const Shape& v, int64_t min, const std::string& who, const char* name) {
  for (int64_t e : v)
    if (e < min)
      kernel_fail(who + ": attribute " + name + " " + list_str(v) + " must contain values >= " + std::to_string(min) +
                  " (got " + std::to_string(e) + ")");
}

}  // namespace

ConvAttrs ConvAttrs::parse(const KernelArgs& a, ConvFamily family) {
  ConvAttrs c;
  c.who = a.op_type + " '" + a.node_name + "'";
  c.family = family;
  const std::string& who = c.who;
  c.auto_pad = a.get_string("auto_pad", "NOTSET");
  if (c.auto_pad.empty()) c.auto_pad = "NOTSET";
  if (c.auto_pad != "NOTSET" && c.auto_pad != "VALID" && !c.same_pad())
    kernel_fail(who + ": attribute auto_pad '" + c.auto_pad +
                "' must be one of NOTSET, SAME_UPPER, SAME_LOWER, VALID");
  if (family != ConvFamily::kPool) {
    c.group = a.get_int("group", 1);
    if (c.group < 1) kernel_fail(who + ": attribute group must be >= 1, got " + std::to_string(c.group));
  } else {
    c.ceil_mode = a.get_int("ceil_mode", 0) != 0;
  }
  c.kernel_shape = ints_attr(a, who, "kernel_shape");
  c.strides = ints_attr(a, who, "strides");
  c.dilations = ints_attr(a, who, "dilations");
  c.pads = ints_attr(a, who, "pads");
  if (family == ConvFamily::kConvTranspose) {
    c.output_padding = ints_attr(a, who, "output_padding");
    c.output_shape = ints_attr(a, who, "output_shape");
  }
  at_least(c.kernel_shape, 1, who, "kernel_shape");
  at_least(c.strides, 1, who, "strides");
  at_least(c.dilations, 1, who, "dilations");
  at_least(c.pads, 0, who, "pads");
  at_least(c.output_padding, 0, who, "output_padding");
  at_least(c.output_shape, 0, who, "output_shape");
  if (c.pads.size() % 2)
    kernel_fail(who + ": attribute pads " + list_str(c.pads) + " must have an even number of values (begins, then ends)");
  if (family == ConvFamily::kPool && c.kernel_shape.empty())
    kernel_fail(who + ": attribute kernel_shape is missing or empty (required)");
  // The spatial rank: the first list that gives it; every other list must agree.
  struct Len {
    const char* name;
    const Shape* v;
    size_t per;  // values per spatial dim
  };
  const Len lens[] = {{"kernel_shape", &c.kernel_shape, 1}, {"strides", &c.strides, 1},
                      {"dilations", &c.dilations, 1},       {"pads", &c.pads, 2},
                      {"output_padding", &c.output_padding, 1}};
  const char* first = nullptr;
  for (const Len& l : lens) {
    if (l.v->empty()) continue;
    const size_t n = l.v->size() / l.per;
    if (!first) {
      first = l.name;
      c.nsp = n;
      c.nsp_attr = std::string(l.name) + " " + list_str(*l.v);
    } else if (n != c.nsp) {
      kernel_fail(who + ": attribute " + l.name + " " + list_str(*l.v) + " must have " + std::to_string(c.nsp * l.per) +
                  " values (" + first + " gives " + std::to_string(c.nsp) + " spatial dimensions)");
    }
  }
  if (family == ConvFamily::kPool && c.auto_pad == "NOTSET")
    for (size_t i = 0; i < c.pads.size(); ++i)
      if (c.pads[i] >= c.kernel_shape[i % c.nsp])
        kernel_fail(who + ": attribute pads " + list_str(c.pads) + " must be smaller than kernel_shape " +
                    list_str(c.kernel_shape) + " (pads[" + std::to_string(i) + "] = " + std::to_string(c.pads[i]) +
                    "; a window must hold an input element)");
  if (family == ConvFamily::kConvTranspose)
    for (size_t i = 0; i < c.output_padding.size(); ++i) {
      const int64_t s = c.strides.empty() ? 1 : c.strides[i], d = c.dilations.empty() ? 1 : c.dilations[i];
      if (c.output_padding[i] >= std::max(s, d))
        kernel_fail(who + ": attribute output_padding " + list_str(c.output_padding) +
                    " must be smaller than max(stride, dilation) = " + std::to_string(std::max(s, d)) +
                    " along spatial axis " + std::to_string(i));
    }
  return c;
}

namespace {

void check_rank_and_kernel(const ConvAttrs& a, const Shape& in, const Shape& kernel) {
  if (a.nsp && a.nsp != in.size())
    kernel_fail(a.who + ": attribute " + a.nsp_attr + " is for " + std::to_string(a.nsp) +
                " spatial dimensions, the input has " + std::to_string(in.size()));
  if (!a.kernel_shape.empty() && a.kernel_shape != kernel)
    kernel_fail(a.who + ": attribute kernel_shape " + list_str(a.kernel_shape) + " differs from the weight's kernel " +
                list_str(kernel));
  for (int64_t k : kernel)
    if (k < 1) kernel_fail(a.who + ": the kernel " + list_str(kernel) + " has an empty dimension");
}

}  // namespace

// What forward and transposed geometry start from: ranks and kernel checked, strides / dilations
// defaulted to 1.
static SpatialGeometry start_geometry(const ConvAttrs& a, const Shape& in, const Shape& kernel) {
  check_rank_and_kernel(a, in, kernel);
  SpatialGeometry g;
  g.in = in;
  g.kernel = kernel;
  g.strides = a.strides.empty() ? Shape(in.size(), 1) : a.strides;
  g.dil = a.dilations.empty() ? Shape(in.size(), 1) : a.dilations;
  return g;
}

SpatialGeometry forward_geometry(const ConvAttrs& a, const Shape& in, const Shape& kernel) {
  SpatialGeometry g = start_geometry(a, in, kernel);
  const size_t n = in.size();
  const std::string& who = a.who;
  g.pad_begin.assign(n, 0);
  g.pad_end.assign(n, 0);
  g.out.assign(n, 0);
  for (size_t i = 0; i < n; ++i) {
    const int64_t s = g.strides[i];
    const int64_t eff = checked_add(checked_mul(kernel[i] - 1, g.dil[i], who, "the dilated kernel extent"), 1, who,
                                    "the dilated kernel extent");
    if (a.same_pad()) {
      const int64_t out = ceil_div(in[i], s);
      // (out - 1) * s < in: no overflow; + eff checked.
      const int64_t total = std::max<int64_t>(0, checked_add((out - 1) * s, eff, who, "the SAME padding") - in[i]);
      const int64_t small = total / 2, big = total - small;
      g.pad_begin[i] = a.auto_pad == "SAME_UPPER" ? small : big;
      g.pad_end[i] = a.auto_pad == "SAME_UPPER" ? big : small;
      g.out[i] = out;
      continue;
    }
    if (a.auto_pad == "NOTSET" && !a.pads.empty()) {
      g.pad_begin[i] = a.pads[i];
      g.pad_end[i] = a.pads[i + n];
    }
    const int64_t padded = checked_add(checked_add(in[i], g.pad_begin[i], who, "the padded input extent"),
                                       g.pad_end[i], who, "the padded input extent");
    const int64_t span = padded - eff;
    int64_t out = span < 0 ? 0 : span / s + 1;
    if (span >= 0 && a.ceil_mode) {
      out = ceil_div(span, s) + 1;
      // The last window must start inside the input or its begin padding: (out - 1) * s < in + pad_begin.
      if (out - 1 >= ceil_div(in[i] + g.pad_begin[i], s)) --out;
    }
    if (span < 0 || out <= 0)
      kernel_fail(who + ": kernel " + list_str(kernel) + " (dilations " + list_str(g.dil) +
                  ") is larger than the padded input " + list_str(in) + " (pads " + list_str(g.pad_begin) + " + " +
                  list_str(g.pad_end) + ")");
    g.out[i] = out;
  }
  return g;
}

SpatialGeometry transpose_geometry(const ConvAttrs& a, const Shape& in, const Shape& kernel) {
  SpatialGeometry g = start_geometry(a, in, kernel);
  const size_t n = in.size();
  const std::string& who = a.who;
  const Shape opad = a.output_padding.empty() ? Shape(n, 0) : a.output_padding;
  if (!a.output_shape.empty() && a.output_shape.size() < n)
    kernel_fail(who + ": attribute output_shape " + list_str(a.output_shape) + " must have at least " +
                std::to_string(n) + " values");
  const bool explicit_pads = a.output_shape.empty() && !a.same_pad() && !a.pads.empty() && a.auto_pad != "VALID";
  g.pad_begin.assign(n, 0);
  g.pad_end.assign(n, 0);
  g.out.assign(n, 0);
  for (size_t i = 0; i < n; ++i) {
    // The full (unpadded) output extent; pads crop it, output_shape / SAME choose a window of it
    // (positions past its end are zeros plus bias, as in the numpy kernel).
    const char* what = "the full output extent";
    const int64_t eff = checked_add(checked_mul(kernel[i] - 1, g.dil[i], who, what), 1, who, what);
    const int64_t full = checked_add(checked_add(checked_mul(g.strides[i], in[i] - 1, who, what), eff, who, what),
                                     opad[i], who, what);
    int64_t out;
    if (!a.output_shape.empty() || a.same_pad()) {
      out = !a.output_shape.empty() ? a.output_shape[a.output_shape.size() - n + i]
                                    : checked_mul(in[i], g.strides[i], who, "the SAME output extent");
      // past the full extent, as far as the next input position would reach (onnxruntime's bound:
      // it refuses what floor((out - eff) / s) + 1 != in)
      const int64_t limit = checked_add(checked_add(full, -opad[i], who, what), g.strides[i] - 1, who, what);
      if (!a.output_shape.empty() && out > limit)
        kernel_fail(who + ": output_shape " + std::to_string(out) + " along spatial axis " + std::to_string(i) +
                    " is larger than " + std::to_string(limit) + ", the most an input extent of " +
                    std::to_string(in[i]) + " reaches (kernel " + std::to_string(kernel[i]) + ", stride " +
                    std::to_string(g.strides[i]) + ", dilation " + std::to_string(g.dil[i]) + ")");
      const int64_t total = std::max<int64_t>(0, checked_add(full, -out, who, what));
      g.pad_begin[i] = a.auto_pad == "SAME_UPPER" ? total / 2 : total - total / 2;
    } else if (explicit_pads) {
      g.pad_begin[i] = a.pads[i];
      out = checked_add(checked_add(full, -a.pads[i], who, what), -a.pads[i + n], who, what);
    } else {
      out = full;
    }
    if (out < 0)
      kernel_fail(who + ": output size " + std::to_string(out) + " along spatial axis " + std::to_string(i) +
                  " is negative (input extent " + list_str(in) + ", kernel " + list_str(kernel) + ")");
    checked_add(out, g.pad_begin[i], who, "the output extent plus its padding");
    g.out[i] = out;  // pad_end stays 0: the kernels crop with pad_begin and out only
  }
  return g;
}

}  // namespace onnxfast
