// Data movement kernels for every fixed-size element type (moved as 1/2/4/8/16-byte words):
// Transpose (any rank and perm), Concat (any axis; omitted inputs skipped), Where (bool
// condition, three-way numpy broadcasting), Gather (any axis; int32 / int64 indices, negative ones
// wrapped, all checked before anything is written: an out-of-range index raises IndexError naming
// the node and the index) and Slice (opset 1 attributes or opset 10+ int32 / int64 inputs, fed or
// constant; the numpy kernel's clamping, negative steps, INT64_MAX / INT64_MIN ends); the views
// Reshape / Flatten / Squeeze / Unsqueeze / Identity, Shape / Size, Expand, Range, ConstantOfShape,
// Split, GatherElements, GatherND, and CumSum (numeric types).
//
// Gather copies rows of the dims after the axis (single words when that row is one element).
// Slice folds count-1 dims into the base offset, merges dims that stay contiguous, then copies
// rows (memcpy when the innermost step is 1, a strided word loop otherwise).
//
// Transpose drops size-1 dims and merges dims that stay neighbours, then either copies
// contiguous rows (the innermost dim is unmoved) or runs a cache-blocked 2-D transpose of the
// input's innermost dim against the output's, tiles of 64 x 64 elements per task walked in
// T x T sub-tiles (T*size ~ 64 bytes), one 2-D transpose per index of the remaining dims.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "../threadpool/threadpool.h"
#include "kernel.h"

namespace onnxfast {
namespace {

struct Word16 {
  uint64_t lo, hi;
};

// Row-major odometer over some dims, tracking an offset in two tensors (off[0]: input, off[1]: output).
using Walker2 = Odometer<2>;

size_t checked_itemsize(const Tensor& t, const std::string& who) {
  const size_t sz = dtype_itemsize(t.dtype);
  if (sz == 0 || t.dtype == kString)
    fail(ErrorKind::kInvalidType, who + ": no native kernel for tensor(" + dtype_name(t.dtype) + ")");
  return sz;
}

// ---- Transpose ------------------------------------------------------------------------------

template <typename T>
void transpose_2d_tile(const T* in, T* out, int64_t is, int64_t os, int64_t i0, int64_t i1, int64_t j0, int64_t j1) {
  // out[i * os + j] = in[j * is + i]
  constexpr int64_t t = sizeof(T) >= 8 ? 8 : 64 / static_cast<int64_t>(sizeof(T));
  for (int64_t ib = i0; ib < i1; ib += t) {
    const int64_t ie = std::min(i1, ib + t);
    for (int64_t jb = j0; jb < j1; jb += t) {
      const int64_t je = std::min(j1, jb + t);
      for (int64_t i = ib; i < ie; ++i) {
        T* o = out + i * os;
        const T* s = in + i;
        for (int64_t j = jb; j < je; ++j) o[j] = s[j * is];
      }
    }
  }
}

class TransposeKernel : public Kernel {
 public:
  explicit TransposeKernel(const KernelArgs& a)
      : name_("Transpose '" + a.node_name + "'"), has_perm_(a.has("perm")), perm_(attr_ints(a, "perm")) {
    if (!has_perm_) return;
    // perm is a permutation of [0, n) with n the input's rank (where known, else perm's length).
    const int64_t r = a.rank_of(0), n = r >= 0 ? r : static_cast<int64_t>(perm_.size());
    std::vector<bool> seen(static_cast<size_t>(std::max<int64_t>(n, 0)), false);
    bool ok = static_cast<int64_t>(perm_.size()) == n;
    for (int64_t v : perm_) {
      ok = ok && v >= 0 && v < n && !seen[static_cast<size_t>(v)];
      if (ok) seen[static_cast<size_t>(v)] = true;
    }
    if (!ok)
      attr_fail(a, "perm", list_str(perm_),
                "a permutation of [0, " + std::to_string(n) + ")" +
                    (r >= 0 ? " (each axis of the input, of rank " + std::to_string(r) + ", once)" : ""));
  }

  void infer(const std::vector<const Tensor*>& in, std::vector<OutSpec>& out) const override {
    std::vector<int64_t> p = perm(in);
    const Tensor& X = *in[0];
    out.resize(1);
    out[0].dtype = X.dtype;
    out[0].shape.resize(p.size());
    for (size_t i = 0; i < p.size(); ++i) out[0].shape[i] = X.shape[static_cast<size_t>(p[i])];
  }

  void compute(const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) const override {
    std::vector<int64_t> p = perm(in);
    const Tensor& X = *in[0];
    if (X.numel() == 0) return;
    switch (checked_itemsize(X, name_)) {
      case 1: run<uint8_t>(X, p, *out[0]); break;
      case 2: run<uint16_t>(X, p, *out[0]); break;
      case 4: run<uint32_t>(X, p, *out[0]); break;
      case 8: run<uint64_t>(X, p, *out[0]); break;
      case 16: run<Word16>(X, p, *out[0]); break;
      default:
        fail(ErrorKind::kInvalidType, name_ + ": no native kernel for tensor(" + dtype_name(X.dtype) + ")");
    }
  }

 private:
  std::vector<int64_t> perm(const std::vector<const Tensor*>& in) const {
    if (in.empty() || !in[0]) kernel_fail(name_ + " needs an input");
    const int64_t r = in[0]->rank();
    std::vector<int64_t> p;
    if (!has_perm_) {
      for (int64_t i = r - 1; i >= 0; --i) p.push_back(i);
      return p;
    }
    p = perm_;
    std::vector<bool> seen(static_cast<size_t>(r), false);
    bool ok = static_cast<int64_t>(p.size()) == r;
    for (int64_t v : p) {
      if (!ok) break;
      ok = v >= 0 && v < r && !seen[static_cast<size_t>(v)];
      if (ok) seen[static_cast<size_t>(v)] = true;
    }
    std::string ps;
    for (int64_t v : perm_) ps += (ps.empty() ? "" : ", ") + std::to_string(v);
    if (!ok)
      kernel_fail(name_ + ": perm [" + ps + "] is not a permutation of the axes of an input of shape " +
                  shape_str(in[0]->shape));
    return p;
  }

  template <typename T>
  void run(const Tensor& X, const std::vector<int64_t>& perm, Tensor& Y) const {
    const T* x = X.ptr<T>();
    T* y = Y.ptr<T>();
    const int64_t total = X.numel();
    // Input axes of size > 1, in output order, renumbered densely; then runs of consecutive axes merged.
    const size_t r = perm.size();
    std::vector<int64_t> dense(r, -1);
    int64_t nk = 0;
    for (size_t i = 0; i < r; ++i)
      if (X.shape[i] > 1) dense[i] = nk++;
    std::vector<std::vector<int64_t>> groups;  // each: dense input axes, consecutive
    for (size_t i = 0; i < r; ++i) {
      const int64_t a = perm[i];
      if (dense[static_cast<size_t>(a)] < 0) continue;
      const int64_t d = dense[static_cast<size_t>(a)];
      if (!groups.empty() && groups.back().back() + 1 == d) groups.back().push_back(d);
      else groups.push_back({d});
    }
    const size_t m = groups.size();
    if (m <= 1) {
      std::memcpy(y, x, static_cast<size_t>(total) * sizeof(T));
      return;
    }
    std::vector<int64_t> dsize;  // dense axis sizes
    for (size_t i = 0; i < r; ++i)
      if (dense[i] >= 0) dsize.push_back(X.shape[i]);
    // Merged input dims (input order) and the output order over them.
    std::vector<size_t> order(m);
    for (size_t g = 0; g < m; ++g) order[g] = g;
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return groups[a][0] < groups[b][0]; });
    std::vector<int64_t> in_dim(m), in_stride(m), gpos(m);  // gpos[group] = its input-order position
    for (size_t k = 0; k < m; ++k) gpos[order[k]] = static_cast<int64_t>(k);
    for (size_t k = 0; k < m; ++k) {
      int64_t s = 1;
      for (int64_t a : groups[order[k]]) s *= dsize[static_cast<size_t>(a)];
      in_dim[k] = s;
    }
    for (size_t k = m, s = 1; k-- > 0;) {
      in_stride[k] = static_cast<int64_t>(s);
      s *= static_cast<size_t>(in_dim[k]);
    }
    // Output dims (group order) with input strides and output strides.
    std::vector<int64_t> od(m), ois(m), oos(m);
    for (size_t g = 0; g < m; ++g) {
      od[g] = in_dim[static_cast<size_t>(gpos[g])];
      ois[g] = in_stride[static_cast<size_t>(gpos[g])];
    }
    for (size_t g = m, s = 1; g-- > 0;) {
      oos[g] = static_cast<int64_t>(s);
      s *= static_cast<size_t>(od[g]);
    }
    if (ois[m - 1] == 1) {
      // Innermost dim unmoved: contiguous rows of L.
      const int64_t L = od[m - 1], rows = total / L;
      Walker2 w;
      w.dims.assign(od.begin(), od.end() - 1);
      w.strides[0].assign(ois.begin(), ois.end() - 1);
      w.strides[1].assign(oos.begin(), oos.end() - 1);
      parallel_for(rows, static_cast<double>(L) * 0.3 * sizeof(T) / 4 + 5, [&](int64_t b, int64_t e) {
        Walker2 ww = w;
        ww.seek(b);
        for (int64_t i = b; i < e; ++i, ww.next()) std::memcpy(y + ww.off[1], x + ww.off[0], static_cast<size_t>(L) * sizeof(T));
      });
      return;
    }
    // 2-D transposes: output's innermost dim (input stride ois[m-1]) against the input's innermost
    // dim (output position q, output stride oos[q]).
    size_t q = 0;
    for (size_t g = 0; g < m; ++g)
      if (ois[g] == 1) q = g;
    const int64_t nj = od[m - 1], ni = od[q], is = ois[m - 1], os = oos[q];
    Walker2 w;
    for (size_t g = 0; g + 1 < m; ++g) {
      if (g == q) continue;
      w.dims.push_back(od[g]);
      w.strides[0].push_back(ois[g]);
      w.strides[1].push_back(oos[g]);
    }
    const int64_t outer = total / (ni * nj);
    constexpr int64_t kTile = 64;
    const int64_t ti = (ni + kTile - 1) / kTile, tj = (nj + kTile - 1) / kTile;
    parallel_for(outer * ti * tj, static_cast<double>(std::min(ni, kTile) * std::min(nj, kTile)) * 0.5 + 10,
                 [&](int64_t b, int64_t e) {
                   Walker2 ww = w;
                   for (int64_t t = b; t < e; ++t) {
                     const int64_t o = t / (ti * tj), bi = (t / tj) % ti, bj = t % tj;
                     ww.seek(o);
                     const int64_t i0 = bi * kTile, j0 = bj * kTile;
                     transpose_2d_tile<T>(x + ww.off[0], y + ww.off[1], is, os, i0, std::min(ni, i0 + kTile), j0,
                                          std::min(nj, j0 + kTile));
                   }
                 });
  }

