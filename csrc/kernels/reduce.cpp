// Reductions: ReduceSum / ReduceMean / ReduceMax / ReduceMin / ReduceL1 / ReduceL2 / ReduceSumSquare,
// float32, over any axes (attribute axes before opset 13 / 18, the optional axes input after;
// keepdims, noop_with_empty_axes), and the float32 reduction engine (reduce.h) that the global
// pooling kernels share.
//
// The engine drops size-1 dims and merges neighbouring dims that are all reduced or all kept,
// then takes one of two paths:
//  - innermost dim reduced: each output walks its contiguous segments with 16 lanes (four 4-float
//    GCC vectors) combined at the end in a fixed tree;
//  - innermost dim kept: whole rows are combined in reduction order, vectorized along the row.
// Long reductions with few outputs are cut into fixed-size chunks (sizes from the shape, never
// from the thread count) computed in parallel; each output adds its chunk partials in order. So
// every output is combined in an order fixed by the shape: results are bitwise identical run to
// run and for any thread count.
#include "reduce.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include "../threadpool/threadpool.h"
#include "kernel.h"

namespace onnxfast {
namespace {

// 16 lanes as four 4-float vectors: register-sized on every target (one xmm / NEON register each;
// a single 64-byte GCC vector is lowered through the stack without AVX-512), and this file is
// compiled once, at the baseline ISA, so every tier runs the same arithmetic.
constexpr int64_t kLanes = 16;
typedef float v4 __attribute__((vector_size(4 * sizeof(float))));
struct Lanes {
  v4 q[4];
};

inline v4 load4(const float* p) {
  v4 v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

template <ReduceKind K>
constexpr float identity() {
  if constexpr (K == ReduceKind::kMax) return -std::numeric_limits<float>::infinity();
  if constexpr (K == ReduceKind::kMin) return std::numeric_limits<float>::infinity();
  return 0.f;
}

// Element transform before combining (|x| for L1, x*x for L2 / sum-square).
template <ReduceKind K, typename T>
inline T pre(T v) {
  if constexpr (K == ReduceKind::kL1) return v < 0 ? -v : v;
  if constexpr (K == ReduceKind::kL2 || K == ReduceKind::kSumSquare) return v * v;
  return v;
}

// Combine an accumulator with a value; max / min keep the first NaN they meet.
template <ReduceKind K, typename T>
inline T comb(T a, T v) {
  if constexpr (K == ReduceKind::kMax) return ((v > a) | (v != v)) ? v : a;
  if constexpr (K == ReduceKind::kMin) return ((v < a) | (v != v)) ? v : a;
  return a + v;
}

template <ReduceKind K>
inline float finish(float s, int64_t count) {
  if constexpr (K == ReduceKind::kMean) return s / static_cast<float>(count);
  if constexpr (K == ReduceKind::kL2) return std::sqrt(s);
  return s;
}

template <ReduceKind K>
inline Lanes lanes_identity() {
  const float e = identity<K>();
  const v4 v = {e, e, e, e};
  return Lanes{{v, v, v, v}};
}

// Element j of a segment goes to lane j % 16 (vector j / 4 % 4); the last partial group of four
// is padded with the identity.
template <ReduceKind K>
inline void lanes_segment(Lanes& acc, const float* p, int64_t n) {
  v4 a0 = acc.q[0], a1 = acc.q[1], a2 = acc.q[2], a3 = acc.q[3];
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes) {
    a0 = comb<K>(a0, pre<K>(load4(p + j)));
    a1 = comb<K>(a1, pre<K>(load4(p + j + 4)));
    a2 = comb<K>(a2, pre<K>(load4(p + j + 8)));
    a3 = comb<K>(a3, pre<K>(load4(p + j + 12)));
  }
  acc.q[0] = a0;
  acc.q[1] = a1;
  acc.q[2] = a2;
  acc.q[3] = a3;
  int q = 0;
  for (; j + 4 <= n; j += 4, ++q) acc.q[q] = comb<K>(acc.q[q], pre<K>(load4(p + j)));
  if (j < n) {
    float t[4];
    for (int64_t l = 0; l < 4; ++l) t[l] = j + l < n ? pre<K>(p[j + l]) : identity<K>();
    acc.q[q] = comb<K>(acc.q[q], load4(t));
  }
}

// The 16 lanes combined in a fixed tree.
template <ReduceKind K>
inline float lanes_total(const Lanes& acc) {
  float l[kLanes];
  std::memcpy(l, acc.q, sizeof(l));
  for (int w = kLanes / 2; w >= 1; w /= 2)
    for (int i = 0; i < w; ++i) l[i] = comb<K>(l[i], l[i + w]);
  return l[0];
}

// Row-major odometer over some dims with their element strides in the input.
using Walker = Odometer<1>;

constexpr int64_t kChunk = 16384;         // elements per partial (innermost reduced)
constexpr int64_t kChunkedMin = 65536;    // reductions at least this long with ...
constexpr int64_t kChunkedMaxOut = 256;   // ... at most this many outputs are chunked
constexpr int64_t kRowChunk = 2048;       // reduced rows per partial (innermost kept)
constexpr int64_t kRowChunkedMaxOut = 16384;

template <ReduceKind K>
void reduce_typed(const float* x, const Shape& shape, const std::vector<bool>& reduced, float* y) {
  const int64_t total = shape_numel(shape);
  int64_t nout = 1, count = 1;
  for (size_t i = 0; i < shape.size(); ++i) (reduced[i] ? count : nout) *= shape[i];
  if (nout == 0) return;
  if (total == 0) {  // empty reduction
    const float v = K == ReduceKind::kMean ? std::numeric_limits<float>::quiet_NaN() : identity<K>();
    std::fill(y, y + nout, v);
    return;
  }
  // Merge: drop size-1 dims, join neighbours with the same flag.
  std::vector<int64_t> dims;
  std::vector<bool> red;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == 1) continue;
    if (!dims.empty() && red.back() == reduced[i]) {
      dims.back() *= shape[i];
    } else {
      dims.push_back(shape[i]);
      red.push_back(reduced[i]);
    }
  }
  if (count == 1) {  // nothing reduced: each output is one element
    parallel_for((total + 4095) / 4096, 4096 * 0.5, [&](int64_t b, int64_t e) {
      for (int64_t i = b * 4096, n = std::min(total, e * 4096); i < n; ++i) y[i] = finish<K>(pre<K>(x[i]), 1);
    });
    return;
  }
  const size_t m = dims.size();
  std::vector<int64_t> strides(m);
  for (size_t i = m, s = 1; i-- > 0;) {
    strides[i] = static_cast<int64_t>(s);
    s *= static_cast<size_t>(dims[i]);
  }
  if (red[m - 1]) {
    // Innermost reduced: contiguous segments of L.
    const int64_t L = dims[m - 1];
    Walker kept, outer;  // kept dims; reduced dims outside the innermost
    for (size_t i = 0; i + 1 < m; ++i) {
      Walker& w = red[i] ? outer : kept;
      w.dims.push_back(dims[i]);
      w.strides[0].push_back(strides[i]);
    }
    const int64_t nseg = count / L;
    if (count >= kChunkedMin && nout <= kChunkedMaxOut) {
      // Fixed chunks: pieces of one segment (long segments) or runs of whole segments.
      const int64_t pieces = L >= kChunk ? (L + kChunk - 1) / kChunk : 0;
      const int64_t group = L >= kChunk ? 0 : kChunk / L;
      const int64_t nchunks = pieces ? nseg * pieces : (nseg + group - 1) / group;
      std::vector<float> part(static_cast<size_t>(nout * nchunks));
      parallel_for(nout * nchunks, static_cast<double>(std::min(kChunk, count)), [&](int64_t b, int64_t e) {
        Walker kw = kept, ow = outer;
        for (int64_t t = b; t < e; ++t) {
          const int64_t o = t / nchunks, c = t % nchunks;
          kw.seek(o);
          Lanes acc = lanes_identity<K>();
          if (pieces) {
            ow.seek(c / pieces);
            const int64_t j0 = (c % pieces) * kChunk;
            lanes_segment<K>(acc, x + kw.off[0] + ow.off[0] + j0, std::min(L, j0 + kChunk) - j0);
          } else {
            const int64_t s0 = c * group, s1 = std::min(nseg, s0 + group);
            ow.seek(s0);
            for (int64_t s = s0; s < s1; ++s, ow.next()) lanes_segment<K>(acc, x + kw.off[0] + ow.off[0], L);
          }
          part[static_cast<size_t>(t)] = lanes_total<K>(acc);
        }
      });
      for (int64_t o = 0; o < nout; ++o) {
        float s = part[static_cast<size_t>(o * nchunks)];
        for (int64_t c = 1; c < nchunks; ++c) s = comb<K>(s, part[static_cast<size_t>(o * nchunks + c)]);
        y[o] = finish<K>(s, count);
      }
      return;
    }
    parallel_for(nout, static_cast<double>(count) + 8.0, [&](int64_t b, int64_t e) {
      Walker kw = kept, ow = outer;
      kw.seek(b);
      for (int64_t o = b; o < e; ++o, kw.next()) {
        Lanes acc = lanes_identity<K>();
        ow.seek(0);
        for (int64_t s = 0; s < nseg; ++s, ow.next()) lanes_segment<K>(acc, x + kw.off[0] + ow.off[0], L);
        y[o] = finish<K>(lanes_total<K>(acc), count);
      }
    });
    return;
  }
  // Innermost kept: rows of I combined element-wise in reduction order.
  const int64_t I = dims[m - 1];
  Walker kept, rw;  // kept dims outside the innermost; reduced dims
  for (size_t i = 0; i + 1 < m; ++i) {
    Walker& w = red[i] ? rw : kept;
    w.dims.push_back(dims[i]);
    w.strides[0].push_back(strides[i]);
  }
  const int64_t rows = nout / I;
  const int64_t icb = 1024;  // row elements per task
  const int64_t ni = (I + icb - 1) / icb;
  const int64_t nrc = (count >= 2 * kRowChunk && nout <= kRowChunkedMaxOut) ? (count + kRowChunk - 1) / kRowChunk : 1;
  const int64_t rlen = nrc > 1 ? kRowChunk : count;
  std::vector<float> part(nrc > 1 ? static_cast<size_t>(nrc * nout) : 0);
  float* dst0 = nrc > 1 ? part.data() : y;
  parallel_for(nrc * rows * ni, static_cast<double>(rlen) * static_cast<double>(std::min(icb, I)),
               [&](int64_t b, int64_t e) {
                 Walker kw = kept, r = rw;
                 for (int64_t t = b; t < e; ++t) {
                   const int64_t c = t / (rows * ni), o = (t / ni) % rows, ib = t % ni;
                   const int64_t i0 = ib * icb, n = std::min(I, i0 + icb) - i0;
                   float* acc = dst0 + c * nout + o * I + i0;
                   for (int64_t i = 0; i < n; ++i) acc[i] = identity<K>();
                   kw.seek(o);
                   const int64_t r0 = c * rlen, r1 = std::min(count, r0 + rlen);
                   r.seek(r0);
                   for (int64_t s = r0; s < r1; ++s, r.next()) {
                     const float* p = x + kw.off[0] + r.off[0] + i0;
                     for (int64_t i = 0; i < n; ++i) acc[i] = comb<K>(acc[i], pre<K>(p[i]));
                   }
                 }
               });
  if (nrc > 1) {
    for (int64_t i = 0; i < nout; ++i) y[i] = part[static_cast<size_t>(i)];
    for (int64_t c = 1; c < nrc; ++c) {
      const float* p = part.data() + c * nout;
      for (int64_t i = 0; i < nout; ++i) y[i] = comb<K>(y[i], p[i]);
    }
  }
  if constexpr (K == ReduceKind::kMean || K == ReduceKind::kL2) {
    parallel_for((nout + 4095) / 4096, 4096 * 0.5, [&](int64_t b, int64_t e) {
      for (int64_t i = b * 4096, n = std::min(nout, e * 4096); i < n; ++i) y[i] = finish<K>(y[i], count);
    });
  }
}

