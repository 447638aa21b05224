// Depthwise 2-D convolution (one input and one output channel per group), per channel plane,
// computed from the input rows staged one at a time into a small zero-bordered ring (no padded copy
// of the plane). Written once over a vector
// traits type in conv_depthwise_impl.h and compiled per ISA tier (portable lanes of 1, AVX2,
// AVX-512); conv.cpp picks the tier at first use and applies bias / residual / activation per row.
#pragma once
#include <cstdint>

namespace onnxfast {

struct DwGeom {
  int64_t H, W;      // input plane
  int64_t OH, OW;    // output plane
  int64_t KH, KW;    // kernel
  int64_t sh, sw;    // strides
  int64_t dh, dw;    // dilations
  int64_t pt, pl;    // leading pads (trailing pads only bound OH / OW)
};

// One channel: y[oh * OW + ow] = sum over taps (kh, kw) of w[kh * KW + kw] * x[ih * W + iw] with
// ih = oh * sh - pt + kh * dh, iw = ow * sw - pl + kw * dw, taps outside the plane contributing 0.
// scratch: the tier's scratch_floats(g) floats, 64-byte aligned, zeroed by the caller before its first
// plane (the kernel keeps the pads in it zero, so one zeroing serves every plane of a task).
using DepthwisePlane = void (*)(const DwGeom& g, const float* x, const float* w, float* y, float* scratch);
using DepthwiseScratch = int64_t (*)(const DwGeom& g);

struct DepthwiseTier {
  const char* name;
  DepthwisePlane plane;
  DepthwiseScratch scratch_floats;
};

DepthwiseTier depthwise_tier_portable();
#if defined(__x86_64__) || defined(_M_X64)
DepthwiseTier depthwise_tier_avx2();
DepthwiseTier depthwise_tier_avx512();
#endif

// The tier for this CPU (capped by ONNXFAST_ISA).
const DepthwiseTier& depthwise_tier();

}  // namespace onnxfast