  std::string name_;
  bool has_perm_;
  std::vector<int64_t> perm_;
};

// ---- Concat ---------------------------------------------------------------------------------

class ConcatKernel : public Kernel {
 public:
  explicit ConcatKernel(const KernelArgs& a)
      : name_("Concat '" + a.node_name + "'"), has_axis_(a.has("axis") || a.opset < 4),
        axis_(attr_int(a, "axis", 1)) {
    if (!has_axis_) attr_fail(a, "axis", "missing", "given (Concat-4 and later require it)");
    int64_t r = -1;
    for (size_t i = 0; i < a.input_ranks.size(); ++i) {
      const int64_t ri = a.rank_of(i);
      if (ri < 0) continue;
      if (ri == 0) input_fail(a, i, "inputs", "has rank 0", "at least 1 (a scalar has no axis to concatenate on)");
      if (r >= 0 && ri != r)
        input_fail(a, i, "inputs", "has rank " + std::to_string(ri), std::to_string(r) + ", the rank of the other inputs");
      r = ri;
    }
    check_axis(a, "axis", axis_, r);
  }

  void infer(const std::vector<const Tensor*>& in, std::vector<OutSpec>& out) const override {
    std::vector<const Tensor*> xs;
    int64_t a = resolve(in, xs);
    out.resize(1);
    out[0].dtype = xs[0]->dtype;
    out[0].shape = xs[0]->shape;
    if (xs[0]->rank() == 0) return;
    out[0].shape[static_cast<size_t>(a)] = 0;
    for (const Tensor* x : xs) out[0].shape[static_cast<size_t>(a)] += x->shape[static_cast<size_t>(a)];
  }

  void compute(const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) const override {
    std::vector<const Tensor*> xs;
    const int64_t a = resolve(in, xs);
    Tensor& Y = *out[0];
    if (Y.numel() == 0) return;
    const size_t item = checked_itemsize(Y, name_);
    if (xs[0]->rank() == 0) {
      std::memcpy(Y.data, xs[0]->data, item);
      return;
    }
    int64_t outer = 1;
    for (int64_t i = 0; i < a; ++i) outer *= Y.shape[static_cast<size_t>(i)];
    const int64_t nx = static_cast<int64_t>(xs.size());
    std::vector<int64_t> bytes(static_cast<size_t>(nx)), at(static_cast<size_t>(nx));  // per input: row bytes, offset
    int64_t row = 0;
    for (int64_t k = 0; k < nx; ++k) {
      bytes[static_cast<size_t>(k)] = (outer ? xs[static_cast<size_t>(k)]->numel() / outer : 0) * static_cast<int64_t>(item);
      at[static_cast<size_t>(k)] = row;
      row += bytes[static_cast<size_t>(k)];
    }
    // Tasks: (outer row, input, piece of at most kPiece bytes).
    constexpr int64_t kPiece = 1 << 16;
    std::vector<int64_t> first(static_cast<size_t>(nx) + 1, 0);  // first piece index of input k within a row
    for (int64_t k = 0; k < nx; ++k)
      first[static_cast<size_t>(k) + 1] = first[static_cast<size_t>(k)] + (bytes[static_cast<size_t>(k)] + kPiece - 1) / kPiece;
    const int64_t per_row = first[static_cast<size_t>(nx)];
    if (per_row == 0) return;
    char* y = static_cast<char*>(Y.data);
    const double cost = std::min<double>(static_cast<double>(row) / static_cast<double>(per_row), kPiece) / 8 + 5;
    parallel_for(outer * per_row, cost, [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) {
        const int64_t o = t / per_row, p = t % per_row;
        const int64_t k = std::upper_bound(first.begin(), first.end(), p) - first.begin() - 1;
        const int64_t off = (p - first[static_cast<size_t>(k)]) * kPiece;
        const int64_t n = std::min(kPiece, bytes[static_cast<size_t>(k)] - off);
        const char* src = static_cast<const char*>(xs[static_cast<size_t>(k)]->data) + o * bytes[static_cast<size_t>(k)] + off;
        std::memcpy(y + o * row + at[static_cast<size_t>(k)] + off, src, static_cast<size_t>(n));
      }
    });
  }

 private:
  int64_t resolve(const std::vector<const Tensor*>& in, std::vector<const Tensor*>& xs) const {
    if (!has_axis_) kernel_fail(name_ + ": missing attribute 'axis'");
    for (const Tensor* t : in)
      if (t) xs.push_back(t);
    if (xs.empty()) kernel_fail(name_ + " needs at least one input");
    const Tensor& x0 = *xs[0];
    const int64_t r = x0.rank();
    const int64_t a = axis_ < 0 ? axis_ + r : axis_;
    if (a < 0 || a >= r)
      kernel_fail(name_ + ": axis " + std::to_string(axis_) + " is out of range for inputs of rank " + std::to_string(r));
    for (const Tensor* x : xs) {
      if (x->dtype != x0.dtype)
        fail(ErrorKind::kInvalidType, name_ + ": input types differ: tensor(" + dtype_name(x0.dtype) + ") and tensor(" +
                                          dtype_name(x->dtype) + ")");
      bool ok = x->rank() == r;
      for (int64_t i = 0; ok && i < r; ++i) ok = i == a || x->shape[static_cast<size_t>(i)] == x0.shape[static_cast<size_t>(i)];
      if (!ok) {
        std::string shapes;
        for (const Tensor* t : xs) shapes += (shapes.empty() ? "" : ", ") + shape_str(t->shape);
        kernel_fail(name_ + ": input shapes " + shapes + " do not match outside axis " + std::to_string(a));
      }
    }
    return a;
  }

  std::string name_;
  bool has_axis_;
  int64_t axis_;
};

// ---- Where ----------------------------------------------------------------------------------

// Output dims with the inputs' element strides (0 where broadcast), size-1 dims dropped and
// neighbours with the same broadcast pattern merged.
struct Broadcast3 {
  std::vector<int64_t> dims;
  std::vector<int64_t> st[3];
};

Broadcast3 plan3(const Shape& out, const Shape* in[3]) {
  const size_t r = out.size();
  std::vector<int64_t> od;
  std::vector<int> pat;
  for (size_t i = 0; i < r; ++i) {
    if (out[i] == 1) continue;
    int p = 0;
    for (int k = 0; k < 3; ++k) {
      const Shape& s = *in[k];
      const int64_t d = i < r - s.size() ? 1 : s[i - (r - s.size())];
      p |= (d != 1) << k;
    }
    if (!od.empty() && pat.back() == p) {
      od.back() *= out[i];
    } else {
      od.push_back(out[i]);
      pat.push_back(p);
    }
  }
  Broadcast3 b;
  if (od.empty()) {
    od.push_back(1);
    pat.push_back(7);
  }
  b.dims = od;
  for (int k = 0; k < 3; ++k) {
    b.st[k].assign(od.size(), 0);
    int64_t s = 1;
    for (size_t i = od.size(); i-- > 0;)
      if (pat[i] >> k & 1) {
        b.st[k][i] = s;
        s *= od[i];
      }
  }
  return b;
}

template <typename T, bool C, bool X, bool Y>
void where_row(const uint8_t* c, const T* x, const T* y, T* o, int64_t n) {
  for (int64_t j = 0; j < n; ++j) o[j] = c[C ? j : 0] ? x[X ? j : 0] : y[Y ? j : 0];
}

template <typename T>
void where_typed(const Broadcast3& b, const uint8_t* c, const T* x, const T* y, T* out) {
  const size_t m = b.dims.size();
  const int64_t inner = b.dims[m - 1];
  const int pat = (b.st[0][m - 1] != 0) | (b.st[1][m - 1] != 0) << 1 | (b.st[2][m - 1] != 0) << 2;
  auto row = [pat](const uint8_t* cp, const T* xp, const T* yp, T* op, int64_t n) {
    switch (pat) {
      case 0: where_row<T, false, false, false>(cp, xp, yp, op, n); break;
      case 1: where_row<T, true, false, false>(cp, xp, yp, op, n); break;
      case 2: where_row<T, false, true, false>(cp, xp, yp, op, n); break;
      case 3: where_row<T, true, true, false>(cp, xp, yp, op, n); break;
      case 4: where_row<T, false, false, true>(cp, xp, yp, op, n); break;
      case 5: where_row<T, true, false, true>(cp, xp, yp, op, n); break;
      case 6: where_row<T, false, true, true>(cp, xp, yp, op, n); break;
      default: where_row<T, true, true, true>(cp, xp, yp, op, n); break;
    }
  };
  // Tasks: pieces of at most kPiece elements of one output row.
  constexpr int64_t kPiece = 8192;
  const int64_t pieces = (inner + kPiece - 1) / kPiece;
  int64_t rows = 1;
  for (size_t i = 0; i + 1 < m; ++i) rows *= b.dims[i];
  parallel_for(rows * pieces, static_cast<double>(std::min(inner, kPiece)) * 0.5 + 5, [&](int64_t tb, int64_t te) {
    for (int64_t t = tb; t < te; ++t) {
      const int64_t r = t / pieces, j0 = (t % pieces) * kPiece, n = std::min(inner, j0 + kPiece) - j0;
      int64_t off[3] = {0, 0, 0};
      for (size_t i = m - 1, rem = static_cast<size_t>(r); i-- > 0;) {
        const int64_t idx = static_cast<int64_t>(rem % static_cast<size_t>(b.dims[i]));
        rem /= static_cast<size_t>(b.dims[i]);
        for (int k = 0; k < 3; ++k) off[k] += idx * b.st[k][i];
      }
      for (int k = 0; k < 3; ++k) off[k] += j0 * b.st[k][m - 1];
      row(c + off[0], x + off[1], y + off[2], out + r * inner + j0, n);
    }
  });
}

