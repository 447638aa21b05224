// Blocked SGEMM and the MatMul / Gemm kernels built on it.
//
// Layout: B is packed into 16-column panels per K block (pre-packed once for constant weights,
// or per task into a thread-local buffer that stays in L2: a task's columns come from the L2 size
// of the platform table, gemm_nc_max / gemm_blocking; the K block is fixed); A is packed one `mr`-row strip at a
// time just before the strip sweeps the B block (read in place only for tiles too narrow to reuse it). The micro-kernels (gemm_tiers.h) are
// per ISA tier; this file holds the portable one, the packing and the threaded driver.
#include "gemm.h"

#include <algorithm>
#include <limits>
#include <cstdlib>
#include <cstring>

#include "../cpu/cpu.h"
#include "gemm_tiers.h"
#include "kernel.h"
#include "../threadpool/threadpool.h"

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace onnxfast {

std::shared_ptr<float> alloc_floats(size_t n) {
  const size_t bytes = std::max<size_t>(64, ((n * sizeof(float) + 63) / 64) * 64);
#if defined(__linux__)
  // Packed weights of several MiB are streamed whole on every run (GPT-2's 154 MB LM head): on 4 KiB
  // pages that is a TLB miss every 4 KiB. Aligned to 2 MiB and marked for transparent huge pages
  // (honoured where THP is "madvise" or "always"; a hint, ignored elsewhere). The size is not rounded
  // up: the last partial 2 MiB stays on small pages, so no memory is added. LM head GEMV, 1 thread,
  // Intel Xeon: 11.5 -> 10.0 ms (THP off / on for the process).
  constexpr size_t kHuge = 2u << 20;
  if (bytes >= 2 * kHuge) {
    void* p = nullptr;
    if (posix_memalign(&p, kHuge, bytes) != 0 || !p)
      fail(ErrorKind::kAllocation, "could not allocate a weight packing buffer");
    madvise(p, bytes, MADV_HUGEPAGE);
    return std::shared_ptr<float>(static_cast<float*>(p), [](float* q) { std::free(q); });
  }
#endif
  void* p = std::aligned_alloc(64, bytes);
  if (!p) fail(ErrorKind::kAllocation, "could not allocate a weight packing buffer");
  return std::shared_ptr<float>(static_cast<float*>(p), [](float* q) { std::free(q); });
}

namespace {

constexpr int64_t kNR = kGemmPanel;  // panel width (all tiers)
constexpr int64_t kKC = kGemmKC;     // K block (fixed: the packed layouts; gemm.h)

// Grow-only per-thread scratch buffers (slot 0: B block, slot 1: A strip).
float* scratch(int slot, size_t n) {
  thread_local std::shared_ptr<float> buf[2];
  thread_local size_t size[2] = {0, 0};
  if (size[slot] < n) {
    buf[slot] = alloc_floats(n);
    size[slot] = n;
  }
  return buf[slot].get();
}

inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }
inline int64_t ceil_div(int64_t x, int64_t m) { return (x + m - 1) / m; }

// Portable micro-kernel: up to 4 rows x 16 columns with GCC/Clang vector extensions (SSE2 on
// x86-64 baseline, NEON on aarch64), so it vectorizes without any ISA flag.
typedef float v4f __attribute__((vector_size(16)));

template <int R, bool Rows>
void portable_kern(int64_t kc, const float* __restrict a, int64_t as, const float* __restrict b, float* __restrict c,
                   int64_t ldc, int64_t nr, float alpha, float beta, const MicroEpilogue* ep) {
  v4f acc[R][4];
  for (int i = 0; i < R; ++i)
    for (int j = 0; j < 4; ++j) acc[i][j] = v4f{0.f, 0.f, 0.f, 0.f};
  // The scalar epilogue itself: MicroEpilogue's operations are Activation::apply's.
  const Activation act = ep ? Activation::from_micro(*ep) : Activation{};
  for (int64_t k = 0; k < kc; ++k) {
    v4f bv[4];
    std::memcpy(bv, b + k * kNR, sizeof(bv));
    for (int i = 0; i < R; ++i) {
      const float s = Rows ? a[i * as + k] : a[k * as + i];
      const v4f av = {s, s, s, s};
      for (int j = 0; j < 4; ++j) acc[i][j] += av * bv[j];
    }
  }
  for (int i = 0; i < R; ++i) {
    float out[kNR];
    std::memcpy(out, acc[i], sizeof(out));
    float* ci = c + i * ldc;
    if (beta == 0.f)
      for (int64_t j = 0; j < nr; ++j) out[j] = alpha * out[j];
    else
      for (int64_t j = 0; j < nr; ++j) out[j] = alpha * out[j] + beta * ci[j];
    if (ep) act.apply(out, out, nr, ep->bias(i), ep->residual_row(i));
    std::memcpy(ci, out, sizeof(float) * nr);
  }
}

template <bool Rows>
void portable_dispatch(int64_t rows, int64_t kc, const float* a, int64_t as, const float* b0, float* c, int64_t ldc,
                       int64_t nr, float alpha, float beta, const MicroEpilogue* ep) {
  switch (rows) {
    case 1: portable_kern<1, Rows>(kc, a, as, b0, c, ldc, nr, alpha, beta, ep); break;
    case 2: portable_kern<2, Rows>(kc, a, as, b0, c, ldc, nr, alpha, beta, ep); break;
    case 3: portable_kern<3, Rows>(kc, a, as, b0, c, ldc, nr, alpha, beta, ep); break;
    default: portable_kern<4, Rows>(kc, a, as, b0, c, ldc, nr, alpha, beta, ep); break;
  }
}

void portable_micro(int64_t rows, int64_t kc, const float* a, int64_t as, bool a_rows, const float* b0, const float*,
                    float* c, int64_t ldc, int64_t nr, float alpha, float beta, const MicroEpilogue* ep) {
  if (a_rows) portable_dispatch<true>(rows, kc, a, as, b0, c, ldc, nr, alpha, beta, ep);
  else portable_dispatch<false>(rows, kc, a, as, b0, c, ldc, nr, alpha, beta, ep);
}

// Pack rows [m0, m0+mc) x cols [k0, k0+kc) of op(A) into strips of mr rows: strip[k][mr].
void pack_a(bool transA, const float* A, int64_t lda, int64_t m0, int64_t mc, int64_t k0, int64_t kc, int64_t mr,
            float* out) {
  for (int64_t i0 = 0; i0 < mc; i0 += mr) {
    int64_t rows = std::min(mr, mc - i0);
    float* strip = out + i0 * kc;
    if (!transA) {
      transpose_f32(A + (m0 + i0) * lda + k0, lda, rows, kc, strip, mr);
    } else {
      for (int64_t k = 0; k < kc; ++k) {
        const float* src = A + (k0 + k) * lda + m0 + i0;
        for (int64_t i = 0; i < rows; ++i) strip[k * mr + i] = src[i];
      }
    }
    for (int64_t k = 0; k < kc && rows < mr; ++k)
      for (int64_t i = rows; i < mr; ++i) strip[k * mr + i] = 0.f;
  }
}

// Pack rows [k0, k0+kc) x columns [n0, n1) of op(B) into 16-column panels of kc rows each
// (zero-padded to a whole panel); n0 is a multiple of 16.
void pack_b_block(bool transB, const float* B, int64_t ldb, int64_t k0, int64_t kc, int64_t n0, int64_t n1,
                  float* out) {
  const int64_t nfull = (n1 - n0) / kNR * kNR;  // columns in whole panels
  if (!transB) {
    // Groups of 8 panels: each source row contributes 512 contiguous bytes, and each of the 8
    // panels is written front to back (sequential streams rather than 16 KiB strides).
    constexpr int64_t kGroup = 8 * kNR;
    for (int64_t g = 0; g < nfull; g += kGroup) {
      const int64_t ge = std::min(nfull, g + kGroup);
      for (int64_t k = 0; k < kc; ++k) {
        const float* src = B + (k0 + k) * ldb + n0;
        float* dst = out + k * kNR;
        for (int64_t j = g; j < ge; j += kNR) std::memcpy(dst + j * kc, src + j, sizeof(float) * kNR);
      }
    }
    for (int64_t k = 0; k < kc; ++k) {
      const float* src = B + (k0 + k) * ldb + n0;
      float* dst = out + k * kNR;
      if (nfull < n1 - n0) {
        float* t = dst + nfull * kc;
        const int64_t nr = n1 - n0 - nfull;
        for (int64_t j = 0; j < nr; ++j) t[j] = src[nfull + j];
        for (int64_t j = nr; j < kNR; ++j) t[j] = 0.f;
      }
    }
    return;
  }
  // Column j of op(B) is row j of B: read each row forward, write one lane of every panel row.
  for (int64_t j0 = n0; j0 < n1; j0 += kNR) {
    float* panel = out + (j0 - n0) * kc;
    const int64_t nr = std::min(kNR, n1 - j0);
    for (int64_t j = 0; j < kNR; ++j) {
      if (j < nr) {
        const float* src = B + (j0 + j) * ldb + k0;
        for (int64_t k = 0; k < kc; ++k) panel[k * kNR + j] = src[k];
      } else {
        for (int64_t k = 0; k < kc; ++k) panel[k * kNR + j] = 0.f;
      }
    }
  }
}

GemmTier select_tier() {
#if defined(__x86_64__) || defined(_M_X64)
  switch (active_isa()) {
    case Isa::kAvx512: return gemm_tier_avx512();
    case Isa::kAvx2: return gemm_tier_avx2();
    default: break;
  }
#endif
  return gemm_tier_portable();
}

int current_threads() {
  ThreadPool* p = current_pool();
  return p ? p->num_threads() : 1;
}

// C = beta * C over an M x N block (beta == 0 writes zeros, never reads C).
void scale_c(int64_t M, int64_t N, float beta, float* C, int64_t ldc) {
  if (beta == 1.f) return;
  for (int64_t i = 0; i < M; ++i) {
    float* row = C + i * ldc;
    if (beta == 0.f) std::memset(row, 0, sizeof(float) * N);
    else
      for (int64_t j = 0; j < N; ++j) row[j] *= beta;
  }
}

// Small-M GEMM with B read in place (no packing): each row of C accumulates alpha * A[i,k] * B[k,:]
// over k, in column chunks so threads split N. For M = 1 this is GEMV at memory speed.
void gemm_rows_direct(int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda, const float* B,
                      int64_t ldb, float beta, float* C, int64_t ldc, const GemmEpilogue* ep) {
  constexpr int64_t kChunk = 256;
  parallel_for(ceil_div(N, kChunk), 2.0 * M * K * kChunk / 16.0, [&](int64_t cb, int64_t ce) {
    float acc[kChunk];
    for (int64_t c = cb; c < ce; ++c) {
      const int64_t j0 = c * kChunk, nc = std::min(kChunk, N - j0);
      for (int64_t i = 0; i < M; ++i) {
        std::memset(acc, 0, sizeof(acc));
        const float* a = A + i * lda;
        for (int64_t k = 0; k < K; ++k) {
          const float av = a[k];
          const float* b = B + k * ldb + j0;
          for (int64_t j = 0; j < nc; ++j) acc[j] += av * b[j];
        }
        float* ci = C + i * ldc + j0;
        if (beta == 0.f)
          for (int64_t j = 0; j < nc; ++j) ci[j] = alpha * acc[j];
        else
          for (int64_t j = 0; j < nc; ++j) ci[j] = alpha * acc[j] + beta * ci[j];
        if (ep) ep->apply(ci, i, j0, nc);
      }
    }
  });
}

}  // namespace

