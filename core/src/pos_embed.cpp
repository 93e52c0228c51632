// Follows PyTorch 1.13's antialiased separable resampling (aten/src/ATen/native/cpu/
// UpSampleKernel.cpp, the PIL-derived path): Keys' cubic with a = -0.5, support 2 widened by
// the scale when shrinking, weights normalised per output, the width pass first, float32.
#include "vitbatch/pos_embed.hpp"

#include <algorithm>
#include <cmath>

namespace vitbatch {
namespace {

float cubic(float x) {
  const float a = -0.5f;
  x = std::fabs(x);
  if (x < 1.0f) return ((a + 2.0f) * x - (a + 3.0f)) * x * x + 1.0f;
  if (x < 2.0f) return ((a * x - 5.0f * a) * x + 8.0f * a) * x - 4.0f * a;
  return 0.0f;
}

struct Taps {
  int64_t first = 0;
  std::vector<float> weights;
};

std::vector<Taps> taps(int64_t in, int64_t out) {
  const float scale = static_cast<float>(in) / static_cast<float>(out);
  const float support = scale >= 1.0f ? 2.0f * scale : 2.0f;
  const float invscale = scale >= 1.0f ? 1.0f / scale : 1.0f;
  std::vector<Taps> all(static_cast<size_t>(out));
  for (int64_t i = 0; i < out; ++i) {
    float center = scale * (static_cast<float>(i) + 0.5f);
    int64_t lo = std::max<int64_t>(static_cast<int64_t>(center - support + 0.5f), 0);
    int64_t size = std::min<int64_t>(static_cast<int64_t>(center + support + 0.5f), in) - lo;
    Taps& t = all[static_cast<size_t>(i)];
    t.first = lo;
    float total = 0.0f;
    for (int64_t j = 0; j < size; ++j) {
      t.weights.push_back(cubic((static_cast<float>(j + lo) - center + 0.5f) * invscale));
      total += t.weights.back();
    }
    if (total != 0.0f)
      for (float& w : t.weights) w /= total;
  }
  return all;
}

}  // namespace

std::vector<float> resample_grid(const float* grid, int64_t old_h, int64_t old_w, int64_t new_h, int64_t new_w,
                                 int64_t dim) {
  // Width first: [old_h, new_w, dim].
  std::vector<Taps> tw = taps(old_w, new_w), th = taps(old_h, new_h);
  std::vector<float> wide(static_cast<size_t>(old_h * new_w * dim));
  for (int64_t y = 0; y < old_h; ++y)
    for (int64_t x = 0; x < new_w; ++x) {
      const Taps& t = tw[static_cast<size_t>(x)];
      for (int64_t d = 0; d < dim; ++d) {
        float acc = 0.0f;
        for (size_t j = 0; j < t.weights.size(); ++j) acc += grid[(y * old_w + t.first + int64_t(j)) * dim + d] * t.weights[j];
        wide[static_cast<size_t>((y * new_w + x) * dim + d)] = acc;
      }
    }
  std::vector<float> out(static_cast<size_t>(new_h * new_w * dim));
  for (int64_t y = 0; y < new_h; ++y) {
    const Taps& t = th[static_cast<size_t>(y)];
    for (int64_t x = 0; x < new_w; ++x)
      for (int64_t d = 0; d < dim; ++d) {
        float acc = 0.0f;
        for (size_t j = 0; j < t.weights.size(); ++j) acc += wide[static_cast<size_t>(((t.first + int64_t(j)) * new_w + x) * dim + d)] * t.weights[j];
        out[static_cast<size_t>((y * new_w + x) * dim + d)] = acc;
      }
  }
  return out;
}

RopeTables rope_tables(const ViTConfig& c, int64_t grid) {
  // timm's build_rotary_pos_embed, in float32 as torch computes it.
  const int64_t head = c.dim / c.heads, bands = head / 4;
  std::vector<float> band(static_cast<size_t>(bands));
  for (int64_t k = 0; k < bands; ++k)
    band[k] = 1.0f / std::pow(static_cast<float>(c.rope_temperature), static_cast<float>(k) / static_cast<float>(bands));
  auto position = [&](int64_t i) {
    float t = static_cast<float>(i) + static_cast<float>(c.rope_grid_offset);
    return c.rope_ref_grid ? t / static_cast<float>(grid) * static_cast<float>(c.rope_ref_grid) : t;
  };
  RopeTables out;
  out.sin.resize(static_cast<size_t>(grid * grid * head));
  out.cos.resize(out.sin.size());
  std::vector<float> angles(static_cast<size_t>(2 * bands));
  for (int64_t y = 0; y < grid; ++y)
    for (int64_t x = 0; x < grid; ++x) {
      // Per token: (first coordinate, second coordinate) x bands, flattened coordinate-major.
      float coord[2] = {position(c.rope_xy ? x : y), position(c.rope_xy ? y : x)};
      for (int a = 0; a < 2; ++a)
        for (int64_t k = 0; k < bands; ++k) angles[static_cast<size_t>(a * bands + k)] = coord[a] * band[k];
      float* s = out.sin.data() + (y * grid + x) * head;
      float* co = out.cos.data() + (y * grid + x) * head;
      for (int64_t e = 0; e < head; ++e) {
        // interleaved: each angle twice in a row; half: the angles, then the angles again
        float angle = c.rope_half ? angles[static_cast<size_t>(e % (2 * bands))] : angles[static_cast<size_t>(e / 2)];
        s[e] = std::sin(angle);
        co[e] = std::cos(angle);
      }
    }
  return out;
}

}  // namespace vitbatch
