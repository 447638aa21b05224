// The direct-convolution micro-kernels of conv_direct.h, written once over a vector traits type
// `V` (T: register type, L: lanes, zero/loadu/bcast/fma/storeu) that each per-ISA file defines
// before including this header; compiled with that file's ISA flags.
#pragma once
#include <cstdint>

#include <xmmintrin.h>  // _mm_prefetch

#include "conv_direct.h"

namespace onnxfast {
namespace direct_impl {

template <class V, int R, int NV>
void kern_a(int64_t rows, int64_t K, const int64_t* koff, const float* in, const float* w, int64_t ws, float* out,
            int64_t ldo, bool acc_in) {
  typename V::T acc[R][NV];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = acc_in && r < rows ? V::loadu(out + r * ldo + v * V::L) : V::zero();
  for (int64_t k = 0; k < K; ++k, w += ws) {
    const float* src = in + koff[k];
    typename V::T x[NV];
    for (int v = 0; v < NV; ++v) x[v] = V::loadu(src + v * V::L);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const typename V::T b = V::bcast(w + r);
      for (int v = 0; v < NV; ++v) acc[r][v] = V::fma(b, x[v], acc[r][v]);
    }
  }
  for (int r = 0; r < R; ++r) {
    if (r >= rows) break;
    for (int v = 0; v < NV; ++v) V::storeu(out + r * ldo + v * V::L, acc[r][v]);
  }
}

template <class V, int R, int NV>
void kern_b_rows(int64_t K, const int64_t* koff, const float* in, const int64_t* pos, const float* w, float* out,
                 bool acc_in, const float* next, int64_t next_lines) {
  constexpr int LB = NV * V::L;
  typename V::T acc[R][NV];
  const float* p[R];
  for (int r = 0; r < R; ++r) {
    p[r] = in + pos[r];
    for (int v = 0; v < NV; ++v) acc[r][v] = acc_in ? V::loadu(out + r * LB + v * V::L) : V::zero();
  }
  for (int64_t k = 0; k < K; ++k, w += LB) {
    const int64_t o = koff[k];
    // Weights: this call's 8 rows ahead into L1 (after the first call of a block they come from
    // L2), and one line of the next block into L2 (the first call of a block would otherwise wait
    // on L3 for them).
    for (int l = 0; l < LB * 4 / 64; ++l) _mm_prefetch(reinterpret_cast<const char*>(w + 8 * LB + l * 16), _MM_HINT_T0);
    if (k < next_lines) _mm_prefetch(reinterpret_cast<const char*>(next + k * 16), _MM_HINT_T1);
    typename V::T wv[NV];
    for (int v = 0; v < NV; ++v) wv[v] = V::loadu(w + v * V::L);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const typename V::T b = V::bcast(p[r] + o);
      for (int v = 0; v < NV; ++v) acc[r][v] = V::fma(b, wv[v], acc[r][v]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v) V::storeu(out + r * LB + v * V::L, acc[r][v]);
}

// Position tails: one instantiation per row count up to R.
template <class V, int R, int NV>
void kern_b(int64_t rows, int64_t K, const int64_t* koff, const float* in, const int64_t* pos, const float* w,
            float* out, bool acc_in, const float* next, int64_t next_lines) {
  if constexpr (R > 1) {
    if (rows < R) {
      kern_b<V, R - 1, NV>(rows, K, koff, in, pos, w, out, acc_in, next, next_lines);
      return;
    }
  }
  kern_b_rows<V, R, NV>(K, koff, in, pos, w, out, acc_in, next, next_lines);
}

}  // namespace direct_impl
}  // namespace onnxfast
