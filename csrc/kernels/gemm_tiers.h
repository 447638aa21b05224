// SGEMM micro-kernels per ISA tier, sharing one packing layout:
//   B: panels of 16 columns, [kc][16] floats each, zero-padded, 64-byte aligned;
//   A: either packed strips of `mr` rows ([kc][mr] floats, element (i, k) at a[k * as + i]) or
//      plain row-major rows (element (i, k) at a[i * as + k], `a_rows` true) — the driver reads
//      non-transposed A in place and packs only transposed A and convolution weights.
// A micro-kernel computes C[rows x nr] = alpha * A_strip * [panel0 | panel1] + beta * C for
// rows <= mr (beta == 0 writes C without reading it); panel1 is null when the tier uses one panel
// per call or the last panel is reached.
// With `ep`, the kernel finishes its values before the store (a convolution's last K block), so
// the output is written once instead of stored, read back and stored again by an epilogue pass.
#pragma once
#include <cstdint>

namespace onnxfast {

// c = op(c + row_bias[i] + residual[i * ldr + j]) for the call's rows i and columns j, the
// operations and their order those of Activation::apply(src, row, n, b, res) (epilogue.h), so a
// fused store gives the bits of the separate pass: with a residual, (c + b) + r; without, c + b
// only where b != 0; Relu c < 0 ? 0 : c (NaN and -0 kept, as onnxruntime), Clip min(hi, max(lo, c)) (NaN stays),
// LeakyRelu c >= 0 ? c : alpha c. Other activations are not fused (the caller runs its pass).
struct MicroEpilogue {
  enum Op { kNone, kRelu, kClip, kLeakyRelu };
  const float* row_bias = nullptr;  // per row of the call (may be null)
  const float* residual = nullptr;  // laid out like C (may be null)
  int64_t ldr = 0;
  Op op = kNone;
  float p0 = 0.f, p1 = 0.f;  // Clip: lo, hi; LeakyRelu: alpha

  float bias(int64_t i) const { return row_bias ? row_bias[i] : 0.f; }
  const float* residual_row(int64_t i) const { return residual ? residual + i * ldr : nullptr; }
  // The same epilogue for the block that starts at row i, column j.
  MicroEpilogue at(int64_t i, int64_t j) const {
    MicroEpilogue e = *this;
    if (row_bias) e.row_bias += i;
    if (residual) e.residual += i * ldr + j;
    return e;
  }
};

using GemmMicroKernel = void (*)(int64_t rows, int64_t kc, const float* a, int64_t as, bool a_rows, const float* b0,
                                 const float* b1, float* c, int64_t ldc, int64_t nr, float alpha, float beta,
                                 const MicroEpilogue* ep);

struct GemmTier {
  const char* name;
  int64_t mr;      // rows per A strip
  int64_t panels;  // 16-column panels per micro-kernel call (1 or 2)
  GemmMicroKernel kernel;
};

GemmTier gemm_tier_portable();
#if defined(__x86_64__) || defined(_M_X64)
GemmTier gemm_tier_avx2();
GemmTier gemm_tier_avx512();
#endif

// The tier for this CPU (capped by ONNXFAST_ISA), chosen once.
const GemmTier& gemm_tier();

}  // namespace onnxfast
