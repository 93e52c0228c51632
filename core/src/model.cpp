// The weight store, the description's words for `vitbatch info`, and load_model: its stages
// (model_sources.hpp) in order, then the layout check and the weights.
#include "vitbatch/model.hpp"

#include "model_sources.hpp"

#include "vitbatch/error.hpp"
#include "vitbatch/model_layout.hpp"
#include "vitbatch/pos_embed.hpp"
#include "vitbatch/safetensors.hpp"

#include <algorithm>
#include <cmath>
#include <set>
#include <sstream>
#include <sys/mman.h>

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

float* WeightStore::writable_copy(const std::string& name) {
  auto it = entries_.find(name);
  if (it == entries_.end()) throw Error("weight '" + name + "' is not loaded");
  const size_t n = static_cast<size_t>(element_count(it->second.shape));
  copies_.push_back(std::make_unique<float[]>(n));
  std::copy(it->second.data, it->second.data + n, copies_.back().get());
  it->second.data = copies_.back().get();
  return copies_.back().get();
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

std::string triple_string(const std::array<float, 3>& v) {
  std::ostringstream out;
  out << v[0] << ", " << v[1] << ", " << v[2];
  return out.str();
}

std::string describe_expected(const std::string& name, const Shape& expected) {
  return "'" + name + "' (expected shape " + shape_string(expected) + ")";
}

// Every tensor the description needs, with the shape it must have; nothing else.
void check_layout(const Checkpoint& ck, const std::vector<ExpectedWeight>& expected, const ViTConfig& c) {
  std::set<std::string> used;
  for (const auto& [name, shape] : expected) {
    auto it = ck.tensors.find(name);
    if (it == ck.tensors.end())
      throw Error(ck.label + ": missing tensor " + describe_expected(name, shape));
    if (it->second->shape != shape)
      throw Error(ck.label + ": tensor '" + ck.original.at(name) + "' has shape " +
                  shape_string(it->second->shape) + ", expected " + shape_string(shape));
    used.insert(name);
  }
  for (const auto& [name, tensor] : ck.tensors)
    if (!used.count(name))
      throw Error(ck.label + ": unexpected tensor '" + ck.original.at(name) + "' " +
                  shape_string(tensor->shape) + " for a " + std::to_string(c.depth) + "-block ViT");
}

// The preprocessing defaults said once, its size checked against the model's, the labels.
void settle_preprocessing(const Checkpoint& ck, const ConfigJson& json, const ModelOverrides& overrides, Model& model) {
  const ViTConfig& c = model.config;
  const std::set<std::string>& found = json.preprocessing;
  std::map<std::string, std::string>& d = model.defaulted;
  const std::string& label = ck.label;
  // Every setting nothing gave is said once (Runtime drops those the YAML sets).
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
}

// The weights into the store: F32 in place, the rest converted; then what is derived from
// them (packed qkv, BEiT's biases, rope tables, a resampled position embedding).
void load_weights(const SafetensorsFile& file, const Checkpoint& ck, const std::vector<ExpectedWeight>& expected,
                  int64_t new_grid, Model& model) {
  ViTConfig& c = model.config;
  const auto& by_canonical = ck.tensors;
  const int64_t trained_grid = c.grid();
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
    if (is_qkv_part(name) || !in_place(*by_canonical.at(name))) arena_floats += static_cast<size_t>(element_count(shape));
  if (new_grid != trained_grid) arena_floats += static_cast<size_t>((new_grid * new_grid + c.prefix_tokens()) * c.dim);
  if (c.qkv_bias_split) arena_floats += static_cast<size_t>(c.depth * 3 * c.dim);
  if (c.rel_pos_bias) arena_floats += static_cast<size_t>(c.depth * c.heads * c.tokens() * c.tokens());
  if (c.rope) arena_floats += static_cast<size_t>(2 * new_grid * new_grid * (c.dim / c.heads));
  model.weights.reserve(arena_floats);
  model.weights.keep_mapping(file.owner(), file.mapping_base(), file.mapping_bytes());
  for (const auto& [name, shape] : expected) {
    if (is_qkv_part(name)) continue;
    const TensorView& t = *by_canonical.at(name);
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
        convert_to_f32(*by_canonical.at(b + n + ".weight"), w + k * D * D);
        if (bias) convert_to_f32(*by_canonical.at(b + n + ".bias"), bias + k * D);
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
}

}  // namespace

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
  Model model;
  model.path = where.weights;
  model.has_config_json = where.config.has_value();
  ConfigJson json = read_model_config(where.config, model.preprocess);
  std::optional<TimmArchitecture> timm = runnable_timm_architecture(json, file.label());
  Checkpoint ck = map_checkpoint(file);
  ViTConfig& c = model.config;
  describe_from_tensors(ck, json, timm ? &*timm : nullptr, c);
  settle_from_config(ck, json, timm ? &*timm : nullptr, overrides, c, model.defaulted);
  settle_preprocessing(ck, json, overrides, model);
  model.trained_image_size = c.image_size;
  std::optional<int64_t> target = target_image_size(ck, json, timm ? &*timm : nullptr, overrides, c);
  std::vector<ExpectedWeight> expected = expected_weights(c);
  check_layout(ck, expected, c);
  load_weights(file, ck, expected, target ? *target / c.patch_size : c.grid(), model);
  return model;
}

}  // namespace vitbatch
