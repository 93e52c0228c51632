#include "vitbatch/model.hpp"

#include "vitbatch/error.hpp"
#include "vitbatch/file_io.hpp"
#include "vitbatch/model_layout.hpp"
#include "vitbatch/pos_embed.hpp"
#include "vitbatch/safetensors.hpp"
#include "vitbatch/timm_table.hpp"
#include "vitbatch/weight_names.hpp"

#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <sys/mman.h>

namespace fs = std::filesystem;

namespace vitbatch {

float* WeightStore::add(const std::string& name, const Shape& shape, bool derived) {
  size_t n = static_cast<size_t>(element_count(shape));
  if (arena_.size() + n > arena_.capacity())
    throw Error("internal: weight arena reserved too small for '" + name + "'");
  arena_.resize(arena_.size() + n);
  float* data = arena_.data() + arena_.size() - n;
  entries_[name] = Entry{data, shape};
  if (!derived) parameters_ += n;
  return data;
}

float* WeightStore::replace(const std::string& name, const Shape& shape) {
  auto it = entries_.find(name);
  if (it != entries_.end()) parameters_ -= static_cast<size_t>(element_count(it->second.shape));
  return add(name, shape);
}

void WeightStore::add_mapped(const std::string& name, const Shape& shape, const float* data) {
  entries_[name] = Entry{data, shape};
  parameters_ += static_cast<size_t>(element_count(shape));
}

const float* WeightStore::get(const std::string& name) const {
  auto it = entries_.find(name);
  if (it == entries_.end()) throw Error("weight '" + name + "' is not loaded");
  return it->second.data;
}

const Shape& WeightStore::shape(const std::string& name) const {
  auto it = entries_.find(name);
  if (it == entries_.end()) throw Error("weight '" + name + "' is not loaded");
  return it->second.shape;
}

void WeightStore::keep_mapping(std::shared_ptr<const void> owner, const void* base, size_t bytes) {
  mapping_owner_ = std::move(owner);
  mapping_ = base;
  mapping_bytes_ = bytes;
}

void WeightStore::drop_resident_pages() const {
  if (mapping_ && mapping_bytes_) madvise(const_cast<void*>(mapping_), mapping_bytes_, MADV_DONTNEED);
}

namespace {

struct Located {
  std::string weights;
  std::optional<std::string> config;
};

Located locate(const std::string& path) {
  std::error_code ec;
  // Every check takes an error_code: a symlink loop must be a message, not an exception
  // from std::filesystem.
  auto present = [](const fs::path& p) {
    std::error_code e;
    return fs::symlink_status(p, e).type() != fs::file_type::not_found && !e;
  };
  if (fs::is_directory(path, ec)) {
    fs::path file = fs::path(path) / "model.safetensors";
    if (!present(file)) throw Error(path + ": directory has no model.safetensors");
    fs::path config = fs::path(path) / "config.json";
    return {file.string(), present(config) ? std::optional<std::string>(config.string()) : std::nullopt};
  }
  if (!present(path)) throw Error(path + ": no such model file or directory");
  fs::path dir = fs::path(path).parent_path();
  if (fs::path(path).extension() == ".json" && present((dir.empty() ? fs::path(".") : dir) / "model.safetensors"))
    throw Error(path + ": is a JSON config, not weights: pass the directory '" + (dir.empty() ? "." : dir.string()) +
                "' (it holds model.safetensors and this config)");
  fs::path config = fs::path(path).parent_path() / "config.json";
  return {path, present(config) ? std::optional<std::string>(config.string()) : std::nullopt};
}

nlohmann::json read_json(const std::string& path) {
  std::string text = read_regular_file(path, uint64_t{16} << 20);
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw Error(path + ": not valid JSON: " + e.what());
  }
}

std::string triple_string(const std::array<float, 3>& v) {
  std::ostringstream out;
  out << v[0] << ", " << v[1] << ", " << v[2];
  return out.str();
}

std::string describe_expected(const std::string& name, const Shape& expected) {
  return "'" + name + "' (expected shape " + shape_string(expected) + ")";
}

std::optional<int64_t> square_root(int64_t n) {
  if (n <= 0) return std::nullopt;
  auto r = static_cast<int64_t>(std::lround(std::sqrt(double(n))));
  return r * r == n ? std::optional<int64_t>(r) : std::nullopt;
}

Activation parse_activation(const std::string& name, const std::string& where) {
  if (name == "gelu") return Activation::Gelu;
  if (name == "gelu_tanh" || name == "gelu_pytorch_tanh" || name == "gelu_new") return Activation::GeluTanh;
  if (name == "quick_gelu") return Activation::QuickGelu;
  if (name == "silu" || name == "swish") return Activation::Silu;
  throw Error(where + ": activation '" + name + "' is not one vitbatch runs (gelu, gelu_tanh, quick_gelu, silu)");
}

std::optional<Pooling> parse_pooling(const std::string& name) {
  if (name == "token") return Pooling::Token;
  if (name == "avg") return Pooling::Avg;
  if (name == "avgmax") return Pooling::AvgMax;
  if (name == "max") return Pooling::Max;
  if (name == "map") return Pooling::Map;
  return std::nullopt;
}

// timm's classes and layers that vitbatch runs; anything else in the table is refused by name.
std::string unsupported_reason(const TimmArchitecture& a) {
  if (!a.error.empty()) return "timm 1.0.31 cannot build it with one block (" + a.error + ")";
  const bool eva = a.model_class == "Eva";
  if (a.model_class != "VisionTransformer" && a.model_class != "VisionTransformerDistilled" && a.model_class != "Beit" && !eva)
    return "its model class is " + a.model_class + " (vitbatch runs timm's VisionTransformer family, BEiT and EVA)";
  if (a.block != (eva ? "EvaBlock" : "Block")) return "its blocks are " + a.block;
  if (a.attention != (eva ? "EvaAttention" : "Attention")) return "its attention is " + a.attention;
  if (!a.rope_class.empty() &&
      (a.rope_class != "RotaryEmbeddingCat" || a.rope_in_pixels || (a.rope_grid_type != "index" && !a.rope_grid_type.empty())))
    return "its rotary embedding is " + a.rope_class + (a.rope_in_pixels ? " in pixels" : "") +
           (a.rope_grid_type.empty() ? "" : " on a '" + a.rope_grid_type + "' grid");
  if (a.norm != "LayerNorm") return "its norm is " + a.norm;
  if (a.patch_embed != "PatchEmbed") return "its patch embedding is " + a.patch_embed;
  if (a.mlp != "Mlp" && a.mlp != "GluMlp" && a.mlp != "SwiGLU") return "its MLP is " + a.mlp;
  if (a.global_pool == "prr") return "its pooling is 'prr'";
  if (a.map_pos_embed) return "its attention pool has a position embedding";
  return "";
}

// Settings config.json gives. timm's hub config: architecture, global_pool, label_names and
// pretrained_cfg (preprocessing); a Hugging Face config: heads, eps, act, image size, id2label.
struct ConfigJson {
  std::optional<std::string> architecture;
  std::optional<std::string> global_pool;
  std::optional<int64_t> heads;
  std::optional<double> eps;
  std::optional<std::string> act;
  std::optional<bool> qkv_bias;
  std::optional<int64_t> test_input_size;
  std::optional<int64_t> input_size;
  std::optional<std::string> model_type;  // Hugging Face: vit, deit, beit, dinov2
  ModelLabels labels;
  std::set<std::string> preprocessing;  // the preprocessing keys it set
};

ModelLabels read_labels(const nlohmann::json& j) {
  ModelLabels out;
  if (j.is_array()) {
    for (const auto& v : j) out.push_back(v.get<std::string>());
  } else if (j.is_object()) {  // {"0": "tench", ...}: by index
    out.resize(j.size());
    for (const auto& [key, v] : j.items()) {
      size_t i = std::stoul(key);
      if (i >= out.size()) throw Error("label index " + key + " out of range");
      out[i] = v.get<std::string>();
    }
  }
  return out;
}

ConfigJson read_config_json(const std::string& path, PreprocessConfig& pre) {
  nlohmann::json j = read_json(path);
  ConfigJson c;
  auto& found = c.preprocessing;
  try {
    const nlohmann::json& cfg = j.contains("pretrained_cfg") ? j["pretrained_cfg"] : j;
    if (cfg.contains("input_size")) c.input_size = pre.input_size = cfg["input_size"].at(2).get<int64_t>();
    if (cfg.contains("crop_pct") && !cfg["crop_pct"].is_null()) {
      pre.crop_pct = cfg["crop_pct"].get<double>();
      found.insert("crop_pct");
    }
    if (cfg.contains("test_input_size") && cfg["test_input_size"].is_array())
      c.test_input_size = cfg["test_input_size"].at(2).get<int64_t>();
    if (cfg.contains("crop_mode") && cfg["crop_mode"].is_string()) {
      pre.crop_mode = cfg["crop_mode"].get<std::string>();
      found.insert("crop_mode");
    }
    if (cfg.contains("interpolation")) {
      pre.interpolation = cfg["interpolation"].get<std::string>();
      found.insert("interpolation");
    }
    if (cfg.contains("mean")) {
      pre.mean = cfg["mean"].get<std::array<float, 3>>();
      found.insert("mean");
    }
    if (cfg.contains("std")) {
      pre.std = cfg["std"].get<std::array<float, 3>>();
      found.insert("std");
    }
    if (j.contains("architecture") && j["architecture"].is_string()) c.architecture = j["architecture"].get<std::string>();
    if (j.contains("global_pool") && j["global_pool"].is_string()) c.global_pool = j["global_pool"].get<std::string>();
    if (j.contains("num_attention_heads")) c.heads = j["num_attention_heads"].get<int64_t>();
    if (j.contains("num_heads")) c.heads = j["num_heads"].get<int64_t>();
    if (j.contains("layer_norm_eps")) c.eps = j["layer_norm_eps"].get<double>();
    if (j.contains("hidden_act") && j["hidden_act"].is_string()) c.act = j["hidden_act"].get<std::string>();
    if (j.contains("model_type") && j["model_type"].is_string()) c.model_type = j["model_type"].get<std::string>();
    if (j.contains("qkv_bias") && j["qkv_bias"].is_boolean()) c.qkv_bias = j["qkv_bias"].get<bool>();
    if (j.contains("image_size") && j["image_size"].is_number_integer()) pre.input_size = j["image_size"].get<int64_t>();
    if (j.contains("label_names")) c.labels = read_labels(j["label_names"]);
    else if (cfg.contains("label_names")) c.labels = read_labels(cfg["label_names"]);
    else if (j.contains("id2label")) c.labels = read_labels(j["id2label"]);
  } catch (const nlohmann::json::exception& e) {
    throw Error(path + ": unexpected value: " + e.what());
  } catch (const std::exception& e) {  // stoul on a bad id2label key
    throw Error(path + ": unexpected value: " + e.what());
  }
  return c;
}

// Hugging Face's image processor (preprocessor_config.json beside config.json): resize to a
// fixed size (no crop unless it says so), rescale, normalise. It replaces timm's transform.
void read_preprocessor_config(const std::string& path, PreprocessConfig& pre, std::set<std::string>& found) {
  nlohmann::json j = read_json(path);
  try {
    pre.hf_processor = true;
    pre.hf_do_resize = j.value("do_resize", true);
    if (j.contains("size")) {
      const auto& size = j["size"];
      if (size.is_number_integer()) pre.hf_resize_height = pre.hf_resize_width = size.get<int64_t>();
      else if (size.contains("shortest_edge")) pre.hf_shortest_edge = size["shortest_edge"].get<int64_t>();
      else {
        pre.hf_resize_height = size.at("height").get<int64_t>();
        pre.hf_resize_width = size.at("width").get<int64_t>();
      }
    }
    // PIL's resample codes: 0 nearest, 2 bilinear, 3 bicubic (HF's default is bilinear).
    int resample = j.value("resample", 2);
    if (resample == 2) pre.interpolation = "bilinear";
    else if (resample == 3) pre.interpolation = "bicubic";
    else throw Error(path + ": resample " + std::to_string(resample) + " is not one vitbatch runs (2 bilinear, 3 bicubic)");
    pre.hf_do_center_crop = j.value("do_center_crop", false);
    if (pre.hf_do_center_crop && j.contains("crop_size")) {
      const auto& crop = j["crop_size"];
      pre.input_size = crop.is_number_integer() ? crop.get<int64_t>() : crop.at("height").get<int64_t>();
      if (crop.is_object() && crop.at("width").get<int64_t>() != pre.input_size)
        throw Error(path + ": crop_size " + crop.dump() + " is not square");
    } else if (pre.hf_resize_height) {
      if (pre.hf_resize_height != pre.hf_resize_width)
        throw Error(path + ": size " + j["size"].dump() + " is not square");
      pre.input_size = pre.hf_resize_height;
    }
    pre.hf_do_rescale = j.value("do_rescale", true);
    pre.hf_rescale_factor = j.value("rescale_factor", 1.0 / 255.0);
    pre.hf_do_normalize = j.value("do_normalize", true);
    if (j.contains("image_mean")) pre.mean = j["image_mean"].get<std::array<float, 3>>();
    if (j.contains("image_std")) pre.std = j["image_std"].get<std::array<float, 3>>();
    found.insert({"mean", "std", "crop_pct", "interpolation", "crop_mode"});
  } catch (const nlohmann::json::exception& e) {
    throw Error(path + ": unexpected value: " + e.what());
  }
}

}  // namespace

