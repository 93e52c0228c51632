// SmoothQuant folded into the LayerNorms: which linears it reaches, that the float model's
// answers do not change, the factors' formula, and the ranges file that carries them.
#include "test_support.hpp"
#include "vitbatch/error.hpp"
#include "vitbatch/executor.hpp"
#include "vitbatch/int8_ranges.hpp"
#include "vitbatch/plugin_host.hpp"
#include "vitbatch/smoothquant.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <random>

using namespace vitbatch;

namespace {

Model tiny_model(test_support::TempDir& dir) {
  dir.write("model.safetensors",
            test_support::safetensors_bytes(test_support::random_values(test_support::tiny_vit(2), 0.3f, 5)));
  dir.write("config.json", R"({"num_heads": 2})");
  return load_model(dir.path());
}

std::vector<float> logits_of(const Model& model) {
  PluginHost host({VITBATCH_PLUGIN_DIR});
  BackendOptions o;
  o.threads = 1;
  Backend reference(host.find("reference"), o);
  std::vector<float> pixels(2 * 3 * 8 * 8), logits(2 * 5);
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = std::sin(0.37f * static_cast<float>(i));
  Executor(model, {&reference}).run(pixels.data(), 2, logits.data());
  return logits;
}

// Factors spread over two orders of magnitude, as outlier channels make them.
Smoothing some_factors(const std::vector<SmoothGroup>& groups, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> exponent(-1.0f, 1.0f);
  Smoothing s;
  for (const SmoothGroup& g : groups)
    for (int64_t j = 0; j < g.channels; ++j) s[g.norm].push_back(std::pow(10.0f, exponent(rng)));
  return s;
}

}  // namespace

TEST_CASE("the groups are the LayerNorms read only by linears: qkv, fc1 and the head") {
  test_support::TempDir dir;
  Model model = tiny_model(dir);
  std::vector<SmoothGroup> groups = smooth_groups(model);
  std::vector<std::string> norms, linears;
  for (const SmoothGroup& g : groups) {
    norms.push_back(g.norm);
    CHECK(g.channels == 8);
    CHECK(g.norm_weight == g.norm + ".weight");
    CHECK(g.norm_bias == g.norm + ".bias");
    REQUIRE(g.linears.size() == 1);
    CHECK(g.linear_weights[0] == g.linears[0] + ".weight");
    linears.push_back(g.linears[0]);
  }
  // Not attn.proj (attention's output), mlp.fc2 (GELU's), nor the patch embedding (pixels).
  CHECK(norms == std::vector<std::string>{"blocks.0.norm1", "blocks.0.norm2", "blocks.1.norm1", "blocks.1.norm2", "norm"});
  CHECK(linears == std::vector<std::string>{"blocks.0.attn.qkv", "blocks.0.mlp.fc1", "blocks.1.attn.qkv",
                                            "blocks.1.mlp.fc1", "head"});
}

TEST_CASE("a LayerNorm read by anything but linears is no group: average pooling after the final norm") {
  test_support::TempDir dir;
  dir.write("model.safetensors",
            test_support::safetensors_bytes(test_support::random_values(test_support::tiny_vit(1), 0.3f, 5)));
  dir.write("config.json", R"({"num_heads": 2, "global_pool": "avg"})");
  Model model = load_model(dir.path());
  std::vector<std::string> norms;
  for (const SmoothGroup& g : smooth_groups(model)) norms.push_back(g.norm);
  CHECK(norms == std::vector<std::string>{"blocks.0.norm1", "blocks.0.norm2"});
}

