// model.hpp: a loaded ViT: its architecture (inferred from tensor shapes), its preprocessing
// (from the model's config.json) and its weights, converted once into one contiguous float32
// arena so that backends can pre-pack from a single place.
#pragma once

#include "vitbatch/ops.hpp"

#include <array>
#include <map>
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

class WeightStore {
 public:
  struct Entry {
    size_t offset;
    Shape shape;
  };
  // Reserves space for a tensor and returns where to write it.
  float* add(const std::string& name, const Shape& shape);
  const float* get(const std::string& name) const;  // throws Error if absent
  const Shape& shape(const std::string& name) const;
  bool contains(const std::string& name) const { return entries_.count(name) != 0; }
  size_t parameter_count() const { return arena_.size(); }
  void reserve(size_t floats) { arena_.reserve(floats); }

 private:
  std::vector<float> arena_;  // one allocation, reserved up front: pointers stay valid
  std::map<std::string, Entry> entries_;
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
};

// Loads a safetensors file, or a directory holding model.safetensors (+ config.json).
// Throws Error naming the file / tensor and the reason (missing, extra, mis-shaped, bad dtype).
Model load_model(const std::string& path, const ModelOverrides& overrides = {});

}  // namespace vitbatch