// A row-major strip of at most this many rows (fewer than the tier's mr) is read in place, never packed
// (gemm_driver).
constexpr int64_t kInPlaceRows = 4;

// Per packed element of A (a strided 4 x 4 transpose) and of a fed B (row copies), in multiply-adds;
// fitted to 1024^3 at 2 threads, where 1 x 8 tiles ran 10-15% slower than 2 x 2 or 1 x 2.
constexpr double kPackACost = 24.0, kPackBCost = 8.0;

int64_t gemm_nc_max(int64_t l2_bytes) {
  // Half of L2: a kc x nc block at nc = 1024 (1 MiB) was the fastest on a 2 MiB L2 (the constant
  // this replaces); the other half holds the A strips, C's rows and the lines of the next K block.
  const int64_t nc = l2_bytes / 2 / (kKC * static_cast<int64_t>(sizeof(float))) / kNR * kNR;
  // At least 4 panels (two micro-tiles of the widest tier) so a tile amortizes its A strips; at most
  // 4096 columns (a 4 MiB block), past which a larger L2 (shared by a cluster) is not ours alone.
  return std::min<int64_t>(4096, std::max<int64_t>(4 * kNR, nc));
}

TaskGrid choose_grid(const GridProblem& g) {
  const int64_t M = g.M, N = g.N, mr = g.mr, step = g.step, P = g.threads;
  const int64_t nb_min = ceil_div(N, g.nc_max);
  int64_t mb = 1, nb = nb_min;
  auto grid = [&] {  // the tile sizes of mb x nb, and the counts they give
    const int64_t mc = round_up(ceil_div(M, mb), mr), nc = round_up(ceil_div(N, nb), step);
    return TaskGrid{ceil_div(M, mc), ceil_div(N, nc), mc, nc};
  };
  if (P <= 1) return grid();
  double best = -1;
  int64_t most = 0;  // when no grid has P tiles (a small C), the one with the most
  for (int64_t mbt = 1; mbt <= std::min<int64_t>(4 * P, ceil_div(M, mr)); ++mbt) {
    for (int64_t nbt = nb_min; g.outer * mbt * nbt <= 4 * P || nbt == nb_min; ++nbt) {
      const int64_t nc = round_up(ceil_div(N, nbt), step), mc = round_up(ceil_div(M, mbt), mr);
      const int64_t tn = ceil_div(N, nc), tm = ceil_div(M, mc), tasks = g.outer * tn * tm;
      if (tn != nbt || tm != mbt) continue;  // the same grid as a smaller count
      if (tasks < P) {
        if (best < 0 && tasks > most) {
          most = tasks;
          mb = tm;
          nb = tn;
        }
        continue;
      }
      const double tile = static_cast<double>(std::min(mc, M)) * std::min(nc, N) +
                          (nc >= g.a_min_nc ? g.a_cost * std::min(mc, M) : 0.0) + g.b_cost * std::min(nc, N);
      // + 0.1 tile: a thread that falls behind (another process took its core) holds up the run by
      // part of a tile, which favours more, smaller tiles when packing costs about the same.
      const double t = (static_cast<double>(ceil_div(tasks, P)) + 0.1) * tile * g.K;
      if (best < 0 || t < best * 0.999) {
        best = t;
        mb = tm;
        nb = tn;
      }
    }
  }
  return grid();
}

