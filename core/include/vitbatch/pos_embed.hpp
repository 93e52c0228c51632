// pos_embed.hpp: position information for the grid a model runs at. resample_grid is timm's
// resample_abs_pos_embed: the grid part of an absolute position embedding resized with torch's
// antialiased bicubic interpolation (F.interpolate(mode='bicubic', antialias=True,
// align_corners=False)); the caller keeps the prefix rows (class, register tokens) as they are.
#pragma once

#include "vitbatch/model.hpp"

#include <cstdint>
#include <vector>

namespace vitbatch {

// grid: [old_h * old_w, dim] row-major; returns [new_h * new_w, dim].
std::vector<float> resample_grid(const float* grid, int64_t old_h, int64_t old_w, int64_t new_h, int64_t new_w,
                                 int64_t dim);

// EVA's rotary tables for a grid x grid patch layout (timm's build_rotary_pos_embed for
// RotaryEmbeddingCat on an 'index' grid, in float32): sin and cos, [grid^2, head width].
struct RopeTables {
  std::vector<float> sin, cos;
};
RopeTables rope_tables(const ViTConfig& c, int64_t grid);

}  // namespace vitbatch
