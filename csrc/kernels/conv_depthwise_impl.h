// The depthwise kernels of conv_depthwise.h, written once over a vector traits type `V` (simd_avx2.h,
// simd_avx512.h, or the one-lane traits of conv_depthwise.cpp: T, L, zero, loadu, bcast, fma, storeu,
// load_even, and for L > 1 first / store_lanes) that each per-tier file includes before this header.
//
// Output rows are computed R = 4 at a time: a tile is R rows x one vector of columns, so R
// independent accumulator chains hide the FMA latency even on planes narrower than a vector
// (MobileNet's 7x7 and 14x14 maps), and each weight is broadcast once per tile. The input rows a
// block of R output rows reads are staged in a ring of row buffers: an input row with the leading
// pad's zeros before it and zeros after it to the vector-rounded width, copied once per channel (the
// plane itself is never copied); a tap row outside the plane reads a row of zeros. So every column is
// an interior column, with no bounds checks in the loops; the last partial vector is a masked store.
// A stride of 2 reads 2L consecutive inputs and keeps the even ones (V::load_even); other strides,
// and extreme geometries, run one output at a time with bounds checks (dw_generic). Square 3x3 and 5x5 kernels without dilation get
// compile-time tap loops.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "conv_depthwise.h"

namespace onnxfast {
namespace dw_impl {

constexpr int R = 4;  // output rows per tile

template <class V, int S>
inline typename V::T dw_load(const float* p) {
  if constexpr (S == 1) return V::loadu(p);
  else return V::load_even(p);
}

// Whether the staged kernels take this geometry: strides 1 or 2 across, modest vertical strides,
// dilations, leading pads and kernels. Anything else (strides or pads of 2^32 are legal ONNX) runs
// the bounds-checked loop of dw_generic, which needs no scratch whose size could overflow.
inline bool staged(const DwGeom& g) {
  return (g.sw == 1 || g.sw == 2) && g.sh <= 16 && g.dh <= 16 && g.dw <= 16 && g.pl <= 64 && g.pt <= 64 &&
         g.KH <= 64 && g.KW <= 64;
}

// One output at a time, taps outside the plane skipped.
inline void dw_generic(const DwGeom& g, const float* x, const float* w, float* y) {
  for (int64_t oh = 0; oh < g.OH; ++oh)
    for (int64_t ow = 0; ow < g.OW; ++ow) {
      float s = 0.f;
      for (int64_t kh = 0; kh < g.KH; ++kh) {
        const int64_t ih = oh * g.sh - g.pt + kh * g.dh;
        if (ih < 0 || ih >= g.H) continue;
        for (int64_t kw = 0; kw < g.KW; ++kw) {
          const int64_t iw = ow * g.sw - g.pl + kw * g.dw;
          if (iw >= 0 && iw < g.W) s += w[kh * g.KW + kw] * x[ih * g.W + iw];
        }
      }
      y[oh * g.OW + ow] = s;
    }
}

// Floats per staged row: the padded input row, and every column a vector-rounded output row reads.
template <class V>
inline int64_t ring_stride(const DwGeom& g) {
  const int64_t ow_round = (g.OW + V::L - 1) / V::L * V::L;
  const int64_t need = std::max<int64_t>(g.pl + g.W, ow_round * g.sw + (g.KW - 1) * g.dw + g.sw);
  return (need + 15) / 16 * 16;
}

// The rows one block of R output rows spans; when that window holds at most R x KH rows the ring has
// a slot per window row (rows shared by neighbouring outputs are staged once), else a slot per tap
// row of the block (strided or dilated kernels whose rows do not overlap).
inline int64_t ring_window(const DwGeom& g) { return (R - 1) * g.sh + (g.KH - 1) * g.dh + 1; }
inline int64_t ring_slots(const DwGeom& g) { return std::min<int64_t>(ring_window(g), R * g.KH); }

// Scratch layout: NS staged rows, the zero row, then NS slot tags (int64: the input row a slot holds)
// and R x KH row pointers. The caller zeroes it once; the kernel only writes the rows' interiors, so
// the pads stay zero from plane to plane.
template <class V>
int64_t scratch_floats(const DwGeom& g) {
  if (!staged(g)) return 0;
  const int64_t words = ring_slots(g) + R * g.KH;  // 8-byte tags and pointers
  return ring_stride<V>(g) * (ring_slots(g) + 1) + 2 * words;
}

// KC: the kernel's width and height when square and known at compile time (0: g.KH x g.KW);
// S: the horizontal stride (1 or 2).
template <class V, int KC, int S>
void dw_rows(const DwGeom& g, const float* x, const float* w, float* y, float* scratch) {
  constexpr int L = V::L;
  const int64_t KH = KC ? KC : g.KH, KW = KC ? KC : g.KW, dw = KC ? 1 : g.dw, OW = g.OW;
  const int64_t stride = ring_stride<V>(g), NS = ring_slots(g);
  float* ring = scratch;
  const float* zero_row = scratch + NS * stride;
  // stride is a multiple of 16 floats and scratch 64-byte aligned: the words after the rows are aligned
  int64_t* tag = reinterpret_cast<int64_t*>(scratch + (NS + 1) * stride);
  const float** ptr = reinterpret_cast<const float**>(tag + NS);  // [r][kh]: the row tap kh of row r reads
  std::fill(tag, tag + NS, int64_t(-1));
  for (int64_t oh = 0; oh < g.OH; oh += R) {
    const int64_t nr = std::min<int64_t>(R, g.OH - oh);
    const int64_t first = oh * g.sh - g.pt;  // the block's first tap row (may be outside the plane)
    const bool window = ring_window(g) == NS;
    const int64_t base = window ? ((first % NS) + NS) % NS : 0;  // its slot; the window's rows follow cyclically
    for (int64_t r = 0; r < R; ++r) {
      for (int64_t kh = 0; kh < KH; ++kh) {
        const int64_t ih = first + r * g.sh + kh * g.dh;
        const float* row = zero_row;
        if (r < nr && ih >= 0 && ih < g.H) {
          int64_t slot = window ? base + (ih - first) : r * KH + kh;
          if (slot >= NS) slot -= NS;
          float* buf = ring + slot * stride;
          if (tag[slot] != ih) {
            std::memcpy(buf + g.pl, x + ih * g.W, sizeof(float) * g.W);
            tag[slot] = ih;
          }
          row = buf;
        }
        ptr[r * KH + kh] = row;
      }
    }
    float* yb = y + oh * OW;
    {
      for (int64_t ow = 0; ow < OW; ow += L) {
        typename V::T acc[R];
        for (int r = 0; r < R; ++r) acc[r] = V::zero();
        for (int64_t kh = 0; kh < KH; ++kh) {
          const float* wr = w + kh * KW;
          const float* p0 = ptr[0 * KH + kh] + ow * S;
          const float* p1 = ptr[1 * KH + kh] + ow * S;
          const float* p2 = ptr[2 * KH + kh] + ow * S;
          const float* p3 = ptr[3 * KH + kh] + ow * S;
#pragma GCC unroll 5
          for (int64_t kw = 0; kw < KW; ++kw) {
            const typename V::T wv = V::bcast(wr + kw);
            const int64_t o = kw * dw;
            acc[0] = V::fma(wv, dw_load<V, S>(p0 + o), acc[0]);
            acc[1] = V::fma(wv, dw_load<V, S>(p1 + o), acc[1]);
            acc[2] = V::fma(wv, dw_load<V, S>(p2 + o), acc[2]);
            acc[3] = V::fma(wv, dw_load<V, S>(p3 + o), acc[3]);
          }
        }
        if (ow + L <= OW) {
          for (int64_t r = 0; r < nr; ++r) V::storeu(yb + r * OW + ow, acc[r]);
        } else if constexpr (L > 1) {
          for (int64_t r = 0; r < nr; ++r) V::store_lanes(yb + r * OW + ow, V::first(OW - ow), acc[r]);
        }
      }
    }
  }
}

template <class V>
void dw_plane(const DwGeom& g, const float* x, const float* w, float* y, float* scratch) {
  if (!staged(g)) return dw_generic(g, x, w, y);
  const bool plain = g.KH == g.KW && g.dh == 1 && g.dw == 1;
  if (g.sw == 1) {
    if (plain && g.KW == 3) return dw_rows<V, 3, 1>(g, x, w, y, scratch);
    if (plain && g.KW == 5) return dw_rows<V, 5, 1>(g, x, w, y, scratch);
    return dw_rows<V, 0, 1>(g, x, w, y, scratch);
  }
  if (g.sw == 2) {
    if (plain && g.KW == 3) return dw_rows<V, 3, 2>(g, x, w, y, scratch);
    if (plain && g.KW == 5) return dw_rows<V, 5, 2>(g, x, w, y, scratch);
    return dw_rows<V, 0, 2>(g, x, w, y, scratch);
  }
  dw_generic(g, x, w, y);
}

}  // namespace dw_impl
}  // namespace onnxfast
