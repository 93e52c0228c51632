// model.hpp: a loaded ViT: its architecture (inferred from tensor shapes), its preprocessing
// (from the model's config.json) and its weights, converted once into one contiguous float32
// arena so that backends can pre-pack from a single place.
#pragma once

#include "vitbatch/ops.hpp"

#include <array>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace vitbatch {

struct ViTConfig {
  int64_t image_size = 224;
  int64_t patch_size = 16;
  int64_t in_chans = 3;
  int64_t dim = 0;
  int64_t depth = 0;
  int64_t heads = 0;
  int64_t mlp_dim = 0;
  int64_t num_classes = 0;
  bool distilled = false;  // DeiT: a distillation token and a second head
  double layer_norm_eps = 1e-6;
  std::string naming;      // "timm" or "huggingface"
  int64_t tokens() const {
    return (image_size / patch_size) * (image_size / patch_size) + 1 + (distilled ? 1 : 0);
  }
};

// timm's eval transform: resize shortest side to floor(input_size / crop_pct), centre crop
// input_size, then (x/255 - mean) / std.
struct PreprocessConfig {
  int64_t input_size = 224;
  double crop_pct = 0.875;
  std::string interpolation = "bicubic";
  std::array<float, 3> mean{0.485f, 0.456f, 0.406f};
  std::array<float, 3> std{0.229f, 0.224f, 0.225f};
};

// The weights, all float32. A tensor stored as F32 in the checkpoint is read in place from
// the file's read-only mapping (no copy); converted (F16/BF16) or rearranged (Hugging Face
// q/k/v packed into qkv) tensors live in one arena, reserved once so pointers stay valid.
class WeightStore {
 public:
  // Reserves space for a tensor in the arena and returns where to write it.
  float* add(const std::string& name, const Shape& shape);
  // Records a tensor that lives in the mapping given to keep_mapping().
  void add_mapped(const std::string& name, const Shape& shape, const float* data);
  const float* get(const std::string& name) const;  // throws Error if absent
  const Shape& shape(const std::string& name) const;
  bool contains(const std::string& name) const { return entries_.count(name) != 0; }
  size_t parameter_count() const { return parameters_; }
  void reserve(size_t floats) { arena_.reserve(floats); }
  void keep_mapping(std::shared_ptr<const void> owner, const void* base, size_t bytes);
  // Lets the kernel drop the mapping's resident pages (they are read back from the file if
  // touched again). Called once backends have packed their own copies, so a model is not
  // resident twice. Values never change: hence const.
  void drop_resident_pages() const;

 private:
  struct Entry {
    const float* data;
    Shape shape;
  };
  std::vector<float> arena_;
  std::map<std::string, Entry> entries_;
  size_t parameters_ = 0;
  std::shared_ptr<const void> mapping_owner_;
  const void* mapping_ = nullptr;
  size_t mapping_bytes_ = 0;
};

// Things a user may set instead of what the checkpoint / config.json says.
struct ModelOverrides {
  std::optional<int64_t> heads;
  std::optional<double> layer_norm_eps;
};

struct Model {
  std::string path;  // the safetensors file
  ViTConfig config;
  PreprocessConfig preprocess;
  WeightStore weights;
  // Settings that neither config.json nor the overrides gave, so a default was used:
  // key ("mean", "crop_pct", "heads", ...) -> "mean 0.485, 0.456, 0.406 (ImageNet)".
  std::map<std::string, std::string> defaulted;
  bool has_config_json = false;
};

// Loads a safetensors file, or a directory holding model.safetensors (+ config.json).
// Throws Error naming the file / tensor and the reason (missing, extra, mis-shaped, bad dtype).
Model load_model(const std::string& path, const ModelOverrides& overrides = {});

}  // namespace vitbatch
