// The safetensors reader: every malformed file is an Error naming the file (and tensor).
#include "test_support.hpp"
#include "vitbatch/error.hpp"
#include "vitbatch/safetensors.hpp"

#include <doctest/doctest.h>

using namespace vitbatch;
using test_support::f32_tensor;
using test_support::safetensors_bytes;

namespace {
SafetensorsFile parse(const std::vector<uint8_t>& bytes) {
  auto owner = std::make_shared<std::vector<uint8_t>>(bytes);
  return SafetensorsFile::parse(owner, owner->data(), owner->size(), "test.safetensors");
}
}  // namespace

TEST_CASE("a valid file lists its tensors and metadata") {
  auto bytes = safetensors_bytes({{"a", f32_tensor({2, 3}, 1.5f)}, {"b", f32_tensor({4})}},
                                 [](nlohmann::json& h) { h["__metadata__"] = {{"format", "pt"}}; });
  SafetensorsFile f = parse(bytes);
  REQUIRE(f.tensors().size() == 2);
  const TensorView& a = f.tensors().at("a");
  CHECK(a.shape == Shape{2, 3});
  CHECK(a.nbytes == 24);
  CHECK(f.metadata().at("format") == "pt");
  std::vector<float> out(6);
  convert_to_f32(a, out.data());
  CHECK(out[5] == 1.5f);
}

TEST_CASE("F16 and BF16 convert to float32") {
  test_support::RawTensor h;
  h.dtype = "F16";
  h.shape = {4};
  uint16_t half[4] = {0x3C00, 0xC000, 0x0001, 0x7BFF};  // 1, -2, smallest subnormal, 65504
  h.bytes.assign(reinterpret_cast<uint8_t*>(half), reinterpret_cast<uint8_t*>(half) + 8);
  test_support::RawTensor b;
  b.dtype = "BF16";
  b.shape = {2};
  uint16_t bf[2] = {0x3F80, 0xC2F7};  // 1, -123.5
  b.bytes.assign(reinterpret_cast<uint8_t*>(bf), reinterpret_cast<uint8_t*>(bf) + 4);
  SafetensorsFile f = parse(safetensors_bytes({{"h", h}, {"b", b}}));
  float out[4];
  convert_to_f32(f.tensors().at("h"), out);
  CHECK(out[0] == 1.0f);
  CHECK(out[1] == -2.0f);
  CHECK(out[2] == doctest::Approx(5.960464477539063e-08));
  CHECK(out[3] == 65504.0f);
  convert_to_f32(f.tensors().at("b"), out);
  CHECK(out[0] == 1.0f);
  CHECK(out[1] == -123.5f);
}

