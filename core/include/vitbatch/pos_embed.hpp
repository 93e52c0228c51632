// pos_embed.hpp: running a model at another input size. timm's resample_abs_pos_embed: the
// grid part of the absolute position embedding resized with torch's antialiased bicubic
// interpolation (F.interpolate(mode='bicubic', antialias=True, align_corners=False)), the
// prefix rows (class, register tokens) kept as they are.
#pragma once

#include <cstdint>
#include <vector>

namespace vitbatch {

// grid: [old_h * old_w, dim] row-major; returns [new_h * new_w, dim].
std::vector<float> resample_grid(const float* grid, int64_t old_h, int64_t old_w, int64_t new_h, int64_t new_w,
                                 int64_t dim);

}  // namespace vitbatch