class ReduceKernel : public Kernel {
 public:
  ReduceKernel(const KernelArgs& a, ReduceKind kind, int axes_input_since)
      : name_(a.op_type + " '" + a.node_name + "'"),
        kind_(kind),
        // flags: any nonzero value is true, as in onnxruntime
        keepdims_(attr_int(a, "keepdims", 1) != 0),
        axes_input_(a.opset >= axes_input_since),
        noop_(axes_input_ && attr_int(a, "noop_with_empty_axes", 0) != 0),
        attr_axes_(axes_input_ ? std::vector<int64_t>{} : attr_ints(a, "axes")) {
    const int64_t r = a.rank_of(0);
    if (!axes_input_) {
      check_axes(a, "axes", attr_axes_, r);
    } else if (a.const_inputs.size() > 1 && a.const_inputs[1] && a.const_inputs[1]->dtype == kInt64) {
      const Tensor& t = *a.const_inputs[1];
      check_axes_input(a, 1, "axes", std::vector<int64_t>(t.ptr<int64_t>(), t.ptr<int64_t>() + t.numel()), r);
    }
  }

  void infer(const std::vector<const Tensor*>& in, std::vector<OutSpec>& out) const override {
    std::vector<bool> red;
    bool copy = false;
    resolve(in, red, copy);
    const Tensor& X = *in[0];
    out.resize(1);
    out[0].dtype = kFloat;
    out[0].shape.clear();
    for (int64_t i = 0; i < X.rank(); ++i) {
      if (copy || !red[static_cast<size_t>(i)]) out[0].shape.push_back(X.shape[i]);
      else if (keepdims_) out[0].shape.push_back(1);
    }
  }

