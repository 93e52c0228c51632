#include "vitbatch/vit_graph.hpp"

#include "vitbatch/error.hpp"

#include <cmath>

namespace vitbatch {
namespace {

// Builds the description (ViTConfig) as a graph in three parts: embed (patches, prefix
// tokens, position embedding), the blocks, and the head (final norm, pooling, classifier).
class VitGraphBuilder {
 public:
  VitGraphBuilder(const Model& model, Graph& g) : model_(model), c_(model.config), g_(g) {}

  void build(int64_t batch) {
    int x = embed(batch);
    for (int64_t i = 0; i < c_.depth; ++i) x = block(x, "blocks." + std::to_string(i));
    g_.mark_output(head(x));
  }

 private:
  int weight(const std::string& name) {
    return g_.add_constant(name, model_.weights.shape(name), model_.weights.get(name));
  }
  bool has(const std::string& name) const { return model_.weights.contains(name); }
  int linear(int x, const std::string& prefix) {
    std::vector<int> in{x, weight(prefix + ".weight")};
    if (has(prefix + ".bias")) in.push_back(weight(prefix + ".bias"));
    return g_.add_node(Op::LINEAR, in, {}, prefix);
  }
  int layer_norm(int x, const std::string& prefix) {
    return g_.add_node(Op::LAYER_NORM, {x, weight(prefix + ".weight"), weight(prefix + ".bias")},
                       params::layer_norm(c_.layer_norm_eps), prefix);
  }
  int node(Op op, std::vector<int> in, const std::string& name, Params p = {}) {
    return g_.add_node(op, std::move(in), p, name);
  }
  const Shape& shape(int v) const { return g_.value(v).shape; }
  int reshape(int x, const Shape& dims, const std::string& name) { return node(Op::RESHAPE, {x}, name, dims_params(dims)); }
  int activation(int x, Activation a, const std::string& name) {
    static const Op ops[] = {Op::GELU, Op::GELU_TANH, Op::QUICK_GELU, Op::SILU};
    return node(ops[static_cast<int>(a)], {x}, name);
  }

  int embed(int64_t batch) {
    int pixels = g_.add_input("pixels", {batch, c_.in_chans, c_.image_size, c_.image_size});
    int patches = node(Op::PATCHIFY, {pixels}, "patch_embed.patchify", params::patchify(c_.patch_size));
    // The conv kernel [D, C, p, p] is a linear weight [D, C*p*p] over patchify's layout.
    int kernel = g_.add_constant("patch_embed.proj.weight", {c_.dim, c_.in_chans * c_.patch_size * c_.patch_size},
                                 model_.weights.get("patch_embed.proj.weight"));
    std::vector<int> in{patches, kernel};
    if (c_.patch_bias) in.push_back(weight("patch_embed.proj.bias"));
    int x = node(Op::LINEAR, in, "patch_embed.proj");
    std::vector<int> prefix;
    if (c_.class_token) prefix.push_back(weight("cls_token"));
    if (c_.reg_tokens) prefix.push_back(weight("reg_token"));
    if (c_.distilled) prefix.push_back(weight("dist_token"));
    // timm: without no_embed_class the position embedding has rows for the prefix too, so
    // join first, then add; with it, add to the patches, then join.
    if (c_.abs_pos_embed && c_.no_embed_class) x = node(Op::ADD, {x, weight("pos_embed")}, "pos_embed");
    if (!prefix.empty()) {
      prefix.push_back(x);
      x = node(Op::CONCAT, prefix, "tokens", params::concat(1));
    }
    if (c_.abs_pos_embed && !c_.no_embed_class) x = node(Op::ADD, {x, weight("pos_embed")}, "pos_embed");
    if (c_.norm_pre) x = layer_norm(x, "norm_pre");
    return x;
  }

  int block(int x, const std::string& b) {
    int h = layer_norm(x, b + ".norm1");
    int qkv = linear(h, b + ".attn.qkv");
    int64_t head_dim = c_.dim / c_.heads;
    std::vector<int> attn_in{qkv};
    if (c_.qk_norm)
      for (const char* n : {".attn.q_norm", ".attn.k_norm"}) {
        attn_in.push_back(weight(b + n + ".weight"));
        attn_in.push_back(weight(b + n + ".bias"));
      }
    if (c_.rope) {
      attn_in.push_back(weight("rope.sin"));
      attn_in.push_back(weight("rope.cos"));
    }
    if (c_.rel_pos_bias) attn_in.push_back(weight(b + ".attn.rel_pos_bias"));
    int a = node(Op::ATTENTION, attn_in, b + ".attn.core",
                 params::attention(c_.heads, 1.0 / std::sqrt(double(head_dim)), c_.qk_norm ? c_.layer_norm_eps : 0,
                                   c_.rel_pos_bias, c_.rope, c_.prefix_tokens(), c_.rope_half));
    if (c_.attn_norm) a = layer_norm(a, b + ".attn.norm");
    a = linear(a, b + ".attn.proj");
    if (c_.layer_scale) a = node(Op::MUL, {a, weight(b + ".ls1.gamma")}, b + ".ls1");
    x = node(Op::ADD, {x, a}, b + ".residual1");
    h = layer_norm(x, b + ".norm2");
    int m = mlp(h, b + ".mlp", c_.mlp, c_.act, c_.mlp_norm);
    if (c_.layer_scale) m = node(Op::MUL, {m, weight(b + ".ls2.gamma")}, b + ".ls2");
    return node(Op::ADD, {x, m}, b + ".residual2");
  }

