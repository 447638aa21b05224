// Single-precision GEMM: C = alpha * op(A) * op(B) + beta * C, row-major.
// B can be packed once (PackedB) and reused across calls: that is how constant weights are
// pre-packed at session creation.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "epilogue.h"
#include "gemm_tiers.h"

namespace onnxfast {

// Applied to C after the product, tile by tile while it is in cache:
// C[i][j] = act(C[i][j] + col_bias[j] + residual[i * ldr + j]) (either pointer may be null).
struct GemmEpilogue {
  const float* col_bias = nullptr;
  const float* residual = nullptr;
  int64_t ldr = 0;
  Activation act;
  void apply(float* c, int64_t i, int64_t j0, int64_t n) const {
    act.apply_cols(c, n, col_bias ? col_bias + j0 : nullptr, residual ? residual + i * ldr + j0 : nullptr);
  }
};

// n floats, 64-byte aligned, owned by the returned pointer (packed weights live as long as their
// kernel); throws MemoryError when the allocation fails.
std::shared_ptr<float> alloc_floats(size_t n);

struct PackedB {
  int64_t K = 0, N = 0;
  std::shared_ptr<float> data;  // panels of kNR columns, blocked by kKC rows
};

PackedB sgemm_pack_b(bool transB, int64_t K, int64_t N, const float* B, int64_t ldb);

void sgemm_packed(bool transA, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                  const PackedB& B, float beta, float* C, int64_t ldc, const GemmEpilogue* ep = nullptr);

// A packed once into the tier's row strips, K-block major: block k0 starts at k0 * round_up(M, mr),
// strip i0 of it at + i0 * kc. Used for constant convolution weights.
struct PackedA {
  int64_t M = 0, K = 0, mr = 0, mpad = 0;
  std::shared_ptr<float> data;
};
PackedA sgemm_pack_a(int64_t M, int64_t K, const float* A, int64_t lda);

// K block. Fixed, not derived from the cache sizes: it is the layout of pre-packed B (packed_b_index)
// and PackedA (weights packed once at session creation, kept while the sizes may change), and the
// points where the K sum is split (C += each block's partial sum), so another kc would change the
// bits. 256 floats keeps an A strip (kc x mr: 12 KiB at mr 12) in any L1d of 32 KiB or more.
constexpr int64_t kGemmKC = 256;
constexpr int64_t kGemmPanel = 16;   // B panel width
// Offset of column j's panel in a packed B block of kc rows: (j / 16) * 16 * kc, lane j % 16.
inline int64_t packed_b_index(int64_t j, int64_t k, int64_t kc) { return (j >> 4) * 16 * kc + k * 16 + (j & 15); }

// C[0:m1-m0, 0:nc] += A[m0:m1, k0:k0+kc] * Bblock, with Bblock packed as above (kc rows, nc columns);
// m0 must be a multiple of A.mr. C points at the row of A's row m0.
// beta scales what C held (0: overwrite without reading, 1: accumulate). With `ep` (the last K
// block) the values are finished before the store; its row_bias and residual are those of C's
// rows and columns (row m0, column 0).
void sgemm_kblock(const PackedA& A, int64_t m0, int64_t m1, int64_t k0, int64_t kc, const float* Bblock, int64_t nc,
                  float* C, int64_t ldc, float beta = 1.f, const MicroEpilogue* ep = nullptr);

// A threaded product's task grid, returned as tile counts and sizes: C (M x N, in `outer`
// independent copies, e.g. images x groups) cut into mb x nb tiles of mc = round_up(M / mb, mr) rows and nc = round_up(N / nb, step) columns,
// each computed over all of K by one task. One thread: the fewest tiles (nc <= nc_max). Threads:
// among the grids of P to 4P tasks, the least modeled time per thread, (tasks per thread + 0.1) x
// (multiply-adds + a_cost per row of A and b_cost per column of B each tile packs or streams) x K;
// a tile narrower than a_min_nc columns does not pack A (the GEMM driver reads A in place there);
// with fewer than P tasks possible, the grid with the most.
struct GridProblem {
  int64_t M, N, K, mr, step, threads, nc_max, outer;
  double a_cost, b_cost;
  int64_t a_min_nc = 0;  // tiles narrower than this read A in place: no a_cost (the GEMM driver)
};
struct TaskGrid {
  int64_t mb, nb;  // tiles down M and across N
  int64_t mc, nc;  // rows (a multiple of mr) and columns (a multiple of step) per tile
};
TaskGrid choose_grid(const GridProblem& problem);

// Columns per task at most (a tile's nc), from the L2 size: a task's packed K block of B (kGemmKC x
// nc floats) fills about half of L2, the rest left to the A strips, C's rows and the next block's
// lines. Whole 16-column panels, 64 to 4096 (1024 for a 2 MiB L2).
int64_t gemm_nc_max(int64_t l2_bytes);

// The SGEMM driver's blocking for one product at the cache sizes in effect (cache_sizes()) and
// `threads` threads: the task grid (tiles of mc rows x nc columns, each over all of K in kc blocks).
// nc only partitions N and mc only M, so every output element is summed in the same order whatever
// the blocking: the bits do not depend on it. (sgemm reads B in place for M <= 2: gemm_rows_direct.)
struct GemmBlocking {
  TaskGrid grid;
  int64_t nc_max, kc, mr, step;
  int64_t pack_min_nc;  // tiles at least this wide pack row-major A strips
};
GemmBlocking gemm_blocking(bool transA, int64_t M, int64_t N, int64_t K, int64_t threads, bool prepacked_b);

void sgemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
           int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc,
           const GemmEpilogue* ep = nullptr);

}  // namespace onnxfast
