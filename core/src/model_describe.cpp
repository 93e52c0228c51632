// The model description from the checkpoint's tensors, config.json and timm's registry: what
// each says, and where nothing says it, a refusal or a default that is said.
#include "model_sources.hpp"

#include "vitbatch/error.hpp"

#include <cmath>

namespace vitbatch {
namespace {

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

}  // namespace

std::optional<TimmArchitecture> runnable_timm_architecture(const ConfigJson& json, const std::string& label) {
  if (!json.architecture) return std::nullopt;
  std::optional<TimmArchitecture> timm = find_timm_architecture(*json.architecture);
  if (timm) {
    std::string why = unsupported_reason(*timm);
    if (!why.empty())
      throw Error(label + ": timm architecture '" + *json.architecture + "' (config.json) is not one vitbatch runs: " + why);
  }
  return timm;
}

void describe_from_tensors(const Checkpoint& ck, const ConfigJson& json, const TimmArchitecture* timm, ViTConfig& c) {
  c.naming = ck.hf ? "huggingface" : "timm";
  c.architecture = json.architecture.value_or("");
  const Shape& patch = ck.shape("patch_embed.proj.weight");
  if (patch.size() != 4 || patch[2] != patch[3])
    throw Error(ck.label + ": " + ck.name("patch_embed.proj.weight") + " has shape " + shape_string(patch) +
                ", expected [dim, channels, patch, patch]");
  c.dim = patch[0];
  c.in_chans = patch[1];
  c.patch_size = patch[2];
  // Preprocessing makes RGB: a patch embedding for another channel count would read past
  // each image (4 channels) or mix images of a batch (1 channel).
  if (c.in_chans != 3)
    throw Error(ck.label + ": " + ck.name("patch_embed.proj.weight") + " takes " + std::to_string(c.in_chans) +
                " input channels; vitbatch feeds RGB images (3 channels)");
  if (c.dim <= 0 || c.patch_size <= 0)
    throw Error(ck.label + ": " + ck.name("patch_embed.proj.weight") + " has shape " + shape_string(patch) +
                ": width and patch size must be positive");
  c.patch_bias = ck.has("patch_embed.proj.bias");
  c.class_token = ck.has("cls_token");
  c.distilled = ck.has("dist_token");
  if (ck.has("reg_token")) {
    const Shape& reg = ck.shape("reg_token");
    if (reg.size() != 3 || reg[1] <= 0)
      throw Error(ck.label + ": " + ck.name("reg_token") + " has shape " + shape_string(reg) + ", expected [1, registers, dim]");
    c.reg_tokens = reg[1];
  }
  c.norm_pre = ck.has("norm_pre.weight");
  while (ck.has("blocks." + std::to_string(c.depth) + ".norm1.weight")) ++c.depth;
  if (c.depth == 0) throw Error(ck.label + ": missing tensor 'blocks.0.norm1.weight' (no transformer blocks)");
  c.qkv_bias_split = ck.has("blocks.0.attn.q_bias");
  c.qkv_separate = ck.has("blocks.0.attn.q.weight");
  c.qkv_bias = ck.has("blocks.0.attn.qkv.bias") || ck.has("blocks.0.attn.q.bias") || c.qkv_bias_split;
  c.rel_pos_bias = ck.has("blocks.0.attn.relative_position_bias_table");
  c.qk_norm = ck.has("blocks.0.attn.q_norm.weight");
  c.attn_norm = ck.has("blocks.0.attn.norm.weight");
  c.proj_bias = ck.has("blocks.0.attn.proj.bias");
  c.layer_scale = ck.has("blocks.0.ls1.gamma");
  c.mlp_norm = ck.has("blocks.0.mlp.norm.weight");
  c.mlp_bias = ck.has("blocks.0.mlp.fc2.bias");
  const Shape& fc2 = ck.shape("blocks.0.mlp.fc2.weight");
  if (fc2.size() != 2 || fc2[1] <= 0)
    throw Error(ck.label + ": " + ck.name("blocks.0.mlp.fc2.weight") + " has shape " + shape_string(fc2) + ", expected [dim, hidden]");
  c.mlp_dim = fc2[1];
  if (ck.has("blocks.0.mlp.fc1_g.weight")) {
    c.mlp = MlpKind::SwiGlu;
  } else {
    const Shape& fc1 = ck.shape("blocks.0.mlp.fc1.weight");
    // A packed gated MLP's fc1 is twice as wide as fc2 reads.
    c.mlp = fc1.size() == 2 && fc1[0] == 2 * c.mlp_dim ? MlpKind::GluPacked : MlpKind::Plain;
  }
  c.final_norm = ck.has("norm.weight");
  c.fc_norm = ck.has("fc_norm.weight");
  if (ck.has("head.weight")) {
    const Shape& head = ck.shape("head.weight");
    c.num_classes = head.empty() ? 0 : head[0];
    if (c.num_classes <= 0)
      throw Error(ck.label + ": " + ck.name("head.weight") + " has shape " + shape_string(head) +
                  ": a classifier needs at least one class");
  }
  if (ck.has("attn_pool.latent")) {
    const Shape& latent = ck.shape("attn_pool.latent");
    if (latent.size() != 3 || latent[1] <= 0)
      throw Error(ck.label + ": " + ck.name("attn_pool.latent") + " has shape " + shape_string(latent) + ", expected [1, queries, dim]");
    c.map_latent_len = latent[1];
    const Shape& map_fc1 = ck.shape("attn_pool.mlp.fc1.weight");
    c.map_mlp_dim = map_fc1.empty() ? 0 : map_fc1[0];
  }

  // The position embedding gives the grid, hence the image size, and whether it covers the
  // prefix tokens (timm's no_embed_class: DeiT-III, DINOv2 with registers). Without one
  // (BEiT), the relative position table gives the grid.
  c.abs_pos_embed = ck.has("pos_embed");
  std::optional<int64_t> grid;
  if (c.abs_pos_embed) {
    const Shape& pos = ck.shape("pos_embed");
    if (pos.size() != 3 || pos[0] != 1)
      throw Error(ck.label + ": " + ck.name("pos_embed") + " has shape " + shape_string(pos) + ", expected [1, tokens, dim]");
    std::optional<int64_t> with_prefix = square_root(pos[1] - c.prefix_tokens()), without = square_root(pos[1]);
    if (timm) c.no_embed_class = timm->no_embed_class;
    else c.no_embed_class = !with_prefix && without;
    grid = c.no_embed_class ? without : with_prefix;
    if (!grid)
      throw Error(ck.label + ": " + ck.name("pos_embed") + " has shape " + shape_string(pos) + ", expected [1, " +
                  (c.no_embed_class ? "" : std::to_string(c.prefix_tokens()) + " + ") + "grid*grid, dim]");
  } else if (c.rel_pos_bias) {
    const std::string table = "blocks.0.attn.relative_position_bias_table";
    const Shape& t = ck.shape(table);
    std::optional<int64_t> side = t.size() == 2 ? square_root(t[0] - 3) : std::nullopt;  // (2 grid - 1)^2 + 3 rows
    if (!side || *side % 2 == 0)
      throw Error(ck.label + ": " + ck.name(table) + " has shape " + shape_string(t) + ", expected [(2 grid - 1)^2 + 3, heads]");
    grid = (*side + 1) / 2;
    if (!c.class_token || c.reg_tokens || c.distilled)
      throw Error(ck.label + ": a relative position bias (BEiT) needs exactly one prefix token, the class token");
  } else if (timm && !timm->rope_class.empty()) {
    // Rotary embedding only: the input size from config.json, else timm's default.
    int64_t size = json.input_size.value_or(timm->img_size);
    if (size <= 0 || size % c.patch_size)
      throw Error(ck.label + ": input size " + std::to_string(size) + " is not a multiple of the patch size " + std::to_string(c.patch_size));
    grid = size / c.patch_size;
  } else {
    throw Error(ck.label + ": missing tensor 'pos_embed' (and no relative position bias or rotary embedding either: the "
                        "model would not know where its patches are)");
  }
  c.image_size = *grid * c.patch_size;
}

void settle_from_config(const Checkpoint& ck, const ConfigJson& json, const TimmArchitecture* timm,
                        const ModelOverrides& overrides, ViTConfig& c, std::map<std::string, std::string>& defaulted) {
  std::optional<int64_t> heads = overrides.heads ? overrides.heads : json.heads;
  if (!heads && timm) heads = timm->heads;
  if (!heads)
    throw Error(ck.label + ": the number of attention heads is not known: " +
                (json.architecture ? "config.json's architecture '" + *json.architecture + "' is not in timm's registry"
                                   : std::string("there is no config.json naming a timm architecture")) +
                "; give it with --heads N (or model_options: {heads: N} in the YAML)");
  c.heads = *heads;
  if (c.heads <= 0 || c.dim % c.heads)
    throw Error(ck.label + ": " + std::to_string(c.heads) + " heads do not divide dim " + std::to_string(c.dim));
  std::optional<double> eps = overrides.layer_norm_eps ? overrides.layer_norm_eps : json.eps;
  const char* eps_source = overrides.layer_norm_eps ? " (model_options)" : json.eps ? " (config.json)" : " (timm's registry)";
  if (!eps && timm && timm->eps > 0) eps = timm->eps;
  if (!eps) defaulted["layer_norm_eps"] = std::string("layer_norm_eps ") + (ck.hf ? "1e-12 (Hugging Face)" : "1e-06 (timm)");
  c.layer_norm_eps = eps.value_or(ck.hf ? 1e-12 : 1e-6);
  if (!(c.layer_norm_eps > 0 && c.layer_norm_eps < 1))
    throw Error(ck.label + ": layer_norm_eps " + std::to_string(c.layer_norm_eps) + eps_source + " must be in (0, 1)");
  if (ck.hf && c.mlp == MlpKind::GluPacked) c.act = Activation::Silu;  // HF DINOv2's SwiGLU ignores hidden_act
  else if (json.act) c.act = parse_activation(*json.act, std::string("config.json"));
  else if (timm && !timm->act.empty()) c.act = parse_activation(timm->act, "timm's table for " + timm->name);
  else {
    c.act = c.mlp == MlpKind::Plain ? Activation::Gelu : Activation::Silu;
    defaulted["act"] = std::string("activation ") + activation_name(c.act);
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
      throw Error(ck.label + ": rotary embedding needs a head width divisible by 4, got " + std::to_string(c.dim / c.heads));
  } else if (!timm && (c.qkv_separate || c.qkv_bias_split) && !c.rel_pos_bias && !ck.hf) {
    // EVA's rotary embedding leaves no tensor behind: only the architecture name tells.
    defaulted["rope"] = "no rotary embedding (EVA-style attention weights, but no timm architecture names one)";
  }
  if (timm) c.pool_include_prefix = timm->pool_include_prefix;

  std::optional<Pooling> pool;
  if (json.global_pool) {
    pool = parse_pooling(*json.global_pool);
    if (!pool) throw Error(ck.label + ": global_pool '" + *json.global_pool + "' (config.json) is not one vitbatch runs (token, avg, avgmax, max, map)");
  } else if (timm) {
    pool = parse_pooling(timm->global_pool);
    if (!pool) throw Error(ck.label + ": timm architecture '" + timm->name + "' pools with '" + timm->global_pool + "', which vitbatch does not run");
  }
  if (!pool && ck.hf && json.model_type) {
    // Hugging Face's classes pool by family: BEiT averages when it has the pooler's norm,
    // DINOv2's classifier reads the class token and the patch mean side by side.
    if (*json.model_type == "beit") pool = c.fc_norm ? Pooling::Avg : Pooling::Token;
    else if (*json.model_type == "dinov2" && c.num_classes && ck.shape("head.weight").size() == 2 &&
             ck.shape("head.weight")[1] == 2 * c.dim)
      pool = Pooling::TokenAvg;
    else if (*json.model_type == "vit" || *json.model_type == "deit" || *json.model_type == "dinov2") pool = Pooling::Token;
  }
  if (!pool) {
    pool = ck.has("attn_pool.latent") ? Pooling::Map : c.class_token && !c.fc_norm ? Pooling::Token : Pooling::Avg;
    defaulted["pool"] = std::string("pooling ") + pooling_name(*pool);
  }
  c.pool = *pool;
  if ((c.pool == Pooling::Token || c.pool == Pooling::TokenAvg) && !c.class_token)
    throw Error(ck.label + ": pooling 'token' needs a class token, and the checkpoint has no 'cls_token'");
  if (c.pool == Pooling::Map) {
    if (!ck.has("attn_pool.latent")) throw Error(ck.label + ": pooling 'map' needs the attention pool, and the checkpoint has no 'attn_pool.latent'");
    c.map_heads = timm && timm->map_heads ? timm->map_heads : c.heads;
    if (c.map_heads <= 0 || c.dim % c.map_heads) throw Error(ck.label + ": the attention pool's heads do not divide dim");
    c.map_token = !timm || timm->map_pool != "avg";
    c.map_act = timm && !timm->map_act.empty() ? parse_activation(timm->map_act, "timm's table for " + timm->name) : c.act;
  }
  if (c.distilled && (c.pool != Pooling::Token || !c.class_token))
    throw Error(ck.label + ": a distilled (DeiT) checkpoint pools its class and distillation tokens; pooling '" +
                pooling_name(c.pool) + "' is not one it has");
  if (timm && timm->dim && timm->dim != c.dim)
    throw Error(ck.label + ": config.json names '" + timm->name + "' (width " + std::to_string(timm->dim) +
                "), but " + ck.name("patch_embed.proj.weight") + " is " + std::to_string(c.dim) + " wide");
}

std::optional<int64_t> target_image_size(const Checkpoint& ck, const ConfigJson& json, const TimmArchitecture* timm,
                                         const ModelOverrides& overrides, const ViTConfig& c) {
  std::optional<int64_t> target = overrides.image_size;
  if (overrides.test_input_size) {
    target = json.test_input_size ? json.test_input_size : timm && timm->test_input_size ? std::optional<int64_t>(timm->test_input_size)
                                                                                          : std::nullopt;
    if (!target)
      throw Error(ck.label + ": --image-size test: neither config.json's pretrained_cfg nor timm's registry" +
                  (timm ? " entry for '" + timm->name + "'" : std::string()) + " names a test_input_size");
  }
  if (target && c.rel_pos_bias && *target != c.image_size)
    throw Error(ck.label + ": --image-size: resizing a relative position bias table (BEiT) is not supported; this model runs at " +
                std::to_string(c.image_size));
  if (target && (*target < c.patch_size || *target > 8192 || *target % c.patch_size))
    throw Error(ck.label + ": image size " + std::to_string(*target) + " must be a multiple of the patch size " +
                std::to_string(c.patch_size) + " between " + std::to_string(c.patch_size) + " and 8192");
  return target;
}

}  // namespace vitbatch
