// The pieces of explain's pictures: the colour map, the overlay, the rollout's algebra.
#include "test_support.hpp"
#include "vitbatch/attention_maps.hpp"

#include <doctest/doctest.h>

#include <cstdlib>

using namespace vitbatch;

TEST_CASE("viridis runs from matplotlib's dark purple to its yellow") {
  uint8_t lo[3], hi[3], mid[3];
  viridis(0.0, lo);
  viridis(1.0, hi);
  viridis(0.5, mid);
  // matplotlib: #440154, #fde725 and #21918c (polynomial fit: within a few levels).
  const int want[3][3] = {{0x44, 0x01, 0x54}, {0xfd, 0xe7, 0x25}, {0x21, 0x91, 0x8c}};
  const uint8_t* got[3] = {lo, hi, mid};
  for (int k = 0; k < 3; ++k)
    for (int c = 0; c < 3; ++c) CHECK(std::abs(int(got[k][c]) - want[k][c]) <= 4);
}

TEST_CASE("rollout of uniform attention is flat; an identity attention keeps the class token to itself") {
  AttentionShape s{2, 5, 1, true, 2};  // 2 heads, class token + 2x2 patches
  std::vector<float> uniform(2 * 25, 0.2f);
  std::vector<const float*> blocks{uniform.data(), uniform.data()};
  for (float v : attention_rollout(blocks, s, HeadFusion::Mean, 0.0)) CHECK(v == doctest::Approx(1.0));
  // Block 1 attends each token to patch 3 only; the class token then reads patch 3 the most.
  std::vector<float> focused(2 * 25, 0.0f);
  for (int h = 0; h < 2; ++h)
    for (int i = 0; i < 5; ++i) focused[h * 25 + i * 5 + 3] = 1.0f;
  std::vector<float> map = attention_rollout({focused.data()}, s, HeadFusion::Max, 0.0);
  REQUIRE(map.size() == 4);
  CHECK(map[2] == doctest::Approx(1.0));  // token 3 = patch 2
  CHECK(map[0] == doctest::Approx(0.0));
  CHECK(last_layer_attention(focused.data(), s, HeadFusion::Min)[2] == doctest::Approx(1.0));
}

TEST_CASE("overlay at alpha 0 is the image; panels sit side by side; a PNG is written") {
  RgbImage img;
  img.width = 4;
  img.height = 3;
  for (int i = 0; i < 36; ++i) img.pixels.push_back(static_cast<uint8_t>(i * 7));
  std::vector<float> map{0.0f, 1.0f, 0.5f, 0.25f};
  CHECK(overlay(img, map, 2, 0.0).pixels == img.pixels);
  RgbImage full = overlay(img, map, 2, 1.0);
  uint8_t dark[3];
  viridis(0.0, dark);
  CHECK(full.pixels[0] == dark[0]);  // the top-left pixel is nearest map[0]
  RgbImage both = side_by_side({&img, &full});
  CHECK(both.width == 8);
  CHECK(both.pixels[3 * 4] == full.pixels[0]);
  test_support::TempDir dir;
  write_png(dir.file("x.png"), both);
  CHECK(std::filesystem::file_size(dir.file("x.png")) > 50);
  CHECK_THROWS(write_png(dir.file("no/such/dir/x.png"), both));
}
