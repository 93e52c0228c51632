#include "vitbatch/model.hpp"

#include "vitbatch/error.hpp"
#include "vitbatch/file_io.hpp"
#include "vitbatch/safetensors.hpp"
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

float* WeightStore::add(const std::string& name, const Shape& shape) {
  size_t n = static_cast<size_t>(element_count(shape));
  if (arena_.size() + n > arena_.capacity())
    throw Error("internal: weight arena reserved too small for '" + name + "'");
  arena_.resize(arena_.size() + n);
  float* data = arena_.data() + arena_.size() - n;
  entries_[name] = Entry{data, shape};
  parameters_ += n;
  return data;
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

// Reads what config.json says: timm's pretrained_cfg (preprocessing) or a Hugging Face
// config (heads, eps, image size).
// Returns the names of the settings it found (for the note on defaults).
std::set<std::string> apply_config_json(const std::string& path, PreprocessConfig& pre,
                                        std::optional<int64_t>& heads, std::optional<double>& eps) {
  nlohmann::json j = read_json(path);
  std::set<std::string> found;
  try {
    const nlohmann::json& cfg = j.contains("pretrained_cfg") ? j["pretrained_cfg"] : j;
    if (cfg.contains("input_size")) pre.input_size = cfg["input_size"].at(2).get<int64_t>();
    if (cfg.contains("crop_pct") && !cfg["crop_pct"].is_null()) {
      pre.crop_pct = cfg["crop_pct"].get<double>();
      found.insert("crop_pct");
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
    // timm's ViT/DeiT of these sizes have 64-wide heads and LayerNorm eps 1e-6 by
    // construction: naming the architecture settles both (other sizes do not: vit_huge).
    if (j.contains("architecture") && j["architecture"].is_string()) {
      std::string arch = j["architecture"].get<std::string>();
      for (const char* family : {"vit_tiny_", "vit_small_", "vit_base_", "vit_large_", "deit_tiny_", "deit_small_",
                                 "deit_base_"})
        if (arch.rfind(family, 0) == 0) found.insert({"heads64", "eps"});
    }
    if (j.contains("num_attention_heads")) heads = j["num_attention_heads"].get<int64_t>();
    if (j.contains("num_heads")) heads = j["num_heads"].get<int64_t>();
    if (j.contains("layer_norm_eps")) eps = j["layer_norm_eps"].get<double>();
    if (j.contains("image_size") && j["image_size"].is_number_integer())
      pre.input_size = j["image_size"].get<int64_t>();
  } catch (const nlohmann::json::exception& e) {
    throw Error(path + ": unexpected value: " + e.what());
  }
  return found;
}

std::string triple_string(const std::array<float, 3>& v) {
  std::ostringstream out;
  out << v[0] << ", " << v[1] << ", " << v[2];
  return out.str();
}

std::string describe_expected(const std::string& name, const Shape& expected) {
  return "'" + name + "' (expected shape " + shape_string(expected) + ")";
}

}  // namespace

Model load_model(const std::string& path, const ModelOverrides& overrides) {
  Located where = locate(path);
  SafetensorsFile file = SafetensorsFile::open(where.weights);
  const std::string& label = file.label();

  // Map names; keep the checkpoint's own name for messages.
  std::map<std::string, const TensorView*> by_canonical;
  std::map<std::string, std::string> original_name;
  std::set<NameStyle> styles;
  for (const auto& [name, tensor] : file.tensors()) {
    if (is_ignored_weight_name(name)) continue;
    auto canonical = canonical_weight_name(name);
    if (!canonical)
      throw Error(label + ": unexpected tensor '" + name + "' " + shape_string(tensor.shape) +
                  " (not a timm or Hugging Face ViT/DeiT weight)");
    styles.insert(canonical->style);
    by_canonical[canonical->name] = &tensor;
    original_name[canonical->name] = name;
  }
  if (styles.size() > 1) throw Error(label + ": mixes timm and Hugging Face tensor names");
  bool hf = styles.count(NameStyle::HuggingFace) != 0;
  auto shape_of = [&](const std::string& canonical) -> const Shape& {
    auto it = by_canonical.find(canonical);
    if (it == by_canonical.end()) throw Error(label + ": missing tensor '" + canonical + "'");
    return it->second->shape;
  };

  Model model;
  model.path = where.weights;
  ViTConfig& c = model.config;
  c.naming = hf ? "huggingface" : "timm";
  c.layer_norm_eps = hf ? 1e-12 : 1e-6;

  // Architecture from shapes.
  const Shape& patch = shape_of("patch_embed.proj.weight");
  if (patch.size() != 4 || patch[2] != patch[3])
    throw Error(label + ": tensor '" + original_name["patch_embed.proj.weight"] + "' has shape " +
                shape_string(patch) + ", expected [dim, channels, patch, patch]");
  c.dim = patch[0];
  c.in_chans = patch[1];
  c.patch_size = patch[2];
  auto tensor_name = [&](const char* canonical) { return "tensor '" + original_name[canonical] + "'"; };
  // Preprocessing makes RGB: a patch embedding for another channel count would read past
  // each image (4 channels) or mix images of a batch (1 channel).
  if (c.in_chans != 3)
    throw Error(label + ": " + tensor_name("patch_embed.proj.weight") + " takes " + std::to_string(c.in_chans) +
                " input channels; vitbatch feeds RGB images (3 channels)");
  if (c.dim <= 0 || c.patch_size <= 0)
    throw Error(label + ": " + tensor_name("patch_embed.proj.weight") + " has shape " + shape_string(patch) +
                ": width and patch size must be positive");
  c.distilled = by_canonical.count("dist_token") != 0;
  while (by_canonical.count("blocks." + std::to_string(c.depth) + ".norm1.weight")) ++c.depth;
  if (c.depth == 0) throw Error(label + ": missing tensor 'blocks.0.norm1.weight' (no transformer blocks)");
  const Shape& fc1 = shape_of("blocks.0.mlp.fc1.weight");
  c.mlp_dim = fc1.empty() ? 0 : fc1[0];
  if (c.mlp_dim <= 0)
    throw Error(label + ": " + tensor_name("blocks.0.mlp.fc1.weight") + " has shape " + shape_string(fc1) +
                ": the MLP width must be positive");
  const Shape& head = shape_of("head.weight");
  c.num_classes = head.empty() ? 0 : head[0];
  if (c.num_classes <= 0)
    throw Error(label + ": " + tensor_name("head.weight") + " has shape " + shape_string(head) +
                ": a classifier needs at least one class");
  const Shape& pos = shape_of("pos_embed");
  int64_t prefix = c.distilled ? 2 : 1;
  int64_t grid = pos.size() == 3 && pos[1] > prefix ? static_cast<int64_t>(std::lround(std::sqrt(double(pos[1] - prefix)))) : 0;
  if (pos.size() != 3 || grid <= 0 || grid * grid != pos[1] - prefix)
    throw Error(label + ": tensor '" + original_name["pos_embed"] + "' has shape " + shape_string(pos) +
                ", expected [1, " + std::to_string(prefix) + " + grid*grid, dim]");
  c.image_size = grid * c.patch_size;

  std::optional<int64_t> heads;
  std::optional<double> eps;
  std::set<std::string> found;
  if (where.config) found = apply_config_json(*where.config, model.preprocess, heads, eps);
  model.has_config_json = where.config.has_value();
  if (overrides.heads) heads = overrides.heads;
  if (overrides.layer_norm_eps) eps = overrides.layer_norm_eps;
  // Every setting that nothing gave is said once (Runtime drops those the YAML sets).
  const PreprocessConfig& p = model.preprocess;
  std::map<std::string, std::string>& d = model.defaulted;
  if (!found.count("mean")) d["mean"] = "mean " + triple_string(p.mean) + " (ImageNet)";
  if (!found.count("std")) d["std"] = "std " + triple_string(p.std) + " (ImageNet)";
  if (!found.count("crop_pct")) d["crop_pct"] = "crop_pct " + std::to_string(p.crop_pct).substr(0, 5);
  if (!found.count("interpolation")) d["interpolation"] = "interpolation " + p.interpolation;
  if (!heads && !found.count("heads64")) d["heads"] = "heads " + std::to_string(std::max<int64_t>(1, c.dim / 64)) + " (width/64)";
  if (!eps && !found.count("eps")) d["layer_norm_eps"] = std::string("layer_norm_eps ") + (hf ? "1e-12 (Hugging Face)" : "1e-06 (timm)");
  c.heads = heads.value_or(std::max<int64_t>(1, c.dim / 64));
  if (eps) c.layer_norm_eps = *eps;
  if (!(c.layer_norm_eps > 0 && c.layer_norm_eps < 1))
    throw Error(label + ": layer_norm_eps " + std::to_string(c.layer_norm_eps) + " (config.json) must be in (0, 1)");
  if (c.heads <= 0 || c.dim % c.heads)
    throw Error(label + ": " + std::to_string(c.heads) + " heads do not divide dim " + std::to_string(c.dim));
  if (model.preprocess.input_size != c.image_size) model.preprocess.input_size = c.image_size;

  // Every tensor the graph needs, with the shape it must have (canonical timm layout).
  int64_t D = c.dim, H = c.mlp_dim;
  std::vector<std::pair<std::string, Shape>> expected = {
      {"patch_embed.proj.weight", {D, c.in_chans, c.patch_size, c.patch_size}},
      {"patch_embed.proj.bias", {D}},
      {"cls_token", {1, 1, D}},
      {"pos_embed", {1, c.tokens(), D}},
      {"norm.weight", {D}},
      {"norm.bias", {D}},
      {"head.weight", {c.num_classes, D}},
      {"head.bias", {c.num_classes}}};
  if (c.distilled) {
    expected.push_back({"dist_token", {1, 1, D}});
    expected.push_back({"head_dist.weight", {c.num_classes, D}});
    expected.push_back({"head_dist.bias", {c.num_classes}});
  }
  for (int64_t i = 0; i < c.depth; ++i) {
    std::string b = "blocks." + std::to_string(i) + ".";
    for (const char* n : {"norm1", "norm2"}) {
      expected.push_back({b + n + ".weight", {D}});
      expected.push_back({b + n + ".bias", {D}});
    }
    if (hf) {
      for (const char* n : {"q", "k", "v"}) {
        expected.push_back({b + "attn." + n + ".weight", {D, D}});
        expected.push_back({b + "attn." + n + ".bias", {D}});
      }
    } else {
      expected.push_back({b + "attn.qkv.weight", {3 * D, D}});
      expected.push_back({b + "attn.qkv.bias", {3 * D}});
    }
    expected.push_back({b + "attn.proj.weight", {D, D}});
    expected.push_back({b + "attn.proj.bias", {D}});
    expected.push_back({b + "mlp.fc1.weight", {H, D}});
    expected.push_back({b + "mlp.fc1.bias", {H}});
    expected.push_back({b + "mlp.fc2.weight", {D, H}});
    expected.push_back({b + "mlp.fc2.bias", {D}});
  }

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
  // and HF's separate q, k, v become timm's packed qkv there.
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
  model.weights.reserve(arena_floats);
  model.weights.keep_mapping(file.owner(), file.mapping_base(), file.mapping_bytes());
  for (const auto& [name, shape] : expected) {
    if (is_qkv_part(name)) continue;
    const TensorView& t = *by_canonical[name];
    if (in_place(t)) model.weights.add_mapped(name, shape, reinterpret_cast<const float*>(t.data));
    else convert_to_f32(t, model.weights.add(name, shape));
  }
  if (hf) {
    for (int64_t i = 0; i < c.depth; ++i) {
      std::string b = "blocks." + std::to_string(i) + ".attn.";
      float* w = model.weights.add(b + "qkv.weight", {3 * D, D});
      float* bias = model.weights.add(b + "qkv.bias", {3 * D});
      int64_t k = 0;
      for (const char* n : {"q", "k", "v"}) {
        convert_to_f32(*by_canonical[b + n + ".weight"], w + k * D * D);
        convert_to_f32(*by_canonical[b + n + ".bias"], bias + k * D);
        ++k;
      }
    }
  }
  return model;
}

}  // namespace vitbatch
