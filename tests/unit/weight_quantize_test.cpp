// The onednn backend's weight quantisers (weight_quantize.hpp) against the scalar loops they
// replaced: every byte, sum and maximum identical, on halves (ties go to even), values past
// the clamp, infinities, NaNs and every tail of a 16-lane vector.
#include "weight_quantize.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

namespace {

// The weights of a row of n: random ones of a linear's size, with the awkward values strewn in.
std::vector<float> awkward_row(int64_t n, float s, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 0.02f);
  std::uniform_int_distribution<int> pick(0, 9), level(-140, 140);
  std::vector<float> w(static_cast<size_t>(n));
  for (auto& v : w) {
    switch (pick(rng)) {
      case 0: v = (static_cast<float>(level(rng)) + 0.5f) * s; break;  // a tie (or past the clamp)
      case 1: v = static_cast<float>(level(rng)) * s; break;           // an exact level
      case 2: v = std::numeric_limits<float>::quiet_NaN(); break;
      case 3: v = (pick(rng) % 2 ? 1.0f : -1.0f) * std::numeric_limits<float>::infinity(); break;
      case 4: v = (pick(rng) % 2 ? 1.0f : -1.0f) * 1e30f; break;
      case 5: v = -0.0f; break;
      default: v = normal(rng);
    }
  }
  return w;
}

}  // namespace

TEST_CASE("the onednn backend's weight quantisers give the scalar loops' bytes") {
  std::mt19937 rng(11);
  const float s = 0.03f / 127.0f;
  for (int64_t n : {0, 1, 5, 15, 16, 17, 31, 32, 33, 47, 192, 203, 768, 3072}) {
    CAPTURE(n);
    const std::vector<float> w = awkward_row(n, s, rng);
    std::vector<int8_t> q(static_cast<size_t>(n) + 1, 99);
    const int32_t sum = onednn_backend::span_quantize_weights(w.data(), n, s, q.data());
    int32_t want_sum = 0;
    int64_t bad = 0;
    for (int64_t i = 0; i < n; ++i) {
      const auto want = static_cast<int8_t>(std::max(-127.0f, std::min(127.0f, std::nearbyint(w[i] / s))));
      want_sum += want;
      if (q[i] != want) ++bad;
    }
    CHECK(bad == 0);
    CHECK(sum == want_sum);
    CHECK(q[static_cast<size_t>(n)] == 99);  // nothing written past the row

    float want_max = 0.0f;
    for (int64_t i = 0; i < n; ++i) want_max = std::max(want_max, std::fabs(w[i]));
    CHECK(onednn_backend::span_abs_max(w.data(), n) == want_max);
    // Finite rows, as a real checkpoint's: the maximum is one of them, NaNs only passed over.
    std::vector<float> finite(w);
    for (auto& v : finite)
      if (!std::isfinite(v)) v = 0.01f;
    float finite_max = 0.0f;
    for (float v : finite) finite_max = std::max(finite_max, std::fabs(v));
    CHECK(onednn_backend::span_abs_max(finite.data(), n) == finite_max);
  }
}
