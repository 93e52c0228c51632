// Resampling and cropping properties that hold whatever Pillow does; exact parity with
// Pillow is checked by tests/python/test_preprocess_parity.py.
#include "vitbatch/error.hpp"
#include "vitbatch/preprocess.hpp"

#include <doctest/doctest.h>

using namespace vitbatch;

namespace {
RgbImage gradient(int64_t w, int64_t h) {
  RgbImage img{w, h, std::vector<uint8_t>(static_cast<size_t>(w * h * 3))};
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x)
      for (int c = 0; c < 3; ++c) img.pixels[(y * w + x) * 3 + c] = static_cast<uint8_t>((x * 7 + y * 3 + c * 50) % 256);
  return img;
}
RgbImage solid(int64_t w, int64_t h, uint8_t v) { return {w, h, std::vector<uint8_t>(static_cast<size_t>(w * h * 3), v)}; }
}  // namespace

TEST_CASE("resizing to the same size is the identity") {
  RgbImage img = gradient(13, 9);
  CHECK(resize_pillow(img, 13, 9, "bicubic").pixels == img.pixels);
}

TEST_CASE("a flat image stays flat under every filter, up or down") {
  for (const char* f : {"bicubic", "bilinear", "lanczos", "box", "hamming"}) {
    CAPTURE(f);
    CHECK(resize_pillow(solid(40, 30, 77), 17, 11, f).pixels == solid(17, 11, 77).pixels);
    CHECK(resize_pillow(solid(5, 4, 200), 23, 19, f).pixels == solid(23, 19, 200).pixels);
  }
  CHECK_THROWS_WITH_AS(resize_pillow(solid(4, 4, 0), 2, 2, "nearest"), doctest::Contains("interpolation 'nearest' is not supported"), Error);
}

TEST_CASE("centre crop offsets round half to even, as torchvision does") {
  RgbImage img = gradient(11, 8);  // margins 7 and 4 for a crop of 4
  RgbImage crop = center_crop(img, 4);
  // margin 7 -> round(3.5) = 4; margin 4 -> 2
  CHECK(crop.pixels[0] == img.pixels[(2 * 11 + 4) * 3]);
  RgbImage img2 = gradient(9, 4);  // margin 5 -> round(2.5) = 2
  CHECK(center_crop(img2, 4).pixels[0] == img2.pixels[2 * 3]);
}

TEST_CASE("crops larger than the image pad with black") {
  RgbImage crop = center_crop(solid(2, 3, 255), 5);
  CHECK(crop.width == 5);
  // padding left (5-2)/2 = 1, top (5-3)/2 = 1
  CHECK(crop.pixels[(0 * 5 + 0) * 3] == 0);
  CHECK(crop.pixels[(1 * 5 + 1) * 3] == 255);
  CHECK(crop.pixels[(3 * 5 + 2) * 3] == 255);
  CHECK(crop.pixels[(4 * 5 + 2) * 3] == 0);
  CHECK(crop.pixels[(2 * 5 + 3) * 3] == 0);
}

TEST_CASE("eval crop sizes and normalisation") {
  PreprocessConfig cfg;
  cfg.input_size = 224;
  cfg.crop_pct = 0.9;  // resize to 248
  RgbImage out = eval_crop(gradient(500, 300), cfg);
  CHECK(out.width == 224);
  CHECK(out.height == 224);
  cfg.mean = {0.5f, 0.5f, 0.5f};
  cfg.std = {0.5f, 0.5f, 0.5f};
  std::vector<float> chw(3 * 224 * 224);
  normalize_to_chw(solid(224, 224, 255), cfg, chw.data());
  CHECK(chw[0] == 1.0f);
  CHECK(chw.back() == 1.0f);
  normalize_to_chw(solid(224, 224, 0), cfg, chw.data());
  CHECK(chw[224 * 224] == -1.0f);
  cfg.crop_pct = 0;
  CHECK_THROWS_AS(validate(cfg), Error);
}
