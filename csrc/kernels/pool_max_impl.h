// MaxPool rows (pool_max.h) over the vector traits V of the including tier file (simd_avx2.h,
// simd_avx512.h): V::max_nan is the NaN-first max of pool_max.h.
#pragma once
#include <cstdint>

#include "pool_max.h"

namespace onnxfast {
namespace pool_impl {
namespace {

inline float max_nan1(float m, float x) { return (x > m) | ((x != x) & (m == m)) ? x : m; }

template <class V>
void vmax(float* acc, const float* x, int64_t n) {
  int64_t i = 0;
  for (; i + V::L <= n; i += V::L) V::storeu(acc + i, V::max_nan(V::loadu(acc + i), V::loadu(x + i)));
  if (i < n) {
    const auto m = V::first(n - i);
    V::store_lanes(acc + i, m, V::max_nan(V::load_lanes(acc + i, m), V::load_lanes(x + i, m)));
  }
}

template <class V>
void hmax(const float* t, float* y, int64_t n, int64_t K, int64_t S, int64_t D) {
  int64_t o = 0;
  if (S == 1) {
    for (; o + V::L <= n; o += V::L) {
      auto m = V::loadu(t + o);
      for (int64_t k = 1; k < K; ++k) m = V::max_nan(m, V::loadu(t + o + k * D));
      V::storeu(y + o, m);
    }
    if (o < n) {
      const auto mask = V::first(n - o);
      auto m = V::load_lanes(t + o, mask);
      for (int64_t k = 1; k < K; ++k) m = V::max_nan(m, V::load_lanes(t + o + k * D, mask));
      V::store_lanes(y + o, mask, m);
    }
    return;
  }
  if (S == 2) {
    // the tail too in a vector: its stride-2 loads read at most 2 * L floats past the row's last
    // tap, inside the caller's kMaxPoolPad slack; only its n - o lanes are stored
    for (; o < n; o += V::L) {
      auto m = V::load_even(t + 2 * o);
      for (int64_t k = 1; k < K; ++k) m = V::max_nan(m, V::load_even(t + 2 * o + k * D));
      if (o + V::L <= n) V::storeu(y + o, m);
      else V::store_lanes(y + o, V::first(n - o), m);
    }
    return;
  }
  for (; o < n; ++o) {
    float m = t[o * S];
    for (int64_t k = 1; k < K; ++k) m = max_nan1(m, t[o * S + k * D]);
    y[o] = m;
  }
}

}  // namespace
}  // namespace pool_impl
}  // namespace onnxfast