GemmBlocking gemm_blocking(bool transA, int64_t M, int64_t N, int64_t K, int64_t threads, bool prepacked_b) {
  const GemmTier& tier = gemm_tier();
  GemmBlocking b;
  b.mr = tier.mr;
  b.step = kNR * tier.panels;
  b.kc = kKC;
  // Read once: the whole product uses one nc_max even if set_cache_sizes() runs meanwhile.
  b.nc_max = gemm_nc_max(cache_sizes().l2);
  // Task grid: mb x nb tiles of C, each computed over all of K by one thread, so every output
  // element is summed in the same order whatever the grid (results do not depend on threads or on
  // nc_max). Within a tile, each K block packs its B block once (L2, hence nc_max) and streams the A
  // strips past it (each strip sits in L1 for the whole row of panels). Every tile packs its rows of
  // A and, for a fed B, its columns of B, so more tiles cost more packing: with threads, the grid is
  // the one with the least modeled time per thread (tiles per thread x (multiply-adds + packing))
  // among those with P to 4P tiles (choose_grid).
  // Row-major A is packed strip by strip (then one pointer walks a strip; read in place, the 12
  // row pointers spill, and a 4 KiB-multiple row stride maps all rows to the same L1 sets) when the
  // tile is wide enough for a strip to be reused by two panel pairs or more.
  b.pack_min_nc = transA ? 0 : K > kKC / 4 ? 2 * b.step : std::numeric_limits<int64_t>::max();
  b.grid = choose_grid(GridProblem{M, N, K, b.mr, b.step, std::max<int64_t>(1, threads), b.nc_max, 1, kPackACost,
                                   prepacked_b ? 0.0 : kPackBCost, b.pack_min_nc});
  return b;
}

