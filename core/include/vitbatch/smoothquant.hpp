// smoothquant.hpp: SmoothQuant (Xiao et al. 2022) folded into the LayerNorms that feed linears.
// A transformer's LayerNorm outputs have a few outlier channels that stretch one int8 scale
// per tensor; dividing channel j of the LayerNorm's output by c_j (its weight and bias) and
// multiplying column j of every linear it feeds by c_j leaves the float model unchanged and
// moves part of the outlier into the weights, which are quantised per output channel.
// c_j = max|x_j|^alpha / max|w_j|^(1 - alpha), from the calibration images. The fold costs
// nothing at run time: the LayerNorm still runs once, with other weights.
#pragma once

#include "vitbatch/model.hpp"

#include <map>
#include <string>
#include <vector>

namespace vitbatch {

// A LayerNorm whose output is read by linears only, as their input (norm1 -> attn.qkv,
// norm2 -> mlp.fc1 in a ViT block; both halves of a SwiGLU's fc1): those it can be folded into.
struct SmoothGroup {
  std::string norm;                          // the LayerNorm's node name ("blocks.0.norm1")
  std::string norm_weight, norm_bias;        // its weight tensors
  std::vector<std::string> linears;          // the linears' node names
  std::vector<std::string> linear_weights;   // their weight tensors, [out, channels]
  int64_t channels = 0;
};

// The groups of `model`'s graph with every composite lowered, in graph order.
std::vector<SmoothGroup> smooth_groups(const Model& model);

// LayerNorm name -> c, one factor per channel.
using Smoothing = std::map<std::string, std::vector<float>>;

// c_j = max(absmax_j, 1e-5)^alpha / max(w_j, 1e-5)^(1 - alpha), w_j the largest |weight| of
// column j over the group's linears. alpha in (0, 1].
std::vector<float> smoothing_factors(const Model& model, const SmoothGroup& group, const std::vector<float>& absmax,
                                     double alpha);

// Divides each named LayerNorm's weight and bias by c and multiplies its linears' weight
// columns by c (copies: the checkpoint's mapping stays read-only). Throws Error for a name that
// is not a group of this model or factors of the wrong count or not finite and positive.
void fold_smoothing(Model& model, const Smoothing& smoothing);

}  // namespace vitbatch
