#include "vitbatch/attention_maps.hpp"

#include "vitbatch/error.hpp"

#include <png.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <numeric>

namespace vitbatch {

namespace {

// The heads of [H, T, T] fused into [T, T].
std::vector<double> fuse(const float* probs, const AttentionShape& s, HeadFusion fusion) {
  const int64_t T = s.tokens, TT = T * T;
  std::vector<double> out(probs, probs + TT);
  for (int64_t h = 1; h < s.heads; ++h) {
    const float* p = probs + h * TT;
    for (int64_t i = 0; i < TT; ++i) {
      if (fusion == HeadFusion::Mean) out[i] += p[i];
      else if (fusion == HeadFusion::Max) out[i] = std::max(out[i], double(p[i]));
      else out[i] = std::min(out[i], double(p[i]));
    }
  }
  if (fusion == HeadFusion::Mean)
    for (double& v : out) v /= double(s.heads);
  return out;
}

// The patch tokens' part of a row of T values, scaled to a maximum of 1.
std::vector<float> scaled_patches(const std::vector<double>& row, const AttentionShape& s) {
  std::vector<float> out(row.begin() + s.prefix, row.end());
  const float top = out.empty() ? 0.0f : *std::max_element(out.begin(), out.end());
  if (top > 0)
    for (float& v : out) v /= top;
  return out;
}

// The map's row: the class token's, or the mean of all rows; over the patch tokens.
std::vector<float> patch_row(const std::vector<double>& m, const AttentionShape& s) {
  const int64_t T = s.tokens;
  std::vector<double> row(static_cast<size_t>(T), 0.0);
  if (s.class_token) {
    std::copy(m.begin(), m.begin() + T, row.begin());
  } else {
    for (int64_t i = 0; i < T; ++i)
      for (int64_t j = 0; j < T; ++j) row[j] += m[i * T + j] / double(T);
  }
  return scaled_patches(row, s);
}

double clamp01(double v) { return v < 0 ? 0 : v > 1 ? 1 : v; }

}  // namespace

HeadFusion parse_head_fusion(const std::string& name) {
  if (name == "mean") return HeadFusion::Mean;
  if (name == "max") return HeadFusion::Max;
  if (name == "min") return HeadFusion::Min;
  throw Error("unknown head fusion '" + name + "' (mean, max or min)");
}

std::vector<float> attention_rollout(const std::vector<const float*>& blocks, const AttentionShape& s, HeadFusion fusion,
                                     double discard_ratio) {
  const int64_t T = s.tokens, TT = T * T;
  std::vector<std::vector<double>> layers;
  std::vector<int64_t> order;
  for (const float* probs : blocks) {
    std::vector<double> a = fuse(probs, s, fusion);
    const int64_t drop = static_cast<int64_t>(double(TT) * discard_ratio);
    if (drop > 0) {
      order.resize(static_cast<size_t>(TT));
      std::iota(order.begin(), order.end(), 0);
      // The lowest entries, ties to the lower index; the class token's row and column stay.
      std::stable_sort(order.begin(), order.end(), [&](int64_t x, int64_t y) { return a[x] < a[y]; });
      for (int64_t k = 0; k < drop; ++k) {
        const int64_t i = order[k] / T, j = order[k] % T;
        if (s.class_token && (i == 0 || j == 0)) continue;
        a[order[k]] = 0.0;
      }
    }
    for (int64_t i = 0; i < T; ++i) {
      double sum = 0.0;
      for (int64_t j = 0; j < T; ++j) {
        double& v = a[i * T + j];
        v = 0.5 * v + (i == j ? 0.5 : 0.0);
        sum += v;
      }
      for (int64_t j = 0; j < T; ++j) a[i * T + j] /= sum;
    }
    layers.push_back(std::move(a));
  }
  // Only one row of the rollout A_L ... A_1 is wanted: the class token's (or the mean row),
  // v^T A_L ... A_1, taken left to right as vector-matrix products (T^2 a layer, not T^3).
  std::vector<double> v(static_cast<size_t>(T), s.class_token ? 0.0 : 1.0 / double(T)), next(static_cast<size_t>(T));
  if (s.class_token) v[0] = 1.0;
  for (auto layer = layers.rbegin(); layer != layers.rend(); ++layer) {
    std::fill(next.begin(), next.end(), 0.0);
    for (int64_t k = 0; k < T; ++k) {
      if (v[k] == 0.0) continue;
      const double* row = &(*layer)[k * T];
      for (int64_t j = 0; j < T; ++j) next[j] += v[k] * row[j];
    }
    v.swap(next);
  }
  return scaled_patches(v, s);
}

std::vector<float> last_layer_attention(const float* last, const AttentionShape& s, HeadFusion fusion) {
  return patch_row(fuse(last, s, fusion), s);
}

void viridis(double t, uint8_t rgb[3]) {
  static const double c[7][3] = {{0.2777273272234177, 0.005407344544966578, 0.3340998053353061},
                                 {0.1050930431085774, 1.404613529898575, 1.384590162594685},
                                 {-0.3308618287255563, 0.214847559468213, 0.09509516302823659},
                                 {-4.634230498983486, -5.799100973351585, -19.33244095627987},
                                 {6.228269936347081, 14.17993336680509, 56.69055260068105},
                                 {4.776384997670288, -13.74514537774601, -65.35303263337234},
                                 {-5.435455855934631, 4.645852612178535, 26.3124352495832}};
  t = clamp01(t);
  for (int ch = 0; ch < 3; ++ch) {
    double v = c[6][ch];
    for (int k = 5; k >= 0; --k) v = c[k][ch] + t * v;
    rgb[ch] = static_cast<uint8_t>(std::lround(255.0 * clamp01(v)));
  }
}

RgbImage overlay(const RgbImage& image, const std::vector<float>& map, int64_t grid, double alpha) {
  RgbImage out = image;
  const int64_t W = image.width, H = image.height;
  auto at = [&](int64_t y, int64_t x) {
    return double(map[static_cast<size_t>(std::clamp<int64_t>(y, 0, grid - 1) * grid + std::clamp<int64_t>(x, 0, grid - 1))]);
  };
  for (int64_t y = 0; y < H; ++y) {
    const double sy = std::max(0.0, (y + 0.5) * double(grid) / double(H) - 0.5);
    const int64_t y0 = static_cast<int64_t>(sy);
    const double fy = sy - double(y0);
    for (int64_t x = 0; x < W; ++x) {
      const double sx = std::max(0.0, (x + 0.5) * double(grid) / double(W) - 0.5);
      const int64_t x0 = static_cast<int64_t>(sx);
      const double fx = sx - double(x0);
      const double v = (1 - fy) * ((1 - fx) * at(y0, x0) + fx * at(y0, x0 + 1)) +
                       fy * ((1 - fx) * at(y0 + 1, x0) + fx * at(y0 + 1, x0 + 1));
      uint8_t c[3];
      viridis(v, c);
      uint8_t* p = &out.pixels[static_cast<size_t>((y * W + x) * 3)];
      for (int ch = 0; ch < 3; ++ch) p[ch] = static_cast<uint8_t>(std::lround((1 - alpha) * p[ch] + alpha * c[ch]));
    }
  }
  return out;
}

RgbImage side_by_side(const std::vector<const RgbImage*>& panels) {
  RgbImage out;
  out.height = panels.front()->height;
  for (const RgbImage* p : panels) out.width += p->width;
  out.pixels.resize(static_cast<size_t>(out.width * out.height * 3));
  int64_t left = 0;
  for (const RgbImage* p : panels) {
    for (int64_t y = 0; y < out.height; ++y)
      std::memcpy(&out.pixels[static_cast<size_t>((y * out.width + left) * 3)], &p->pixels[static_cast<size_t>(y * p->width * 3)],
                  static_cast<size_t>(p->width * 3));
    left += p->width;
  }
  return out;
}

void write_png(const std::string& path, const RgbImage& image) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) throw Error(path + ": cannot write: " + std::strerror(errno));
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png ? png_create_info_struct(png) : nullptr;
  if (!png || !info || setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    std::fclose(f);
    throw Error(path + ": cannot write the PNG");
  }
  png_init_io(png, f);
  // Level 3: explain writes a picture per image, and at zlib's default level compressing was
  // a third of its time; at 3 it is much less, for files of about the same size here.
  png_set_compression_level(png, 3);
  png_set_IHDR(png, info, static_cast<png_uint_32>(image.width), static_cast<png_uint_32>(image.height), 8, PNG_COLOR_TYPE_RGB,
               PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  for (int64_t y = 0; y < image.height; ++y)
    png_write_row(png, const_cast<png_bytep>(&image.pixels[static_cast<size_t>(y * image.width * 3)]));
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  if (std::fclose(f) != 0) throw Error(path + ": cannot write: " + std::strerror(errno));
}

}  // namespace vitbatch