namespace {

// The threaded driver. B is either pre-packed (pb) or raw (B, ldb, transB) and then packed per task.
void gemm_driver(bool transA, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                 const PackedB* pb, bool transB, const float* B, int64_t ldb, float beta, float* C, int64_t ldc,
                 const GemmEpilogue* ep) {
  if (M <= 0 || N <= 0) return;
  if (K == 0 || alpha == 0.f) {
    scale_c(M, N, beta, C, ldc);
    if (ep)
      for (int64_t i = 0; i < M; ++i) ep->apply(C + i * ldc, i, 0, N);
    return;
  }
  const GemmTier& tier = gemm_tier();
  const GemmBlocking blk = gemm_blocking(transA, M, N, K, current_threads(), pb != nullptr);
  const int64_t mr = blk.mr, step = blk.step, pack_min_nc = blk.pack_min_nc;
  const int64_t mb = blk.grid.mb, nb = blk.grid.nb, mc = blk.grid.mc, nc = blk.grid.nc;
  const int64_t np_all = pb ? round_up(N, kNR) : 0;
  const double cost = 2.0 * std::min(M, mc) * std::min(N, nc) * K / 64.0;
  const bool pack_rows = nc >= pack_min_nc;
  parallel_for(mb * nb, cost, [&](int64_t tb, int64_t te) {
    float* bbuf = pb ? nullptr : scratch(0, static_cast<size_t>(kKC * round_up(nc, kNR)));
    float* abuf = transA || pack_rows ? scratch(1, static_cast<size_t>(kKC * mr)) : nullptr;
    for (int64_t t = tb; t < te; ++t) {
      const int64_t m0 = (t / nb) * mc, n0 = (t % nb) * nc;
      const int64_t m1 = std::min(M, m0 + mc), n1 = std::min(N, n0 + nc);
      for (int64_t k0 = 0; k0 < K; k0 += kKC) {
        const int64_t kc = std::min(kKC, K - k0);
        const float* bblk;
        if (pb) {
          bblk = pb->data.get() + k0 * np_all + n0 * kc;
        } else {
          pack_b_block(transB, B, ldb, k0, kc, n0, n1, bbuf);
          bblk = bbuf;
        }
        // A: each strip is packed just before its row of panels (it then stays in L1) when
        // transposed or pack_rows, else read in place. A short strip (at most kInPlaceRows, fewer than
        // mr) is read in place too: its pointers stay in registers, and packing it (zero-padded to mr
        // rows) cost 5-15% of a small-M product (an RNN step, M = batch 1..8, on AVX2).
        // Strips have mr rows, the last two balanced when the last would have fewer than mr / 2: a 1- or
        // 2-row strip streams all of the B block for little work (M = 8 on AVX2 as 4 + 4, not 6 + 2: 8%
        // faster; M = 7, 13: 15%, 9%). Neither a strip's size nor its form (packed or in place) changes the
        // values the micro-kernel sums or their order: the same bits.
        const float b = k0 == 0 ? beta : 1.f;
        for (int64_t i0 = m0, rows = 0; i0 < m1; i0 += rows) {
          rows = std::min(mr, m1 - i0);
          const int64_t rest = m1 - i0 - rows;
          if (rest > 0 && rest < mr / 2) rows = (rows + rest + 1) / 2;
          const bool a_rows = !transA && (!pack_rows || (rows < mr && rows <= kInPlaceRows));
          const float* a = A + i0 * lda + k0;
          if (!a_rows) {
            pack_a(transA, A, lda, i0, rows, k0, kc, mr, abuf);
            a = abuf;
          }
          const int64_t as = a_rows ? lda : mr;
          for (int64_t j0 = n0; j0 < n1; j0 += step) {
            const int64_t nr = std::min(step, n1 - j0);
            const float* p0 = bblk + (j0 - n0) * kc;
            const float* p1 = nr > kNR ? p0 + kNR * kc : nullptr;
            float* c = C + i0 * ldc + j0;
            tier.kernel(rows, kc, a, as, a_rows, p0, p1, c, ldc, nr, alpha, b, nullptr);
          }
          // Last K block: the strip's rows (mr x nc) are final and still in cache. One epilogue call
          // per row of the strip, not per micro-tile: a vector-math activation (Gelu) on 16 values
          // at a time spent more in calls than in arithmetic (MiniLM 3% slower fused than unfused).
          if (ep && k0 + kc >= K)
            for (int64_t r = 0; r < rows; ++r) ep->apply(C + (i0 + r) * ldc + n0, i0 + r, n0, n1 - n0);
        }
      }
    }
  });
}

}  // namespace

