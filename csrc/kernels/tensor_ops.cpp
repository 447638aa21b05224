// Data movement kernels for every fixed-size element type (moved as 1/2/4/8/16-byte words):
// Transpose (any rank and perm), Concat and Where (three-way numpy broadcasting).
//
// Transpose drops size-1 dims and merges dims that stay neighbours, then either copies
// contiguous rows (the innermost dim is unmoved) or runs a cache-blocked 2-D transpose of the
// input's innermost dim against the output's, tiles of 64 x 64 elements per task walked in
// T x T sub-tiles (T*size ~ 64 bytes), one 2-D transpose per index of the remaining dims.
#include <algorithm>
#include <cstring>
#include <string>

#include "../threadpool/threadpool.h"
#include "kernel.h"

namespace onnxfast {
namespace {

struct Word16 {
  uint64_t lo, hi;
};

// Row-major odometer over some dims, tracking an offset in two tensors.
struct Walker2 {
  std::vector<int64_t> dims, sa, sb, idx;
  int64_t a = 0, b = 0;
  void seek(int64_t lin) {
    idx.assign(dims.size(), 0);
    a = b = 0;
    for (size_t i = dims.size(); i-- > 0;) {
      idx[i] = lin % dims[i];
      lin /= dims[i];
      a += idx[i] * sa[i];
      b += idx[i] * sb[i];
    }
  }
  void next() {
    for (size_t i = dims.size(); i-- > 0;) {
      if (++idx[i] < dims[i]) {
        a += sa[i];
        b += sb[i];
        return;
      }
      a -= sa[i] * (dims[i] - 1);
      b -= sb[i] * (dims[i] - 1);
      idx[i] = 0;
    }
  }
};

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
      : name_("Transpose '" + a.node_name + "'"), has_perm_(a.has("perm")), perm_(a.get_ints("perm")) {}

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
      w.sa.assign(ois.begin(), ois.end() - 1);
      w.sb.assign(oos.begin(), oos.end() - 1);
      parallel_for(rows, static_cast<double>(L) * 0.3 * sizeof(T) / 4 + 5, [&](int64_t b, int64_t e) {
        Walker2 ww = w;
        ww.seek(b);
        for (int64_t i = b; i < e; ++i, ww.next()) std::memcpy(y + ww.b, x + ww.a, static_cast<size_t>(L) * sizeof(T));
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
      w.sa.push_back(ois[g]);
      w.sb.push_back(oos[g]);
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
                     transpose_2d_tile<T>(x + ww.a, y + ww.b, is, os, i0, std::min(ni, i0 + kTile), j0,
                                          std::min(nj, j0 + kTile));
                   }
                 });
  }

  std::string name_;
  bool has_perm_;
  std::vector<int64_t> perm_;
};

}  // namespace

void register_tensor_kernels() {
  const std::vector<int> fixed = {kFloat,  kUInt8,  kInt8,   kUInt16,    kInt16,     kInt32,  kInt64, kBool,
                                  kFloat16, kDouble, kUInt32, kUInt64, kComplex64, kComplex128, kBFloat16};
  register_kernel("Transpose", fixed, [](const KernelArgs& a) { return std::make_unique<TransposeKernel>(a); });
}

}  // namespace onnxfast
