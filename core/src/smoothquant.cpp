#include "vitbatch/smoothquant.hpp"

#include "vitbatch/error.hpp"
#include "vitbatch/vit_graph.hpp"

#include <algorithm>
#include <cmath>

namespace vitbatch {

std::vector<SmoothGroup> smooth_groups(const Model& model) {
  // The graph calibration observes: every composite lowered, so each linear is a node.
  Graph g = lower_composites(build_vit_graph(model, 1), [](const Graph&, const Node&) { return false; });
  std::vector<SmoothGroup> groups;
  for (const Node& norm : g.nodes()) {
    if (norm.op != Op::LAYER_NORM || norm.inputs.size() != 3) continue;
    const Value &weight = g.value(norm.inputs[1]), &bias = g.value(norm.inputs[2]);
    if (!weight.is_constant() || !bias.is_constant() || !model.weights.contains(weight.name) ||
        !model.weights.contains(bias.name))
      continue;
    const int out = norm.output;
    if (std::find(g.outputs().begin(), g.outputs().end(), out) != g.outputs().end()) continue;
    SmoothGroup group{norm.name, weight.name, bias.name, {}, {}, weight.shape.back()};
    bool only_linears = true;
    for (const Node& n : g.nodes()) {
      const auto uses = std::count(n.inputs.begin(), n.inputs.end(), out);
      if (!uses) continue;
      // Read as a linear's input and nothing else, the linear's weight a constant [out,
      // channels], stored with that shape too (the fold rewrites the stored tensor). The op is
      // checked before the weight is looked up: another reader (pooling, say) may have one
      // input only.
      const Value* w = n.op == Op::LINEAR && uses == 1 && n.inputs[0] == out ? &g.value(n.inputs[1]) : nullptr;
      if (!w || !w->is_constant() || w->shape.size() != 2 || w->shape[1] != group.channels ||
          !model.weights.contains(w->name) || model.weights.shape(w->name) != w->shape) {
        only_linears = false;
        break;
      }
      group.linears.push_back(n.name);
      group.linear_weights.push_back(w->name);
    }
    if (only_linears && !group.linears.empty()) groups.push_back(std::move(group));
  }
  return groups;
}

std::vector<float> smoothing_factors(const Model& model, const SmoothGroup& group, const std::vector<float>& absmax,
                                     double alpha) {
  if (!(alpha > 0 && alpha <= 1)) throw Error("SmoothQuant's alpha must be in (0, 1]");
  const auto C = static_cast<size_t>(group.channels);
  if (absmax.size() != C) throw Error("internal: " + group.norm + ": channel maxima of the wrong count");
  std::vector<double> wmax(C, 0.0);
  for (const std::string& name : group.linear_weights) {
    const float* w = model.weights.get(name);
    const int64_t rows = model.weights.shape(name)[0];
    for (int64_t r = 0; r < rows; ++r)
      for (size_t j = 0; j < C; ++j) wmax[j] = std::max(wmax[j], std::fabs(double(w[r * group.channels + j])));
  }
  std::vector<float> c(C);
  for (size_t j = 0; j < C; ++j)
    c[j] = static_cast<float>(std::pow(std::max(double(absmax[j]), 1e-5), alpha) /
                              std::pow(std::max(wmax[j], 1e-5), 1 - alpha));
  return c;
}

void fold_smoothing(Model& model, const Smoothing& smoothing) {
  if (smoothing.empty()) return;
  std::map<std::string, SmoothGroup> groups;
  for (SmoothGroup& g : smooth_groups(model)) groups.emplace(g.norm, std::move(g));
  for (const auto& [norm, c] : smoothing) {
    auto it = groups.find(norm);
    if (it == groups.end())
      throw Error("SmoothQuant factors for '" + norm + "', which is not a LayerNorm feeding only linears in this model");
    const SmoothGroup& g = it->second;
    if (static_cast<int64_t>(c.size()) != g.channels)
      throw Error("SmoothQuant factors for '" + norm + "': " + std::to_string(c.size()) + " values, expected " +
                  std::to_string(g.channels));
    for (float v : c)
      if (!std::isfinite(v) || !(v > 0)) throw Error("SmoothQuant factors for '" + norm + "' are not all finite and positive");
    float* weight = model.weights.writable_copy(g.norm_weight);
    float* bias = model.weights.writable_copy(g.norm_bias);
    for (int64_t j = 0; j < g.channels; ++j) {
      weight[j] /= c[j];
      bias[j] /= c[j];
    }
    for (const std::string& name : g.linear_weights) {
      float* w = model.weights.writable_copy(name);
      const int64_t rows = model.weights.shape(name)[0];
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = 0; j < g.channels; ++j) w[r * g.channels + j] *= c[j];
    }
  }
}

}  // namespace vitbatch