GemmTier gemm_tier_portable() { return GemmTier{"portable", 4, 1, &portable_micro}; }

const GemmTier& gemm_tier() {
  static const GemmTier t = select_tier();
  return t;
}

PackedB sgemm_pack_b(bool transB, int64_t K, int64_t N, const float* B, int64_t ldb) {
  PackedB p;
  p.K = K;
  p.N = N;
  const int64_t np = round_up(std::max<int64_t>(N, 1), kNR);
  p.data = alloc_floats(static_cast<size_t>(np * std::max<int64_t>(K, 1)));
  // Layout: for each K block, the panels of all columns (kc x 16 floats each).
  for (int64_t k0 = 0; k0 < K; k0 += kKC)
    pack_b_block(transB, B, ldb, k0, std::min(kKC, K - k0), 0, N, p.data.get() + k0 * np);  // tail zero-padded
  return p;
}

void sgemm_packed(bool transA, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                  const PackedB& B, float beta, float* C, int64_t ldc, const GemmEpilogue* ep) {
  gemm_driver(transA, M, N, K, alpha, A, lda, &B, false, nullptr, 0, beta, C, ldc, ep);
}

PackedA sgemm_pack_a(int64_t M, int64_t K, const float* A, int64_t lda) {
  const GemmTier& tier = gemm_tier();
  PackedA p;
  p.M = M;
  p.K = K;
  p.mr = tier.mr;
  p.mpad = round_up(std::max<int64_t>(M, 1), tier.mr);
  p.data = alloc_floats(static_cast<size_t>(p.mpad * std::max<int64_t>(K, 1)));
  for (int64_t k0 = 0; k0 < K; k0 += kKC) {
    int64_t kc = std::min(kKC, K - k0);
    pack_a(false, A, lda, 0, M, k0, kc, tier.mr, p.data.get() + k0 * p.mpad);
  }
  return p;
}

void sgemm_kblock(const PackedA& A, int64_t m0, int64_t m1, int64_t k0, int64_t kc, const float* Bblock, int64_t nc,
                  float* C, int64_t ldc, float beta, const MicroEpilogue* ep) {
  const GemmTier& tier = gemm_tier();
  const int64_t mr = A.mr, step = kNR * tier.panels;
  const float* ablk = A.data.get() + k0 * A.mpad;
  for (int64_t j0 = 0; j0 < nc; j0 += step) {
    int64_t nr = std::min(step, nc - j0);
    const float* p0 = Bblock + (j0 / kNR) * kNR * kc;
    const float* p1 = nr > kNR ? p0 + kNR * kc : nullptr;
    for (int64_t i0 = m0; i0 < m1; i0 += mr) {
      const MicroEpilogue e = ep ? ep->at(i0 - m0, j0) : MicroEpilogue{};  // the call's rows and columns
      tier.kernel(std::min(mr, m1 - i0), kc, ablk + i0 * kc, mr, false, p0, p1, C + (i0 - m0) * ldc + j0, ldc, nr,
                  1.f, beta, ep ? &e : nullptr);
    }
  }
}

void sgemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
           int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc, const GemmEpilogue* ep) {
  if (M <= 0 || N <= 0) return;
  if (!transA && !transB && M <= 2 && K > 0) {
    gemm_rows_direct(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, ep);
    return;
  }
  gemm_driver(transA, M, N, K, alpha, A, lda, nullptr, transB, B, ldb, beta, C, ldc, ep);
}

namespace {

// MatMul with numpy semantics (1-D promotion, broadcast batch dims), float32.
class MatMulKernel : public Kernel {
 public:
  // MatMul, or onnxfast::FusedMatMul (inputs A, B, optional bias of N values, optional residual of the
  // output's shape; attributes activation / activation_params): y = act(A @ B + bias + residual),
  // the epilogue applied to each GEMM micro-tile while it is in cache.
  // Also onnxruntime's com.microsoft FusedMatMul: y = alpha * A @ op(B), transB swapping B's last two
  // axes (the other transposes it allows run on numpy).
  explicit MatMulKernel(const KernelArgs& a)
      : name_(a.op_type + " '" + a.node_name + "'"),
        fused_(a.op_type == "FusedMatMul" && a.domain == "onnxfast"),
        ms_(a.op_type == "FusedMatMul" && a.domain == "com.microsoft"),
        ep_act_(ms_ ? Activation{} : Activation::from_args(a, name_)) {
    if (fused_) expect_known_attrs(a, {"activation", "activation_params"});
    if (ms_) {
      expect_known_attrs(a, {"alpha", "transA", "transB", "transBatchA", "transBatchB"});
      alpha_ = static_cast<float>(attr_float(a, "alpha", 1.0));
      transB_ = attr_int(a, "transB", 0) != 0;
    }
    expect_rank_in(a, 0, "A", 1, -1);  // numpy semantics: scalars are refused (onnxruntime too)
    expect_rank_in(a, 1, "B", 1, -1);
    if (a.const_inputs.size() > 1 && a.const_inputs[1] && a.allow_prepack) {
      const Tensor& b = *a.const_inputs[1];
      if (b.dtype == kFloat && b.rank() == 2) {
        const int64_t K = transB_ ? b.shape[1] : b.shape[0], N = transB_ ? b.shape[0] : b.shape[1];
        packed_ = std::make_shared<PackedB>(sgemm_pack_b(transB_, K, N, b.ptr<float>(), b.shape[1]));
      }
    }
  }
  // B's shape as the product sees it (last two axes swapped under transB).
  Shape b_shape(const Tensor& B) const {
    Shape s = B.shape;
    if (transB_ && s.size() >= 2) std::swap(s[s.size() - 1], s[s.size() - 2]);
    return s;
  }
  std::string describe() const override {
    const std::string d = fused_ ? "native:fused" : "native";
    return packed_ ? d + ":prepacked" : d;
  }
  // Packed B (2-D) is all compute() reads of B; infer() reads its shape.
  std::vector<int> packed_inputs() const override { return packed_ ? std::vector<int>{1} : std::vector<int>{}; }

  void infer(const std::vector<const Tensor*>& in, std::vector<OutSpec>& out) const override {
    if (in.size() < 2 || !in[0] || !in[1]) kernel_fail(name_ + " needs two inputs");
    expect_dtype(*in[0], kFloat, (name_ + " input A").c_str());
    expect_dtype(*in[1], kFloat, (name_ + " input B").c_str());
    const Shape b = b_shape(*in[1]);
    const MatMulDims dims = matmul_dims(in[0]->shape, b, name_);
    const Shape& o = dims.out;
    out.resize(1);
    out[0].dtype = kFloat;
    out[0].shape = o;
    if (fused_) {
      if (in.size() > 2 && in[2]) {
        expect_dtype(*in[2], kFloat, (name_ + " bias").c_str());
        if (b.size() < 2 || in[2]->numel() != b.back() || in[2]->rank() != 1)
          kernel_fail(name_ + ": bias must have shape (" + std::to_string(dims.N) + ",), got " +
                      shape_str(in[2]->shape));
      }
      if (in.size() > 3 && in[3]) {
        expect_dtype(*in[3], kFloat, (name_ + " residual input").c_str());
        if (in[3]->shape != o)
          kernel_fail(name_ + ": residual input of shape " + shape_str(in[3]->shape) + " differs from the output " +
                      shape_str(o));
      }
    }
  }