class WhereKernel : public Kernel {
 public:
  explicit WhereKernel(const KernelArgs& a) : name_("Where '" + a.node_name + "'") { expect_broadcastable(a); }

  void infer(const std::vector<const Tensor*>& in, std::vector<OutSpec>& out) const override {
    if (in.size() != 3 || !in[0] || !in[1] || !in[2]) kernel_fail(name_ + " needs condition, X and Y");
    expect_dtype(*in[0], kBool, (name_ + " condition").c_str());
    if (in[1]->dtype != in[2]->dtype)
      fail(ErrorKind::kInvalidType, name_ + ": X and Y types differ: tensor(" + dtype_name(in[1]->dtype) +
                                        ") and tensor(" + dtype_name(in[2]->dtype) + ")");
    out.resize(1);
    out[0].dtype = in[1]->dtype;
    out[0].shape = broadcast_shapes(broadcast_shapes(in[0]->shape, in[1]->shape, name_.c_str()), in[2]->shape,
                                    name_.c_str());
  }

  void compute(const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) const override {
    Tensor& O = *out[0];
    if (O.numel() == 0) return;
    const Shape* shapes[3] = {&in[0]->shape, &in[1]->shape, &in[2]->shape};
    const Broadcast3 b = plan3(O.shape, shapes);
    const uint8_t* c = in[0]->ptr<uint8_t>();
    switch (checked_itemsize(O, name_)) {
      case 1: where_typed<uint8_t>(b, c, in[1]->ptr<uint8_t>(), in[2]->ptr<uint8_t>(), O.ptr<uint8_t>()); break;
      case 2: where_typed<uint16_t>(b, c, in[1]->ptr<uint16_t>(), in[2]->ptr<uint16_t>(), O.ptr<uint16_t>()); break;
      case 4: where_typed<uint32_t>(b, c, in[1]->ptr<uint32_t>(), in[2]->ptr<uint32_t>(), O.ptr<uint32_t>()); break;
      case 8: where_typed<uint64_t>(b, c, in[1]->ptr<uint64_t>(), in[2]->ptr<uint64_t>(), O.ptr<uint64_t>()); break;
      case 16: where_typed<Word16>(b, c, in[1]->ptr<Word16>(), in[2]->ptr<Word16>(), O.ptr<Word16>()); break;
      default:
        fail(ErrorKind::kInvalidType, name_ + ": no native kernel for tensor(" + dtype_name(O.dtype) + ")");
    }
  }

 private:
  std::string name_;
};

// ---- Gather ---------------------------------------------------------------------------------


// y[o, n, :] = x[o, idx[n], :] for rows of `inner` words.
template <typename T>
void gather_typed(const T* x, T* y, const std::vector<int64_t>& idx, int64_t outer, int64_t dim, int64_t inner) {
  const int64_t n = static_cast<int64_t>(idx.size());
  if (inner == 1) {
    constexpr int64_t kPiece = 4096;
    const int64_t pieces = (n + kPiece - 1) / kPiece;
    parallel_for(outer * pieces, static_cast<double>(std::min(n, kPiece)) + 5, [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) {
        const int64_t o = t / pieces, j0 = (t % pieces) * kPiece, j1 = std::min(n, j0 + kPiece);
        const T* src = x + o * dim;
        T* dst = y + o * n;
        for (int64_t j = j0; j < j1; ++j) dst[j] = src[idx[static_cast<size_t>(j)]];
      }
    });
    return;
  }
  parallel_for(outer * n, static_cast<double>(inner) * 0.3 * sizeof(T) / 4 + 5, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      const int64_t o = t / n, j = t % n;
      std::memcpy(y + t * inner, x + (o * dim + idx[static_cast<size_t>(j)]) * inner,
                  static_cast<size_t>(inner) * sizeof(T));
    }
  });
}

class GatherKernel : public Kernel {
 public:
  explicit GatherKernel(const KernelArgs& a) : name_("Gather '" + a.node_name + "'"), axis_(attr_int(a, "axis", 0)) {
    expect_rank_in(a, 0, "data", 1, -1);
    check_axis(a, "axis", axis_, a.rank_of(0));
  }

  void infer(const std::vector<const Tensor*>& in, std::vector<OutSpec>& out) const override {
    const int64_t a = resolve(in);
    const Tensor &X = *in[0], &I = *in[1];
    out.resize(1);
    out[0].dtype = X.dtype;
    out[0].shape.assign(X.shape.begin(), X.shape.begin() + a);
    out[0].shape.insert(out[0].shape.end(), I.shape.begin(), I.shape.end());
    out[0].shape.insert(out[0].shape.end(), X.shape.begin() + a + 1, X.shape.end());
  }

  void compute(const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) const override {
    const int64_t a = resolve(in);
    const Tensor& X = *in[0];
    const int64_t dim = X.shape[static_cast<size_t>(a)];
    // Every index is checked (and wrapped) before anything is written.
    std::vector<int64_t> idx = int_values(*in[1], name_, "indices");
    for (int64_t& v : idx) {
      if (v < -dim || v >= dim)
        fail(ErrorKind::kIndex, name_ + ": index " + std::to_string(v) + " on axis " + std::to_string(a) +
                                    " is out of range (valid range [" + std::to_string(-dim) + ", " +
                                    std::to_string(dim - 1) + "] for dimension " + std::to_string(dim) + ")");
      if (v < 0) v += dim;
    }
    Tensor& Y = *out[0];
    if (Y.numel() == 0) return;
    int64_t outer = 1, inner = 1;
    for (int64_t i = 0; i < a; ++i) outer *= X.shape[static_cast<size_t>(i)];
    for (int64_t i = a + 1; i < X.rank(); ++i) inner *= X.shape[static_cast<size_t>(i)];
    switch (checked_itemsize(X, name_)) {
      case 1: gather_typed<uint8_t>(X.ptr<uint8_t>(), Y.ptr<uint8_t>(), idx, outer, dim, inner); break;
      case 2: gather_typed<uint16_t>(X.ptr<uint16_t>(), Y.ptr<uint16_t>(), idx, outer, dim, inner); break;
      case 4: gather_typed<uint32_t>(X.ptr<uint32_t>(), Y.ptr<uint32_t>(), idx, outer, dim, inner); break;
      case 8: gather_typed<uint64_t>(X.ptr<uint64_t>(), Y.ptr<uint64_t>(), idx, outer, dim, inner); break;
      case 16: gather_typed<Word16>(X.ptr<Word16>(), Y.ptr<Word16>(), idx, outer, dim, inner); break;
      default:
        fail(ErrorKind::kInvalidType, name_ + ": no native kernel for tensor(" + dtype_name(X.dtype) + ")");
    }
  }

 private:
  int64_t resolve(const std::vector<const Tensor*>& in) const {
    if (in.size() < 2 || !in[0] || !in[1]) kernel_fail(name_ + " needs data and indices");
    if (in[1]->dtype != kInt32 && in[1]->dtype != kInt64)
      fail(ErrorKind::kInvalidType, name_ + ": indices must be tensor(int32) or tensor(int64), got tensor(" +
                                        dtype_name(in[1]->dtype) + ")");
    return normalize_axis(axis_, in[0]->rank(), name_, "axis");
  }

  std::string name_;
  int64_t axis_;
};

// ---- Slice ----------------------------------------------------------------------------------

// Per input axis: first index, step and count of the slice (numpy's clamping, as the numpy kernel).
struct SliceAxis {
  int64_t start = 0, step = 1, count = 0;
};

class SliceKernel : public Kernel {
 public:
  explicit SliceKernel(const KernelArgs& a)
      : name_("Slice '" + a.node_name + "'"), attr_form_(a.opset < 10), has_axes_attr_(a.has("axes")),
        starts_(attr_ints(a, "starts")), ends_(attr_ints(a, "ends")), axes_(attr_ints(a, "axes")) {
    const int64_t r = a.rank_of(0);
    if (attr_form_) {  // Slice-1: starts, ends (required) and axes are attributes
      if (!a.has("starts")) attr_fail(a, "starts", "missing", "given (Slice-1 requires it)");
      if (!a.has("ends")) attr_fail(a, "ends", "missing", "given (Slice-1 requires it)");
      if (ends_.size() != starts_.size())
        attr_fail(a, "ends", list_str(ends_), "as long as starts " + list_str(starts_));
      if (has_axes_attr_ && axes_.size() != starts_.size())
        attr_fail(a, "axes", list_str(axes_), "as long as starts " + list_str(starts_));
      check_axes(a, "axes", axes_, r);
      return;
    }
    // Slice-10+: starts, ends, axes, steps are inputs; those that are constants are checked now.
    auto constant = [&](size_t i, std::vector<int64_t>& v) {
      if (i >= a.const_inputs.size() || !a.const_inputs[i]) return false;
      const Tensor& t = *a.const_inputs[i];
      if ((t.dtype != kInt32 && t.dtype != kInt64) || t.rank() > 1) return false;  // refused at run time
      v = int_values(t, name_, "a constant input");
      return true;
    };
    static const char* what[] = {"data", "starts", "ends", "axes", "steps"};
    std::vector<int64_t> v[5];
    bool known[5] = {false, false, false, false, false};
    for (size_t i = 1; i < 5; ++i) known[i] = constant(i, v[i]);
    for (size_t i = 2; i < 5; ++i)
      if (known[i] && known[1] && v[i].size() != v[1].size())
        input_fail(a, i, what[i], "is " + list_str(v[i]), "as long as starts " + list_str(v[1]));
    if (known[3]) check_axes_input(a, 3, "axes", v[3], r);
    if (known[4])
      for (int64_t st : v[4])
        if (st == 0) input_fail(a, 4, "steps", "is " + list_str(v[4]), "nonzero steps");
  }

