// Loading checkpoints: architecture from shapes, settings from config.json, and one clear
// error for a missing, extra or mis-shaped tensor.
#include "test_support.hpp"
#include "vitbatch/error.hpp"
#include "vitbatch/model.hpp"
#include "vitbatch/vit_graph.hpp"

#include <doctest/doctest.h>

using namespace vitbatch;
using test_support::f32_tensor;
using test_support::safetensors_bytes;
using test_support::TempDir;
using test_support::tiny_vit;

TEST_CASE("architecture is inferred from the tensor shapes") {
  TempDir dir;
  dir.write("m/model.safetensors", safetensors_bytes(tiny_vit(3)));
  // Nothing says how many heads: refused, with the way to say it.
  CHECK_THROWS_WITH_AS(load_model(dir.file("m")), doctest::Contains("the number of attention heads is not known: there is no config.json "
                                                                  "naming a timm architecture; give it with --heads N"), Error);
  ModelOverrides heads;
  heads.heads = 1;
  Model m = load_model(dir.file("m"), heads);
  const ViTConfig& c = m.config;
  CHECK(c.patch_size == 4);
  CHECK(c.image_size == 8);
  CHECK(c.dim == 8);
  CHECK(c.depth == 3);
  CHECK(c.heads == 1);
  CHECK(c.class_token);
  CHECK(c.reg_tokens == 0);
  CHECK_FALSE(c.no_embed_class);
  CHECK(c.pool == Pooling::Token);
  CHECK(m.defaulted.count("pool"));
  CHECK(c.mlp == MlpKind::Plain);
  CHECK(c.mlp_dim == 16);
  CHECK(c.num_classes == 5);
  CHECK_FALSE(c.distilled);
  CHECK(c.layer_norm_eps == 1e-6);
  CHECK(c.naming == "timm");
  CHECK(m.preprocess.crop_pct == 0.875);  // timm's default without config.json
  CHECK(m.weights.parameter_count() == 8 * 48 + 8 + 8 + 5 * 8 + 8 + 8 + 5 * 8 + 5 + 3 * (4 * 8 + 24 * 8 + 24 + 64 + 8 + 128 + 16 + 128 + 8));
  Graph g = build_vit_graph(m, 2);
  CHECK(g.value(g.outputs()[0]).shape == Shape{2, 5});
}

TEST_CASE("config.json and overrides set heads, eps and preprocessing") {
  TempDir dir;
  dir.write("m/model.safetensors", safetensors_bytes(tiny_vit()));
  dir.write("m/config.json", R"({"num_heads": 2, "pretrained_cfg": {"input_size": [3, 8, 8], "crop_pct": 0.9,
      "interpolation": "bilinear", "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.5, 0.5]}})");
  Model m = load_model(dir.file("m"));
  CHECK(m.config.heads == 2);
  CHECK(m.preprocess.crop_pct == 0.9);
  CHECK(m.preprocess.interpolation == "bilinear");
  CHECK(m.preprocess.std[0] == 0.25f);
  ModelOverrides o;
  o.heads = 4;
  o.layer_norm_eps = 1e-5;
  Model m2 = load_model(dir.file("m/model.safetensors"), o);
  CHECK(m2.config.heads == 4);
  CHECK(m2.config.layer_norm_eps == 1e-5);
  o.heads = 3;
  CHECK_THROWS_WITH_AS(load_model(dir.file("m"), o), doctest::Contains("3 heads do not divide dim 8"), Error);
}

TEST_CASE("counts in config.json and preprocessor_config.json must be integers") {
  // A float where a count belongs was cast by nlohmann's get<int64_t>(): 1e30 is undefined
  // behaviour (the config_json fuzzer's find), 2.5 heads would silently run as 2.
  TempDir dir;
  dir.write("m/model.safetensors", safetensors_bytes(tiny_vit()));
  dir.write("m/config.json", R"({"num_heads": 1e30})");
  CHECK_THROWS_WITH_AS(load_model(dir.file("m")), doctest::Contains("config.json: unexpected value: num_heads must be an integer, got 1e+30"), Error);
  dir.write("m/config.json", R"({"num_heads": 2.5})");
  CHECK_THROWS_WITH_AS(load_model(dir.file("m")), doctest::Contains("num_heads must be an integer, got 2.5"), Error);
  dir.write("m/config.json", R"({"num_heads": 18446744073709551615})");
  CHECK_THROWS_WITH_AS(load_model(dir.file("m")), doctest::Contains("num_heads must be an integer, got 18446744073709551615"), Error);
  dir.write("m/config.json", R"({"num_heads": 2, "pretrained_cfg": {"input_size": [3, 8, -9e99]}})");
  CHECK_THROWS_WITH_AS(load_model(dir.file("m")), doctest::Contains("input_size[2] must be an integer, got -9e+99"), Error);
  dir.write("m/config.json", R"({"num_heads": 2, "pretrained_cfg": {"input_size": [3, 8, 8]}})");
  CHECK(load_model(dir.file("m")).config.heads == 2);
  dir.write("m/preprocessor_config.json", R"({"size": {"height": 8, "width": 8.5}})");
  CHECK_THROWS_WITH_AS(load_model(dir.file("m")), doctest::Contains("preprocessor_config.json: size.width must be an integer, got 8.5"), Error);
  dir.write("m/preprocessor_config.json", R"({"size": {"height": 8, "width": 8}, "resample": 3e300})");
  CHECK_THROWS_WITH_AS(load_model(dir.file("m")), doctest::Contains("preprocessor_config.json: resample must be an integer, got 3e+300"), Error);
  dir.write("m/preprocessor_config.json", R"({"size": {"height": 8, "width": 8}, "resample": 3})");
  CHECK(load_model(dir.file("m")).preprocess.interpolation == "bicubic");
}

