// Checkpoint names onto canonical (timm) names.
#include "vitbatch/weight_names.hpp"

#include <doctest/doctest.h>

using namespace vitbatch;

namespace {
std::string canon(const std::string& name) {
  auto c = canonical_weight_name(name);
  return c ? c->name : "<none>";
}
}  // namespace

TEST_CASE("timm names map to themselves") {
  for (const char* n : {"cls_token", "dist_token", "pos_embed", "patch_embed.proj.weight", "blocks.11.attn.qkv.bias",
                        "blocks.0.mlp.fc2.weight", "blocks.3.norm1.weight", "norm.bias", "head.weight", "head_dist.bias"}) {
    auto c = canonical_weight_name(n);
    REQUIRE(c);
    CHECK(c->name == n);
    CHECK(c->style == NameStyle::Timm);
  }
}

TEST_CASE("Hugging Face ViT and DeiT names map to timm's") {
  CHECK(canon("vit.embeddings.cls_token") == "cls_token");
  CHECK(canon("deit.embeddings.distillation_token") == "dist_token");
  CHECK(canon("vit.embeddings.position_embeddings") == "pos_embed");
  CHECK(canon("vit.embeddings.patch_embeddings.projection.weight") == "patch_embed.proj.weight");
  CHECK(canon("vit.encoder.layer.7.layernorm_before.bias") == "blocks.7.norm1.bias");
  CHECK(canon("vit.encoder.layer.7.layernorm_after.weight") == "blocks.7.norm2.weight");
  CHECK(canon("vit.encoder.layer.10.attention.attention.query.weight") == "blocks.10.attn.q.weight");
  CHECK(canon("deit.encoder.layer.0.attention.attention.key.bias") == "blocks.0.attn.k.bias");
  CHECK(canon("vit.encoder.layer.0.attention.attention.value.weight") == "blocks.0.attn.v.weight");
  CHECK(canon("vit.encoder.layer.0.attention.output.dense.weight") == "blocks.0.attn.proj.weight");
  CHECK(canon("vit.encoder.layer.0.intermediate.dense.bias") == "blocks.0.mlp.fc1.bias");
  CHECK(canon("vit.encoder.layer.0.output.dense.weight") == "blocks.0.mlp.fc2.weight");
  CHECK(canon("vit.layernorm.weight") == "norm.weight");
  CHECK(canon("classifier.bias") == "head.bias");
  CHECK(canon("cls_classifier.weight") == "head.weight");
  CHECK(canon("distillation_classifier.weight") == "head_dist.weight");
  CHECK(canonical_weight_name("vit.layernorm.weight")->style == NameStyle::HuggingFace);
}

TEST_CASE("unknown names and ignorable extras") {
  CHECK(canon("blocks.0.attn.qkv.weightx") == "<none>");
  CHECK(canon("fc_norm.weight") == "fc_norm.weight");  // timm's vocabulary; the layout decides if expected
  CHECK(canon("blocks.3.ls2.gamma") == "blocks.3.ls2.gamma");
  CHECK(canon("blocks.0.attn.q_bias") == "blocks.0.attn.q_bias");  // BEiT's, in timm naming
  CHECK(canon("blocks.2.gamma_1") == "blocks.2.ls1.gamma");
  CHECK(is_ignored_weight_name("blocks.0.attn.relative_position_index"));
  CHECK(foreign_family("rel_pos_bias.relative_position_bias_table") == "BEiT with a shared relative position bias");
  CHECK(foreign_family("blocks.0.attn.rope.freqs_cos") == "EVA (original naming)");
  CHECK(canon("blocks.1.attn.k_proj.weight") == "blocks.1.attn.k.weight");  // timm's EVA
  CHECK(canon("blocks.1.attn.v_proj.bias") == "blocks.1.attn.v_bias");
  CHECK(canon("model.encoder.layer.0.output.dense.weight") == "<none>");
  CHECK(is_ignored_weight_name("vit.pooler.dense.weight"));
  CHECK(is_ignored_weight_name("vit.embeddings.position_ids"));
  CHECK_FALSE(is_ignored_weight_name("head.weight"));
}
