// Single-precision GEMM: C = alpha * op(A) * op(B) + beta * C, row-major.
// B can be packed once (PackedB) and reused across calls: that is how constant weights are
// pre-packed at session creation.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

namespace onnxfast {

struct PackedB {
  int64_t K = 0, N = 0;
  std::shared_ptr<float> data;  // panels of kNR columns, blocked by kKC rows
};

PackedB sgemm_pack_b(bool transB, int64_t K, int64_t N, const float* B, int64_t ldb);

void sgemm_packed(bool transA, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                  const PackedB& B, float beta, float* C, int64_t ldc);

void sgemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
           int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

}  // namespace onnxfast
