// The onednn backend's vector GELU (the int8 MLP's row scan applies it) against the exact
// 0.5 x (1 + erf(x / sqrt 2)) in double: the bound its header states, over the whole range an
// activation takes, plus the far tails where it must be exactly 0 or x.
#include "simd_gelu.hpp"

#include <doctest/doctest.h>

#include <cmath>

namespace {

double exact_gelu(float x) { return 0.5 * double(x) * (1.0 + std::erf(double(x) / std::sqrt(2.0))); }

// The largest |error| over [from, to] in steps of `step`, 16 at a time as the backend runs it;
// relative to |x| where `relative`.
double worst_error(double from, double to, double step, bool relative = false) {
  double worst = 0.0;
  for (double start = from; start <= to; start += 16 * step) {
    onednn_backend::f32x16 v;
    for (int j = 0; j < 16; ++j) v[j] = float(start + j * step);
    onednn_backend::f32x16 g = v;
    onednn_backend::gelu_erf16(g);
    for (int j = 0; j < 16; ++j) {
      double error = std::fabs(double(g[j]) - exact_gelu(v[j]));
      worst = std::fmax(worst, relative ? error / std::fabs(double(v[j])) : error);
    }
  }
  return worst;
}

}  // namespace

TEST_CASE("the onednn backend's vector GELU is erf's within 5e-7 near 0 and two ulps above 3") {
  CHECK(worst_error(-3.0, 3.0, 1.0 / 4096) <= 5e-7);
  CHECK(worst_error(-12.0, -3.0, 1.0 / 4096) <= 1.1e-6);
  CHECK(worst_error(3.0, 12.0, 1.0 / 4096, true) <= 2.5e-7);
  onednn_backend::f32x16 v;
  const float tails[16] = {-1e30f, -1e6f, -100.0f, -20.0f, -8.0f, -6.0f, 6.0f, 8.0f,
                           20.0f, 100.0f, 1e6f, 1e30f, 0.0f, -0.0f, 1e-30f, -1e-30f};
  for (int j = 0; j < 16; ++j) v[j] = tails[j];
  onednn_backend::f32x16 g = v;
  onednn_backend::gelu_erf16(g);
  for (int j = 0; j < 6; ++j) CHECK(g[j] == 0.0f);           // erf is -1 exactly below -5.66
  for (int j = 6; j < 12; ++j) CHECK(g[j] == tails[j]);     // and 1 exactly above 5.66
  for (int j = 12; j < 16; ++j) CHECK(std::fabs(g[j]) <= 1e-30f);
}
