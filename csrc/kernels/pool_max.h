// MaxPool rows for 2-D maps, per ISA tier (pool_max_impl.h compiled in pool_max_avx2.cpp and
// pool_max_avx512.cpp): an output row is the max of its input rows (vmax, contiguous), then the max
// over the window of that combined row (hmax, strided for the columns whose windows lie inside the
// row). pooling.cpp uses them for MaxPool without the Indices output; the portable build keeps its
// generic loop (no tier).
//
// Max as the numpy kernel and the generic loop take it: a value replaces the running max when it is
// larger, or when it is NaN and the running max is not (a NaN anywhere in the window gives NaN).
#pragma once
#include <cstdint>

namespace onnxfast {

struct MaxPoolTier {
  const char* name;
  // acc[i] = max(acc[i], x[i]) for i in [0, n)
  void (*vmax)(float* acc, const float* x, int64_t n);
  // y[o] = max over k in [0, K) of t[o * S + k * D] for o in [0, n). Reads up to 2 * L floats past
  // the last tap (stride-2 vector loads): t's row must be followed by kMaxPoolPad floats of slack.
  void (*hmax)(const float* t, float* y, int64_t n, int64_t K, int64_t S, int64_t D);
};

constexpr int64_t kMaxPoolPad = 32;

#if defined(__x86_64__) || defined(_M_X64)
MaxPoolTier max_pool_tier_avx2();
MaxPoolTier max_pool_tier_avx512();
#endif

// The tier for this CPU (capped by ONNXFAST_ISA), or nullptr: the generic loop then.
const MaxPoolTier* max_pool_tier();

}  // namespace onnxfast
