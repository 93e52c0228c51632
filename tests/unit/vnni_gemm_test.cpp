// The onednn backend's own int8 matmul (vnni_gemm.hpp) against a scalar loop doing the same
// arithmetic: the int32 sums are exact and the epilogue is the same float operations in the
// same order, so every element must be bit-identical, for every tail of rows (1-5 past the
// tiles of 6), of columns (past a panel of 64, past a vector of 16), K down to 4, each
// epilogue term on and off, and 1 or 3 threads.
#include "vnni_gemm.hpp"

#include <doctest/doctest.h>
#include <omp.h>

#include <cmath>
#include <cstring>
#include <random>
#include <stdexcept>
#include <vector>

namespace {

struct Case {
  int64_t M, K, N;
  bool row_terms, residual;
};

// The number of elements that differ in any bit from the scalar loop.
int64_t mismatches(const Case& c, int threads, std::mt19937& rng) {
  using onednn_backend::VnniEpilogue;
  const int64_t ldx = c.K + 8;  // rows further apart than K: ldx is honoured
  std::vector<uint8_t> x(static_cast<size_t>(c.M * ldx));
  std::vector<int8_t> w(static_cast<size_t>(c.N * c.K));
  std::uniform_int_distribution<int> u8(0, 255), s8(-127, 127);
  std::uniform_real_distribution<float> real(-2.0f, 2.0f);
  for (auto& v : x) v = static_cast<uint8_t>(u8(rng));
  for (auto& v : w) v = static_cast<int8_t>(s8(rng));
  std::vector<float> col_scale(c.N), col_add(c.N), col_weight(c.N), row_scale(c.M), row_offset(c.M),
      residual(c.M * c.N);
  for (auto* v : {&col_scale, &col_add, &col_weight, &row_scale, &row_offset, &residual})
    for (auto& f : *v) f = real(rng) * 1e-3f;
  VnniEpilogue e;
  e.col_scale = col_scale.data();
  e.col_add = col_add.data();
  if (c.row_terms) {
    e.row_scale = row_scale.data();
    e.row_offset = row_offset.data();
    e.col_weight = col_weight.data();
  }
  if (c.residual) e.residual = residual.data();
  onednn_backend::VnniWeights packed(w.data(), c.N, c.K);
  std::vector<float> y(c.M * c.N, std::nanf(""));
  omp_set_num_threads(threads);
  onednn_backend::vnni_gemm(x.data(), c.M, ldx, packed, e, y.data());
  int64_t bad = 0;
  for (int64_t m = 0; m < c.M; ++m)
    for (int64_t n = 0; n < c.N; ++n) {
      int32_t acc = 0;
      for (int64_t k = 0; k < c.K; ++k) acc += int32_t(x[m * ldx + k]) * int32_t(w[n * c.K + k]);
      float v = static_cast<float>(acc) * col_scale[n];
      if (c.row_terms) v = row_scale[m] * v;
      float add = col_add[n];
      if (c.row_terms) add = std::fma(row_offset[m], col_weight[n], add);
      v = v + add;
      if (c.residual) v = v + residual[m * c.N + n];
      if (std::memcmp(&v, &y[m * c.N + n], sizeof v) != 0) ++bad;
    }
  return bad;
}

}  // namespace

TEST_CASE("the onednn backend's int8 matmul on AVX512_VNNI is the exact sums through its epilogue") {
  if (!onednn_backend::vnni_gemm_available()) {
    MESSAGE("skipped: this CPU has no AVX512_VNNI");
    return;
  }
  std::mt19937 rng(7);
  const Case cases[] = {
      {1, 4, 16, false, false},    {2, 8, 17, true, false},    {3, 12, 64, false, true},
      {4, 16, 70, true, true},     {5, 192, 128, true, false}, {6, 192, 192, false, false},
      {7, 64, 200, true, true},    {11, 20, 63, false, true},  {13, 96, 1000, true, true},
      {97, 192, 576, false, true}, {197, 768, 192, true, true}, {203, 36, 80, true, false},
  };
  for (const Case& c : cases)
    for (int threads : {1, 3}) {
      CAPTURE(c.M);
      CAPTURE(c.K);
      CAPTURE(c.N);
      CAPTURE(threads);
      CHECK(mismatches(c, threads, rng) == 0);
    }
  omp_set_num_threads(1);
  // Packing refuses a K the k-quads do not divide.
  std::vector<int8_t> w(6 * 3);
  CHECK_THROWS(onednn_backend::VnniWeights(w.data(), 3, 6));
  // The row terms come together: a row scale without its offset is refused, not half applied.
  std::vector<int8_t> w4(4 * 16, 1);
  const onednn_backend::VnniWeights packed(w4.data(), 16, 4);
  std::vector<uint8_t> x(4, 1);
  std::vector<float> ones(16, 1.0f), y(16);
  onednn_backend::VnniEpilogue e;
  e.col_scale = e.col_add = ones.data();
  e.row_scale = ones.data();
  CHECK_THROWS_AS(onednn_backend::vnni_gemm(x.data(), 1, 4, packed, e, y.data()), std::logic_error);
  e.row_offset = ones.data();
  CHECK_THROWS_AS(onednn_backend::vnni_gemm(x.data(), 1, 4, packed, e, y.data()), std::logic_error);
  e.col_weight = ones.data();
  onednn_backend::vnni_gemm(x.data(), 1, 4, packed, e, y.data());
  CHECK(y[0] == 1.0f * (1.0f * 4.0f) + (1.0f * 1.0f + 1.0f));
}