TEST_CASE("folding the factors leaves the float model's answers as they were") {
  test_support::TempDir dir;
  Model plain = tiny_model(dir), folded = tiny_model(dir);
  const float norm1_before = plain.weights.get("blocks.0.norm1.weight")[3];
  const float* mapped = plain.weights.get("blocks.0.attn.qkv.weight");
  Smoothing s = some_factors(smooth_groups(folded), 11);
  fold_smoothing(folded, s);
  // The weights changed, channel by channel, in copies of their own.
  const float c3 = s.at("blocks.0.norm1")[3];
  CHECK(folded.weights.get("blocks.0.norm1.weight")[3] == doctest::Approx(norm1_before / c3));
  CHECK(folded.weights.get("blocks.0.attn.qkv.weight")[8 + 3] == doctest::Approx(mapped[8 + 3] * c3));
  CHECK(folded.weights.get("blocks.0.attn.qkv.weight") != mapped);
  CHECK(folded.weights.get("blocks.0.attn.proj.weight")[3] == plain.weights.get("blocks.0.attn.proj.weight")[3]);
  std::vector<float> expected = logits_of(plain), got = logits_of(folded);
  double largest = 0;
  for (size_t i = 0; i < got.size(); ++i) largest = std::max(largest, std::fabs(double(got[i]) - expected[i]));
  CHECK(largest <= 1e-4);
  // A fold that moved the wrong column changes them: the check above can fail.
  Model wrong = tiny_model(dir);
  Smoothing shifted = s;
  std::rotate(shifted["blocks.0.norm2"].begin(), shifted["blocks.0.norm2"].begin() + 1, shifted["blocks.0.norm2"].end());
  fold_smoothing(wrong, shifted);
  float* w = wrong.weights.writable_copy("blocks.0.norm2.weight");  // undo norm2's fold, keep fc1's (shifted)
  for (int64_t j = 0; j < 8; ++j) w[j] *= shifted["blocks.0.norm2"][j] / s["blocks.0.norm2"][j];
  std::vector<float> off = logits_of(wrong);
  double moved = 0;
  for (size_t i = 0; i < off.size(); ++i) moved = std::max(moved, std::fabs(double(off[i]) - expected[i]));
  CHECK(moved > 1e-3);
}

TEST_CASE("the factors: max|x|^alpha / max|w|^(1 - alpha), per channel over the group's linears") {
  test_support::TempDir dir;
  Model model = tiny_model(dir);
  SmoothGroup g = smooth_groups(model).front();  // blocks.0.norm1 -> attn.qkv [24, 8]
  const float* w = model.weights.get("blocks.0.attn.qkv.weight");
  std::vector<float> absmax{4, 0.5f, 2, 1, 8, 0.25f, 3, 0};
  std::vector<float> c = smoothing_factors(model, g, absmax, 0.8);
  for (int j = 0; j < 8; ++j) {
    double wmax = 0;
    for (int r = 0; r < 24; ++r) wmax = std::max(wmax, std::fabs(double(w[r * 8 + j])));
    CHECK(c[j] == doctest::Approx(std::pow(std::max(double(absmax[j]), 1e-5), 0.8) / std::pow(wmax, 0.2)));
    CHECK(c[j] > 0);
  }
  CHECK_THROWS_AS(smoothing_factors(model, g, absmax, 0), Error);
  CHECK_THROWS_AS(smoothing_factors(model, g, absmax, 1.5), Error);
  CHECK_THROWS_AS(smoothing_factors(model, g, std::vector<float>(7, 1.0f), 0.5), Error);
}

TEST_CASE("the ranges file carries the factors, and loading it folds them; bad factors are refused") {
  test_support::TempDir dir;
  Model model = tiny_model(dir);
  Int8Ranges ranges;
  for (const std::string& name : quantized_linear_names(model)) ranges[name] = {-1.0f, 2.0f};
  Smoothing s = some_factors(smooth_groups(model), 3);
  const std::string path = dir.file("scales.safetensors");
  save_int8_ranges(path, ranges, {{"method", "minmax"}}, s);
  Model loaded = tiny_model(dir);
  const float before = loaded.weights.get("blocks.1.mlp.fc1.weight")[5];
  load_int8_ranges(path, loaded);
  CHECK(loaded.int8_ranges.size() == ranges.size());
  CHECK(loaded.weights.get("blocks.1.mlp.fc1.weight")[5] == doctest::Approx(before * s.at("blocks.1.norm2")[5]));

  auto refused = [&](Smoothing bad, const std::string& why) {
    save_int8_ranges(path, ranges, {}, bad);
    Model m = tiny_model(dir);
    CHECK_THROWS_WITH_AS(load_int8_ranges(path, m), doctest::Contains(why.c_str()), Error);
    CHECK_THROWS_WITH_AS(load_int8_ranges(path, m), doctest::Contains(path.c_str()), Error);
  };
  Smoothing bad = s;
  bad["blocks.0.norm1"][2] = -1.0f;
  refused(bad, "not all finite and positive");
  bad = s;
  bad["blocks.0.norm1"].pop_back();
  refused(bad, "7 values, expected 8");
  bad = s;
  bad["blocks.0.attn.proj"] = std::vector<float>(8, 1.0f);
  refused(bad, "'blocks.0.attn.proj', which is not a LayerNorm feeding only linears");
}
