// Attributes and spatial geometry of the convolution family: Conv, FusedConv, ConvTranspose,
// MaxPool, AveragePool, LpPool (the numpy kernels' twin is onnxfast/ops/nn.py _ConvAttrs).
//
// One place decides what these kernels accept, so no kernel repeats (or forgets) a check:
//  - ConvAttrs::parse, at session creation, checks what the attributes alone decide: auto_pad one of
//    NOTSET / SAME_UPPER / SAME_LOWER / VALID; group >= 1; kernel_shape, strides, dilations >= 1;
//    pads, output_padding, output_shape >= 0; the lists' lengths consistent (pads twice the others);
//    pools: kernel_shape present and pads < kernel_shape (onnxruntime's rule: a window must hold an
//    input element); ConvTranspose: output_padding < max(stride, dilation) (onnxruntime's rule).
//  - forward_geometry / transpose_geometry, at run time, check what the shapes decide (ranks,
//    kernel_shape vs the weight, the padded input holding the kernel) and compute every extent in
//    int64 with overflow checks, so strides of 2^62 or pads of 2^32 give onnxruntime's answer or a
//    clear error, never a wrapped size. Every spatial coordinate a kernel then forms,
//    o * stride - pad_begin + k * dilation for o < out and k < kernel, lies in
//    [-pad_begin, in + pad_end) and fits int64 (kernels still must not narrow it to int32 unchecked).
// Errors are InvalidArgument naming the node ("Conv 'name'"), the attribute and the allowed range.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "kernel.h"

namespace onnxfast {

enum class ConvFamily { kConv, kConvTranspose, kPool };

struct ConvAttrs {
  std::string who;  // "Conv 'name'", for messages
  ConvFamily family = ConvFamily::kConv;
  std::string auto_pad = "NOTSET";
  int64_t group = 1;
  bool ceil_mode = false;  // pools
  // As given (empty: absent). Lengths are consistent with each other; nsp is that length (0: no
  // attribute fixes the spatial rank, the input decides).
  Shape kernel_shape, strides, dilations, pads, output_padding, output_shape;
  size_t nsp = 0;
  std::string nsp_attr;  // the attribute that fixed nsp, with its values (for messages)

  // Reads and checks the attributes (kernel_fail naming who and the attribute otherwise).
  static ConvAttrs parse(const KernelArgs& a, ConvFamily family);
  bool same_pad() const { return auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER"; }
};

// Spatial extents of one call. Conv / pools: in -> out; ConvTranspose: X's extent `in` -> `out`
// (pad_begin crops the full output; out may extend past the full output: those positions get no
// contribution; pad_end is left 0).
struct SpatialGeometry {
  Shape in, kernel, out, strides, dil, pad_begin, pad_end;
};

// Conv and the pools: `in` the input's spatial extent, `kernel` the kernel's (Conv: from the weight,
// checked against kernel_shape; pools: kernel_shape). Output extent
// floor((in + pads - ((k - 1) * d + 1)) / s) + 1 (ceil for pools with ceil_mode, the last window
// starting inside the input or its begin padding), or SAME / VALID.
SpatialGeometry forward_geometry(const ConvAttrs& a, const Shape& in, const Shape& kernel);
// ConvTranspose: full = s * (in - 1) + (k - 1) * d + 1 + output_padding, cropped by pads, or the
// window output_shape / SAME choose (see conv_transpose.cpp).
SpatialGeometry transpose_geometry(const ConvAttrs& a, const Shape& in, const Shape& kernel);

// Moves a geometry into a kernel's own struct (fields in_sp, k_sp, out_sp, strides, dil, pad_begin).
template <class G>
void take_spatial(G& g, SpatialGeometry& sg) {
  g.in_sp = std::move(sg.in);
  g.k_sp = std::move(sg.kernel);
  g.out_sp = std::move(sg.out);
  g.strides = std::move(sg.strides);
  g.dil = std::move(sg.dil);
  g.pad_begin = std::move(sg.pad_begin);
}

// Checked int64 arithmetic (kernel_fail naming who and what on overflow).
int64_t checked_add(int64_t a, int64_t b, const std::string& who, const char* what);
int64_t checked_mul(int64_t a, int64_t b, const std::string& who, const char* what);
// ceil(a / b) for a >= 0, b > 0, without forming a + b - 1.
inline int64_t ceil_div(int64_t a, int64_t b) { return a / b + (a % b != 0); }

// A kernel's scratch of `count` elements of `item` bytes through the allocation guard
// (Storage::allocate: AllocationError naming who and what when too large). Size it from the
// output and the weights, never from an attribute alone.
std::shared_ptr<Storage> guarded_scratch(int64_t count, size_t item, const std::string& who, const char* what);

}  // namespace onnxfast