TEST_CASE("malformed files are errors that say why") {
  auto valid = safetensors_bytes({{"w", f32_tensor({2, 2})}});
  SUBCASE("too short") {
    CHECK_THROWS_WITH_AS(parse({1, 2, 3}), "test.safetensors: not a safetensors file (only 3 bytes)", Error);
  }
  SUBCASE("another kind of file is named, not read as a huge header length") {
    // Regression: a PNG given as --model said "header length 727905341920923785 runs past the end".
    std::vector<uint8_t> png = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n', 0, 0, 0, 13, 'I', 'H', 'D', 'R'};
    CHECK_THROWS_WITH_AS(parse(png), "test.safetensors: not a safetensors file (it is an image)", Error);
    std::string json = "{\"architecture\": \"vit_tiny_patch16_224\"}";
    CHECK_THROWS_WITH_AS(parse(std::vector<uint8_t>(json.begin(), json.end())),
                         "test.safetensors: not a safetensors file (it is JSON text, not weights)", Error);
    std::vector<uint8_t> zip = {'P', 'K', 3, 4, 20, 0, 0, 0, 8, 0};
    CHECK_THROWS_WITH_AS(parse(zip), doctest::Contains("PyTorch .pt/.pth checkpoint"), Error);
  }
  SUBCASE("truncated header") {
    std::vector<uint8_t> cut(valid.begin(), valid.begin() + 20);
    CHECK_THROWS_WITH_AS(parse(cut), doctest::Contains("runs past the end of the file"), Error);
  }
  SUBCASE("truncated data") {
    std::vector<uint8_t> cut(valid.begin(), valid.end() - 4);
    CHECK_THROWS_WITH_AS(parse(cut), doctest::Contains("tensor 'w': data_offsets [0, 16) out of range of the 12-byte data section"), Error);
  }
  SUBCASE("offsets out of range") {
    auto bytes = safetensors_bytes({{"w", f32_tensor({2, 2})}},
                                   [](nlohmann::json& h) { h["w"]["data_offsets"] = {8, 4000}; });
    CHECK_THROWS_WITH_AS(parse(bytes), doctest::Contains("out of range"), Error);
  }
  SUBCASE("shape and byte count disagree") {
    auto bytes = safetensors_bytes({{"w", f32_tensor({2, 2})}}, [](nlohmann::json& h) { h["w"]["shape"] = {2, 3}; });
    CHECK_THROWS_WITH_AS(parse(bytes),
                         "test.safetensors: tensor 'w': shape [2,3] of F32 needs 24 bytes, data_offsets give 16", Error);
  }
  SUBCASE("unknown dtype") {
    auto bytes = safetensors_bytes({{"w", f32_tensor({2, 2})}}, [](nlohmann::json& h) { h["w"]["dtype"] = "F8_E9"; });
    CHECK_THROWS_WITH_AS(parse(bytes), "test.safetensors: tensor 'w': unknown dtype 'F8_E9'", Error);
  }
  SUBCASE("a dtype that is not a float weight") {
    test_support::RawTensor t;
    t.dtype = "I64";
    t.shape = {1};
    t.bytes.assign(8, 0);
    SafetensorsFile f = parse(safetensors_bytes({{"ids", t}}));
    float out[2];
    CHECK_THROWS_WITH_AS(convert_to_f32(f.tensors().at("ids"), out),
                         "tensor 'ids' has dtype I64; weights must be F32, F16 or BF16", Error);
  }
  SUBCASE("header is not JSON") {
    std::vector<uint8_t> bytes = {4, 0, 0, 0, 0, 0, 0, 0, '{', 'x', 'y', '!'};
    CHECK_THROWS_WITH_AS(parse(bytes), doctest::Contains("header is not valid JSON"), Error);
  }
  SUBCASE("missing file") {
    CHECK_THROWS_WITH_AS(SafetensorsFile::open("/nonexistent.safetensors"),
                         "/nonexistent.safetensors: cannot open: No such file or directory", Error);
  }
}

TEST_CASE("a tensor named twice, or two tensors sharing bytes, is refused") {
  // Regressions: JSON's last-wins hid the first of two same-named tensors, and overlapping
  // data_offsets made two weights alias each other; both loaded without a word.
  auto raw = [](const std::string& header, size_t data_bytes) {
    std::string h = header + std::string((8 - header.size() % 8) % 8, ' ');
    std::vector<uint8_t> bytes(8 + h.size() + data_bytes, 0);
    uint64_t n = h.size();
    for (int i = 0; i < 8; ++i) bytes[i] = static_cast<uint8_t>(n >> (8 * i));
    std::copy(h.begin(), h.end(), bytes.begin() + 8);
    return bytes;
  };
  std::string twice = R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})";
  CHECK_THROWS_WITH_AS(parse(raw(twice, 8)), "test.safetensors: header names tensor 'w' twice", Error);
  std::string shared = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})";
  CHECK_THROWS_WITH_AS(parse(raw(shared, 12)), "test.safetensors: tensors 'a' and 'b' overlap in the data section", Error);
  std::string empty_ok = R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
  CHECK_NOTHROW(parse(raw(empty_ok, 4)));
}
