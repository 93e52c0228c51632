#include "vitbatch/model_layout.hpp"

namespace vitbatch {
namespace {

class Layout {
 public:
  void add(const std::string& name, Shape shape) { out_.push_back({name, std::move(shape)}); }
  void linear(const std::string& prefix, int64_t out, int64_t in, bool bias = true) {
    add(prefix + ".weight", {out, in});
    if (bias) add(prefix + ".bias", {out});
  }
  void norm(const std::string& prefix, int64_t d) {
    add(prefix + ".weight", {d});
    add(prefix + ".bias", {d});
  }
  void mlp(const std::string& p, const ViTConfig& c, int64_t d, int64_t hidden) {
    switch (c.mlp) {
      case MlpKind::Plain: linear(p + ".fc1", hidden, d, c.mlp_bias); break;
      case MlpKind::GluPacked: linear(p + ".fc1", 2 * hidden, d, c.mlp_bias); break;
      case MlpKind::SwiGlu:
        linear(p + ".fc1_g", hidden, d, c.mlp_bias);
        linear(p + ".fc1_x", hidden, d, c.mlp_bias);
        break;
    }
    if (c.mlp_norm) norm(p + ".norm", hidden);
    linear(p + ".fc2", d, hidden, c.mlp_bias);
  }
  std::vector<ExpectedWeight> take() { return std::move(out_); }

 private:
  std::vector<ExpectedWeight> out_;
};

}  // namespace

int64_t relative_distances(int64_t grid) { return (2 * grid - 1) * (2 * grid - 1) + 3; }

std::vector<int32_t> relative_position_index(int64_t grid) {
  const int64_t area = grid * grid, tokens = area + 1, distances = relative_distances(grid);
  std::vector<int32_t> index(static_cast<size_t>(tokens * tokens));
  for (int64_t i = 0; i < area; ++i)
    for (int64_t j = 0; j < area; ++j) {
      int64_t dy = i / grid - j / grid + grid - 1, dx = i % grid - j % grid + grid - 1;
      index[static_cast<size_t>((i + 1) * tokens + j + 1)] = static_cast<int32_t>(dy * (2 * grid - 1) + dx);
    }
  for (int64_t j = 0; j < tokens; ++j) index[static_cast<size_t>(j)] = static_cast<int32_t>(distances - 3);  // cls to token
  for (int64_t i = 0; i < tokens; ++i) index[static_cast<size_t>(i * tokens)] = static_cast<int32_t>(distances - 2);  // token to cls
  index[0] = static_cast<int32_t>(distances - 1);  // cls to cls
  return index;
}

std::vector<ExpectedWeight> expected_weights(const ViTConfig& c) {
  const int64_t D = c.dim, hd = c.heads > 0 ? D / c.heads : 0;
  Layout l;
  l.add("patch_embed.proj.weight", {D, c.in_chans, c.patch_size, c.patch_size});
  if (c.patch_bias) l.add("patch_embed.proj.bias", {D});
  if (c.class_token) l.add("cls_token", {1, 1, D});
  if (c.reg_tokens) l.add("reg_token", {1, c.reg_tokens, D});
  if (c.distilled) l.add("dist_token", {1, 1, D});
  if (c.abs_pos_embed) l.add("pos_embed", {1, c.pos_embed_rows(), D});
  if (c.norm_pre) l.norm("norm_pre", D);
  for (int64_t i = 0; i < c.depth; ++i) {
    const std::string b = "blocks." + std::to_string(i) + ".";
    l.norm(b + "norm1", D);
    if (c.qkv_separate) {
      for (const char* n : {"q", "k", "v"}) l.linear(b + "attn." + n, D, D, c.qkv_bias && !c.qkv_bias_split);
    } else {
      l.linear(b + "attn.qkv", 3 * D, D, c.qkv_bias && !c.qkv_bias_split);
    }
    if (c.qkv_bias_split) {
      l.add(b + "attn.q_bias", {D});
      l.add(b + "attn.v_bias", {D});
    }
    if (c.rel_pos_bias) l.add(b + "attn.relative_position_bias_table", {relative_distances(c.grid()), c.heads});
    if (c.qk_norm) {
      l.norm(b + "attn.q_norm", hd);
      l.norm(b + "attn.k_norm", hd);
    }
    if (c.attn_norm) l.norm(b + "attn.norm", D);
    l.linear(b + "attn.proj", D, D, c.proj_bias);
    if (c.layer_scale) l.add(b + "ls1.gamma", {D});
    l.norm(b + "norm2", D);
    l.mlp(b + "mlp", c, D, c.mlp_dim);
    if (c.layer_scale) l.add(b + "ls2.gamma", {D});
  }
  if (c.final_norm) l.norm("norm", D);
  if (c.pool == Pooling::Map) {
    l.add("attn_pool.latent", {1, c.map_latent_len, D});
    l.linear("attn_pool.q", D, D);
    l.linear("attn_pool.kv", 2 * D, D);
    l.linear("attn_pool.proj", D, D);
    l.norm("attn_pool.norm", D);
    ViTConfig plain = c;
    plain.mlp = MlpKind::Plain;
    plain.mlp_bias = true;
    plain.mlp_norm = false;
    l.mlp("attn_pool.mlp", plain, D, c.map_mlp_dim);
  }
  if (c.fc_norm) l.norm("fc_norm", D);
  if (c.has_head()) {
    l.linear("head", c.num_classes, c.feature_width());
    if (c.distilled) l.linear("head_dist", c.num_classes, D);
  }
  return l.take();
}

}  // namespace vitbatch