RopeTables rope_tables(const ViTConfig& c, int64_t grid) {
  // timm's build_rotary_pos_embed, in float32 as torch computes it.
  const int64_t head = c.dim / c.heads, bands = head / 4;
  std::vector<float> band(static_cast<size_t>(bands));
  for (int64_t k = 0; k < bands; ++k)
    band[k] = 1.0f / std::pow(static_cast<float>(c.rope_temperature), static_cast<float>(k) / static_cast<float>(bands));
  auto position = [&](int64_t i) {
    float t = static_cast<float>(i) + static_cast<float>(c.rope_grid_offset);
    return c.rope_ref_grid ? t / static_cast<float>(grid) * static_cast<float>(c.rope_ref_grid) : t;
  };
  RopeTables out;
  out.sin.resize(static_cast<size_t>(grid * grid * head));
  out.cos.resize(out.sin.size());
  std::vector<float> angles(static_cast<size_t>(2 * bands));
  for (int64_t y = 0; y < grid; ++y)
    for (int64_t x = 0; x < grid; ++x) {
      // Per token: (first coordinate, second coordinate) x bands, flattened coordinate-major.
      float coord[2] = {position(c.rope_xy ? x : y), position(c.rope_xy ? y : x)};
      for (int a = 0; a < 2; ++a)
        for (int64_t k = 0; k < bands; ++k) angles[static_cast<size_t>(a * bands + k)] = coord[a] * band[k];
      float* s = out.sin.data() + (y * grid + x) * head;
      float* co = out.cos.data() + (y * grid + x) * head;
      for (int64_t e = 0; e < head; ++e) {
        // interleaved: each angle twice in a row; half: the angles, then the angles again
        float angle = c.rope_half ? angles[static_cast<size_t>(e % (2 * bands))] : angles[static_cast<size_t>(e / 2)];
        s[e] = std::sin(angle);
        co[e] = std::cos(angle);
      }
    }
  return out;
}