TEST_CASE("class names come from timm's label_names or Hugging Face's id2label") {
  TempDir dir;
  dir.write("a/model.safetensors", safetensors_bytes(tiny_vit()));
  dir.write("a/config.json", R"({"num_heads": 1, "label_names": ["zero", "one", "two, 2", "three", "four"]})");
  CHECK(load_model(dir.file("a")).labels == ModelLabels{"zero", "one", "two, 2", "three", "four"});
  dir.write("b/model.safetensors", safetensors_bytes(tiny_vit()));
  dir.write("b/config.json", R"({"num_heads": 1, "id2label": {"1": "b", "0": "a", "4": "e", "3": "d", "2": "c"}})");
  CHECK(load_model(dir.file("b")).labels == ModelLabels{"a", "b", "c", "d", "e"});
  dir.write("c/model.safetensors", safetensors_bytes(tiny_vit()));
  dir.write("c/config.json", R"({"num_heads": 1, "label_names": ["only", "three", "names"]})");
  CHECK_THROWS_WITH_AS(load_model(dir.file("c")), doctest::Contains("config.json lists 3 class names, the head has 5 classes"), Error);
}

TEST_CASE("bad checkpoints name the tensor and both shapes") {
  TempDir dir;
  dir.write("config.json", R"({"num_heads": 1})");
  SUBCASE("missing") {
    auto t = tiny_vit(2);
    t.erase("blocks.1.mlp.fc1.bias");
    std::string p = dir.write("m.safetensors", safetensors_bytes(t));
    CHECK_THROWS_WITH_AS(load_model(p), (p + ": missing tensor 'blocks.1.mlp.fc1.bias' (expected shape [16])").c_str(), Error);
  }
  SUBCASE("mis-shaped") {
    auto t = tiny_vit(2);
    t["blocks.1.attn.qkv.weight"] = f32_tensor({24, 7});
    std::string p = dir.write("m.safetensors", safetensors_bytes(t));
    CHECK_THROWS_WITH_AS(load_model(p), (p + ": tensor 'blocks.1.attn.qkv.weight' has shape [24,7], expected [24,8]").c_str(), Error);
  }
  SUBCASE("extra, known name") {
    auto t = tiny_vit(1);
    t["head_dist.weight"] = f32_tensor({5, 8});
    std::string p = dir.write("m.safetensors", safetensors_bytes(t));
    CHECK_THROWS_WITH_AS(load_model(p), (p + ": unexpected tensor 'head_dist.weight' [5,8] for a 1-block ViT").c_str(), Error);
  }
  SUBCASE("extra, unknown name") {
    auto t = tiny_vit(1);
    t["fc_normx.weight"] = f32_tensor({8});
    std::string p = dir.write("m.safetensors", safetensors_bytes(t));
    CHECK_THROWS_WITH_AS(load_model(p), doctest::Contains("unexpected tensor 'fc_normx.weight' [8] (not a timm or Hugging Face ViT/DeiT weight)"), Error);
  }
  SUBCASE("half of a pair") {  // fc_norm.weight makes fc_norm.bias expected
    auto t = tiny_vit(1);
    t["fc_norm.weight"] = f32_tensor({8});
    std::string p = dir.write("m.safetensors", safetensors_bytes(t));
    CHECK_THROWS_WITH_AS(load_model(p), (p + ": missing tensor 'fc_norm.bias' (expected shape [8])").c_str(), Error);
  }
  SUBCASE("a family vitbatch does not run") {
    auto t = tiny_vit(1);
    t["rel_pos_bias.relative_position_bias_table"] = f32_tensor({12, 1});
    std::string p = dir.write("m.safetensors", safetensors_bytes(t));
    CHECK_THROWS_WITH_AS(load_model(p), doctest::Contains("(BEiT with a shared relative position bias checkpoints are not supported"), Error);
  }
  SUBCASE("a relative position table of the wrong size names both shapes") {
    auto t = tiny_vit(1);
    t["blocks.0.attn.relative_position_bias_table"] = f32_tensor({10, 1});
    std::string p = dir.write("m.safetensors", safetensors_bytes(t));
    CHECK_THROWS_WITH_AS(load_model(p), (p + ": tensor 'blocks.0.attn.relative_position_bias_table' has shape [10,1], expected [12,1]").c_str(), Error);
  }
  SUBCASE("a timm architecture vitbatch does not run") {
    dir.write("arch/model.safetensors", safetensors_bytes(tiny_vit(1)));
    dir.write("arch/config.json", R"({"architecture": "vit_small_patch16_dinov3.lvd1689m"})");
    CHECK_THROWS_WITH_AS(load_model(dir.file("arch")), doctest::Contains("timm architecture 'vit_small_patch16_dinov3.lvd1689m' (config.json) "
                                                                        "is not one vitbatch runs: its rotary embedding is RotaryEmbeddingDinoV3 in pixels"), Error);
    dir.write("arch/config.json", R"({"architecture": "vit_base_patch16_xp_224"})");
    CHECK_THROWS_WITH_AS(load_model(dir.file("arch")), doctest::Contains("timm 1.0.31 cannot build it with one block"), Error);
  }
  SUBCASE("position embedding that is no square grid") {
    auto t = tiny_vit(1);
    t["pos_embed"] = f32_tensor({1, 6, 8});
    std::string p = dir.write("m.safetensors", safetensors_bytes(t));
    CHECK_THROWS_WITH_AS(load_model(p), doctest::Contains("tensor 'pos_embed' has shape [1,6,8], expected [1, 1 + grid*grid, dim]"), Error);
  }
  SUBCASE("mixed naming") {
    auto t = tiny_vit(1);
    t["vit.layernorm.weight"] = t["norm.weight"];
    t.erase("norm.weight");
    std::string p = dir.write("m.safetensors", safetensors_bytes(t));
    CHECK_THROWS_WITH_AS(load_model(p), doctest::Contains("mixes timm and Hugging Face tensor names"), Error);
  }
  SUBCASE("directory without weights") {
    CHECK_THROWS_WITH_AS(load_model(dir.path()), (dir.path() + ": directory has no model.safetensors").c_str(), Error);
  }
}

