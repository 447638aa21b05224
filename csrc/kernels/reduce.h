// The float32 reduction engine of reduce.cpp, shared with the global pooling kernels of pooling.cpp.
#pragma once
#include <cstdint>
#include <vector>

#include "../core/tensor.h"

namespace onnxfast {

enum class ReduceKind { kSum, kMean, kMax, kMin, kL1, kL2, kSumSquare };

// y = reduce(x) over the axes flagged in `reduced` (one flag per dim of `shape`). y holds the
// kept dims in order (keepdims does not change the layout). Each output element is combined in
// an order fixed by the shape alone (16 lanes combined in a fixed tree; long reductions split
// into fixed-size chunks whose partials are added in chunk order), so results are bitwise
// identical run to run and for any thread count. Empty reductions give 0 (sum, L1, L2,
// sum-square), NaN (mean), -inf (max), +inf (min); NaN inputs propagate through max / min.
void reduce_float(ReduceKind kind, const float* x, const Shape& shape, const std::vector<bool>& reduced, float* y);

}  // namespace onnxfast