  void infer(const std::vector<const Tensor*>& in, std::vector<OutSpec>& out) const override {
    const std::vector<SliceAxis> p = plan(in);
    out.resize(1);
    out[0].dtype = in[0]->dtype;
    out[0].shape.resize(p.size());
    for (size_t i = 0; i < p.size(); ++i) out[0].shape[i] = p[i].count;
  }

  void compute(const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) const override {
    const std::vector<SliceAxis> p = plan(in);
    const Tensor& X = *in[0];
    Tensor& Y = *out[0];
    if (Y.numel() == 0) return;
    switch (checked_itemsize(X, name_)) {
      case 1: run<uint8_t>(X, p, Y); break;
      case 2: run<uint16_t>(X, p, Y); break;
      case 4: run<uint32_t>(X, p, Y); break;
      case 8: run<uint64_t>(X, p, Y); break;
      case 16: run<Word16>(X, p, Y); break;
      default:
        fail(ErrorKind::kInvalidType, name_ + ": no native kernel for tensor(" + dtype_name(X.dtype) + ")");
    }
  }

 private:
  std::vector<SliceAxis> plan(const std::vector<const Tensor*>& in) const {
    if (in.empty() || !in[0]) kernel_fail(name_ + " needs an input");
    const Tensor& X = *in[0];
    const int64_t r = X.rank();
    std::vector<int64_t> starts, ends, axes, steps;
    bool has_axes = false, has_steps = false;
    if (attr_form_) {
      starts = starts_;
      ends = ends_;
      has_axes = has_axes_attr_;
      axes = axes_;
    } else {
      if (in.size() < 3 || !in[1] || !in[2]) kernel_fail(name_ + " needs data, starts and ends");
      starts = int_values(*in[1], name_, "starts");
      ends = int_values(*in[2], name_, "ends");
      if (in.size() > 3 && in[3]) {
        has_axes = true;
        axes = int_values(*in[3], name_, "axes");
      }
      if (in.size() > 4 && in[4]) {
        has_steps = true;
        steps = int_values(*in[4], name_, "steps");
      }
    }
    if (!has_axes)
      for (size_t i = 0; i < starts.size(); ++i) axes.push_back(static_cast<int64_t>(i));
    if (!has_steps) steps.assign(starts.size(), 1);
    if (ends.size() != starts.size() || axes.size() != starts.size() || steps.size() != starts.size())
      kernel_fail(name_ + ": starts " + list_str(starts) + ", ends " + list_str(ends) + ", axes " + list_str(axes) +
                  " and steps " + list_str(steps) + " must have the same length");
    std::vector<SliceAxis> p(static_cast<size_t>(r));
    for (int64_t i = 0; i < r; ++i) p[static_cast<size_t>(i)].count = X.shape[static_cast<size_t>(i)];
    std::vector<bool> seen(static_cast<size_t>(r), false);
    for (size_t k = 0; k < axes.size(); ++k) {
      const int64_t a = normalize_axis(axes[k], r, name_, "axes");
      if (seen[static_cast<size_t>(a)]) kernel_fail(name_ + ": axes " + list_str(axes) + " contains duplicates");
      seen[static_cast<size_t>(a)] = true;
    }
    for (size_t k = 0; k < axes.size(); ++k) {
      const int64_t a = axes[k] < 0 ? axes[k] + r : axes[k];
      const int64_t d = X.shape[static_cast<size_t>(a)], st = steps[k];
      if (st == 0) kernel_fail(name_ + ": step for axis " + std::to_string(a) + " is 0");
      int64_t s = starts[k], e = ends[k];
      if (s < 0) s += d;  // no overflow: d >= 0
      if (e < 0) e += d;
      uint64_t span;  // positions from s (inclusive) towards e (exclusive)
      if (st > 0) {
        s = std::min(std::max<int64_t>(s, 0), d);
        e = std::min(std::max<int64_t>(e, 0), d);
        span = e > s ? static_cast<uint64_t>(e - s) : 0;
      } else {
        s = std::min(std::max<int64_t>(s, -1), d - 1);
        e = std::min(std::max<int64_t>(e, -1), d - 1);
        span = s >= 0 && s > e ? static_cast<uint64_t>(s - e) : 0;
      }
      const uint64_t mag = st > 0 ? static_cast<uint64_t>(st) : 0 - static_cast<uint64_t>(st);
      SliceAxis& q = p[static_cast<size_t>(a)];
      q.count = span == 0 ? 0 : static_cast<int64_t>(1 + (span - 1) / mag);
      q.start = q.count ? s : 0;
      q.step = q.count > 1 ? st : 1;  // |step| < d here, so step * stride cannot overflow
    }
    return p;
  }

  template <typename T>
  void run(const Tensor& X, const std::vector<SliceAxis>& p, Tensor& Y) const {
    const int64_t r = X.rank();
    const T* x = X.ptr<T>();
    T* y = Y.ptr<T>();
    // Output dims with input strides (count-1 dims folded into the base), merged where contiguous.
    int64_t base = 0;
    std::vector<int64_t> dims, istr;
    for (int64_t i = r - 1, stride = 1; i >= 0; --i) {
      const SliceAxis& q = p[static_cast<size_t>(i)];
      base += q.start * stride;
      if (q.count != 1) {
        const int64_t s = q.step * stride;
        if (!dims.empty() && istr.back() * dims.back() == s) {
          dims.back() *= q.count;
        } else {
          dims.push_back(q.count);
          istr.push_back(s);
        }
      }
      stride *= X.shape[static_cast<size_t>(i)];
    }
    std::reverse(dims.begin(), dims.end());
    std::reverse(istr.begin(), istr.end());
    if (dims.empty()) {
      y[0] = x[base];
      return;
    }
    const size_t m = dims.size();
    const int64_t L = dims[m - 1], ls = istr[m - 1];
    Walker2 w;
    w.dims.assign(dims.begin(), dims.end() - 1);
    w.strides[0].assign(istr.begin(), istr.end() - 1);
    w.strides[1].resize(m - 1);
    for (size_t g = m - 1, s = static_cast<size_t>(L); g-- > 0;) {
      w.strides[1][g] = static_cast<int64_t>(s);
      s *= static_cast<size_t>(dims[g]);
    }
    const int64_t rows = Y.numel() / L;
    const double cost = static_cast<double>(L) * (ls == 1 ? 0.3 * sizeof(T) / 4 : 1.0) + 5;
    parallel_for(rows, cost, [&](int64_t b, int64_t e) {
      Walker2 ww = w;
      ww.seek(b);
      for (int64_t i = b; i < e; ++i, ww.next()) {
        const T* src = x + base + ww.off[0];
        T* dst = y + ww.off[1];
        if (ls == 1) {
          std::memcpy(dst, src, static_cast<size_t>(L) * sizeof(T));
        } else {
          for (int64_t j = 0; j < L; ++j) dst[j] = src[j * ls];
        }
      }
    });
  }

  std::string name_;
  bool attr_form_, has_axes_attr_;
  std::vector<int64_t> starts_, ends_, axes_;
};

}  // namespace


// ---- Views and shape queries ---------------------------------------------------------------------
// Reshape, Flatten, Squeeze, Unsqueeze and Identity compute only a shape: the output is input 0's
// bytes (OutSpec::alias_input), so the executor hands the same storage on and nothing is copied.
// Shape and Size read the shape into a new int64 tensor. Error messages are the numpy kernels'
// (onnxfast/ops/tensor.py).

namespace {

class ViewKernel : public Kernel {
 public:
  explicit ViewKernel(const KernelArgs& a) : who_(a.node_label()) {}
  void infer(const std::vector<const Tensor*>& in, std::vector<OutSpec>& out) const override {
    if (in.empty() || !in[0]) kernel_fail(who_ + ": input 0 is missing");
    out.resize(1);
    out[0].dtype = in[0]->dtype;
    out[0].shape = target(in);
    out[0].alias_input = 0;
  }
  void compute(const std::vector<const Tensor*>&, std::vector<Tensor*>&) const override {}
  std::string describe() const override { return "native:view"; }

 protected:
  virtual Shape target(const std::vector<const Tensor*>& in) const = 0;
  // The int values of optional input i (constant or fed); false when it is absent.
  bool input_ints(const std::vector<const Tensor*>& in, size_t i, const char* what, std::vector<int64_t>& v) const {
    if (i >= in.size() || !in[i]) return false;
    if (in[i]->rank() > 1) kernel_fail(who_ + ": " + what + " must be 1-D, got shape " + shape_str(in[i]->shape));
    v = int_values(*in[i], who_, what);
    return true;
  }
  std::string who_;
};

class IdentityKernel : public ViewKernel {
 public:
  using ViewKernel::ViewKernel;

 protected:
  Shape target(const std::vector<const Tensor*>& in) const override { return in[0]->shape; }
};

class ReshapeKernel : public ViewKernel {
 public:
  explicit ReshapeKernel(const KernelArgs& a)
      : ViewKernel(a), attr_form_(a.opset < 5), allowzero_(a.opset >= 14 && attr_int(a, "allowzero", 0) != 0) {
    if (attr_form_) shape_ = attr_ints(a, "shape");
  }