  void compute(const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) const override {
    const Tensor& A = *in[0];
    const Tensor& B = *in[1];
    Tensor& Y = *out[0];
    const Shape bs = b_shape(B);
    Shape a2 = A.rank() == 1 ? Shape{1, A.shape[0]} : A.shape;
    Shape b2 = B.rank() == 1 ? Shape{B.shape[0], 1} : bs;
    const bool tb = transB_ && B.rank() >= 2;
    int64_t M = a2[a2.size() - 2], K = a2.back(), N = b2.back();
    if (Y.numel() == 0) return;
    const float* pa = A.ptr<float>();
    const float* pb = B.ptr<float>();
    float* py = Y.ptr<float>();
    GemmEpilogue ep;
    const GemmEpilogue* epp = nullptr;
    const float* res = fused_ && in.size() > 3 && in[3] ? in[3]->ptr<float>() : nullptr;
    if (fused_) {
      ep.col_bias = in.size() > 2 && in[2] ? in[2]->ptr<float>() : nullptr;
      ep.residual = res;
      ep.ldr = N;
      ep.act = ep_act_;
      epp = &ep;
    }
    if (b2.size() == 2) {
      // All batches of A share one B: a single (batch*M) x K GEMM.
      int64_t rows = shape_numel(a2) / std::max<int64_t>(K, 1);
      if (K == 0) rows = shape_numel(Shape(a2.begin(), a2.end() - 1));
      if (packed_) sgemm_packed(false, rows, N, K, alpha_, pa, K, *packed_, 0.f, py, N, epp);
      else sgemm(false, tb, rows, N, K, alpha_, pa, K, pb, tb ? K : N, 0.f, py, N, epp);
      return;
    }
    const MatMulDims dims = matmul_dims(A.shape, bs, name_);
    const int64_t nb = shape_numel(dims.batch);
    for (int64_t t = 0; t < nb; ++t) {
      int64_t oa, ob;
      dims.offsets(t, &oa, &ob);
      if (res) ep.residual = res + t * M * N;
      sgemm(false, tb, M, N, K, alpha_, pa + oa, K, pb + ob, tb ? K : N, 0.f, py + t * M * N, N, epp);
    }
  }

 private:
  std::string name_;
  bool fused_;
  bool ms_;
  Activation ep_act_;
  float alpha_ = 1.f;
  bool transB_ = false;
  std::shared_ptr<PackedB> packed_;
};

// The activations a FusedGemm applies in the GEMM's store ("" = none); the others run on numpy.
const std::vector<std::string> kFusedGemmActivations = {"", "Relu", "LeakyRelu", "Sigmoid", "Tanh"};

class GemmKernel : public Kernel {
 public:
  explicit GemmKernel(const KernelArgs& a)
      : name_(a.op_type + " '" + a.node_name + "'"),
        act_(fused_gemm_activation(a)),
        alpha_(static_cast<float>(attr_float(a, "alpha", 1.0))),
        beta_(static_cast<float>(attr_float(a, "beta", 1.0))),
        // any nonzero value transposes, as in onnxruntime and ONNX's shape inference
        transA_(attr_int(a, "transA", 0) != 0),
        transB_(attr_int(a, "transB", 0) != 0) {
    expect_rank_in(a, 0, "A", 2, 2);
    expect_rank_in(a, 1, "B", 2, 2);
    expect_rank_in(a, 2, "C", 0, 2);  // unidirectionally broadcast to (M, N)
    if (a.const_inputs.size() > 1 && a.const_inputs[1] && a.allow_prepack) {
      const Tensor& b = *a.const_inputs[1];
      if (b.dtype == kFloat && b.rank() == 2) {
        int64_t K = transB_ ? b.shape[1] : b.shape[0];
        int64_t N = transB_ ? b.shape[0] : b.shape[1];
        packed_ = std::make_shared<PackedB>(sgemm_pack_b(transB_, K, N, b.ptr<float>(), b.shape[1]));
      }
    }
  }
  std::string describe() const override {
    const std::string d = act_.kind == Activation::kNone ? "native" : "native:fused";
    return packed_ ? d + ":prepacked" : d;
  }
  std::vector<int> packed_inputs() const override { return packed_ ? std::vector<int>{1} : std::vector<int>{}; }

  // onnxruntime's com.microsoft FusedGemm: Gemm, then `activation` with activation_alpha (LeakyRelu's
  // alpha); the activations the GEMM's store applies (kFusedGemmActivations).
  static Activation fused_gemm_activation(const KernelArgs& a) {
    Activation act;
    if (a.op_type != "FusedGemm") return act;
    const std::string s = expect_known_string(a, "activation", "", kFusedGemmActivations);
    if (s == "Relu") act.kind = Activation::kRelu;
    else if (s == "Sigmoid") act.kind = Activation::kSigmoid;
    else if (s == "Tanh") act.kind = Activation::kTanh;
    else if (s == "LeakyRelu") {
      act.kind = Activation::kLeakyRelu;
      act.p0 = static_cast<float>(attr_float(a, "activation_alpha", 0.01));
    }
    return act;
  }

