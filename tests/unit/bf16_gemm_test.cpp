// The onednn backend's own bf16 matmul (bf16_gemm.hpp) against a double-precision loop over the
// same bf16-rounded inputs: vdpbf16ps's products of two bf16 are exact in f32, so the kernel
// differs from the exact sum only by f32 rounding of its adds (bounded here by 1e-5 of the sum
// of |terms|), for every tail of rows (1-5 past the tiles of 6), of columns (past a panel of
// 64, past a vector of 16), K down to 2, each epilogue term on and off, bf16 and f32 output,
// and 1 or 3 threads. And a row's result is bit-identical whether it runs alone or in a batch.
#include "bf16_gemm.hpp"

#include <doctest/doctest.h>
#include <omp.h>

#include <cmath>
#include <cstring>
#include <random>
#include <stdexcept>
#include <vector>

namespace {

using onednn_backend::to_bf16;

float from_bf16(uint16_t v) {
  const uint32_t bits = static_cast<uint32_t>(v) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

struct Case {
  int64_t M, K, N;
  bool gelu, residual, bf16_output;
};

struct Run {
  std::vector<uint16_t> x;
  std::vector<float> w, bias, residual;
  int64_t ldx;
};

Run make_run(const Case& c, std::mt19937& rng) {
  Run r;
  r.ldx = c.K + 6;  // rows further apart than K: ldx is honoured
  std::normal_distribution<float> normal(0.0f, 1.0f);
  r.x.resize(static_cast<size_t>(c.M * r.ldx));
  for (auto& v : r.x) v = to_bf16(normal(rng));
  r.w.resize(static_cast<size_t>(c.N * c.K));
  for (auto& v : r.w) v = normal(rng) * 0.05f;
  r.bias.resize(c.N);
  for (auto& v : r.bias) v = normal(rng) * 0.1f;
  r.residual.resize(c.M * c.N);
  for (auto& v : r.residual) v = normal(rng);
  return r;
}

// y for rows [m0, m0 + rows) of r.x through the kernel, as f32.
std::vector<float> run_kernel(const Case& c, const Run& r, const onednn_backend::Bf16Weights& packed, int64_t m0,
                              int64_t rows) {
  onednn_backend::Bf16Epilogue e;
  e.bias = r.bias.data();
  if (c.residual) e.residual = r.residual.data() + m0 * c.N;
  e.gelu = c.gelu;
  e.bf16_output = c.bf16_output;
  std::vector<float> y(rows * c.N);
  if (c.bf16_output) {
    std::vector<uint16_t> h(rows * c.N, 0x7FC0);
    onednn_backend::bf16_gemm(r.x.data() + m0 * r.ldx, rows, r.ldx, packed, e, h.data());
    for (size_t i = 0; i < h.size(); ++i) y[i] = from_bf16(h[i]);
  } else {
    std::fill(y.begin(), y.end(), std::nanf(""));
    onednn_backend::bf16_gemm(r.x.data() + m0 * r.ldx, rows, r.ldx, packed, e, y.data());
  }
  return y;
}

// The number of elements further from the exact result than f32 sums (and bf16 output) allow.
int64_t misses(const Case& c, const Run& r, const std::vector<float>& y) {
  int64_t bad = 0;
  for (int64_t m = 0; m < c.M; ++m)
    for (int64_t n = 0; n < c.N; ++n) {
      double acc = 0.0, magnitude = 0.0;
      for (int64_t k = 0; k < c.K; ++k) {
        const double term = double(from_bf16(r.x[m * r.ldx + k])) * double(from_bf16(to_bf16(r.w[n * c.K + k])));
        acc += term;
        magnitude += std::fabs(term);
      }
      double v = acc + r.bias[n], slack = 1e-5 * magnitude + 1e-6;
      if (c.gelu) {
        v = 0.5 * v * (1.0 + std::erf(v / std::sqrt(2.0)));
        slack += 2e-6;  // simd_gelu.hpp's erf
      }
      if (c.residual) v += r.residual[m * c.N + n];
      if (c.bf16_output) slack += std::fabs(v) / 256.0;  // half a bf16 ulp is 2^-9 of |v|
      if (!(std::fabs(y[m * c.N + n] - v) <= slack)) ++bad;
    }
  return bad;
}

}  // namespace

TEST_CASE("the onednn backend's bf16 matmul on AVX512_BF16 is the sums through its epilogue, a row's the same at any batch") {
  if (!onednn_backend::bf16_gemm_available()) {
    MESSAGE("skipped: this CPU has no AVX512_BF16");
    return;
  }
  std::mt19937 rng(11);
  const Case cases[] = {
      {1, 2, 16, false, false, false},    {2, 8, 17, true, false, false},     {3, 12, 64, false, true, true},
      {4, 16, 70, true, true, false},     {5, 192, 128, true, false, true},   {6, 192, 192, false, false, false},
      {7, 64, 200, true, true, true},     {11, 20, 63, false, true, false},   {13, 96, 1000, false, false, true},
      {97, 192, 576, false, true, false}, {197, 768, 192, true, true, false}, {203, 36, 80, true, false, true},
  };
  for (const Case& c : cases) {
    const Run r = make_run(c, rng);
    const onednn_backend::Bf16Weights packed(r.w.data(), c.N, c.K);
    for (int threads : {1, 3}) {
      CAPTURE(c.M);
      CAPTURE(c.K);
      CAPTURE(c.N);
      CAPTURE(c.gelu);
      CAPTURE(c.residual);
      CAPTURE(c.bf16_output);
      CAPTURE(threads);
      omp_set_num_threads(threads);
      const std::vector<float> y = run_kernel(c, r, packed, 0, c.M);
      CHECK(misses(c, r, y) == 0);
      // The last row alone: the same bits as in the batch.
      const std::vector<float> last = run_kernel(c, r, packed, c.M - 1, 1);
      CHECK(std::memcmp(last.data(), y.data() + (c.M - 1) * c.N, last.size() * sizeof(float)) == 0);
    }
  }
  omp_set_num_threads(1);
  // Packing refuses an odd K; the epilogue needs its bias.
  std::vector<float> w(3 * 3, 1.0f);
  CHECK_THROWS_AS(onednn_backend::Bf16Weights(w.data(), 3, 3), std::logic_error);
  const onednn_backend::Bf16Weights packed(w.data(), 3, 2);
  std::vector<uint16_t> x(2, to_bf16(1.0f));
  std::vector<float> y(3);
  onednn_backend::Bf16Epilogue e;
  CHECK_THROWS_AS(onednn_backend::bf16_gemm(x.data(), 1, 2, packed, e, y.data()), std::logic_error);
  // Rounding to bf16: to nearest, ties to even, NaN stays NaN.
  CHECK(to_bf16(1.0f) == 0x3F80);
  CHECK(to_bf16(1.0f + 1.0f / 256.0f) == 0x3F80);             // a tie, to the even 1.0
  CHECK(to_bf16(1.0f + 3.0f / 256.0f) == 0x3F82);             // a tie, to the even 1 + 2^-6
  CHECK(to_bf16(1.0f + 1.0f / 256.0f + 1e-6f) == 0x3F81);     // past the tie: up
  CHECK(std::isnan(from_bf16(to_bf16(std::nanf("")))));
}
