#include "weight_quantize.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace onednn_backend {

namespace {
// 16-lane GCC vector types, as the backend's quantisers use: one zmm, two ymm or four xmm per
// clone (the build targets plain x86-64).
typedef float f32x16 __attribute__((vector_size(64)));
typedef int32_t i32x16 __attribute__((vector_size(64)));
typedef int8_t s8x16 __attribute__((vector_size(16)));
}  // namespace

__attribute__((target_clones("avx512f", "avx2", "default")))
float span_abs_max(const float* w, int64_t n) {
  f32x16 m = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    i32x16 bits;
    std::memcpy(&bits, w + i, sizeof bits);
    bits &= 0x7fffffff;  // |w|
    f32x16 v;
    std::memcpy(&v, &bits, sizeof v);
    m = v > m ? v : m;  // false for a NaN: m stays
  }
  float mx = 0.0f;
  for (int j = 0; j < 16; ++j) mx = m[j] > mx ? m[j] : mx;
  for (; i < n; ++i) mx = std::max(mx, std::fabs(w[i]));
  return mx;
}

// Clamped first, then rounded: the bounds are integers, so the order changes nothing, and
// below 2^22 adding and taking off 1.5 * 2^23 rounds to nearest even as nearbyint does
// (GCC keeps both operations without -ffast-math). The clamps are written as std::min and
// std::max compare, so that a NaN goes to 127 as there.
__attribute__((target_clones("avx512f", "avx2", "default")))
int32_t span_quantize_weights(const float* w, int64_t n, float s, int8_t* q) {
  constexpr float kRound = 12582912.0f;  // 1.5 * 2^23
  i32x16 sums = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    f32x16 v;
    std::memcpy(&v, w + i, sizeof v);
    v = v / s;
    v = v < 127.0f ? v : 127.0f;
    v = -127.0f < v ? v : -127.0f;
    v = (v + kRound) - kRound;
    const i32x16 r = __builtin_convertvector(v, i32x16);
    sums += r;
    const s8x16 out = __builtin_convertvector(r, s8x16);
    std::memcpy(q + i, &out, sizeof out);
  }
  int32_t sum = 0;
  for (int j = 0; j < 16; ++j) sum += sums[j];
  for (; i < n; ++i) {
    q[i] = static_cast<int8_t>(std::max(-127.0f, std::min(127.0f, std::nearbyint(w[i] / s))));
    sum += q[i];
  }
  return sum;
}

}  // namespace onednn_backend