  void infer(const std::vector<const Tensor*>& in, std::vector<OutSpec>& out) const override {
    if (in.size() < 2 || !in[0] || !in[1]) kernel_fail(name_ + " needs inputs A and B");
    expect_dtype(*in[0], kFloat, (name_ + " input A").c_str());
    expect_dtype(*in[1], kFloat, (name_ + " input B").c_str());
    if (in[0]->rank() != 2 || in[1]->rank() != 2)
      kernel_fail(name_ + ": A and B must be 2-D, got " + shape_str(in[0]->shape) + " and " + shape_str(in[1]->shape));
    int64_t M = transA_ ? in[0]->shape[1] : in[0]->shape[0];
    int64_t K = transA_ ? in[0]->shape[0] : in[0]->shape[1];
    int64_t Kb = transB_ ? in[1]->shape[1] : in[1]->shape[0];
    int64_t N = transB_ ? in[1]->shape[0] : in[1]->shape[1];
    if (K != Kb)
      kernel_fail(name_ + ": inner dimensions differ: op(A) is " + std::to_string(M) + "x" + std::to_string(K) +
                  ", op(B) is " + std::to_string(Kb) + "x" + std::to_string(N));
    if (in.size() > 2 && in[2]) {
      expect_dtype(*in[2], kFloat, (name_ + " input C").c_str());
      Shape bc = broadcast_shapes(Shape{M, N}, in[2]->shape, (name_ + " input C").c_str());
      if (bc != Shape{M, N})
        kernel_fail(name_ + ": C of shape " + shape_str(in[2]->shape) + " does not broadcast to " +
                    shape_str(Shape{M, N}));
    }
    out.resize(1);
    out[0].dtype = kFloat;
    out[0].shape = {M, N};
  }

  void compute(const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) const override {
    const Tensor& A = *in[0];
    const Tensor& B = *in[1];
    Tensor& Y = *out[0];
    int64_t M = Y.shape[0], N = Y.shape[1];
    int64_t K = transA_ ? A.shape[0] : A.shape[1];
    float* y = Y.ptr<float>();
    float beta = 0.f;
    GemmEpilogue ep;
    const GemmEpilogue* epp = nullptr;
    if (in.size() > 2 && in[2] && beta_ != 0.f) {
      const Tensor& C = *in[2];
      const float* c = C.ptr<float>();
      Shape cs = C.shape;
      while (cs.size() < 2) cs.insert(cs.begin(), 1);
      int64_t cm = cs[0], cn = cs[1];
      if (beta_ == 1.f && cm == 1 && cn == N && N > 1) {
        ep.col_bias = c;  // a bias row (a linear layer): added in the GEMM's store, no pass over Y
        epp = &ep;
      } else if (beta_ == 1.f && cm == M && cn == N && M > 1) {
        ep.residual = c;
        ep.ldr = N;
        epp = &ep;
      } else {
        for (int64_t i = 0; i < M; ++i)
          for (int64_t j = 0; j < N; ++j) y[i * N + j] = c[(cm == 1 ? 0 : i) * cn + (cn == 1 ? 0 : j)];
        beta = beta_;
      }
    }
    if (act_.kind != Activation::kNone) {
      ep.act = act_;
      epp = &ep;
    }
    if (packed_) sgemm_packed(transA_, M, N, K, alpha_, A.ptr<float>(), A.shape[1], *packed_, beta, y, N, epp);
    else
      sgemm(transA_, transB_, M, N, K, alpha_, A.ptr<float>(), A.shape[1], B.ptr<float>(), B.shape[1], beta, y, N,
            epp);
  }

 private:
  std::string name_;
  Activation act_;
  float alpha_, beta_;
  bool transA_, transB_;
  std::shared_ptr<PackedB> packed_;
};

}  // namespace

// float32 here; float16 / bfloat16 through float32 in half.cpp
ONNXFAST_KERNELS(gemm) {
  kernel("MatMul").types({kFloat}).make<MatMulKernel>();
  kernel("FusedMatMul", "onnxfast").types({kFloat}).make<MatMulKernel>();
  kernel("FusedMatMul", "com.microsoft").types({kFloat})
      .when([](const KernelArgs& a) {
        return a.get_int("transA", 0) == 0 && a.get_int("transBatchA", 0) == 0 && a.get_int("transBatchB", 0) == 0;
      })
      .make<MatMulKernel>();
  kernel("Gemm").since(7).types({kFloat}).make<GemmKernel>();
  kernel("FusedGemm", "com.microsoft").types({kFloat})
      .when([](const KernelArgs& a) {
        const std::string s = a.get_string("activation", "");
        return !s.empty() && std::find(kFusedGemmActivations.begin(), kFusedGemmActivations.end(), s) !=
                                 kFusedGemmActivations.end();
      })
      .make<GemmKernel>();
}

}  // namespace onnxfast
