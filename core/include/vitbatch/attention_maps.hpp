// attention_maps.hpp: where a ViT looked, from its attention probabilities (gradient-free),
// for `vitbatch explain`, and the pictures made of it.
//
// Attention rollout (Abnar & Zuidema 2020, "Quantifying Attention Flow in Transformers"): each
// block's attention, its heads fused (mean, max or min), optionally with the weakest entries
// discarded, has the residual identity added and its rows renormalised,
// A_l = rownorm(0.5 * fuse(P_l) + 0.5 * I); the rollout is A_L ... A_2 A_1, and the map is its
// class-token row (the mean of all rows for a model without a class token) over the patch
// tokens. Discarding: in each block's fused matrix the `discard_ratio` fraction of entries
// with the lowest values is set to zero, except the entries of the class token's row and
// column (as in the reference implementation jacobgil/vit-explain, which keeps them too).
// The last layer's map is that block's fused attention, class-token row, over the patches.
// Both maps are scaled to a maximum of 1.
#pragma once

#include "vitbatch/image.hpp"

#include <cstdint>
#include <string>
#include <vector>

namespace vitbatch {

enum class HeadFusion { Mean, Max, Min };
HeadFusion parse_head_fusion(const std::string& name);  // mean, max, min; throws Error

struct AttentionShape {
  int64_t heads = 0, tokens = 0;
  int64_t prefix = 1;        // class token, registers, distillation token: before the patches
  bool class_token = true;   // false: the map is the mean over all tokens' rows
  int64_t grid = 0;          // patches a side: tokens = prefix + grid * grid
};

// blocks[l]: block l's probabilities for one image, [heads, T, T]. Returns [grid * grid].
std::vector<float> attention_rollout(const std::vector<const float*>& blocks, const AttentionShape& shape,
                                     HeadFusion fusion, double discard_ratio);
std::vector<float> last_layer_attention(const float* last, const AttentionShape& shape, HeadFusion fusion);

// Viridis (matplotlib's perceptually uniform map) at t in [0, 1], as 8-bit RGB, from Matt
// Zucker's degree-6 polynomial fit of its table.
void viridis(double t, uint8_t rgb[3]);

// `map` (grid x grid, values 0..1) resized bilinearly (half-pixel centres, edges clamped, as
// torch's interpolate with align_corners=False) to the image's size, coloured with viridis and
// blended over it with `alpha`.
RgbImage overlay(const RgbImage& image, const std::vector<float>& map, int64_t grid, double alpha);

// Images side by side (same height), left to right.
RgbImage side_by_side(const std::vector<const RgbImage*>& panels);

// Writes an 8-bit RGB PNG (libpng); throws Error naming the file.
void write_png(const std::string& path, const RgbImage& image);

}  // namespace vitbatch
