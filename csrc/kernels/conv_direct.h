// Direct 2-D convolution micro-kernels over "phase planes" (see conv.cpp): the zero-padded input
// split by stride phase, so that every kernel tap is a fixed offset and every output position a
// fixed base in one flat array. Two register tilings, compiled per ISA tier (conv_direct_impl.h):
//   A, position-vectorized: out[r][p] for `ra` output channels x `la` consecutive plane positions,
//      input vectors loaded straight from the planes, weights broadcast (large maps: the few
//      garbage positions of each plane row cost less than an im2col gather).
//   B, channel-vectorized: out[r][j] for `rb` arbitrary positions x `lb` output channels, input
//      values broadcast, weight vectors loaded (small maps with many channels: no garbage).
// Weights of both are packed [block of lb output channels][channel block][tap][channel][lb],
// zero-padded; A reads `ra` of each block's lb lanes.
#pragma once
#include <cstdint>

#include "gemm_tiers.h"  // MicroEpilogue

namespace onnxfast {

// Tiling A's final store straight into Y: a call's lane at plane position P (row P / Wph, column
// P % Wph) is output (oy, ox) = that row and column when ox < OW (the Wph - OW columns past OW are
// the garbage positions; rows at or past row_end belong to another task and are not stored),
// finished by `ep` on the way (its row_bias per channel row of the call, its residual laid out
// like y: y's channel rows are ep.ldr floats apart, OH * OW).
struct DirectOut {
  float* y = nullptr;  // the call's first channel row, output (0, 0)
  int64_t p = 0;       // plane position of the call's first lane
  int64_t Wph = 0, OW = 0, row_end = 0;
  MicroEpilogue ep;
};

// k runs over the K = taps x channels of one channel block; koff[k] is the offset of (tap, channel)
// in the planes from `in` (both kernels), w advances ws floats (A) or lb floats (B) per k.
// acc_in: add to what `out` holds (later channel blocks) instead of overwriting it.
// A: for r < rows, p < cols (<= la, rounded up to whole vectors):
// out[r * ldo + p] (+)= sum_k w[k * ws + r] * in[koff[k] + p]; with `fin` the sums go to Y
// instead (see DirectOut), out only read (acc_in).
using ConvDirectA = void (*)(int64_t rows, int64_t cols, int64_t K, const int64_t* koff, const float* in,
                             const float* w, int64_t ws, float* out, int64_t ldo, bool acc_in, const DirectOut* fin);
// B: for r < rows, j < lb: out[r * lb + j] (+)= sum_k w[k * lb + j] * in[koff[k] + pos[r]];
// meanwhile the first min(K, next_lines) 64-byte lines from `next` (the weights the caller
// multiplies next) are prefetched into L2.
using ConvDirectB = void (*)(int64_t rows, int64_t K, const int64_t* koff, const float* in, const int64_t* pos,
                             const float* w, float* out, bool acc_in, const float* next, int64_t next_lines);

struct ConvDirectTier {
  const char* name;
  int64_t ra, la;  // tiling A: output channels x positions per call
  ConvDirectA a;
  int64_t rb, lb;  // tiling B: positions x output channels per call
  ConvDirectB b;
};

#if defined(__x86_64__) || defined(_M_X64)
ConvDirectTier conv_direct_tier_avx2();
ConvDirectTier conv_direct_tier_avx512();
#endif

// The tier for this CPU (capped by ONNXFAST_ISA); null when only portable code runs here
// (the convolution then takes the im2col path).
const ConvDirectTier* conv_direct_tier();

}  // namespace onnxfast