 protected:
  Shape target(const std::vector<const Tensor*>& in) const override {
    std::vector<int64_t> shape = shape_;
    if (!attr_form_ && !input_ints(in, 1, "shape", shape)) kernel_fail(who_ + ": input 1 (shape) is missing");
    const Shape& xs = in[0]->shape;
    Shape out = shape;
    int neg = -1;
    for (size_t i = 0; i < shape.size(); ++i) {
      const int64_t v = shape[i];
      if (v == -1) {
        if (neg >= 0) kernel_fail(who_ + ": shape " + list_str(shape) + " has more than one -1");
        neg = static_cast<int>(i);
      } else if (v < -1) {
        kernel_fail(who_ + ": shape " + list_str(shape) + " has an invalid value " + std::to_string(v));
      } else if (v == 0 && !allowzero_) {
        if (i >= xs.size())
          kernel_fail(who_ + ": shape " + list_str(shape) + " copies dimension " + std::to_string(i) +
                      " (0) but the input " + shape_str(xs) + " has rank " + std::to_string(xs.size()));
        out[i] = xs[i];
      }
    }
    const int64_t total = shape_numel(xs);
    int64_t known = 1;  // the product of the dims other than -1: capped, it only has to be compared
    for (size_t i = 0; i < out.size(); ++i)
      if (static_cast<int>(i) != neg) known = (out[i] != 0 && known > INT64_MAX / out[i]) ? INT64_MAX : known * out[i];
    if (neg >= 0) {
      if (known == 0 && total == 0) out[neg] = 0;
      else if (known == 0 || total % known) kernel_fail(who_ + ": cannot reshape input of shape " + shape_str(xs) + " to " + list_str(shape));
      else out[neg] = total / known;
    } else if (known != total) {
      kernel_fail(who_ + ": cannot reshape input of shape " + shape_str(xs) + " (" + std::to_string(total) +
                  " elements) to " + list_str(shape) + " (" + std::to_string(known) + " elements)");
    }
    return out;
  }

 private:
  bool attr_form_, allowzero_;
  std::vector<int64_t> shape_;
};

class FlattenKernel : public ViewKernel {
 public:
  explicit FlattenKernel(const KernelArgs& a) : ViewKernel(a), axis_(attr_int(a, "axis", 1)) {
    const int64_t r = a.rank_of(0);
    if (r >= 0 && (axis_ < -r || axis_ > r))
      attr_fail(a, "axis", std::to_string(axis_), "in [" + std::to_string(-r) + ", " + std::to_string(r) + "] for an input of rank " + std::to_string(r));
  }

 protected:
  Shape target(const std::vector<const Tensor*>& in) const override {
    const Shape& xs = in[0]->shape;
    const int64_t r = static_cast<int64_t>(xs.size());
    const int64_t a = axis_ < 0 ? axis_ + r : axis_;
    if (a < 0 || a > r) kernel_fail(who_ + ": axis " + std::to_string(axis_) + " out of range for rank " + std::to_string(r));
    int64_t outer = 1, inner = 1;
    for (int64_t i = 0; i < r; ++i) (i < a ? outer : inner) *= xs[i];
    return {outer, inner};
  }

 private:
  int64_t axis_;
};

// Squeeze / Unsqueeze: axes from the attribute (opset < 13) or input 1.
class AxesViewKernel : public ViewKernel {
 public:
  // grows: Unsqueeze (axes index the output, of rank r + len(axes)).
  AxesViewKernel(const KernelArgs& a, bool grows) : ViewKernel(a), attr_form_(a.opset < 13) {
    if (attr_form_ && a.has("axes")) {
      axes_ = attr_ints(a, "axes");
      has_attr_ = true;
      const int64_t r = a.rank_of(0);
      check_axes(a, "axes", axes_, r < 0 ? r : r + (grows ? static_cast<int64_t>(axes_.size()) : 0));
    }
  }

 protected:
  // The axes, or false when none are given.
  bool axes(const std::vector<const Tensor*>& in, std::vector<int64_t>& v) const {
    if (attr_form_) {
      v = axes_;
      return has_attr_;
    }
    return input_ints(in, 1, "axes", v);
  }
  // Axes in [-rank, rank) made non-negative; each at most once.
  std::vector<bool> marked(const std::vector<int64_t>& axes, int64_t rank) const {
    std::vector<bool> m(static_cast<size_t>(rank), false);
    for (int64_t a : axes) {
      const int64_t n = normalize_axis(a, rank, who_, "axes");
      if (m[n]) kernel_fail(who_ + ": axes " + list_str(axes) + " contains duplicates");
      m[n] = true;
    }
    return m;
  }
  bool attr_form_, has_attr_ = false;
  std::vector<int64_t> axes_;
};

class SqueezeKernel : public AxesViewKernel {
 public:
  explicit SqueezeKernel(const KernelArgs& a) : AxesViewKernel(a, false) {}

 protected:
  Shape target(const std::vector<const Tensor*>& in) const override {
    const Shape& xs = in[0]->shape;
    std::vector<int64_t> ax;
    Shape out;
    if (!axes(in, ax)) {
      for (int64_t d : xs)
        if (d != 1) out.push_back(d);
      return out;
    }
    const std::vector<bool> m = marked(ax, static_cast<int64_t>(xs.size()));
    for (size_t i = 0; i < xs.size(); ++i) {
      if (!m[i]) {
        out.push_back(xs[i]);
      } else if (xs[i] != 1) {
        kernel_fail(who_ + ": cannot squeeze axis " + std::to_string(i) + " of size " + std::to_string(xs[i]) +
                    " (input shape " + shape_str(xs) + ")");
      }
    }
    return out;
  }
};

class UnsqueezeKernel : public AxesViewKernel {
 public:
  explicit UnsqueezeKernel(const KernelArgs& a) : AxesViewKernel(a, true) {}

 protected:
  Shape target(const std::vector<const Tensor*>& in) const override {
    const Shape& xs = in[0]->shape;
    std::vector<int64_t> ax;
    if (!axes(in, ax)) kernel_fail(who_ + ": axes are required");
    const int64_t r = static_cast<int64_t>(xs.size() + ax.size());
    const std::vector<bool> m = marked(ax, r);
    Shape out;
    size_t j = 0;
    for (int64_t i = 0; i < r; ++i) out.push_back(m[i] ? 1 : xs[j++]);
    return out;
  }
};

// Shape (opset 15+: the [start, end) window, clamped) and Size: new int64 tensors.
class ShapeKernel : public Kernel {
 public:
  explicit ShapeKernel(const KernelArgs& a)
      : size_(a.op_type == "Size"), start_(a.opset >= 15 ? attr_int(a, "start", 0) : 0),
        has_end_(a.opset >= 15 && a.has("end")), end_(has_end_ ? attr_int(a, "end", 0) : 0) {}
  void infer(const std::vector<const Tensor*>& in, std::vector<OutSpec>& out) const override {
    if (in.empty() || !in[0]) kernel_fail("Shape: input 0 is missing");
    int64_t s, e;
    window(in[0]->rank(), s, e);
    out.resize(1);
    out[0].dtype = kInt64;
    out[0].shape = size_ ? Shape{} : Shape{e - s};
  }
  void compute(const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) const override {
    if (!out[0]) return;
    int64_t* y = out[0]->ptr<int64_t>();
    if (size_) {
      y[0] = in[0]->numel();
      return;
    }
    int64_t s, e;
    window(in[0]->rank(), s, e);
    for (int64_t i = s; i < e; ++i) y[i - s] = in[0]->shape[i];
  }

 private:
  void window(int64_t r, int64_t& s, int64_t& e) const {
    auto clamp = [r](int64_t v) { return std::min(std::max(v < 0 ? v + r : v, int64_t{0}), r); };
    s = clamp(start_);
    e = has_end_ ? clamp(end_) : r;
    if (e < s) e = s;
  }
  bool size_;
  int64_t start_;
  bool has_end_;
  int64_t end_;
};

}  // namespace


// ---- Expand and Range --------------------------------------------------------------------------
// Expand broadcasts input 0 to numpy's broadcast of its shape and the shape input: the input itself
// (a view) when that is its own shape, else the trailing dims the input does not broadcast are
// copied as one block per position of the leading dims. Range: start + i * delta for
// i < max(ceil((limit - start) / delta), 0), in the inputs' type (integers in 128-bit arithmetic,
// floats as numpy: fl(start + fl(i * delta))). Messages are the numpy kernels'.

