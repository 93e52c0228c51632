#include "vitbatch/timm_table.hpp"

#include "vitbatch/error.hpp"

#include <nlohmann/json.hpp>

namespace vitbatch {

extern const char* const kTimmArchitecturesJson;

namespace {

const nlohmann::json& table() {
  static const nlohmann::json doc = nlohmann::json::parse(kTimmArchitecturesJson);
  return doc;
}

std::string str(const nlohmann::json& j, const char* key) {
  return j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : std::string();
}

}  // namespace

std::string timm_table_version() { return str(table(), "timm_version"); }

std::optional<TimmArchitecture> find_timm_architecture(const std::string& full_name) {
  std::string name = full_name.substr(0, full_name.find('.'));
  const nlohmann::json& all = table()["architectures"];
  auto it = all.find(name);
  if (it == all.end()) return std::nullopt;
  const nlohmann::json& j = *it;
  TimmArchitecture a;
  a.name = name;
  a.error = str(j, "error");
  if (!a.error.empty()) return a;
  a.model_class = str(j, "class");
  a.block = str(j, "block");
  a.attention = str(j, "attention");
  a.mlp = str(j, "mlp");
  a.patch_embed = str(j, "patch_embed");
  a.act = str(j, "act");
  a.gate_last = j.value("gate_last", false);
  a.heads = j.value("heads", int64_t{0});
  a.head_dim = j.value("head_dim", int64_t{0});
  a.dim = j.value("dim", int64_t{0});
  if (j.contains("img_size") && j["img_size"].is_array()) a.img_size = j["img_size"][0].get<int64_t>();
  if (j.contains("norm") && j["norm"].is_object()) {
    a.norm = str(j["norm"], "kind");
    a.eps = j["norm"].value("eps", 0.0);
  }
  a.global_pool = str(j, "global_pool");
  a.no_embed_class = j.value("no_embed_class", false);
  a.pool_include_prefix = j.value("pool_include_prefix", false);
  if (j.contains("attn_pool") && j["attn_pool"].is_object()) {
    const nlohmann::json& p = j["attn_pool"];
    a.map_heads = p.value("heads", int64_t{0});
    a.map_act = str(p, "mlp_act");
    a.map_pool = str(p, "pool");
    a.map_pos_embed = p.value("pos_embed", false);
  }
  if (j.contains("rope") && j["rope"].is_object()) {
    const nlohmann::json& r = j["rope"];
    a.rope_class = str(r, "class");
    a.rope_in_pixels = r.value("in_pixels", true);
    a.rope_grid_type = str(r, "grid_type");
    a.rope_grid_indexing = str(r, "grid_indexing");
    if (r.contains("ref_feat_shape") && r["ref_feat_shape"].is_array()) {
      if (r["ref_feat_shape"][0] != r["ref_feat_shape"][1]) a.rope_class += " (non-square reference grid)";
      a.rope_ref_grid = r["ref_feat_shape"][0].get<int64_t>();
    }
    a.rope_temperature = r.value("temperature", 10000.0);
    a.rope_grid_offset = r.value("grid_offset", 0.0);
    a.rope_linear_bands = r.value("linear_bands", false);
    a.rope_half = r.value("rotate_half", false);
  }
  if (j.contains("test_input_size") && j["test_input_size"].is_array() && j["test_input_size"].size() == 3)
    a.test_input_size = j["test_input_size"][2].get<int64_t>();
  return a;
}

}  // namespace vitbatch
