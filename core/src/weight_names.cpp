#include "vitbatch/weight_names.hpp"

#include <regex>
#include <vector>

namespace vitbatch {
namespace {

struct Rule {
  std::regex pattern;
  std::string replacement;
};

const std::vector<Rule>& timm_rules() {
  static const std::vector<Rule> rules = [] {
    // timm's VisionTransformer vocabulary; which of these a checkpoint must have is the
    // layout table's business (model_layout.cpp), not this list's.
    std::vector<std::string> patterns = {
        R"(cls_token)", R"(dist_token)", R"(reg_token)", R"(pos_embed)", R"(patch_embed\.proj\.(weight|bias))",
        R"((norm_pre|norm|fc_norm)\.(weight|bias))",
        R"(blocks\.\d+\.(norm1|norm2)\.(weight|bias))",
        R"(blocks\.\d+\.attn\.(qkv|proj|q_norm|k_norm|norm)\.(weight|bias))",
        R"(blocks\.\d+\.(ls1|ls2)\.gamma)",
        R"(blocks\.\d+\.mlp\.(fc1|fc2|fc1_g|fc1_x|norm)\.(weight|bias))",
        R"(attn_pool\.latent)", R"(attn_pool\.(q|kv|proj|norm)\.(weight|bias))",
        R"(attn_pool\.mlp\.(fc1|fc2)\.(weight|bias))",
        R"(head\.(weight|bias))", R"(head_dist\.(weight|bias))"};
    std::vector<Rule> out;
    for (const auto& p : patterns) out.push_back({std::regex(p), "$&"});
    // timm's BEiT: its layer scale under other names, q and v biases apart, a relative
    // position bias table per block.
    out.push_back({std::regex(R"(blocks\.(\d+)\.gamma_1)"), "blocks.$1.ls1.gamma"});
    out.push_back({std::regex(R"(blocks\.(\d+)\.gamma_2)"), "blocks.$1.ls2.gamma"});
    out.push_back({std::regex(R"(blocks\.\d+\.attn\.(q_bias|v_bias|relative_position_bias_table))"), "$&"});
    // timm's EVA with q, k, v apart: k has no bias, as BEiT's.
    out.push_back({std::regex(R"(blocks\.(\d+)\.attn\.(q|k|v)_proj\.weight)"), "blocks.$1.attn.$2.weight"});
    out.push_back({std::regex(R"(blocks\.(\d+)\.attn\.(q|v)_proj\.bias)"), "blocks.$1.attn.$2_bias"});
    return out;
  }();
  return rules;
}

// Hugging Face: ViT ("vit."), DeiT ("deit."), BEiT ("beit.") and DINOv2 ("dinov2.", or none in
// Dinov2Model) share most of the layer layout; the rules below map each onto timm's names.
const std::vector<Rule>& hf_rules() {
  static const std::vector<Rule> rules = [] {
    const std::string p = R"((?:(?:vit|deit|beit|dinov2)\.)?)";
    const std::string layer = p + R"(encoder\.layer\.(\d+)\.)";
    std::vector<std::pair<std::string, std::string>> table = {
        {p + R"(embeddings\.cls_token)", "cls_token"},
        {p + R"(embeddings\.distillation_token)", "dist_token"},
        {p + R"(embeddings\.position_embeddings)", "pos_embed"},
        {p + R"(embeddings\.patch_embeddings\.projection\.(weight|bias))", "patch_embed.proj.$1"},
        {layer + R"((?:layernorm_before|norm1)\.(weight|bias))", "blocks.$1.norm1.$2"},
        {layer + R"((?:layernorm_after|norm2)\.(weight|bias))", "blocks.$1.norm2.$2"},
        // BEiT: q and v have biases, k none (as timm's BEiT: q_bias, v_bias)
        {R"(beit\.encoder\.layer\.(\d+)\.attention\.attention\.query\.bias)", "blocks.$1.attn.q_bias"},
        {R"(beit\.encoder\.layer\.(\d+)\.attention\.attention\.value\.bias)", "blocks.$1.attn.v_bias"},
        {R"(beit\.encoder\.layer\.(\d+)\.attention\.attention\.relative_position_bias\.relative_position_bias_table)",
         "blocks.$1.attn.relative_position_bias_table"},
        {layer + R"(attention\.attention\.query\.(weight|bias))", "blocks.$1.attn.q.$2"},
        {layer + R"(attention\.attention\.key\.(weight|bias))", "blocks.$1.attn.k.$2"},
        {layer + R"(attention\.attention\.value\.(weight|bias))", "blocks.$1.attn.v.$2"},
        {layer + R"(attention\.output\.dense\.(weight|bias))", "blocks.$1.attn.proj.$2"},
        {layer + R"((?:lambda_1|layer_scale1\.lambda1))", "blocks.$1.ls1.gamma"},
        {layer + R"((?:lambda_2|layer_scale2\.lambda1))", "blocks.$1.ls2.gamma"},
        {layer + R"((?:intermediate\.dense|mlp\.fc1|mlp\.weights_in)\.(weight|bias))", "blocks.$1.mlp.fc1.$2"},
        {layer + R"((?:output\.dense|mlp\.fc2|mlp\.weights_out)\.(weight|bias))", "blocks.$1.mlp.fc2.$2"},
        {p + R"(layernorm\.(weight|bias))", "norm.$1"},
        {R"(beit\.pooler\.layernorm\.(weight|bias))", "fc_norm.$1"},  // BEiT's mean pooling norm
        {R"((?:classifier|cls_classifier)\.(weight|bias))", "head.$1"},
        {R"(distillation_classifier\.(weight|bias))", "head_dist.$1"},
    };
    std::vector<Rule> out;
    for (const auto& [pattern, replacement] : table) out.push_back({std::regex(pattern), replacement});
    return out;
  }();
  return rules;
}

std::optional<std::string> apply(const std::vector<Rule>& rules, const std::string& name) {
  for (const Rule& r : rules)
    if (std::regex_match(name, r.pattern)) return std::regex_replace(name, r.pattern, r.replacement);
  return std::nullopt;
}

}  // namespace

std::optional<CanonicalName> canonical_weight_name(const std::string& name) {
  if (auto t = apply(timm_rules(), name)) return CanonicalName{*t, NameStyle::Timm};
  if (auto h = apply(hf_rules(), name)) return CanonicalName{*h, NameStyle::HuggingFace};
  return std::nullopt;
}

std::string foreign_family(const std::string& name) {
  static const std::vector<std::pair<std::regex, std::string>> families = {
      {std::regex(R"(rel_pos_bias\..*)"), "BEiT with a shared relative position bias"},
      {std::regex(R"(.*(freqs_cos|freqs_sin|mlp\.ffn_ln).*)"), "EVA (original naming)"},
      {std::regex(R"(beit\.encoder\.relative_position_bias\..*)"), "Hugging Face BEiT with a shared relative position bias"},
      {std::regex(R"(data2vec.*)"), "Hugging Face Data2Vec"},
      {std::regex(R"((vision_model|text_model|visual)\..*)"), "CLIP/SigLIP (Hugging Face or OpenCLIP naming)"},
  };
  for (const auto& [pattern, family] : families)
    if (std::regex_match(name, pattern)) return family;
  return "";
}

bool is_ignored_weight_name(const std::string& name) {
  // BEiT's relative_position_index is recomputed from the grid (timm no longer saves it);
  // mask tokens serve masked-image pretraining only.
  static const std::regex ignored(
      R"((?:vit|deit)\.(pooler\..*|embeddings\.position_ids)|blocks\.\d+\.attn\.(relative_position_index|k_bias)|)"
      R"((?:(?:vit|deit|beit|dinov2)\.)?embeddings\.mask_token|)"
      R"(beit\.encoder\.layer\.\d+\.attention\.attention\.relative_position_bias\.relative_position_index)");
  return std::regex_match(name, ignored);
}

}  // namespace vitbatch