namespace {

class ExpandKernel : public Kernel {
 public:
  explicit ExpandKernel(const KernelArgs& a) : who_(a.node_label()) {}
  void infer(const std::vector<const Tensor*>& in, std::vector<OutSpec>& out) const override {
    if (in.size() < 2 || !in[0] || !in[1]) kernel_fail(who_ + ": inputs 0 (input) and 1 (shape) are required");
    if (in[1]->rank() > 1) kernel_fail(who_ + ": shape must be 1-D, got shape " + shape_str(in[1]->shape));
    const std::vector<int64_t> s = int_values(*in[1], who_, "shape");
    const Shape& xs = in[0]->shape;
    const size_t r = std::max(xs.size(), s.size());
    Shape o(r);
    for (size_t i = 0; i < r; ++i) {
      const int64_t a = i + xs.size() >= r ? xs[i + xs.size() - r] : 1;
      const int64_t b = i + s.size() >= r ? s[i + s.size() - r] : 1;
      if (a != b && a != 1 && b != 1)
        kernel_fail(who_ + ": input shape " + shape_str(xs) + " cannot be expanded to " + shape_str(Shape(s.begin(), s.end())));
      o[i] = a == 1 ? b : a;
      if (o[i] < 0)
        kernel_fail(who_ + ": input shape " + shape_str(xs) + " cannot be expanded to " + shape_str(Shape(s.begin(), s.end())));
    }
    out.resize(1);
    out[0].dtype = in[0]->dtype;
    out[0].shape = o;
    if (o == xs) out[0].alias_input = 0;
  }
  void compute(const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) const override {
    const Tensor& X = *in[0];
    Tensor& Y = *out[0];
    if (Y.data == X.data || Y.numel() == 0) return;  // a view, or nothing to write
    const size_t item = checked_itemsize(Y, who_);
    const size_t r = Y.shape.size();
    Shape xd(r, 1);
    for (size_t i = 0; i < X.shape.size(); ++i) xd[r - X.shape.size() + i] = X.shape[i];
    // the trailing dims the input does not broadcast: one contiguous block in both
    size_t k = r;
    int64_t block = 1;
    while (k > 0 && xd[k - 1] == Y.shape[k - 1]) block *= Y.shape[--k];
    Odometer<1> od;
    int64_t stride = block;
    std::vector<int64_t> st(k);
    for (size_t i = k; i-- > 0;) {
      st[i] = xd[i] == 1 ? 0 : stride;
      stride *= xd[i];
    }
    od.dims.assign(Y.shape.begin(), Y.shape.begin() + static_cast<std::ptrdiff_t>(k));
    od.strides[0] = st;
    const int64_t outer = shape_numel(od.dims);
    const size_t bbytes = static_cast<size_t>(block) * item;
    const char* x = static_cast<const char*>(X.data);
    char* y = static_cast<char*>(Y.data);
    parallel_for(outer, static_cast<double>(block) * 0.25 + 4.0, [&](int64_t b, int64_t e) {
      Odometer<1> o = od;
      o.seek(b);
      for (int64_t i = b; i < e; ++i, o.next())
        std::memcpy(y + static_cast<size_t>(i) * bbytes, x + static_cast<size_t>(o.off[0]) * item, bbytes);
    });
  }

 private:
  std::string who_;
};

class RangeKernel : public Kernel {
 public:
  explicit RangeKernel(const KernelArgs& a) : who_(a.node_label()) {}
  void infer(const std::vector<const Tensor*>& in, std::vector<OutSpec>& out) const override {
    out.resize(1);
    out[0].dtype = in.at(0)->dtype;
    out[0].shape = {count(in)};
  }
  void compute(const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) const override {
    const int64_t n = count(in);
    Tensor& Y = *out[0];
    switch (Y.dtype) {
      case kFloat: fill_float<float>(in, Y.ptr<float>(), n); break;
      case kDouble: fill_float<double>(in, Y.ptr<double>(), n); break;
      case kInt16: fill_int<int16_t>(in, Y.ptr<int16_t>(), n); break;
      case kInt32: fill_int<int32_t>(in, Y.ptr<int32_t>(), n); break;
      case kInt64: fill_int<int64_t>(in, Y.ptr<int64_t>(), n); break;
      default: kernel_fail(who_ + ": no native Range for tensor(" + dtype_name(Y.dtype) + ")");
    }
  }

 private:
  template <typename T>
  static T scalar(const Tensor* t) {
    return *static_cast<const T*>(t->data);
  }
  void check(const std::vector<const Tensor*>& in) const {
    if (in.size() < 3 || !in[0] || !in[1] || !in[2]) kernel_fail(who_ + ": inputs start, limit and delta are required");
    for (int i = 0; i < 3; ++i) {
      if (in[i]->numel() != 1) kernel_fail(who_ + ": input " + std::to_string(i) + " must be a scalar, got shape " + shape_str(in[i]->shape));
      if (in[i]->dtype != in[0]->dtype) kernel_fail(who_ + ": start, limit and delta must have one type");
    }
  }
  // max(ceil((limit - start) / delta), 0): the element count (the executor's guard refuses a huge one).
  int64_t count(const std::vector<const Tensor*>& in) const {
    check(in);
    const int dt = in[0]->dtype;
    if (dt == kFloat || dt == kDouble) {
      const double s = dt == kFloat ? scalar<float>(in[0]) : scalar<double>(in[0]);
      const double l = dt == kFloat ? scalar<float>(in[1]) : scalar<double>(in[1]);
      const double d = dt == kFloat ? scalar<float>(in[2]) : scalar<double>(in[2]);
      if (d == 0) kernel_fail(who_ + ": delta must not be 0");
      const double ratio = (l - s) / d;
      const double c = std::isfinite(ratio) ? std::ceil(ratio) : NAN;
      if (!(c < 9.2e18))
        kernel_fail(who_ + ": the element count ceil((limit - start) / delta) is " +
                    (std::isnan(c) ? std::string("nan") : std::to_string(c)) + ", not a size");
      return c > 0 ? static_cast<int64_t>(c) : 0;
    }
    __int128 s, l, d;
    switch (dt) {
      case kInt16: s = scalar<int16_t>(in[0]); l = scalar<int16_t>(in[1]); d = scalar<int16_t>(in[2]); break;
      case kInt32: s = scalar<int32_t>(in[0]); l = scalar<int32_t>(in[1]); d = scalar<int32_t>(in[2]); break;
      case kInt64: s = scalar<int64_t>(in[0]); l = scalar<int64_t>(in[1]); d = scalar<int64_t>(in[2]); break;
      default: kernel_fail(who_ + ": no native Range for tensor(" + dtype_name(dt) + ")");
    }
    if (d == 0) kernel_fail(who_ + ": delta must not be 0");
    // ceil(a / d) for integers: -((-a) // d) with floor division
    const __int128 a = l - s;
    __int128 q = -a / d, m = -a % d;
    if (m != 0 && ((m < 0) != (d < 0))) --q;  // floor
    const __int128 c = -q;
    return c > 0 ? static_cast<int64_t>(std::min<__int128>(c, INT64_MAX)) : 0;
  }
  template <typename T>
  static void fill_float(const std::vector<const Tensor*>& in, T* y, int64_t n) {
    const T s = scalar<T>(in[0]), d = scalar<T>(in[2]);
    for (int64_t i = 0; i < n; ++i) {
      volatile T step = static_cast<T>(i) * d;  // numpy rounds the product first (no fused multiply-add)
      y[i] = s + step;
    }
  }
  template <typename T>
  static void fill_int(const std::vector<const Tensor*>& in, T* y, int64_t n) {
    const int64_t s = scalar<T>(in[0]), d = scalar<T>(in[2]);
    for (int64_t i = 0; i < n; ++i)  // int64 arithmetic wrapping as numpy's, then the low bits
      y[i] = static_cast<T>(static_cast<uint64_t>(s) + static_cast<uint64_t>(i) * static_cast<uint64_t>(d));
  }
  std::string who_;
};

}  // namespace


// ---- ConstantOfShape: the shape input (int64) filled with the one-element tensor attribute `value`
// (float32 0 when absent), any fixed-size type. --------------------------------------------------

namespace {

class ConstantOfShapeKernel : public Kernel {
 public:
  explicit ConstantOfShapeKernel(const KernelArgs& a) : who_(a.node_label()) {
    std::memset(bytes_, 0, sizeof(bytes_));
    auto it = a.attrs.find("value");
    if (it == a.attrs.end()) return;  // float32 0
    if (it->second.kind != AttrValue::kTensor || !it->second.t)
      attr_fail(a, "value", "not a numeric tensor", "a one-element numeric tensor");
    const Tensor& v = *it->second.t;
    if (v.numel() != 1) attr_fail(a, "value", "of shape " + shape_str(v.shape), "a tensor of one element");
    item_ = checked_itemsize(v, who_);
    if (item_ > sizeof(bytes_)) attr_fail(a, "value", "tensor(" + dtype_name(v.dtype) + ")", "a fixed-size type");
    dtype_ = v.dtype;
    std::memcpy(bytes_, v.data, item_);
  }
  void infer(const std::vector<const Tensor*>& in, std::vector<OutSpec>& out) const override {
    if (in.empty() || !in[0]) kernel_fail(who_ + ": input 0 (shape) is missing");
    if (in[0]->rank() > 1) kernel_fail(who_ + ": the shape input must be 1-D, got shape " + shape_str(in[0]->shape));
    const std::vector<int64_t> dims = int_values(*in[0], who_, "the shape input");
    for (int64_t d : dims)
      if (d < 0) kernel_fail(who_ + ": negative dimension in output shape " + shape_str(Shape(dims.begin(), dims.end())));
    out.resize(1);
    out[0].dtype = dtype_;
    out[0].shape = Shape(dims.begin(), dims.end());
  }
  void compute(const std::vector<const Tensor*>&, std::vector<Tensor*>& out) const override {
    Tensor& Y = *out[0];
    const int64_t n = Y.numel();
    char* y = static_cast<char*>(Y.data);
    switch (item_) {
      case 1: std::memset(y, bytes_[0], static_cast<size_t>(n)); break;
      case 2: fill<uint16_t>(y, n); break;
      case 4: fill<uint32_t>(y, n); break;
      case 8: fill<uint64_t>(y, n); break;
      default:
        parallel_for(n, 0.5, [&](int64_t b, int64_t e) {
          for (int64_t i = b; i < e; ++i) std::memcpy(y + static_cast<size_t>(i) * item_, bytes_, item_);
        });
    }
  }

 private:
  template <typename W>
  void fill(char* y, int64_t n) const {
    W w;
    std::memcpy(&w, bytes_, sizeof(W));
    W* p = reinterpret_cast<W*>(y);
    parallel_for(n, 0.25, [&](int64_t b, int64_t e) { std::fill(p + b, p + e, w); });
  }
  std::string who_;
  int dtype_ = kFloat;
  size_t item_ = 4;
  unsigned char bytes_[16];
};

}  // namespace


// ---- GatherElements and GatherND ----------------------------------------------------------------
// Every index is checked (and wrapped) before anything is written; an out-of-range one raises
// IndexError naming the lowest (or, when none is too low, the highest) index of the offending axis,
// as the numpy kernels do. GatherElements walks the output with the data's strides (0 along the
// axis) plus index * stride; GatherND copies one contiguous slice of data per index tuple.

