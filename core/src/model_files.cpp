// The files beside a checkpoint: where config.json is, what it and Hugging Face's
// preprocessor_config.json say, and the checkpoint's tensors under timm's names.
#include "model_sources.hpp"

#include "json_integer.hpp"

#include "vitbatch/error.hpp"
#include "vitbatch/file_io.hpp"
#include "vitbatch/weight_names.hpp"

#include <nlohmann/json.hpp>

#include <filesystem>

namespace fs = std::filesystem;

namespace vitbatch {

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

static nlohmann::json read_json(const std::string& path) {
  std::string text = read_regular_file(path, uint64_t{16} << 20);
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw Error(path + ": not valid JSON: " + e.what());
  }
}

static ModelLabels read_labels(const nlohmann::json& j) {
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

static ConfigJson read_config_json(const std::string& path, PreprocessConfig& pre) {
  nlohmann::json j = read_json(path);
  ConfigJson c;
  auto& found = c.preprocessing;
  try {
    const nlohmann::json& cfg = j.contains("pretrained_cfg") ? j["pretrained_cfg"] : j;
    if (cfg.contains("input_size")) c.input_size = pre.input_size = json_integer(cfg["input_size"].at(2), "input_size[2]");
    if (cfg.contains("crop_pct") && !cfg["crop_pct"].is_null()) {
      pre.crop_pct = cfg["crop_pct"].get<double>();
      found.insert("crop_pct");
    }
    if (cfg.contains("test_input_size") && cfg["test_input_size"].is_array())
      c.test_input_size = json_integer(cfg["test_input_size"].at(2), "test_input_size[2]");
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
    if (j.contains("num_attention_heads")) c.heads = json_integer(j["num_attention_heads"], "num_attention_heads");
    if (j.contains("num_heads")) c.heads = json_integer(j["num_heads"], "num_heads");
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
static void read_preprocessor_config(const std::string& path, PreprocessConfig& pre, std::set<std::string>& found) {
  nlohmann::json j = read_json(path);
  try {
    pre.hf_processor = true;
    pre.hf_do_resize = j.value("do_resize", true);
    if (j.contains("size")) {
      const auto& size = j["size"];
      if (size.is_number_integer()) pre.hf_resize_height = pre.hf_resize_width = json_integer(size, path + ": size");
      else if (size.is_object() && size.contains("shortest_edge")) pre.hf_shortest_edge = json_integer(size["shortest_edge"], path + ": size.shortest_edge");
      else {
        pre.hf_resize_height = json_integer(size.at("height"), path + ": size.height");
        pre.hf_resize_width = json_integer(size.at("width"), path + ": size.width");
      }
    }
    // PIL's resample codes: 0 nearest, 2 bilinear, 3 bicubic (HF's default is bilinear).
    int64_t resample = j.contains("resample") ? json_integer(j["resample"], path + ": resample") : 2;
    if (resample == 2) pre.interpolation = "bilinear";
    else if (resample == 3) pre.interpolation = "bicubic";
    else throw Error(path + ": resample " + std::to_string(resample) + " is not one vitbatch runs (2 bilinear, 3 bicubic)");
    pre.hf_do_center_crop = j.value("do_center_crop", false);
    if (pre.hf_do_center_crop && j.contains("crop_size")) {
      const auto& crop = j["crop_size"];
      pre.input_size = crop.is_number_integer() ? json_integer(crop, path + ": crop_size") : json_integer(crop.at("height"), path + ": crop_size.height");
      if (crop.is_object() && json_integer(crop.at("width"), path + ": crop_size.width") != pre.input_size)
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


ConfigJson read_model_config(const std::optional<std::string>& config_path, PreprocessConfig& pre) {
  ConfigJson json;
  if (!config_path) return json;
  json = read_config_json(*config_path, pre);
  fs::path processor = fs::path(*config_path).parent_path() / "preprocessor_config.json";
  std::error_code ec;
  if (fs::is_regular_file(processor, ec)) read_preprocessor_config(processor.string(), pre, json.preprocessing);
  return json;
}

const Shape& Checkpoint::shape(const std::string& canonical) const {
  auto it = tensors.find(canonical);
  if (it == tensors.end()) throw Error(label + ": missing tensor '" + canonical + "'");
  return it->second->shape;
}

std::string Checkpoint::name(const std::string& canonical) const {
  auto it = original.find(canonical);
  return "tensor '" + (it == original.end() ? canonical : it->second) + "'";
}

Checkpoint map_checkpoint(const SafetensorsFile& file) {
  Checkpoint ck;
  ck.label = file.label();
  std::set<NameStyle> styles;
  for (const auto& [name, tensor] : file.tensors()) {
    if (is_ignored_weight_name(name)) continue;
    auto canonical = canonical_weight_name(name);
    if (!canonical) {
      std::string family = foreign_family(name);
      throw Error(ck.label + ": unexpected tensor '" + name + "' " + shape_string(tensor.shape) +
                  (family.empty() ? " (not a timm or Hugging Face ViT/DeiT weight)"
                                  : " (" + family + " checkpoints are not supported: vitbatch runs timm's VisionTransformer family)"));
    }
    styles.insert(canonical->style);
    ck.tensors[canonical->name] = &tensor;
    ck.original[canonical->name] = name;
  }
  if (styles.size() > 1) throw Error(ck.label + ": mixes timm and Hugging Face tensor names");
  ck.hf = styles.count(NameStyle::HuggingFace) != 0;
  return ck;
}

}  // namespace vitbatch