const char* pooling_name(Pooling p) {
  switch (p) {
    case Pooling::Token: return "token";
    case Pooling::Avg: return "avg";
    case Pooling::AvgMax: return "avgmax";
    case Pooling::Max: return "max";
    case Pooling::Map: return "map";
    case Pooling::TokenAvg: return "token+avg";
  }
  return "?";
}

const char* activation_name(Activation a) {
  switch (a) {
    case Activation::Gelu: return "gelu";
    case Activation::GeluTanh: return "gelu_tanh";
    case Activation::QuickGelu: return "quick_gelu";
    case Activation::Silu: return "silu";
  }
  return "?";
}

const char* mlp_kind_name(MlpKind m) {
  switch (m) {
    case MlpKind::Plain: return "mlp";
    case MlpKind::GluPacked: return "glu";
    case MlpKind::SwiGlu: return "swiglu";
  }
  return "?";
}

std::string describe_variant(const ViTConfig& c) {
  std::ostringstream o;
  std::vector<std::string> prefix;
  if (c.class_token) prefix.push_back("class token");
  if (c.reg_tokens) prefix.push_back(std::to_string(c.reg_tokens) + " register token" + (c.reg_tokens > 1 ? "s" : ""));
  if (c.distilled) prefix.push_back("distillation token");
  for (size_t i = 0; i < prefix.size(); ++i) o << (i ? " + " : "") << prefix[i];
  if (prefix.empty()) o << "no prefix tokens";
  o << (!c.abs_pos_embed ? " (no absolute position embedding)" : c.no_embed_class ? " (position embedding on patches only)" : "");
  o << "; " << (c.patch_bias ? "" : "patch embedding without bias; ") << (c.norm_pre ? "norm_pre; " : "");
  o << "attention" << (c.qkv_bias ? "" : " without qkv bias") << (c.qk_norm ? " with qk-norm" : "")
    << (c.rel_pos_bias ? " with relative position bias" : "") << (c.rope ? " with rotary embedding" : "")
    << (c.attn_norm ? " + norm" : "") << "; " << mlp_kind_name(c.mlp) << " " << activation_name(c.act)
    << (c.mlp_norm ? " + norm" : "") << (c.layer_scale ? "; layer scale" : "") << "; pooling " << pooling_name(c.pool);
  if (c.pool == Pooling::Map) o << " (" << c.map_heads << " heads, " << c.map_latent_len << " queries)";
  o << (c.final_norm ? ", final norm" : "") << (c.fc_norm ? ", fc_norm" : "");
  o << (c.has_head() ? "; head " + std::to_string(c.num_classes) + " classes" : "; no head (features " + std::to_string(c.dim) + ")");
  if (!c.architecture.empty()) o << "; timm " << c.architecture;
  return o.str();
}