TEST_CASE("Hugging Face q, k, v are packed into timm's qkv in that order") {
  TempDir dir;
  auto timm = tiny_vit(1);
  std::map<std::string, test_support::RawTensor> hf;
  auto rename = [&](const std::string& from, const std::string& to) { hf[to] = timm[from]; };
  rename("cls_token", "vit.embeddings.cls_token");
  rename("pos_embed", "vit.embeddings.position_embeddings");
  rename("patch_embed.proj.weight", "vit.embeddings.patch_embeddings.projection.weight");
  rename("patch_embed.proj.bias", "vit.embeddings.patch_embeddings.projection.bias");
  rename("norm.weight", "vit.layernorm.weight");
  rename("norm.bias", "vit.layernorm.bias");
  rename("head.weight", "classifier.weight");
  rename("head.bias", "classifier.bias");
  std::string l = "vit.encoder.layer.0.";
  for (const char* w : {"weight", "bias"}) {
    rename(std::string("blocks.0.norm1.") + w, l + "layernorm_before." + w);
    rename(std::string("blocks.0.norm2.") + w, l + "layernorm_after." + w);
    rename(std::string("blocks.0.attn.proj.") + w, l + "attention.output.dense." + w);
    rename(std::string("blocks.0.mlp.fc1.") + w, l + "intermediate.dense." + w);
    rename(std::string("blocks.0.mlp.fc2.") + w, l + "output.dense." + w);
  }
  float fill = 1.0f;
  for (const char* part : {"query", "key", "value"}) {
    hf[l + "attention.attention." + part + ".weight"] = f32_tensor({8, 8}, fill);
    hf[l + "attention.attention." + part + ".bias"] = f32_tensor({8}, fill + 0.5f);
    fill += 1.0f;
  }
  hf["vit.pooler.dense.weight"] = f32_tensor({8, 8});  // ignored: classification never reads it
  dir.write("config.json", R"({"num_attention_heads": 2, "hidden_act": "gelu"})");
  Model m = load_model(dir.write("hf.safetensors", safetensors_bytes(hf)));
  CHECK(m.config.naming == "huggingface");
  CHECK(m.config.heads == 2);
  CHECK(m.config.layer_norm_eps == 1e-12);
  const float* qkv = m.weights.get("blocks.0.attn.qkv.weight");
  CHECK(m.weights.shape("blocks.0.attn.qkv.weight") == Shape{24, 8});
  CHECK(qkv[0] == 1.0f);
  CHECK(qkv[64] == 2.0f);
  CHECK(qkv[128 + 63] == 3.0f);
  const float* bias = m.weights.get("blocks.0.attn.qkv.bias");
  CHECK(bias[0] == 1.5f);
  CHECK(bias[8] == 2.5f);
  CHECK(bias[23] == 3.5f);
}