namespace {

// The indices as int64, made non-negative, after checking them against [-dim, dim).
void check_wrap(std::vector<int64_t>& idx, size_t begin, size_t step, int64_t dim, int64_t axis, const std::string& who) {
  int64_t lo = INT64_MAX, hi = INT64_MIN;
  for (size_t i = begin; i < idx.size(); i += step) {
    lo = std::min(lo, idx[i]);
    hi = std::max(hi, idx[i]);
  }
  if (lo > hi) return;  // no indices
  if (lo < -dim || hi >= dim)
    fail(ErrorKind::kIndex, who + ": index " + std::to_string(lo < -dim ? lo : hi) + " on axis " + std::to_string(axis) +
                                " is out of range (valid range [" + std::to_string(-dim) + ", " + std::to_string(dim - 1) +
                                "] for dimension " + std::to_string(dim) + ")");
  if (lo < 0)
    for (size_t i = begin; i < idx.size(); i += step)
      if (idx[i] < 0) idx[i] += dim;
}

std::vector<int64_t> index_values(const Tensor& t, const std::string& who) {
  if (t.dtype != kInt32 && t.dtype != kInt64)
    fail(ErrorKind::kInvalidType, who + ": indices must be integers, got " + dtype_name(t.dtype));
  return int_values(t, who, "indices");
}

// dst[i] = src[off[i]] for elements of `item` bytes
void gather_words(const char* src, char* dst, const std::vector<int64_t>& off, size_t item) {
  const int64_t n = static_cast<int64_t>(off.size());
  parallel_for(n, 1.0, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) std::memcpy(dst + static_cast<size_t>(i) * item, src + static_cast<size_t>(off[i]) * item, item);
  });
}

class GatherElementsKernel : public Kernel {
 public:
  explicit GatherElementsKernel(const KernelArgs& a)
      : who_(a.node_label()), axis_(attr_int(a, "axis", 0)) {
    check_axis(a, "axis", axis_, a.rank_of(0));
  }
  void infer(const std::vector<const Tensor*>& in, std::vector<OutSpec>& out) const override {
    check(in);
    out.resize(1);
    out[0] = {in[0]->dtype, in[1]->shape};
  }
  void compute(const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) const override {
    const int64_t a = check(in);
    const Tensor &X = *in[0], &I = *in[1];
    std::vector<int64_t> idx = index_values(I, who_);
    check_wrap(idx, 0, 1, X.shape[a], a, who_);
    if (idx.empty()) return;
    const size_t r = X.shape.size();
    std::vector<int64_t> xst(r);
    int64_t st = 1;
    for (size_t i = r; i-- > 0;) {
      xst[i] = st;
      st *= X.shape[i];
    }
    const int64_t sa = xst[a];
    xst[a] = 0;
    Odometer<1> od;
    od.dims = I.shape;
    od.strides[0] = xst;
    od.seek(0);
    for (size_t i = 0; i < idx.size(); ++i, od.next()) idx[i] = od.off[0] + idx[i] * sa;
    gather_words(static_cast<const char*>(X.data), static_cast<char*>(out[0]->data), idx, checked_itemsize(X, who_));
  }

 private:
  int64_t check(const std::vector<const Tensor*>& in) const {
    if (in.size() < 2 || !in[0] || !in[1]) kernel_fail(who_ + " needs data and indices");
    const Tensor &X = *in[0], &I = *in[1];
    const int64_t a = normalize_axis(axis_, X.rank(), who_, "axis");
    if (I.rank() != X.rank())
      kernel_fail(who_ + ": indices rank " + std::to_string(I.rank()) + " differs from data rank " + std::to_string(X.rank()));
    for (int64_t i = 0; i < X.rank(); ++i)
      if (i != a && I.shape[i] > X.shape[i])
        kernel_fail(who_ + ": indices shape " + shape_str(I.shape) + " exceeds data shape " + shape_str(X.shape) +
                    " on axis " + std::to_string(i));
    return a;
  }
  std::string who_;
  int64_t axis_;
};

class GatherNDKernel : public Kernel {
 public:
  explicit GatherNDKernel(const KernelArgs& a)
      : who_(a.node_label()), b_(a.opset >= 12 ? attr_int(a, "batch_dims", 0) : 0) {
    if (b_ < 0) attr_fail(a, "batch_dims", std::to_string(b_), ">= 0");
  }
  void infer(const std::vector<const Tensor*>& in, std::vector<OutSpec>& out) const override {
    const int64_t k = check(in);
    const Tensor &X = *in[0], &I = *in[1];
    Shape o(I.shape.begin(), I.shape.end() - 1);
    o.insert(o.end(), X.shape.begin() + b_ + k, X.shape.end());
    out.resize(1);
    out[0] = {X.dtype, o};
  }
  void compute(const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) const override {
    const int64_t k = check(in);
    const Tensor &X = *in[0], &I = *in[1];
    std::vector<int64_t> idx = index_values(I, who_);
    for (int64_t j = 0; j < k; ++j) check_wrap(idx, static_cast<size_t>(j), static_cast<size_t>(k), X.shape[b_ + j], b_ + j, who_);
    Tensor& Y = *out[0];
    if (Y.numel() == 0) return;
    const size_t item = checked_itemsize(X, who_);
    int64_t inner = 1, nb = 1;
    for (size_t i = static_cast<size_t>(b_ + k); i < X.shape.size(); ++i) inner *= X.shape[i];
    for (int64_t i = 0; i < b_; ++i) nb *= X.shape[i];
    std::vector<int64_t> st(static_cast<size_t>(k));  // data strides (in slices of `inner`) of the indexed dims
    int64_t s = 1;
    for (int64_t j = k; j-- > 0;) {
      st[j] = s;
      s *= X.shape[b_ + j];
    }
    const int64_t per_batch = s;  // slices per batch entry
    const int64_t tuples = shape_numel(Shape(I.shape.begin(), I.shape.end() - 1));
    const int64_t per_b = nb ? tuples / nb : 0;
    const size_t bytes = static_cast<size_t>(inner) * item;
    const char* x = static_cast<const char*>(X.data);
    char* y = static_cast<char*>(Y.data);
    parallel_for(tuples, static_cast<double>(inner) * 0.25 + 2.0, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        int64_t slice = (per_b ? t / per_b : 0) * per_batch;
        for (int64_t j = 0; j < k; ++j) slice += idx[static_cast<size_t>(t * k + j)] * st[j];
        std::memcpy(y + static_cast<size_t>(t) * bytes, x + static_cast<size_t>(slice) * bytes, bytes);
      }
    });
  }

 private:
  // The index tuple length k, after the checks of the numpy kernel.
  int64_t check(const std::vector<const Tensor*>& in) const {
    if (in.size() < 2 || !in[0] || !in[1]) kernel_fail(who_ + " needs data and indices");
    const Tensor &X = *in[0], &I = *in[1];
    if (I.rank() < 1 || I.rank() < b_ || X.rank() < b_ ||
        !std::equal(I.shape.begin(), I.shape.begin() + b_, X.shape.begin()))
      kernel_fail(who_ + ": batch dimensions of indices " + shape_str(I.shape) + " and data " + shape_str(X.shape) + " differ");
    if (I.dtype != kInt32 && I.dtype != kInt64)
      fail(ErrorKind::kInvalidType, who_ + ": indices must be integers, got " + dtype_name(I.dtype));
    const int64_t k = I.shape.back();
    if (k > X.rank() - b_)
      kernel_fail(who_ + ": indices last dimension " + std::to_string(k) + " is larger than data rank " +
                  std::to_string(X.rank()) + " minus batch_dims " + std::to_string(b_));
    return k;
  }
  std::string who_;
  int64_t b_;
};

}  // namespace


// ---- Split: input 0 in consecutive pieces along `axis` (sizes from the split input or attribute,
// num_outputs, or the output count), each piece a block copy per position of the leading dims ----

namespace {

class SplitKernel : public Kernel {
 public:
  explicit SplitKernel(const KernelArgs& a)
      : who_(a.node_label()), axis_(attr_int(a, "axis", 0)),
        use_input_(a.opset >= 13 || a.opset == 1), n_out_(a.num_outputs),
        num_outputs_(a.opset >= 18 ? attr_int(a, "num_outputs", 0) : 0) {
    check_axis(a, "axis", axis_, a.rank_of(0));
    if (!use_input_ && a.has("split")) {
      split_ = attr_ints(a, "split");
      has_split_ = !split_.empty();
    }
  }
  void infer(const std::vector<const Tensor*>& in, std::vector<OutSpec>& out) const override {
    int64_t a;
    const std::vector<int64_t> sizes = plan(in, a);
    out.resize(sizes.size());
    for (size_t k = 0; k < sizes.size(); ++k) {
      out[k].dtype = in[0]->dtype;
      out[k].shape = in[0]->shape;
      out[k].shape[a] = sizes[k];
    }
  }
  void compute(const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) const override {
    int64_t a;
    const std::vector<int64_t> sizes = plan(in, a);
    const Tensor& X = *in[0];
    const size_t item = checked_itemsize(X, who_);
    int64_t outer = 1, inner = 1;
    for (int64_t i = 0; i < a; ++i) outer *= X.shape[i];
    for (int64_t i = a + 1; i < X.rank(); ++i) inner *= X.shape[i];
    const int64_t dim = X.shape[a];
    std::vector<int64_t> off(sizes.size());
    for (size_t k = 1; k < sizes.size(); ++k) off[k] = off[k - 1] + sizes[k - 1];
    const int64_t nk = static_cast<int64_t>(sizes.size());
    const char* x = static_cast<const char*>(X.data);
    parallel_for(outer * nk, static_cast<double>(dim * inner) / static_cast<double>(nk) * 0.25 + 2.0,
                 [&](int64_t t0, int64_t t1) {
                   for (int64_t t = t0; t < t1; ++t) {
                     const int64_t k = t % nk, o = t / nk;
                     if (!out[k] || sizes[k] == 0) continue;
                     const size_t bytes = static_cast<size_t>(sizes[k] * inner) * item;
                     std::memcpy(static_cast<char*>(out[k]->data) + static_cast<size_t>(o) * bytes,
                                 x + static_cast<size_t>((o * dim + off[k]) * inner) * item, bytes);
                   }
                 });
  }