std::string describe_preprocess(const PreprocessConfig& p) {
  char line[320];
  if (p.hf_processor) {
    std::string resize = !p.hf_do_resize ? "no resize"
                         : p.hf_shortest_edge ? "resize shortest side to " + std::to_string(p.hf_shortest_edge)
                                              : "resize to " + std::to_string(p.hf_resize_width) + "x" + std::to_string(p.hf_resize_height);
    std::snprintf(line, sizeof line, "Hugging Face processor: %s (%s)%s, x * %g%s, mean [%g, %g, %g], std [%g, %g, %g]",
                  resize.c_str(), p.interpolation.c_str(),
                  p.hf_do_center_crop ? (", centre crop " + std::to_string(p.input_size)).c_str() : "",
                  p.hf_do_rescale ? p.hf_rescale_factor : 1.0, p.hf_do_normalize ? "" : " (no normalisation)",
                  p.mean[0], p.mean[1], p.mean[2], p.std[0], p.std[1], p.std[2]);
    return line;
  }
  const int scaled = static_cast<int>(p.input_size / p.crop_pct);
  std::string how = p.crop_mode == "squash" ? "resize both sides to " + std::to_string(scaled) + " (squash)"
                    : p.crop_mode == "border" ? "resize longest side to " + std::to_string(scaled) + " (border)"
                                              : "resize shortest side to " + std::to_string(scaled);
  std::snprintf(line, sizeof line, "%s (%s, crop_pct %g), %s %d, mean [%g, %g, %g], std [%g, %g, %g]", how.c_str(),
                p.interpolation.c_str(), p.crop_pct, p.crop_mode == "border" ? "centre crop or pad to" : "centre crop",
                static_cast<int>(p.input_size), p.mean[0], p.mean[1], p.mean[2], p.std[0], p.std[1], p.std[2]);
  return line;
}