  int mlp(int x, const std::string& p, MlpKind kind, Activation act, bool norm) {
    // The plain GELU MLP is one composite node that backends may run fused.
    if (kind == MlpKind::Plain && act == Activation::Gelu && !norm && has(p + ".fc1.bias") && has(p + ".fc2.bias"))
      return node(Op::MLP, {x, weight(p + ".fc1.weight"), weight(p + ".fc1.bias"), weight(p + ".fc2.weight"), weight(p + ".fc2.bias")}, p);
    int h;
    if (kind == MlpKind::SwiGlu) {  // act(fc1_g(x)) * fc1_x(x)
      int gate = activation(linear(x, p + ".fc1_g"), act, p + ".act");
      h = node(Op::MUL, {gate, linear(x, p + ".fc1_x")}, p + ".gate");
    } else if (kind == MlpKind::GluPacked) {  // fc1 gives [a | b]: act(a) * b, or a * act(b)
      int both = linear(x, p + ".fc1");
      int64_t axis = static_cast<int64_t>(shape(both).size()) - 1, half = shape(both).back() / 2;
      int a = node(Op::SLICE, {both}, p + ".chunk0", params::slice(axis, 0, half));
      int v = node(Op::SLICE, {both}, p + ".chunk1", params::slice(axis, half, 2 * half));
      if (c_.gate_last) v = activation(v, act, p + ".act");
      else a = activation(a, act, p + ".act");
      h = node(Op::MUL, {a, v}, p + ".gate");
    } else {
      h = activation(linear(x, p + ".fc1"), act, p + ".act");
    }
    if (norm) h = layer_norm(h, p + ".norm");
    return linear(h, p + ".fc2");
  }

  // x[B, T, D] -> x[B, D]: token `index`.
  int token(int x, int64_t index, const std::string& name) {
    int t = node(Op::SLICE, {x}, name, params::slice(1, index, index + 1));
    return reshape(t, {shape(x)[0], shape(x)[2]}, name + ".flatten");
  }

  // timm's global_pool over the tokens (prefix tokens excluded unless pool_include_prefix).
  int pool(int x) {
    if (c_.pool == Pooling::Token) return token(x, 0, "pool.cls");
    if (c_.pool == Pooling::TokenAvg) {
      int cls = token(x, 0, "pool.cls");
      int patches = node(Op::SLICE, {x}, "pool.patches", params::slice(1, c_.prefix_tokens(), shape(x)[1]));
      int mean = node(Op::REDUCE_MEAN, {patches}, "pool.avg", params::reduce(1));
      return node(Op::CONCAT, {cls, mean}, "pool.cls_avg", params::concat(1));
    }
    int64_t T = shape(x)[1], first = c_.pool_include_prefix ? 0 : c_.prefix_tokens();
    if (first > 0) x = node(Op::SLICE, {x}, "pool.patches", params::slice(1, first, T));
    if (c_.pool == Pooling::Map) return attention_pool(x);
    if (c_.pool == Pooling::Avg) return node(Op::REDUCE_MEAN, {x}, "pool.avg", params::reduce(1));
    if (c_.pool == Pooling::Max) return node(Op::REDUCE_MAX, {x}, "pool.max", params::reduce(1));
    int mean = node(Op::REDUCE_MEAN, {x}, "pool.avg", params::reduce(1));
    int max = node(Op::REDUCE_MAX, {x}, "pool.max", params::reduce(1));
    return node(Op::SCALE, {node(Op::ADD, {max, mean}, "pool.avgmax")}, "pool.avgmax.half", params::scale(0.5));
  }

