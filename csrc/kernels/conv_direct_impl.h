// The direct-convolution micro-kernels of conv_direct.h, written once over a vector traits type
// `V` (simd_avx2.h / simd_avx512.h: T, L, zero/loadu/bcast/fma/storeu, Mask/lanes/store_lanes, and
// what micro_epilogue.h needs) that each per-ISA file includes before this header (compiled with
// that file's ISA flags).
#pragma once
#include <cstdint>

#include <xmmintrin.h>  // _mm_prefetch

#include "conv_direct.h"
#include "micro_epilogue.h"

namespace onnxfast {
namespace direct_impl {

// The runs of a call's lanes that are outputs: vector v's lanes [lo, hi) go to Y offset at + lane
// (per channel row, + r * ep.ldr). Found once per call for all its channel rows: a vector spans at
// most L / Wph + 2 plane rows.
template <class V>
struct OutRun {
  int v, lo, hi;
  int64_t at;
  typename V::Mask mask;
};

template <class V, int NV>
int out_runs(const DirectOut& d, OutRun<V>* runs) {
  int n = 0;
  int64_t oy = d.p / d.Wph;
  for (int v = 0; v < NV; ++v) {
    const int64_t P = d.p + v * V::L;
    while ((oy + 1) * d.Wph <= P) ++oy;
    for (int64_t y = oy; y * d.Wph < P + V::L && y < d.row_end; ++y) {
      const int64_t start = y * d.Wph - P;  // lane of column 0 of plane row y (may be negative)
      const int lo = static_cast<int>(start < 0 ? 0 : start);
      const int hi = static_cast<int>(start + d.OW < V::L ? start + d.OW : V::L);
      if (lo < hi) runs[n++] = OutRun<V>{v, lo, hi, y * d.OW - start, V::lanes(lo, hi)};
    }
  }
  return n;
}

template <class V, int R, int NV>
void kern_a_nv(int64_t rows, int64_t K, const int64_t* koff, const float* in, const float* w, int64_t ws, float* out,
               int64_t ldo, bool acc_in, const DirectOut* fin) {
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
  if (fin) {
    OutRun<V> runs[NV * (V::L + 2)];
    const int nruns = out_runs<V, NV>(*fin, runs);
    const MicroEpilogue& e = fin->ep;
    for (int r = 0; r < R; ++r) {
      if (r >= rows) break;
      const float b = e.bias(r);
      float* yr = fin->y + r * e.ldr;
      const float* res = e.residual_row(r);
      for (int i = 0; i < nruns; ++i) {
        const OutRun<V>& u = runs[i];
        typename V::T x = acc[r][0];
        for (int v = 1; v < NV; ++v)
          if (u.v == v) x = acc[r][v];
        x = micro_epilogue<V>(e, b, res ? res + u.at : nullptr, u.mask, x);
        if (u.hi - u.lo == V::L) V::storeu(yr + u.at, x);
        else V::store_lanes(yr + u.at, u.mask, x);
      }
    }
    return;
  }
  for (int r = 0; r < R; ++r) {
    if (r >= rows) break;
    for (int v = 0; v < NV; ++v) V::storeu(out + r * ldo + v * V::L, acc[r][v]);
  }
}

// A chunk's last tile, `cols` < R x L positions, computes only the vectors it needs.
template <class V, int R, int NV>
void kern_a(int64_t rows, int64_t cols, int64_t K, const int64_t* koff, const float* in, const float* w, int64_t ws,
            float* out, int64_t ldo, bool acc_in, const DirectOut* fin) {
  if constexpr (NV > 1) {
    if (cols <= (NV - 1) * V::L) {
      kern_a<V, R, NV - 1>(rows, cols, K, koff, in, w, ws, out, ldo, acc_in, fin);
      return;
    }
  }
  kern_a_nv<V, R, NV>(rows, K, koff, in, w, ws, out, ldo, acc_in, fin);
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