Model load_model(const std::string& path, const ModelOverrides& overrides) {
  Located where = locate(path);
  SafetensorsFile file = SafetensorsFile::open(where.weights);
  const std::string& label = file.label();

  Model model;
  model.path = where.weights;
  ConfigJson json;
  std::set<std::string>& found = json.preprocessing;
  if (where.config) json = read_config_json(*where.config, model.preprocess);
  model.has_config_json = where.config.has_value();
  if (where.config) {
    fs::path processor = fs::path(*where.config).parent_path() / "preprocessor_config.json";
    std::error_code ec;
    if (fs::is_regular_file(processor, ec)) read_preprocessor_config(processor.string(), model.preprocess, found);
  }

  // The architecture's entry in timm's registry, and whether vitbatch runs it.
  std::optional<TimmArchitecture> timm;
  if (json.architecture) {
    timm = find_timm_architecture(*json.architecture);
    if (timm) {
      std::string why = unsupported_reason(*timm);
      if (!why.empty())
        throw Error(label + ": timm architecture '" + *json.architecture + "' (config.json) is not one vitbatch runs: " + why);
    }
  }

  // Map names; keep the checkpoint's own name for messages.
  std::map<std::string, const TensorView*> by_canonical;
  std::map<std::string, std::string> original_name;
  std::set<NameStyle> styles;
  for (const auto& [name, tensor] : file.tensors()) {
    if (is_ignored_weight_name(name)) continue;
    auto canonical = canonical_weight_name(name);
    if (!canonical) {
      std::string family = foreign_family(name);
      throw Error(label + ": unexpected tensor '" + name + "' " + shape_string(tensor.shape) +
                  (family.empty() ? " (not a timm or Hugging Face ViT/DeiT weight)"
                                  : " (" + family + " checkpoints are not supported: vitbatch runs timm's VisionTransformer family)"));
    }
    styles.insert(canonical->style);
    by_canonical[canonical->name] = &tensor;
    original_name[canonical->name] = name;
  }
  if (styles.size() > 1) throw Error(label + ": mixes timm and Hugging Face tensor names");
  bool hf = styles.count(NameStyle::HuggingFace) != 0;
  auto has = [&](const std::string& canonical) { return by_canonical.count(canonical) != 0; };
  auto shape_of = [&](const std::string& canonical) -> const Shape& {
    auto it = by_canonical.find(canonical);
    if (it == by_canonical.end()) throw Error(label + ": missing tensor '" + canonical + "'");
    return it->second->shape;
  };
  auto tensor_name = [&](const std::string& canonical) { return "tensor '" + original_name[canonical] + "'"; };

  ViTConfig& c = model.config;
  c.naming = hf ? "huggingface" : "timm";
  c.architecture = json.architecture.value_or("");

  // The description, from which tensors are there and their shapes.
  const Shape& patch = shape_of("patch_embed.proj.weight");
  if (patch.size() != 4 || patch[2] != patch[3])
    throw Error(label + ": " + tensor_name("patch_embed.proj.weight") + " has shape " + shape_string(patch) +
                ", expected [dim, channels, patch, patch]");
  c.dim = patch[0];
  c.in_chans = patch[1];
  c.patch_size = patch[2];
  // Preprocessing makes RGB: a patch embedding for another channel count would read past
  // each image (4 channels) or mix images of a batch (1 channel).
  if (c.in_chans != 3)
    throw Error(label + ": " + tensor_name("patch_embed.proj.weight") + " takes " + std::to_string(c.in_chans) +
                " input channels; vitbatch feeds RGB images (3 channels)");
  if (c.dim <= 0 || c.patch_size <= 0)
    throw Error(label + ": " + tensor_name("patch_embed.proj.weight") + " has shape " + shape_string(patch) +
                ": width and patch size must be positive");
  c.patch_bias = has("patch_embed.proj.bias");
  c.class_token = has("cls_token");
  c.distilled = has("dist_token");
  if (has("reg_token")) {
    const Shape& reg = shape_of("reg_token");
    if (reg.size() != 3 || reg[1] <= 0)
      throw Error(label + ": " + tensor_name("reg_token") + " has shape " + shape_string(reg) + ", expected [1, registers, dim]");
    c.reg_tokens = reg[1];
  }
  c.norm_pre = has("norm_pre.weight");
  while (has("blocks." + std::to_string(c.depth) + ".norm1.weight")) ++c.depth;
  if (c.depth == 0) throw Error(label + ": missing tensor 'blocks.0.norm1.weight' (no transformer blocks)");
  c.qkv_bias_split = has("blocks.0.attn.q_bias");
  c.qkv_separate = has("blocks.0.attn.q.weight");
  c.qkv_bias = has("blocks.0.attn.qkv.bias") || has("blocks.0.attn.q.bias") || c.qkv_bias_split;
  c.rel_pos_bias = has("blocks.0.attn.relative_position_bias_table");
  c.qk_norm = has("blocks.0.attn.q_norm.weight");
  c.attn_norm = has("blocks.0.attn.norm.weight");
  c.proj_bias = has("blocks.0.attn.proj.bias");
  c.layer_scale = has("blocks.0.ls1.gamma");
  c.mlp_norm = has("blocks.0.mlp.norm.weight");
  c.mlp_bias = has("blocks.0.mlp.fc2.bias");
  const Shape& fc2 = shape_of("blocks.0.mlp.fc2.weight");
  if (fc2.size() != 2 || fc2[1] <= 0)
    throw Error(label + ": " + tensor_name("blocks.0.mlp.fc2.weight") + " has shape " + shape_string(fc2) + ", expected [dim, hidden]");
  c.mlp_dim = fc2[1];
  if (has("blocks.0.mlp.fc1_g.weight")) {
    c.mlp = MlpKind::SwiGlu;
  } else {
    const Shape& fc1 = shape_of("blocks.0.mlp.fc1.weight");
    // A packed gated MLP's fc1 is twice as wide as fc2 reads.
    c.mlp = fc1.size() == 2 && fc1[0] == 2 * c.mlp_dim ? MlpKind::GluPacked : MlpKind::Plain;
  }
  c.final_norm = has("norm.weight");
  c.fc_norm = has("fc_norm.weight");
  if (has("head.weight")) {
    const Shape& head = shape_of("head.weight");
    c.num_classes = head.empty() ? 0 : head[0];
    if (c.num_classes <= 0)
      throw Error(label + ": " + tensor_name("head.weight") + " has shape " + shape_string(head) +
                  ": a classifier needs at least one class");
  }
  if (has("attn_pool.latent")) {
    const Shape& latent = shape_of("attn_pool.latent");
    if (latent.size() != 3 || latent[1] <= 0)
      throw Error(label + ": " + tensor_name("attn_pool.latent") + " has shape " + shape_string(latent) + ", expected [1, queries, dim]");
    c.map_latent_len = latent[1];
    const Shape& map_fc1 = shape_of("attn_pool.mlp.fc1.weight");
    c.map_mlp_dim = map_fc1.empty() ? 0 : map_fc1[0];
  }

  // The position embedding gives the grid, hence the image size, and whether it covers the
  // prefix tokens (timm's no_embed_class: DeiT-III, DINOv2 with registers). Without one
  // (BEiT), the relative position table gives the grid.
  c.abs_pos_embed = has("pos_embed");
  std::optional<int64_t> grid;
  if (c.abs_pos_embed) {
    const Shape& pos = shape_of("pos_embed");
    if (pos.size() != 3 || pos[0] != 1)
      throw Error(label + ": " + tensor_name("pos_embed") + " has shape " + shape_string(pos) + ", expected [1, tokens, dim]");
    std::optional<int64_t> with_prefix = square_root(pos[1] - c.prefix_tokens()), without = square_root(pos[1]);
    if (timm) c.no_embed_class = timm->no_embed_class;
    else c.no_embed_class = !with_prefix && without;
    grid = c.no_embed_class ? without : with_prefix;
    if (!grid)
      throw Error(label + ": " + tensor_name("pos_embed") + " has shape " + shape_string(pos) + ", expected [1, " +
                  (c.no_embed_class ? "" : std::to_string(c.prefix_tokens()) + " + ") + "grid*grid, dim]");
  } else if (c.rel_pos_bias) {
    const std::string table = "blocks.0.attn.relative_position_bias_table";
    const Shape& t = shape_of(table);
    std::optional<int64_t> side = t.size() == 2 ? square_root(t[0] - 3) : std::nullopt;  // (2 grid - 1)^2 + 3 rows
    if (!side || *side % 2 == 0)
      throw Error(label + ": " + tensor_name(table) + " has shape " + shape_string(t) + ", expected [(2 grid - 1)^2 + 3, heads]");
    grid = (*side + 1) / 2;
    if (!c.class_token || c.reg_tokens || c.distilled)
      throw Error(label + ": a relative position bias (BEiT) needs exactly one prefix token, the class token");
  } else if (timm && !timm->rope_class.empty()) {
    // Rotary embedding only: the input size from config.json, else timm's default.
    int64_t size = json.input_size.value_or(timm->img_size);
    if (size <= 0 || size % c.patch_size)
      throw Error(label + ": input size " + std::to_string(size) + " is not a multiple of the patch size " + std::to_string(c.patch_size));
    grid = size / c.patch_size;
  } else {
    throw Error(label + ": missing tensor 'pos_embed' (and no relative position bias or rotary embedding either: the "
                        "model would not know where its patches are)");
  }
  c.image_size = *grid * c.patch_size;

  // What the tensors cannot say: config.json, the overrides, timm's table, else refuse or say.
  std::map<std::string, std::string>& d = model.defaulted;
  std::optional<int64_t> heads = overrides.heads ? overrides.heads : json.heads;
  if (!heads && timm) heads = timm->heads;
  if (!heads)
    throw Error(label + ": the number of attention heads is not known: " +
                (json.architecture ? "config.json's architecture '" + *json.architecture + "' is not in timm's registry"
                                   : std::string("there is no config.json naming a timm architecture")) +
                "; give it with --heads N (or model_options: {heads: N} in the YAML)");
  c.heads = *heads;
  if (c.heads <= 0 || c.dim % c.heads)
    throw Error(label + ": " + std::to_string(c.heads) + " heads do not divide dim " + std::to_string(c.dim));
  std::optional<double> eps = overrides.layer_norm_eps ? overrides.layer_norm_eps : json.eps;
  const char* eps_source = overrides.layer_norm_eps ? " (model_options)" : json.eps ? " (config.json)" : " (timm's registry)";
  if (!eps && timm && timm->eps > 0) eps = timm->eps;
  if (!eps) d["layer_norm_eps"] = std::string("layer_norm_eps ") + (hf ? "1e-12 (Hugging Face)" : "1e-06 (timm)");
  c.layer_norm_eps = eps.value_or(hf ? 1e-12 : 1e-6);
  if (!(c.layer_norm_eps > 0 && c.layer_norm_eps < 1))
    throw Error(label + ": layer_norm_eps " + std::to_string(c.layer_norm_eps) + eps_source + " must be in (0, 1)");
  if (hf && c.mlp == MlpKind::GluPacked) c.act = Activation::Silu;  // HF DINOv2's SwiGLU ignores hidden_act
  else if (json.act) c.act = parse_activation(*json.act, *where.config);
  else if (timm && !timm->act.empty()) c.act = parse_activation(timm->act, "timm's table for " + timm->name);
  else {
    c.act = c.mlp == MlpKind::Plain ? Activation::Gelu : Activation::Silu;
    d["act"] = std::string("activation ") + activation_name(c.act);
  }
  if (timm) c.gate_last = timm->gate_last;
  if (timm && !timm->rope_class.empty()) {
    c.rope = true;
    c.rope_half = timm->rope_half;
    c.rope_xy = timm->rope_grid_indexing == "xy";
    c.rope_ref_grid = timm->rope_ref_grid;
    c.rope_temperature = timm->rope_temperature;
    c.rope_grid_offset = timm->rope_grid_offset;
    if ((c.dim / c.heads) % 4)
      throw Error(label + ": rotary embedding needs a head width divisible by 4, got " + std::to_string(c.dim / c.heads));
  } else if (!timm && (c.qkv_separate || c.qkv_bias_split) && !c.rel_pos_bias && !hf) {
    // EVA's rotary embedding leaves no tensor behind: only the architecture name tells.
    d["rope"] = "no rotary embedding (EVA-style attention weights, but no timm architecture names one)";
  }
  if (timm) c.pool_include_prefix = timm->pool_include_prefix;

  std::optional<Pooling> pool;
  if (json.global_pool) {
    pool = parse_pooling(*json.global_pool);
    if (!pool) throw Error(label + ": global_pool '" + *json.global_pool + "' (config.json) is not one vitbatch runs (token, avg, avgmax, max, map)");
  } else if (timm) {
    pool = parse_pooling(timm->global_pool);
    if (!pool) throw Error(label + ": timm architecture '" + timm->name + "' pools with '" + timm->global_pool + "', which vitbatch does not run");
  }
  if (!pool && hf && json.model_type) {
    // Hugging Face's classes pool by family: BEiT averages when it has the pooler's norm,
    // DINOv2's classifier reads the class token and the patch mean side by side.
    if (*json.model_type == "beit") pool = c.fc_norm ? Pooling::Avg : Pooling::Token;
    else if (*json.model_type == "dinov2" && c.num_classes && shape_of("head.weight").size() == 2 &&
             shape_of("head.weight")[1] == 2 * c.dim)
      pool = Pooling::TokenAvg;
    else if (*json.model_type == "vit" || *json.model_type == "deit" || *json.model_type == "dinov2") pool = Pooling::Token;
  }
  if (!pool) {
    pool = has("attn_pool.latent") ? Pooling::Map : c.class_token && !c.fc_norm ? Pooling::Token : Pooling::Avg;
    d["pool"] = std::string("pooling ") + pooling_name(*pool);
  }
  c.pool = *pool;
  if ((c.pool == Pooling::Token || c.pool == Pooling::TokenAvg) && !c.class_token)
    throw Error(label + ": pooling 'token' needs a class token, and the checkpoint has no 'cls_token'");
  if (c.pool == Pooling::Map) {
    if (!has("attn_pool.latent")) throw Error(label + ": pooling 'map' needs the attention pool, and the checkpoint has no 'attn_pool.latent'");
    c.map_heads = timm && timm->map_heads ? timm->map_heads : c.heads;
    if (c.map_heads <= 0 || c.dim % c.map_heads) throw Error(label + ": the attention pool's heads do not divide dim");
    c.map_token = !timm || timm->map_pool != "avg";
    c.map_act = timm && !timm->map_act.empty() ? parse_activation(timm->map_act, "timm's table for " + timm->name) : c.act;
  }
  if (c.distilled && (c.pool != Pooling::Token || !c.class_token))
    throw Error(label + ": a distilled (DeiT) checkpoint pools its class and distillation tokens; pooling '" +
                pooling_name(c.pool) + "' is not one it has");
  if (timm && timm->dim && timm->dim != c.dim)
    throw Error(label + ": config.json names '" + timm->name + "' (width " + std::to_string(timm->dim) +
                "), but " + tensor_name("patch_embed.proj.weight") + " is " + std::to_string(c.dim) + " wide");

  // Preprocessing: every setting nothing gave is said once (Runtime drops those the YAML sets).
  const PreprocessConfig& p = model.preprocess;
  if (!found.count("mean")) d["mean"] = "mean " + triple_string(p.mean) + " (ImageNet)";
  if (!found.count("std")) d["std"] = "std " + triple_string(p.std) + " (ImageNet)";
  if (!found.count("crop_pct")) d["crop_pct"] = "crop_pct " + std::to_string(p.crop_pct).substr(0, 5);
  if (!found.count("interpolation")) d["interpolation"] = "interpolation " + p.interpolation;
  // The preprocessing's output size must be the size the model runs at: timm would fail on a
  // mismatch, Hugging Face interpolates its position embedding at run time. Neither is
  // guessed: with --image-size the embedding is resampled (timm's way) and the crop follows.
  if (json.input_size || model.preprocess.hf_processor) {
    const int64_t wanted = model.preprocess.input_size;
    const bool resized = overrides.image_size || overrides.test_input_size;
    if (model.preprocess.hf_processor && overrides.image_size && *overrides.image_size != wanted)
      throw Error(label + ": preprocessor_config.json makes " + std::to_string(wanted) + "x" + std::to_string(wanted) +
                  " images: --image-size must be " + std::to_string(wanted) + " with it");
    if (!resized && wanted != c.image_size)
      throw Error(label + ": the preprocessing (" + (model.preprocess.hf_processor ? "preprocessor_config.json" : "config.json") +
                  ") makes " + std::to_string(wanted) + "x" + std::to_string(wanted) + " images, but the position embedding is for " +
                  std::to_string(c.image_size) + "x" + std::to_string(c.image_size) + ": pass --image-size " +
                  std::to_string(wanted) + " to resample it as timm does" +
                  (model.preprocess.hf_processor ? std::string(" (Hugging Face's own interpolation differs slightly)") : std::string()));
  }
  model.preprocess.input_size = c.image_size;  // the trained size, or below: the size asked for
  model.labels = json.labels;
  if (!model.labels.empty() && static_cast<int64_t>(model.labels.size()) != c.num_classes)
    throw Error(label + ": config.json lists " + std::to_string(model.labels.size()) + " class names, the head has " +
                std::to_string(c.num_classes) + " classes");

  // Another input size: the grid the position embedding is resampled to.
  model.trained_image_size = c.image_size;
  std::optional<int64_t> target = overrides.image_size;
  if (overrides.test_input_size) {
    target = json.test_input_size ? json.test_input_size : timm && timm->test_input_size ? std::optional<int64_t>(timm->test_input_size)
                                                                                          : std::nullopt;
    if (!target)
      throw Error(label + ": --image-size test: neither config.json's pretrained_cfg nor timm's registry" +
                  (timm ? " entry for '" + timm->name + "'" : std::string()) + " names a test_input_size");
  }
  if (target && c.rel_pos_bias && *target != c.image_size)
    throw Error(label + ": --image-size: resizing a relative position bias table (BEiT) is not supported; this model runs at " +
                std::to_string(c.image_size));
  if (target && (*target < c.patch_size || *target > 8192 || *target % c.patch_size))
    throw Error(label + ": image size " + std::to_string(*target) + " must be a multiple of the patch size " +
                std::to_string(c.patch_size) + " between " + std::to_string(c.patch_size) + " and 8192");
  const int64_t trained_grid = c.grid();

  // Every tensor the description needs, with the shape it must have; nothing else.
  std::vector<ExpectedWeight> expected = expected_weights(c);
  std::set<std::string> used;
  for (const auto& [name, shape] : expected) {
    auto it = by_canonical.find(name);
    if (it == by_canonical.end())
      throw Error(label + ": missing tensor " + describe_expected(name, shape));
    if (it->second->shape != shape)
      throw Error(label + ": tensor '" + original_name[name] + "' has shape " +
                  shape_string(it->second->shape) + ", expected " + shape_string(shape));
    used.insert(name);
  }
  for (const auto& [name, tensor] : by_canonical)
    if (!used.count(name))
      throw Error(label + ": unexpected tensor '" + original_name[name] + "' " +
                  shape_string(tensor->shape) + " for a " + std::to_string(c.depth) + "-block ViT");

  // F32 tensors are used in place from the mapping; the rest is converted into the arena,
  // and separate q, k, v (Hugging Face, EVA) become timm's packed qkv there.
  auto is_qkv_part = [](const std::string& name) {
    for (const char* part : {".attn.q.", ".attn.k.", ".attn.v."})
      if (name.find(part) != std::string::npos) return true;
    return false;
  };
  auto in_place = [&](const TensorView& t) {
    return t.dtype == "F32" && reinterpret_cast<uintptr_t>(t.data) % alignof(float) == 0;
  };
  size_t arena_floats = 0;
  for (const auto& [name, shape] : expected)
    if (is_qkv_part(name) || !in_place(*by_canonical[name])) arena_floats += static_cast<size_t>(element_count(shape));
  const int64_t new_grid = target ? *target / c.patch_size : trained_grid;
  if (new_grid != trained_grid) arena_floats += static_cast<size_t>((new_grid * new_grid + c.prefix_tokens()) * c.dim);
  if (c.qkv_bias_split) arena_floats += static_cast<size_t>(c.depth * 3 * c.dim);
  if (c.rel_pos_bias) arena_floats += static_cast<size_t>(c.depth * c.heads * c.tokens() * c.tokens());
  if (c.rope) arena_floats += static_cast<size_t>(2 * new_grid * new_grid * (c.dim / c.heads));
  model.weights.reserve(arena_floats);
  model.weights.keep_mapping(file.owner(), file.mapping_base(), file.mapping_bytes());
  for (const auto& [name, shape] : expected) {
    if (is_qkv_part(name)) continue;
    const TensorView& t = *by_canonical[name];
    if (in_place(t)) model.weights.add_mapped(name, shape, reinterpret_cast<const float*>(t.data));
    else convert_to_f32(t, model.weights.add(name, shape));
  }
  if (c.qkv_separate) {
    const int64_t D = c.dim;
    for (int64_t i = 0; i < c.depth; ++i) {
      std::string b = "blocks." + std::to_string(i) + ".attn.";
      float* w = model.weights.add(b + "qkv.weight", {3 * D, D});
      float* bias = c.qkv_bias && !c.qkv_bias_split ? model.weights.add(b + "qkv.bias", {3 * D}) : nullptr;
      int64_t k = 0;
      for (const char* n : {"q", "k", "v"}) {
        convert_to_f32(*by_canonical[b + n + ".weight"], w + k * D * D);
        if (bias) convert_to_f32(*by_canonical[b + n + ".bias"], bias + k * D);
        ++k;
      }
    }
  }
  for (int64_t i = 0; i < c.depth; ++i) {
    const std::string b = "blocks." + std::to_string(i) + ".attn.";
    if (c.qkv_bias_split) {  // BEiT: q's and v's biases around k's zeros, as one qkv bias
      float* bias = model.weights.add(b + "qkv.bias", {3 * c.dim}, true);
      std::fill(bias, bias + 3 * c.dim, 0.0f);
      std::copy_n(model.weights.get(b + "q_bias"), c.dim, bias);
      std::copy_n(model.weights.get(b + "v_bias"), c.dim, bias + 2 * c.dim);
    }
    if (c.rel_pos_bias) {  // the table gathered once into the [1, heads, T, T] the scores get
      const int64_t T = c.tokens(), H = c.heads;
      const std::vector<int32_t> index = relative_position_index(c.grid());
      const float* table = model.weights.get(b + "relative_position_bias_table");
      float* bias = model.weights.add(b + "rel_pos_bias", {1, H, T, T}, true);
      for (int64_t h = 0; h < H; ++h)
        for (int64_t q = 0; q < T * T; ++q) bias[h * T * T + q] = table[index[static_cast<size_t>(q)] * H + h];
    }
  }
  if (c.rope) {  // the sin and cos tables for the grid the model runs at
    RopeTables t = rope_tables(c, new_grid);
    Shape table{new_grid * new_grid, c.dim / c.heads};
    std::copy(t.sin.begin(), t.sin.end(), model.weights.add("rope.sin", table, true));
    std::copy(t.cos.begin(), t.cos.end(), model.weights.add("rope.cos", table, true));
  }
  if (new_grid != trained_grid) {
    // timm's resample_abs_pos_embed: the grid rows resized, the prefix rows kept.
    const int64_t prefix = c.no_embed_class ? 0 : c.prefix_tokens();
    const float* old = model.weights.get("pos_embed");
    std::vector<float> grid = resample_grid(old + prefix * c.dim, trained_grid, trained_grid, new_grid, new_grid, c.dim);
    std::vector<float> head(old, old + prefix * c.dim);
    c.image_size = new_grid * c.patch_size;
    float* resized = model.weights.replace("pos_embed", {1, c.pos_embed_rows(), c.dim});
    std::copy(head.begin(), head.end(), resized);
    std::copy(grid.begin(), grid.end(), resized + prefix * c.dim);
    model.preprocess.input_size = c.image_size;
  }
  return model;
}

}  // namespace vitbatch
