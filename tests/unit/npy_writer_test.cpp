// The streaming .npy writer: valid after every flush, float16 rounding, reopening for --resume.
#include "test_support.hpp"
#include "vitbatch/error.hpp"
#include "vitbatch/npy_writer.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>

using namespace vitbatch;

namespace {

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

float bits_to_float(uint32_t b) {
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}

}  // namespace

TEST_CASE("float_to_half rounds to nearest even, saturates to Inf, keeps subnormals and signs") {
  CHECK(float_to_half(1.0f) == 0x3C00);
  CHECK(float_to_half(-2.0f) == 0xC000);
  CHECK(float_to_half(65504.0f) == 0x7BFF);
  CHECK(float_to_half(65519.0f) == 0x7BFF);  // below the midpoint to 65536
  CHECK(float_to_half(65520.0f) == 0x7C00);  // the midpoint rounds to even: Inf
  CHECK(float_to_half(std::numeric_limits<float>::infinity()) == 0x7C00);
  CHECK(float_to_half(std::nanf("")) == 0x7E00);
  CHECK(float_to_half(-0.0f) == 0x8000);
  CHECK(float_to_half(std::ldexp(1.0f, -14)) == 0x0400);  // smallest normal
  CHECK(float_to_half(std::ldexp(1.0f, -24)) == 0x0001);  // smallest subnormal
  CHECK(float_to_half(std::ldexp(1.0f, -25)) == 0x0000);  // half of it: a tie, to even (0)
  CHECK(float_to_half(std::ldexp(3.0f, -26)) == 0x0001);  // above the tie
  CHECK(float_to_half(std::ldexp(3.0f, -25)) == 0x0002);  // 1.5 units: tie, to even (2)
  CHECK(float_to_half(1.0f + std::ldexp(1.0f, -11)) == 0x3C00);  // tie between 0x3C00 and 0x3C01: even
  CHECK(float_to_half(1.0f + std::ldexp(3.0f, -11)) == 0x3C02);  // tie between 0x3C01 and 0x3C02: even
  CHECK(float_to_half(bits_to_float(0x3F801001u)) == 0x3C01);     // just past the tie
}

TEST_CASE("an .npy is complete after every flush and reopens for resume") {
  test_support::TempDir dir;
  const std::string path = dir.file("f.npy");
  std::vector<float> rows{1, 2, 3, 4, 5, 6};
  {
    NpyWriter w(path, {3}, NpyDtype::Float32);
    CHECK(NpyWriter::count_rows(path, {3}, NpyDtype::Float32) == 0);
    w.append(rows.data(), 1);
    CHECK(w.flush());
    CHECK(NpyWriter::count_rows(path, {3}, NpyDtype::Float32) == 1);
    std::string text = slurp(path);
    REQUIRE(text.size() == 128 + 12);
    CHECK(text.substr(0, 6) == "\x93NUMPY");
    CHECK(text.find("'shape': (1, 3), }") != std::string::npos);
    CHECK(text[127] == '\n');
    w.append(rows.data() + 3, 1);
    w.append(rows.data(), 2);
  }  // the destructor flushes
  CHECK(NpyWriter::count_rows(path, {3}, NpyDtype::Float32) == 4);
  CHECK_THROWS_AS(NpyWriter::count_rows(path, {4}, NpyDtype::Float32), Error);  // another shape
  CHECK_THROWS_AS(NpyWriter::count_rows(path, {3}, NpyDtype::Float16), Error);  // another dtype
  {
    NpyWriter w(path, {3}, NpyDtype::Float32, 2);  // keep two rows, drop the rest
    CHECK(w.rows() == 2);
    w.append(rows.data() + 3, 1);
  }
  std::string text = slurp(path);
  REQUIRE(text.size() == 128 + 3 * 12);
  CHECK(text.find("'shape': (3, 3), }") != std::string::npos);
  float last[3];
  std::memcpy(last, text.data() + 128 + 24, 12);
  CHECK(last[0] == 4.0f);
  CHECK(last[2] == 6.0f);
  CHECK_THROWS_AS(NpyWriter(path, {3}, NpyDtype::Float32, 4), Error);  // more rows than it holds
  // A file cut inside its data is damaged, not silently shorter.
  std::filesystem::resize_file(path, 128 + 20);
  CHECK_THROWS_AS(NpyWriter::count_rows(path, {3}, NpyDtype::Float32), Error);
}
