#include "vitbatch/vit_graph.hpp"

#include "vitbatch/error.hpp"

#include <cmath>

namespace vitbatch {
namespace {

Params with_ints(std::initializer_list<int64_t> ints) {
  Params p;
  std::copy(ints.begin(), ints.end(), p.ints.begin());
  return p;
}

Params with_float(float f) {
  Params p;
  p.floats[0] = f;
  return p;
}

class VitGraphBuilder {
 public:
  VitGraphBuilder(const Model& model, Graph& g) : model_(model), g_(g) {}

  int weight(const std::string& name) {
    return g_.add_constant(name, model_.weights.shape(name), model_.weights.get(name));
  }
  int linear(int x, const std::string& prefix) {
    return g_.add_node(Op::LINEAR, {x, weight(prefix + ".weight"), weight(prefix + ".bias")}, {}, prefix);
  }
  int layer_norm(int x, const std::string& prefix) {
    return g_.add_node(Op::LAYER_NORM, {x, weight(prefix + ".weight"), weight(prefix + ".bias")},
                       with_float(static_cast<float>(model_.config.layer_norm_eps)), prefix);
  }
  int token(int x, int64_t index, const std::string& name) {
    const ViTConfig& c = model_.config;
    int t = g_.add_node(Op::SLICE, {x}, with_ints({1, index, index + 1}), name);
    return g_.add_node(Op::RESHAPE, {t}, dims_params({g_.value(x).shape[0], c.dim}), name + ".flatten");
  }

  int block(int x, int64_t i) {
    const ViTConfig& c = model_.config;
    std::string b = "blocks." + std::to_string(i);
    int h = layer_norm(x, b + ".norm1");
    int qkv = linear(h, b + ".attn.qkv");
    Params attn;
    attn.ints[0] = c.heads;
    attn.floats[0] = static_cast<float>(1.0 / std::sqrt(double(c.dim / c.heads)));
    int a = g_.add_node(Op::ATTENTION, {qkv}, attn, b + ".attn.core");
    a = linear(a, b + ".attn.proj");
    x = g_.add_node(Op::ADD, {x, a}, {}, b + ".residual1");
    h = layer_norm(x, b + ".norm2");
    int m = g_.add_node(Op::MLP,
                        {h, weight(b + ".mlp.fc1.weight"), weight(b + ".mlp.fc1.bias"),
                         weight(b + ".mlp.fc2.weight"), weight(b + ".mlp.fc2.bias")},
                        {}, b + ".mlp");
    return g_.add_node(Op::ADD, {x, m}, {}, b + ".residual2");
  }

  void build(int64_t batch) {
    const ViTConfig& c = model_.config;
    int pixels = g_.add_input("pixels", {batch, c.in_chans, c.image_size, c.image_size});
    int patches = g_.add_node(Op::PATCHIFY, {pixels}, with_ints({c.patch_size}), "patch_embed.patchify");
    // The conv kernel [D, C, p, p] is a linear weight [D, C*p*p] over patchify's layout.
    int kernel = g_.add_constant("patch_embed.proj.weight", {c.dim, c.in_chans * c.patch_size * c.patch_size},
                                 model_.weights.get("patch_embed.proj.weight"));
    int x = g_.add_node(Op::LINEAR, {patches, kernel, weight("patch_embed.proj.bias")}, {}, "patch_embed.proj");
    std::vector<int> parts{weight("cls_token")};
    if (c.distilled) parts.push_back(weight("dist_token"));
    parts.push_back(x);
    x = g_.add_node(Op::CONCAT, parts, with_ints({1}), "tokens");
    x = g_.add_node(Op::ADD, {x, weight("pos_embed")}, {}, "pos_embed");
    for (int64_t i = 0; i < c.depth; ++i) x = block(x, i);
    // The final norm is per token, so norming only the tokens the heads read is the same.
    int cls = layer_norm(token(x, 0, "cls"), "norm");
    int logits = linear(cls, "head");
    if (c.distilled) {
      int dist = layer_norm(token(x, 1, "dist"), "norm");
      int logits_dist = linear(dist, "head_dist");
      logits = g_.add_node(Op::ADD, {logits, logits_dist}, {}, "heads.sum");
      logits = g_.add_node(Op::SCALE, {logits}, with_float(0.5f), "heads.mean");
    }
    g_.mark_output(logits);
  }

 private:
  const Model& model_;
  Graph& g_;
};

void lower_attention(Graph& g, const Node& n, int qkv) {
  const Shape& s = g.value(qkv).shape;
  int64_t B = s[0], T = s[1], D = s[2] / 3, H = n.params.ints[0], hd = D / H;
  const std::string& name = n.name;
  int r = g.add_node(Op::RESHAPE, {qkv}, dims_params({B, T, 3, H, hd}), name + "/split_heads");
  int p = g.add_node(Op::PERMUTE, {r}, dims_params({2, 0, 3, 1, 4}), name + "/qkv_first");
  int qkv_parts[3];
  const char* part_names[3] = {"q", "k", "v"};
  for (int i = 0; i < 3; ++i) {
    int sl = g.add_node(Op::SLICE, {p}, with_ints({0, i, i + 1}), name + "/" + part_names[i]);
    qkv_parts[i] = g.add_node(Op::RESHAPE, {sl}, dims_params({B, H, T, hd}), name + "/" + part_names[i] + ".squeeze");
  }
  int scores = g.add_node(Op::BATCH_MATMUL, {qkv_parts[0], qkv_parts[1]}, with_ints({1}), name + "/q@kT");
  scores = g.add_node(Op::SCALE, {scores}, with_float(n.params.floats[0]), name + "/scale");
  int probs = g.add_node(Op::SOFTMAX, {scores}, {}, name + "/softmax");
  int out = g.add_node(Op::BATCH_MATMUL, {probs, qkv_parts[2]}, {}, name + "/attn@v");
  out = g.add_node(Op::PERMUTE, {out}, dims_params({0, 2, 1, 3}), name + "/merge_heads");
  g.add_node(Op::RESHAPE, {out}, dims_params({B, T, D}), name + "/flatten");
}

void lower_mlp(Graph& g, const Node& n, const std::vector<int>& in) {
  int h = g.add_node(Op::LINEAR, {in[0], in[1], in[2]}, {}, n.name + ".fc1");
  h = g.add_node(Op::GELU, {h}, {}, n.name + ".act");
  g.add_node(Op::LINEAR, {h, in[3], in[4]}, {}, n.name + ".fc2");
}

}  // namespace

Graph build_vit_graph(const Model& model, int64_t batch) {
  if (batch < 1) throw Error("batch size must be >= 1");
  Graph g;
  VitGraphBuilder(model, g).build(batch);
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
      if (n.op == Op::ATTENTION) lower_attention(out, n, in[0]);
      else lower_mlp(out, n, in);
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