  void compute(const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) const override {
    std::vector<bool> red;
    bool copy = false;
    resolve(in, red, copy);
    const Tensor& X = *in[0];
    if (copy) {
      if (X.numel()) std::memcpy(out[0]->data, X.data, X.nbytes());
      return;
    }
    reduce_float(kind_, X.ptr<float>(), X.shape, red, out[0]->ptr<float>());
  }

 private:
  // Which dims are reduced; copy = noop_with_empty_axes with no axes.
  void resolve(const std::vector<const Tensor*>& in, std::vector<bool>& red, bool& copy) const {
    if (in.empty() || !in[0]) kernel_fail(name_ + " needs an input");
    expect_dtype(*in[0], kFloat, (name_ + " input").c_str());
    const int64_t r = in[0]->rank();
    std::vector<int64_t> axes;
    if (axes_input_) {
      if (in.size() > 1 && in[1]) {
        const Tensor& A = *in[1];
        if (A.dtype != kInt64)
          fail(ErrorKind::kInvalidType, name_ + ": axes has type tensor(" + dtype_name(A.dtype) +
                                            "), expected tensor(int64)");
        axes.assign(A.ptr<int64_t>(), A.ptr<int64_t>() + A.numel());
      }
    } else {
      axes = attr_axes_;
    }
    copy = false;
    red.assign(static_cast<size_t>(r), axes.empty());
    if (axes.empty()) {
      copy = noop_;
      return;
    }
    for (int64_t a : axes) {
      const int64_t n = a < 0 ? a + r : a;
      if (n < 0 || n >= r)
        kernel_fail(name_ + ": axis " + std::to_string(a) + " is out of range for an input of rank " +
                    std::to_string(r));
      if (red[static_cast<size_t>(n)])
        kernel_fail(name_ + ": axes contain axis " + std::to_string(n) + " twice");
      red[static_cast<size_t>(n)] = true;
    }
  }