 private:
  // The piece sizes (the numpy kernel's rules and messages) and the axis.
  std::vector<int64_t> plan(const std::vector<const Tensor*>& in, int64_t& a) const {
    if (in.empty() || !in[0]) kernel_fail(who_ + ": input 0 is missing");
    a = normalize_axis(axis_, in[0]->rank(), who_, "axis");
    const int64_t dim = in[0]->shape[a];
    std::vector<int64_t> sp = split_;
    bool given = has_split_;
    if (use_input_ && in.size() > 1 && in[1]) {
      sp = int_values(*in[1], who_, "split");
      given = !sp.empty();
    }
    std::vector<int64_t> sizes;
    if (given) {
      int64_t sum = 0;
      bool neg = false;
      for (int64_t v : sp) {
        sum += v;
        neg = neg || v < 0;
      }
      if (sum != dim || neg) kernel_fail(who_ + ": split " + list_str(sp) + " does not add up to the dimension " + std::to_string(dim));
      sizes = sp;
    } else {
      const int64_t n = num_outputs_ ? num_outputs_ : n_out_;
      if (n <= 0) kernel_fail(who_ + ": cannot split into " + std::to_string(n) + " outputs");
      if (num_outputs_) {
        const int64_t chunk = (dim + n - 1) / n;
        sizes.assign(static_cast<size_t>(n - 1), chunk);
        sizes.push_back(dim - chunk * (n - 1));
        if (sizes.back() < 0) kernel_fail(who_ + ": cannot split dimension " + std::to_string(dim) + " into " + std::to_string(n) + " outputs");
      } else {
        if (dim % n) kernel_fail(who_ + ": dimension " + std::to_string(dim) + " cannot be split evenly into " + std::to_string(n) + " outputs");
        sizes.assign(static_cast<size_t>(n), dim / n);
      }
    }
    if (static_cast<int64_t>(sizes.size()) != n_out_ && n_out_)
      kernel_fail(who_ + ": split gives " + std::to_string(sizes.size()) + " parts but the node has " +
                  std::to_string(n_out_) + " outputs");
    return sizes;
  }
  std::string who_;
  int64_t axis_;
  bool use_input_;
  int64_t n_out_, num_outputs_;
  std::vector<int64_t> split_;
  bool has_split_ = false;
};

// CumSum: running sums along one axis, summed in the element type in index order (numpy's
// cumsum; integers wrap), optionally exclusive (each output leaves its own element out) and/or
// reversed (from the end). The axis is a one-element int32 / int64 input.
class CumSumKernel : public Kernel {
 public:
  explicit CumSumKernel(const KernelArgs& a)
      : who_(a.node_label()),
        exclusive_(expect_int_in(a, "exclusive", 0, 0, 1) != 0),
        reverse_(expect_int_in(a, "reverse", 0, 0, 1) != 0) {
    const auto& ax = a.const_inputs.size() > 1 ? a.const_inputs[1] : nullptr;
    if (ax) {
      std::vector<int64_t> v = int_values(*ax, who_, "axis");
      if (v.size() != 1) input_fail(a, 1, "axis", "has " + std::to_string(v.size()) + " values", "one value");
      check_axes_input(a, 1, "axis", v, a.rank_of(0));
    }
  }
  void infer(const std::vector<const Tensor*>& in, std::vector<OutSpec>& out) const override {
    axis(in);
    out.resize(1);
    out[0] = {in[0]->dtype, in[0]->shape};
  }
  void compute(const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) const override {
    const int64_t ax = axis(in);
    const Tensor& X = *in[0];
    Tensor& Y = *out[0];
    if (X.numel() == 0) return;
    int64_t outer = 1, inner = 1;
    for (int64_t i = 0; i < ax; ++i) outer *= X.shape[i];
    for (int64_t i = ax + 1; i < X.rank(); ++i) inner *= X.shape[i];
    const int64_t n = X.shape[ax];
    switch (X.dtype) {
      case kFloat: run<float, float>(X, Y, outer, n, inner); break;
      case kDouble: run<double, double>(X, Y, outer, n, inner); break;
      case kInt32: run<int32_t, uint32_t>(X, Y, outer, n, inner); break;
      case kInt64: run<int64_t, uint64_t>(X, Y, outer, n, inner); break;
      case kUInt32: run<uint32_t, uint32_t>(X, Y, outer, n, inner); break;
      case kUInt64: run<uint64_t, uint64_t>(X, Y, outer, n, inner); break;
      default: fail(ErrorKind::kInvalidType, who_ + ": no native kernel for tensor(" + dtype_name(X.dtype) + ")");
    }
  }

 private:
  int64_t axis(const std::vector<const Tensor*>& in) const {
    if (in.size() < 2 || !in[0] || !in[1]) kernel_fail(who_ + " needs x and axis");
    std::vector<int64_t> v = int_values(*in[1], who_, "axis");
    if (v.size() != 1) kernel_fail(who_ + ": axis must hold one value, got " + std::to_string(v.size()));
    return normalize_axis(v[0], in[0]->rank(), who_, "axis");
  }
  // U: the type the sums are formed in (unsigned for integers, so overflow wraps as in numpy).
  template <typename T, typename U>
  void run(const Tensor& X, Tensor& Y, int64_t outer, int64_t n, int64_t inner) const {
    const T* x = X.ptr<T>();
    T* y = Y.ptr<T>();
    const bool excl = exclusive_, rev = reverse_;
    parallel_for(outer, static_cast<double>(n * inner), [&](int64_t o0, int64_t o1) {
      for (int64_t o = o0; o < o1; ++o) {
        const T* xs = x + o * n * inner;
        T* ys = y + o * n * inner;
        // k-th position visited (from the front or the back) -> its row
        auto row = [&](int64_t k) { return (rev ? n - 1 - k : k) * inner; };
        for (int64_t k = 0; k < n; ++k) {
          T* yr = ys + row(k);
          if (excl) {
            if (k == 0) std::fill(yr, yr + inner, T(0));
            else if (k == 1) std::copy(xs + row(0), xs + row(0) + inner, yr);  // keeps a -0.0
            else {
              const T* yp = ys + row(k - 1);
              const T* xp = xs + row(k - 1);
              for (int64_t j = 0; j < inner; ++j) yr[j] = static_cast<T>(static_cast<U>(yp[j]) + static_cast<U>(xp[j]));
            }
          } else if (k == 0) {
            std::copy(xs + row(0), xs + row(0) + inner, yr);
          } else {
            const T* yp = ys + row(k - 1);
            const T* xr = xs + row(k);
            for (int64_t j = 0; j < inner; ++j) yr[j] = static_cast<T>(static_cast<U>(yp[j]) + static_cast<U>(xr[j]));
          }
        }
      }
    });
  }
  std::string who_;
  bool exclusive_, reverse_;
};

}  // namespace

// Every fixed-size type: views of the input where the op is pure metadata, the shape queries, and
// the shape / layout ops a graph's shape subgraph is made of.
ONNXFAST_KERNELS(tensor_ops) {
  const std::vector<int> fixed = {kFloat,  kUInt8,  kInt8,   kUInt16,    kInt16,     kInt32,  kInt64, kBool,
                                  kFloat16, kDouble, kUInt32, kUInt64, kComplex64, kComplex128, kBFloat16};
  kernel("Transpose").types(fixed).make<TransposeKernel>();
  kernel("Concat").types(fixed).make<ConcatKernel>();
  // Where is chosen by its first input, the bool condition; X / Y may be any fixed-size type.
  kernel("Where").since(9).types({kBool}).make<WhereKernel>();
  kernel("Gather").types(fixed).make<GatherKernel>();
  kernel("Slice").types(fixed).make<SliceKernel>();
  kernel("Identity").types(fixed).alias(0, 0).make<IdentityKernel>();
  kernel("Reshape").types(fixed).alias(0, 0).make<ReshapeKernel>();
  kernel("Flatten").types(fixed).alias(0, 0).make<FlattenKernel>();
  kernel("Squeeze").types(fixed).alias(0, 0).make<SqueezeKernel>();
  kernel("Unsqueeze").types(fixed).alias(0, 0).make<UnsqueezeKernel>();
  kernel("Shape").types(fixed).make<ShapeKernel>();
  kernel("Size").types(fixed).make<ShapeKernel>();
  kernel("Expand").since(8).types(fixed).alias(0, 0).make<ExpandKernel>();  // the input itself when unchanged
  kernel("Split").types(fixed).make<SplitKernel>();
  kernel("GatherElements").since(11).types(fixed).make<GatherElementsKernel>();
  kernel("GatherND").since(11).types(fixed).make<GatherNDKernel>();
  // a value of a standard numeric type (bfloat16, float8, strings: numpy kernel)
  kernel("ConstantOfShape").since(9).types({kInt64})
      .when([](const KernelArgs& a) {
        auto it = a.attrs.find("value");
        if (it == a.attrs.end()) return true;
        if (it->second.kind != AttrValue::kTensor || !it->second.t || it->second.t->numel() != 1) return false;
        const int t = it->second.t->dtype;
        return t >= kFloat && t <= kComplex128 && t != kString;
      })
      .make<ConstantOfShapeKernel>();
  kernel("CumSum").since(11).types({kFloat, kDouble, kInt32, kInt64, kUInt32, kUInt64}).make<CumSumKernel>();
  kernel("Range").since(11).types({kFloat, kDouble, kInt16, kInt32, kInt64}).make<RangeKernel>();
}

}  // namespace onnxfast