  // timm's AttentionPoolLatent: learned queries attend over the tokens, then a residual MLP.
  int attention_pool(int x) {
    const std::string p = "attn_pool";
    const int64_t B = shape(x)[0], N = shape(x)[1], D = c_.dim, H = c_.map_heads, hd = D / H, L = c_.map_latent_len;
    int q = linear(weight(p + ".latent"), p + ".q");  // [1, L, D]: the same queries for every image
    q = node(Op::PERMUTE, {reshape(q, {1, L, H, hd}, p + ".q.split")}, p + ".q.heads", dims_params({0, 2, 1, 3}));
    int kv = reshape(linear(x, p + ".kv"), {B, N, 2, H, hd}, p + ".kv.split");
    kv = node(Op::PERMUTE, {kv}, p + ".kv.first", dims_params({2, 0, 3, 1, 4}));
    int k = reshape(node(Op::SLICE, {kv}, p + ".k", params::slice(0, 0, 1)), {B, H, N, hd}, p + ".k.squeeze");
    int v = reshape(node(Op::SLICE, {kv}, p + ".v", params::slice(0, 1, 2)), {B, H, N, hd}, p + ".v.squeeze");
    int s = node(Op::BATCH_MATMUL, {q, k}, p + ".q@kT", params::batch_matmul(true));
    s = node(Op::SCALE, {s}, p + ".scale", params::scale(1.0 / std::sqrt(double(hd))));
    s = node(Op::SOFTMAX, {s}, p + ".softmax");
    int o = node(Op::BATCH_MATMUL, {s, v}, p + ".attn@v", params::batch_matmul(false));  // [B, H, L, hd]
    o = node(Op::PERMUTE, {o}, p + ".merge", dims_params({0, 2, 1, 3}));
    o = linear(reshape(o, {B, L, D}, p + ".flatten"), p + ".proj");
    int m = mlp(layer_norm(o, p + ".norm"), p + ".mlp", MlpKind::Plain, c_.map_act, false);
    o = node(Op::ADD, {o, m}, p + ".residual");
    return c_.map_token ? token(o, 0, p + ".token") : node(Op::REDUCE_MEAN, {o}, p + ".avg", params::reduce(1));
  }

  // embed --tokens: [B, F] and the normed patch tokens [B, G*G, D] as one [B, F + G*G*D].
  int with_patch_tokens(int features, int x) {
    if (!c_.output_patch_tokens || c_.has_head()) return features;
    int normed = c_.final_norm ? layer_norm(x, "norm") : x;  // timm's forward_features
    const int64_t B = shape(x)[0], T = shape(x)[1];
    int patches = node(Op::SLICE, {normed}, "tokens.patches", params::slice(1, c_.prefix_tokens(), T));
    patches = reshape(patches, {B, c_.patch_token_floats()}, "tokens.flatten");
    return node(Op::CONCAT, {features, patches}, "features.tokens", params::concat(1));
  }

  int head(int x) {
    return with_patch_tokens(pooled_head(x), x);
  }

  int pooled_head(int x) {
    int features;
    if (c_.distilled) {
      // DeiT: the class and distillation tokens each through the norm and their own head.
      int cls = layer_norm(token(x, 0, "cls"), "norm");
      int dist = layer_norm(token(x, 1, "dist"), "norm");
      if (!c_.has_head()) return node(Op::SCALE, {node(Op::ADD, {cls, dist}, "features.sum")}, "features.mean", params::scale(0.5));
      int logits = node(Op::ADD, {linear(cls, "head"), linear(dist, "head_dist")}, "heads.sum");
      return node(Op::SCALE, {logits}, "heads.mean", params::scale(0.5));
    }
    if (c_.pool == Pooling::Token) {
      // The final norm is per token, so norming only the pooled token is the same.
      features = pool(x);
      if (c_.final_norm) features = layer_norm(features, "norm");
    } else {
      if (c_.final_norm) x = layer_norm(x, "norm");
      features = pool(x);
    }
    if (c_.fc_norm) features = layer_norm(features, "fc_norm");
    return c_.has_head() ? linear(features, "head") : features;
  }

