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

// How the model pools its tokens into the one vector the head reads (timm's global_pool).
// TokenAvg: the class token and the patch tokens' mean side by side (Hugging Face's
// Dinov2ForImageClassification), so the head reads twice the width.
enum class Pooling { Token, Avg, AvgMax, Max, Map, TokenAvg };
// The MLP's activation.
enum class Activation { Gelu, GeluTanh, QuickGelu, Silu };
// Plain: fc1 -> act -> fc2. GluPacked: fc1 gives [a | b], then act(a) * b (or a * act(b) with
// gate_last) -> fc2 (timm's GluMlp / SwiGLUPacked). SwiGlu: act(fc1_g) * fc1_x -> fc2.
enum class MlpKind { Plain, GluPacked, SwiGlu };

const char* pooling_name(Pooling p);
const char* activation_name(Activation a);
const char* mlp_kind_name(MlpKind m);

// The model description: what the checkpoint's tensors and config.json say the network is.
// The table of expected weights (model_layout.hpp), the graph builder and `vitbatch info` all
// read this one struct, so a new variant is a new field here, not a new special case there.
struct ViTConfig {
  int64_t image_size = 224;
  int64_t patch_size = 16;
  int64_t in_chans = 3;
  int64_t dim = 0;
  int64_t depth = 0;
  int64_t heads = 0;
  int64_t mlp_dim = 0;      // the hidden width (of each half, for gated MLPs)
  int64_t num_classes = 0;  // 0: no classifier head (a backbone / embedder)

  // Prefix tokens, in timm's order: class token, register tokens, distillation token (DeiT).
  bool class_token = true;
  int64_t reg_tokens = 0;
  bool distilled = false;   // DeiT: a distillation token and a second head, averaged
  bool abs_pos_embed = true;    // an absolute position embedding (BEiT has none)
  bool no_embed_class = false;  // the position embedding covers the patch tokens only
  bool patch_bias = true;
  bool norm_pre = false;    // a LayerNorm before the blocks (CLIP)

  // Each block.
  bool qkv_bias = true;
  bool qkv_bias_split = false;  // BEiT: q_bias and v_bias, k's bias fixed at 0
  bool rel_pos_bias = false;    // BEiT: a relative position bias table per block
  bool qkv_separate = false;    // q, k, v weights apart (Hugging Face, EVA's q_proj/k_proj/v_proj)
  // EVA's rotary embedding on q and k of the patch tokens (timm's RotaryEmbeddingCat, 'index'
  // grid): frequencies temperature^(-k / (head_dim / 4)), positions (i + offset) scaled to
  // the reference grid it was trained at.
  bool rope = false;
  bool rope_half = false;         // rotate halves instead of interleaved pairs
  bool rope_xy = false;           // grid_indexing 'xy' (x first) instead of 'ij'
  int64_t rope_ref_grid = 0;      // 0: positions unscaled
  double rope_temperature = 10000.0;
  double rope_grid_offset = 0.0;
  bool qk_norm = false;     // LayerNorm over each head's q and k
  bool attn_norm = false;   // LayerNorm over the heads' output before the projection
  bool proj_bias = true;
  bool layer_scale = false; // ls1.gamma / ls2.gamma multiply each branch
  MlpKind mlp = MlpKind::Plain;
  Activation act = Activation::Gelu;
  bool gate_last = false;   // GluPacked: a * act(b) instead of act(a) * b
  bool mlp_bias = true;
  bool mlp_norm = false;    // LayerNorm on the hidden layer (timm's scale_mlp_norm, EVA's SwiGLU)

  // The head.
  bool final_norm = true;   // `norm` over every token after the blocks
  bool fc_norm = false;     // a LayerNorm after pooling instead
  Pooling pool = Pooling::Token;
  bool pool_include_prefix = false;
  // Attention pooling (pool == Map): heads, learned queries, its MLP's width and activation.
  int64_t map_heads = 0;
  int64_t map_latent_len = 1;
  int64_t map_mlp_dim = 0;
  bool map_token = true;    // take latent 0 (timm's pool 'token'), else average the latents
  Activation map_act = Activation::Gelu;

  double layer_norm_eps = 1e-6;
  std::string naming;       // "timm" or "huggingface"
  std::string architecture; // timm's name from config.json, when given
  // A run's choice, not the architecture's (embed --tokens, on a model without head): the
  // output also carries every patch token after the final norm (timm's
  // forward_features(x)[:, prefix:]), flattened after the pooled feature.
  bool output_patch_tokens = false;

