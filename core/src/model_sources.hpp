// model_sources.hpp (core's own, not installed): load_model's stages. The files beside the
// weights (model_files.cpp), the checkpoint's tensors under timm's names, and the description
// drawn from both (model_describe.cpp); model.cpp checks the layout and loads the weights.
#pragma once

#include "vitbatch/model.hpp"
#include "vitbatch/safetensors.hpp"
#include "vitbatch/timm_table.hpp"

#include <map>
#include <optional>
#include <set>
#include <string>

namespace vitbatch {

struct Located {
  std::string weights;
  std::optional<std::string> config;
};

// The weights file and its config.json for a file or directory given as --model.
Located locate(const std::string& path);

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

// config.json, and preprocessor_config.json beside it (Hugging Face's processor), into `pre`.
ConfigJson read_model_config(const std::optional<std::string>& config_path, PreprocessConfig& pre);

// The checkpoint's tensors under timm's (canonical) names, with their own names for messages.
struct Checkpoint {
  std::string label;
  std::map<std::string, const TensorView*> tensors;
  std::map<std::string, std::string> original;
  bool hf = false;
  bool has(const std::string& canonical) const { return tensors.count(canonical) != 0; }
  const Shape& shape(const std::string& canonical) const;  // throws "missing tensor"
  std::string name(const std::string& canonical) const;    // "tensor 'vit.embeddings...'"
};
Checkpoint map_checkpoint(const SafetensorsFile& file);

// config.json's timm architecture in timm's registry; refused by name when vitbatch does not run it.
std::optional<TimmArchitecture> runnable_timm_architecture(const ConfigJson& json, const std::string& label);

// What the tensors say: prefix tokens, blocks, MLP kind, norms, head, pooling head, and the grid.
void describe_from_tensors(const Checkpoint& ck, const ConfigJson& json, const TimmArchitecture* timm, ViTConfig& c);

// What they cannot say: heads, eps, activation, rope, pooling, from the overrides, config.json
// or timm's registry; refused where nothing gives what must not be guessed, else said in
// `defaulted`.
void settle_from_config(const Checkpoint& ck, const ConfigJson& json, const TimmArchitecture* timm,
                        const ModelOverrides& overrides, ViTConfig& c, std::map<std::string, std::string>& defaulted);

// The input size asked for (--image-size N or test), checked; nothing when none is.
std::optional<int64_t> target_image_size(const Checkpoint& ck, const ConfigJson& json, const TimmArchitecture* timm,
                                         const ModelOverrides& overrides, const ViTConfig& c);

}  // namespace vitbatch