  const Model& model_;
  const ViTConfig& c_;
  Graph& g_;
};

void lower_ATTENTION(Graph& g, const Node& n, const std::vector<int>& in) {
  int qkv = in[0];
  const Shape& s = g.value(qkv).shape;
  int64_t B = s[0], T = s[1], D = s[2] / 3, H = n.params.ints[0], hd = D / H;
  const std::string& name = n.name;
  int r = g.add_node(Op::RESHAPE, {qkv}, dims_params({B, T, 3, H, hd}), name + "/split_heads");
  int p = g.add_node(Op::PERMUTE, {r}, dims_params({2, 0, 3, 1, 4}), name + "/qkv_first");
  int qkv_parts[3];
  const char* part_names[3] = {"q", "k", "v"};
  for (int i = 0; i < 3; ++i) {
    int sl = g.add_node(Op::SLICE, {p}, params::slice(0, i, i + 1), name + "/" + part_names[i]);
    qkv_parts[i] = g.add_node(Op::RESHAPE, {sl}, dims_params({B, H, T, hd}), name + "/" + part_names[i] + ".squeeze");
    if (i < 2 && (n.params.ints[1] & 1))  // timm's qk_norm: a LayerNorm over each head's q and k
      qkv_parts[i] = g.add_node(Op::LAYER_NORM, {qkv_parts[i], in[1 + 2 * i], in[2 + 2 * i]}, params::layer_norm(n.params.floats[1]),
                                name + "/" + part_names[i] + "_norm");
    if (i < 2 && (n.params.ints[1] & 4)) {  // rotary embedding on q and k
      size_t at = (n.params.ints[1] & 1) ? 5 : 1;
      qkv_parts[i] = g.add_node(Op::ROPE, {qkv_parts[i], in[at], in[at + 1]}, params::rope(n.params.ints[2], n.params.ints[3] != 0),
                                name + "/" + part_names[i] + "_rope");
    }
  }
  int scores = g.add_node(Op::BATCH_MATMUL, {qkv_parts[0], qkv_parts[1]}, params::batch_matmul(true), name + "/q@kT");
  scores = g.add_node(Op::SCALE, {scores}, params::scale(n.params.floats[0]), name + "/scale");
  if (n.params.ints[1] & 2) scores = g.add_node(Op::ADD, {scores, in.back()}, {}, name + "/bias");
  int probs = g.add_node(Op::SOFTMAX, {scores}, {}, name + "/softmax");
  int out = g.add_node(Op::BATCH_MATMUL, {probs, qkv_parts[2]}, {}, name + "/attn@v");
  out = g.add_node(Op::PERMUTE, {out}, dims_params({0, 2, 1, 3}), name + "/merge_heads");
  g.add_node(Op::RESHAPE, {out}, dims_params({B, T, D}), name + "/flatten");
}

void lower_MLP(Graph& g, const Node& n, const std::vector<int>& in) {
  // The calibrated ranges, if any, go to the two linears.
  bool ranged = n.params.ints[0] != 0;
  params::Range r1{n.params.floats[0], n.params.floats[1], (n.params.ints[1] & 1) != 0},
      r2{n.params.floats[2], n.params.floats[3], (n.params.ints[1] & 2) != 0};
  int h = g.add_node(Op::LINEAR, {in[0], in[1], in[2]}, params::linear(ranged ? &r1 : nullptr), n.name + ".fc1");
  h = g.add_node(Op::GELU, {h}, {}, n.name + ".act");
  g.add_node(Op::LINEAR, {h, in[3], in[4]}, params::linear(ranged ? &r2 : nullptr), n.name + ".fc2");
}

// Gives each linear (and each MLP's two) its calibrated input range where the model has one.
void attach_int8_ranges(const Model& model, Graph& g) {
  if (model.int8_ranges.empty()) return;
  auto range = [&](const std::string& name) -> const params::Range* {
    auto it = model.int8_ranges.find(name);
    return it == model.int8_ranges.end() ? nullptr : &it->second;
  };
  for (Node& n : g.mutable_nodes()) {
    if (n.op == Op::LINEAR) n.params = params::linear(range(n.name));
    if (n.op == Op::MLP) n.params = params::mlp(range(n.name + ".fc1"), range(n.name + ".fc2"));
  }
}

}  // namespace

Graph build_vit_graph(const Model& model, int64_t batch) {
  if (batch < 1) throw Error("batch size must be >= 1");
  Graph g;
  VitGraphBuilder(model, g).build(batch);
  attach_int8_ranges(model, g);
  g.verify();
  return g;
}

Graph lower_composites(const Graph& graph, const std::function<bool(const Graph&, const Node&)>& claimed) {
  Graph out;
  std::vector<int> remap(graph.values().size(), -1);
  for (int id : graph.inputs()) {
    const Value& v = graph.value(id);
    remap[id] = out.add_input(v.name, v.shape, v.dtype);
  }
  for (const Value& v : graph.values())
    if (v.is_constant()) remap[v.id] = out.add_constant(v.name, v.shape, v.data, v.dtype);
  for (const Node& n : graph.nodes()) {
    std::vector<int> in;
    for (int id : n.inputs) in.push_back(remap.at(id));
    if (is_composite(n.op) && !claimed(graph, n)) {
      switch (n.op) {  // every composite of vit_ops.def has its lower_<ID>
#define VIT_OP(id, name)
#define VIT_COMPOSITE(id, name) case Op::id: lower_##id(out, n, in); break;
#include "vit_ops.def"
#undef VIT_COMPOSITE
#undef VIT_OP
        default: throw Error(std::string("internal: no lowering for ") + op_name(n.op));
      }
      remap[n.output] = out.nodes().back().output;
    } else {
      remap[n.output] = out.add_node(n.op, in, n.params, n.name);
    }
  }
  for (int id : graph.outputs()) out.mark_output(remap.at(id));
  out.verify();
  return out;
}

}  // namespace vitbatch