  int64_t grid() const { return image_size / patch_size; }
  int64_t prefix_tokens() const { return (class_token ? 1 : 0) + reg_tokens + (distilled ? 1 : 0); }
  int64_t tokens() const { return grid() * grid() + prefix_tokens(); }
  int64_t pos_embed_rows() const { return no_embed_class ? grid() * grid() : tokens(); }
  bool has_head() const { return num_classes > 0; }
  int64_t feature_width() const { return pool == Pooling::TokenAvg ? 2 * dim : dim; }
  int64_t patch_token_floats() const { return grid() * grid() * dim; }
  // What the graph outputs per image: the logits, or without a head the pooled feature (and
  // with output_patch_tokens the patch tokens after it).
  int64_t output_width() const {
    return has_head() ? num_classes : feature_width() + (output_patch_tokens ? patch_token_floats() : 0);
  }
};

// timm's eval transform: resize shortest side to floor(input_size / crop_pct), centre crop
// input_size, then (x/255 - mean) / std.
struct PreprocessConfig {
  int64_t input_size = 224;
  double crop_pct = 0.875;
  // center: resize the short side to input_size / crop_pct, centre crop; squash: resize
  // both sides to input_size / crop_pct (aspect not kept), centre crop; border: resize the
  // long side to input_size / crop_pct, pad with the fill (mean) to input_size.
  std::string crop_mode = "center";
  // Hugging Face's image processor (preprocessor_config.json) instead of timm's transform:
  // resize to height x width (or the short side to shortest_edge), optional centre crop to
  // input_size with floor offsets, x * rescale_factor in float64 cast to float32, normalise.
  bool hf_processor = false;
  bool hf_do_resize = true;
  int64_t hf_resize_height = 0, hf_resize_width = 0, hf_shortest_edge = 0;
  bool hf_do_center_crop = false;
  bool hf_do_rescale = true;
  double hf_rescale_factor = 1.0 / 255.0;
  bool hf_do_normalize = true;
  std::string interpolation = "bicubic";
  std::array<float, 3> mean{0.485f, 0.456f, 0.406f};
  std::array<float, 3> std{0.229f, 0.224f, 0.225f};
};

// The weights, all float32. A tensor stored as F32 in the checkpoint is read in place from
// the file's read-only mapping (no copy); converted (F16/BF16) or rearranged (Hugging Face
// q/k/v packed into qkv) tensors live in one arena, reserved once so pointers stay valid.
class WeightStore {
 public:
  // Reserves space for a tensor in the arena and returns where to write it. derived: made
  // from other weights at load (BEiT's gathered position bias): not counted as parameters.
  float* add(const std::string& name, const Shape& shape, bool derived = false);
  // Replaces a tensor by a new one in the arena (the position embedding at another size).
  float* replace(const std::string& name, const Shape& shape);
  // Records a tensor that lives in the mapping given to keep_mapping().
  void add_mapped(const std::string& name, const Shape& shape, const float* data);
  // Copies a tensor into a buffer of its own and returns it to be rewritten (SmoothQuant's
  // fold, after loading): the mapping stays read-only, the arena's size fixed.
  float* writable_copy(const std::string& name);
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
  std::vector<std::unique_ptr<float[]>> copies_;  // writable_copy's buffers
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
  // Run at this input size: the position embedding is resampled as timm does, and the
  // preprocessing follows. test_input_size: the size timm's pretrained_cfg names for testing.
  std::optional<int64_t> image_size;
  bool test_input_size = false;
};

// Labels the model's own files carry (timm's label_names, Hugging Face's id2label), in
// class-index order; empty when they carry none.
using ModelLabels = std::vector<std::string>;

struct Model {
  std::string path;  // the safetensors file
  ViTConfig config;
  PreprocessConfig preprocess;
  WeightStore weights;
  // Settings that neither config.json nor the overrides gave, so a default was used:
  // key ("mean", "crop_pct", "heads", ...) -> "mean 0.485, 0.456, 0.406 (ImageNet)".
  std::map<std::string, std::string> defaulted;
  bool has_config_json = false;
  ModelLabels labels;
  int64_t trained_image_size = 0;  // the size the position embedding was trained at
  // int8: the calibrated input range of each linear, by its node name ("blocks.0.attn.qkv",
  // "blocks.0.mlp.fc1", ...), from `vitbatch calibrate`; empty: none given.
  std::map<std::string, params::Range> int8_ranges;
};

// One line each for `vitbatch info`: "class token + 4 registers, ...", "resize ... crop ...".
std::string describe_variant(const ViTConfig& c);
std::string describe_preprocess(const PreprocessConfig& p);

// Loads a safetensors file, or a directory holding model.safetensors (+ config.json).
// Throws Error naming the file / tensor and the reason (missing, extra, mis-shaped, bad dtype).
Model load_model(const std::string& path, const ModelOverrides& overrides = {});

}  // namespace vitbatch