  std::string name_;
  ReduceKind kind_;
  bool keepdims_, axes_input_, noop_;
  std::vector<int64_t> attr_axes_;
};

}  // namespace

void reduce_float(ReduceKind kind, const float* x, const Shape& shape, const std::vector<bool>& reduced, float* y) {
  switch (kind) {
    case ReduceKind::kSum: reduce_typed<ReduceKind::kSum>(x, shape, reduced, y); break;
    case ReduceKind::kMean: reduce_typed<ReduceKind::kMean>(x, shape, reduced, y); break;
    case ReduceKind::kMax: reduce_typed<ReduceKind::kMax>(x, shape, reduced, y); break;
    case ReduceKind::kMin: reduce_typed<ReduceKind::kMin>(x, shape, reduced, y); break;
    case ReduceKind::kL1: reduce_typed<ReduceKind::kL1>(x, shape, reduced, y); break;
    case ReduceKind::kL2: reduce_typed<ReduceKind::kL2>(x, shape, reduced, y); break;
    case ReduceKind::kSumSquare: reduce_typed<ReduceKind::kSumSquare>(x, shape, reduced, y); break;
  }
}

// float32, attribute or input axes as the numpy kernels read them; every schema version
ONNXFAST_KERNELS(reduce) {
  auto reg = [](const char* op, ReduceKind kind, int since) {
    kernel(op).types({kFloat}).make(
        [kind, since](const KernelArgs& a) { return std::make_unique<ReduceKernel>(a, kind, since); });
  };
  reg("ReduceSum", ReduceKind::kSum, 13);  // axes became an input at opset 13 for ReduceSum, 18 for the rest
  reg("ReduceMean", ReduceKind::kMean, 18);
  reg("ReduceMax", ReduceKind::kMax, 18);
  reg("ReduceMin", ReduceKind::kMin, 18);
  reg("ReduceL1", ReduceKind::kL1, 18);
  reg("ReduceL2", ReduceKind::kL2, 18);
  reg("ReduceSumSquare", ReduceKind::kSumSquare, 18);
}

}  // namespace onnxfast
