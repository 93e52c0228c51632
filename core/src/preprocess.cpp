// The resampler follows Pillow's libImaging/Resample.c step for step (coefficients in double,
// normalised to 22-bit fixed point, horizontal pass first, round-half-up and clip to 8 bits)
// because "close" is not enough: the crops must equal Pillow's, or predictions drift from
// timm's on the same photo.
#include "vitbatch/preprocess.hpp"

#include "vitbatch/error.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <immintrin.h>
#include <utility>

namespace vitbatch {
namespace {

constexpr int kPrecisionBits = 32 - 8 - 2;

struct Filter {
  double (*fn)(double);
  double support;
};

double bicubic(double x) {
  const double a = -0.5;
  x = std::fabs(x);
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}
double bilinear(double x) {
  x = std::fabs(x);
  return x < 1.0 ? 1.0 - x : 0.0;
}
double box(double x) { return (x > -0.5 && x <= 0.5) ? 1.0 : 0.0; }
double sinc(double x) {
  if (x == 0.0) return 1.0;
  x *= M_PI;
  return std::sin(x) / x;
}
double lanczos(double x) { return (-3.0 <= x && x < 3.0) ? sinc(x) * sinc(x / 3) : 0.0; }
double hamming(double x) {
  x = std::fabs(x);
  if (x == 0.0) return 1.0;
  if (x >= 1.0) return 0.0;
  x *= M_PI;
  return std::sin(x) / x * (0.54f + 0.46f * std::cos(x));
}

Filter filter_named(const std::string& name) {
  if (name == "bicubic") return {bicubic, 2.0};
  if (name == "bilinear") return {bilinear, 1.0};
  if (name == "lanczos") return {lanczos, 3.0};
  if (name == "box") return {box, 0.5};
  if (name == "hamming") return {hamming, 1.0};
  throw Error("interpolation '" + name + "' is not supported (bicubic, bilinear, lanczos, box, hamming)");
}

struct Coefficients {
  int ksize = 0;
  std::vector<int> bounds;   // per output: first input index, count
  std::vector<int32_t> k;    // per output: ksize fixed-point weights
};

// Pillow's precompute_coeffs + normalize_coeffs_8bpc for the full box [0, in_size), for the
// `count` outputs from `begin` only: each output's weights depend on its own position alone,
// so a window of the output is exactly that part of Pillow's full result.
Coefficients precompute(int64_t in_size, int64_t out_size, const Filter& filter, int64_t begin, int64_t count) {
  double scale = double(in_size) / double(out_size);
  double filterscale = std::max(scale, 1.0);
  double support = filter.support * filterscale;
  Coefficients c;
  c.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  c.bounds.resize(count * 2);
  c.k.assign(static_cast<size_t>(count) * c.ksize, 0);
  std::vector<double> w(c.ksize);
  for (int64_t i = 0; i < count; ++i) {
    int64_t xx = begin + i;
    double center = (xx + 0.5) * scale;
    double ww = 0.0, ss = 1.0 / filterscale;
    int xmin = std::max(static_cast<int>(center - support + 0.5), 0);
    int xmax = std::min(static_cast<int>(center + support + 0.5), static_cast<int>(in_size)) - xmin;
    for (int x = 0; x < xmax; ++x) {
      w[x] = filter.fn((x + xmin - center + 0.5) * ss);
      ww += w[x];
    }
    for (int x = 0; x < xmax; ++x) {
      double v = ww != 0.0 ? w[x] / ww : w[x];
      c.k[i * c.ksize + x] = static_cast<int32_t>(v < 0 ? -0.5 + v * (1 << kPrecisionBits)
                                                        : 0.5 + v * (1 << kPrecisionBits));
    }
    c.bounds[i * 2] = xmin;
    c.bounds[i * 2 + 1] = xmax;
  }
  return c;
}

uint8_t clip8(int32_t v) {
  v >>= kPrecisionBits;
  return static_cast<uint8_t>(v < 0 ? 0 : v > 255 ? 255 : v);
}

// Pillow's accumulators are 32-bit ints that start at one half (rounding); so are ours.
constexpr int32_t kHalf = 1 << (kPrecisionBits - 1);

// One output pixel of the horizontal pass: out[c] = clip8(half + sum of src[t * 3 + c] * k[t]
// over the taps).
void horizontal_pixel(const uint8_t* src, const int32_t* k, int taps, uint8_t* out) {
  int32_t s[3] = {kHalf, kHalf, kHalf};
  for (int t = 0; t < taps; ++t) {
    s[0] += src[t * 3] * k[t];
    s[1] += src[t * 3 + 1] * k[t];
    s[2] += src[t * 3 + 2] * k[t];
  }
  out[0] = clip8(s[0]), out[1] = clip8(s[1]), out[2] = clip8(s[2]);
}

// Pass 1 over one row on AVX2: horizontal_pixel's integer sums, two taps a step (two pixels'
// R, G, B and a zero widened to eight 32-bit lanes, times their taps' weights): exactly
// Pillow's arithmetic, only reordered additions of int32s that never overflow (|sum| < 2^31
// by Pillow's choice of precision). Each pixel's three sums are shifted, clamped and stored
// as vectors (clip8's arithmetic: an arithmetic shift, then saturation to 0..255). The whole
// row is one call: a call per output pixel (6-15 taps on photos) cost as much as its sums.
// The two-tap loads read up to 2 bytes past the last tap's pixel: pixels whose loads would
// leave the image (its very last ones) take the plain loop.
__attribute__((target("avx2"))) void horizontal_row_avx2(const uint8_t* row, const int* bounds, const int32_t* coefficients,
                                                        int ksize, int64_t width, const uint8_t* pixels_end,
                                                        uint8_t* out) {
  const __m128i spread = _mm_setr_epi8(0, 1, 2, -1, 3, 4, 5, -1, -1, -1, -1, -1, -1, -1, -1, -1);
  const __m256i pair = _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1);
  for (int64_t x = 0; x < width; ++x) {
    const uint8_t* src = row + bounds[x * 2] * 3;
    const int32_t* k = coefficients + x * ksize;
    const int taps = bounds[x * 2 + 1];
    if (src + taps * 3 + 2 > pixels_end) {
      horizontal_pixel(src, k, taps, out + x * 3);
      continue;
    }
    __m256i acc = _mm256_setzero_si256();
    int t = 0;
    for (; t + 2 <= taps; t += 2) {
      __m128i bytes = _mm_shuffle_epi8(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(src + t * 3)), spread);
      __m256i weights =
          _mm256_permutevar8x32_epi32(_mm256_castsi128_si256(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(k + t))), pair);
      acc = _mm256_add_epi32(acc, _mm256_mullo_epi32(_mm256_cvtepu8_epi32(bytes), weights));
    }
    __m128i sum = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
    if (t < taps) {
      int32_t word;
      std::memcpy(&word, src + t * 3, sizeof word);
      sum = _mm_add_epi32(sum, _mm_mullo_epi32(_mm_cvtepu8_epi32(_mm_cvtsi32_si128(word)), _mm_set1_epi32(k[t])));
    }
    sum = _mm_srai_epi32(_mm_add_epi32(sum, _mm_set1_epi32(kHalf)), kPrecisionBits);
    const __m128i packed = _mm_packus_epi16(_mm_packs_epi32(sum, sum), _mm_setzero_si128());
    const uint32_t rgb = static_cast<uint32_t>(_mm_cvtsi128_si32(packed));
    out[x * 3] = static_cast<uint8_t>(rgb), out[x * 3 + 1] = static_cast<uint8_t>(rgb >> 8);
    out[x * 3 + 2] = static_cast<uint8_t>(rgb >> 16);
  }
}

// The window [left, left+width) x [top, top+height) of Pillow's resize of `in` to
// full_w x full_h: the horizontal pass (if the width changes) over just the source rows the
// vertical pass reads, then the vertical pass (if the height changes), both 8-bit with
// Pillow's rounding in between, so every pixel equals Pillow's.
// Cloned for AVX2: the vertical pass is a 32-bit multiply-add over whole rows.
__attribute__((target_clones("avx2", "default")))
RgbImage resize_window(const RgbImage& in, int64_t full_w, int64_t full_h, const Filter& filter, int64_t left,
                       int64_t top, int64_t width, int64_t height) {
  bool horizontal = full_w != in.width, vertical = full_h != in.height;
  Coefficients cy;
  int64_t row_first = top, row_count = height;  // source rows the vertical pass reads
  if (vertical) {
    cy = precompute(in.height, full_h, filter, top, height);
    row_first = cy.bounds[0];
    int64_t row_end = 0;
    for (int64_t i = 0; i < height; ++i) row_end = std::max<int64_t>(row_end, cy.bounds[i * 2] + cy.bounds[i * 2 + 1]);
    row_count = row_end - row_first;
  }
  // Pass 1: columns [left, left+width) of rows [row_first, row_first+row_count). The three
  // channels of an output pixel share their taps, so they are summed together.
  RgbImage tmp{width, row_count, std::vector<uint8_t>(static_cast<size_t>(width * row_count * 3))};
  Coefficients cx;
  if (horizontal) cx = precompute(in.width, full_w, filter, left, width);
  const uint8_t* pixels_end = in.pixels.data() + in.pixels.size();
  static const bool avx2 = __builtin_cpu_supports("avx2");
  for (int64_t y = 0; y < row_count; ++y) {
    const uint8_t* row = &in.pixels[(row_first + y) * in.width * 3];
    uint8_t* out = &tmp.pixels[y * width * 3];
    if (!horizontal) {
      std::copy_n(row + left * 3, width * 3, out);
      continue;
    }
    if (avx2) {
      horizontal_row_avx2(row, cx.bounds.data(), cx.k.data(), cx.ksize, width, pixels_end, out);
      continue;
    }
    for (int64_t x = 0; x < width; ++x)
      horizontal_pixel(row + cx.bounds[x * 2] * 3, &cx.k[x * cx.ksize], cx.bounds[x * 2 + 1], out + x * 3);
  }
  if (!vertical) return tmp;
  // Pass 2: rows [top, top+height). Every value of an output row has the same taps, so the
  // sum runs tap by tap over the whole row: a loop the compiler vectorises.
  RgbImage out{width, height, std::vector<uint8_t>(static_cast<size_t>(width * height * 3))};
  const int64_t n = width * 3;
  std::vector<int32_t> acc(static_cast<size_t>(n));
  for (int64_t y = 0; y < height; ++y) {
    std::fill(acc.begin(), acc.end(), kHalf);
    const int32_t* k = &cy.k[y * cy.ksize];
    for (int t = 0, taps = cy.bounds[y * 2 + 1]; t < taps; ++t) {
      const uint8_t* src = &tmp.pixels[(cy.bounds[y * 2] - row_first + t) * n];
      const int32_t w = k[t];
      for (int64_t j = 0; j < n; ++j) acc[j] += src[j] * w;
    }
    uint8_t* dst = &out.pixels[y * n];
    for (int64_t j = 0; j < n; ++j) dst[j] = clip8(acc[j]);
  }
  return out;
}

// torchvision's Resize(int) and Hugging Face's shortest_edge resize alike: the short side
// becomes `size`, the long one int(size * long / short), at least 1.
std::pair<int64_t, int64_t> short_side_to(const RgbImage& image, int64_t size) {
  bool portrait = image.width <= image.height;
  int64_t shorter = portrait ? image.width : image.height, longer = portrait ? image.height : image.width;
  int64_t new_long = std::max<int64_t>(1, static_cast<int64_t>(double(size * longer) / double(shorter)));
  return portrait ? std::pair<int64_t, int64_t>{size, new_long} : std::pair<int64_t, int64_t>{new_long, size};
}

// torchvision's int(round((length - size) / 2.0)): Python rounds halves to even, so an odd
// margin of 25 starts the crop at 12, one of 27 at 14.
int64_t crop_offset(int64_t length, int64_t size) {
  int64_t margin = length - size, half = margin / 2;
  if (margin % 2 == 1 && half % 2 == 1) ++half;
  return half;
}

}  // namespace

RgbImage resize_pillow(const RgbImage& image, int64_t width, int64_t height, const std::string& filter_name) {
  Filter filter = filter_named(filter_name);
  if (width <= 0 || height <= 0) throw Error("cannot resize to " + std::to_string(width) + "x" + std::to_string(height));
  return resize_window(image, width, height, filter, 0, 0, width, height);
}

// The size x size window whose top-left corner is (left, top) in the image (negative or past
// the edge: those pixels are `fill`).
static RgbImage window(const RgbImage& src, int64_t size, int64_t left, int64_t top, std::array<uint8_t, 3> fill) {
  RgbImage out;
  out.width = out.height = size;
  out.pixels.resize(static_cast<size_t>(size * size * 3));
  for (int64_t y = 0; y < size; ++y)
    for (int64_t x = 0; x < size; ++x) {
      int64_t sy = y + top, sx = x + left;
      bool inside = sy >= 0 && sy < src.height && sx >= 0 && sx < src.width;
      for (int c = 0; c < 3; ++c)
        out.pixels[(y * size + x) * 3 + c] = inside ? src.pixels[(sy * src.width + sx) * 3 + c] : fill[c];
    }
  return out;
}

RgbImage center_crop(const RgbImage& image, int64_t size, std::array<uint8_t, 3> fill) {
  // torchvision pads (size - w) // 2 on the left first, then crops at round-half-even offsets.
  auto offset = [&](int64_t length) { return length < size ? -((size - length) / 2) : crop_offset(length, size); };
  return window(image, size, offset(image.width), offset(image.height), fill);
}

namespace {

// Hugging Face's center_crop: floor offsets; a smaller image is centred with the extra pixel
// of an odd margin before it.
RgbImage hf_center_crop(const RgbImage& image, int64_t size) {
  auto offset = [&](int64_t length) { return length < size ? -((size - length + 1) / 2) : (length - size) / 2; };
  return window(image, size, offset(image.width), offset(image.height), {0, 0, 0});
}

RgbImage hf_crop(const RgbImage& image, const PreprocessConfig& c) {
  if (!c.hf_do_resize) return image.width == c.input_size && image.height == c.input_size ? image : hf_center_crop(image, c.input_size);
  auto [w, h] = c.hf_shortest_edge ? short_side_to(image, c.hf_shortest_edge)
                                   : std::pair<int64_t, int64_t>{c.hf_resize_width, c.hf_resize_height};
  const int64_t size = c.input_size;
  if (w < size || h < size) return hf_center_crop(resize_pillow(image, w, h, c.interpolation), size);
  // Resample only the crop (floor offsets), as eval_crop does: a 1x20000 strip resized to a
  // shortest edge of 256 would otherwise be held whole at 256x5120000.
  return resize_window(image, w, h, filter_named(c.interpolation), (w - size) / 2, (h - size) / 2, size, size);
}

}  // namespace

void validate(const PreprocessConfig& config) {
  filter_named(config.interpolation);
  if (config.crop_mode != "center" && config.crop_mode != "squash" && config.crop_mode != "border")
    throw Error("crop_mode '" + config.crop_mode + "' is not supported (center, squash, border)");
  if (config.input_size <= 0 || config.input_size > 8192) throw Error("input size must be in 1..8192");
  // Below 0.1 the resized image would be over 10x the crop a side (and overflow soon after).
  if (!(config.crop_pct >= 0.1 && config.crop_pct <= 4.0))
    throw Error("crop_pct must be in [0.1, 4], got " + std::to_string(config.crop_pct));
  // Values that would turn every input into inf or NaN, so that every answer is garbage.
  for (float m : config.mean)
    if (!std::isfinite(m) || std::fabs(m) > 1e6f) throw Error("mean must be finite numbers within +-1e6");
  for (float s : config.std)
    if (!std::isfinite(s) || std::fabs(s) < 1e-6f || std::fabs(s) > 1e6f)
      throw Error("std must be finite numbers with 1e-6 <= |std| <= 1e6");
}

RgbImage eval_crop(const RgbImage& image, const PreprocessConfig& config) {
  if (image.width <= 0 || image.height <= 0) throw Error("image has no pixels");
  if (config.hf_processor) return hf_crop(image, config);
  const int64_t scaled = static_cast<int64_t>(std::floor(double(config.input_size) / config.crop_pct));
  if (config.crop_mode == "squash")  // both sides to floor(size / crop_pct), then the centre
    return center_crop(resize_pillow(image, scaled, scaled, config.interpolation), config.input_size);
  if (config.crop_mode == "border") {
    // timm's ResizeKeepRatio(longest=1): the long side to the scaled size, round() halves to
    // even; then CenterCropOrPad with the mean as fill.
    double ratio = std::max(double(image.height) / double(scaled), double(image.width) / double(scaled));
    int64_t h = std::max<int64_t>(1, static_cast<int64_t>(std::nearbyint(image.height / ratio)));
    int64_t w = std::max<int64_t>(1, static_cast<int64_t>(std::nearbyint(image.width / ratio)));
    std::array<uint8_t, 3> fill{};
    for (int c = 0; c < 3; ++c) fill[c] = static_cast<uint8_t>(std::clamp(std::nearbyint(255.0 * config.mean[c]), 0.0, 255.0));
    return center_crop(resize_pillow(image, w, h, config.interpolation), config.input_size, fill);
  }
  // torchvision Resize(int): the short side becomes `size`, the long one int(size * long / short).
  auto [new_w, new_h] = short_side_to(image, static_cast<int64_t>(std::floor(double(config.input_size) / config.crop_pct)));
  if (new_w < config.input_size || new_h < config.input_size)  // crop_pct > 1: torchvision pads
    return center_crop(resize_pillow(image, new_w, new_h, config.interpolation), config.input_size);
  // Resample only the crop: the same pixels as resizing all and cropping, without ever
  // holding the full resized image (a 1x20000 strip would resize to 248x4960000).
  return resize_window(image, new_w, new_h, filter_named(config.interpolation), crop_offset(new_w, config.input_size),
                       crop_offset(new_h, config.input_size), config.input_size, config.input_size);
}

// Each output value depends only on the channel and the byte, so the arithmetic runs once
// per (channel, byte) into a table, exactly as written, and the image is looked up.
void normalize_to_chw(const RgbImage& img, const PreprocessConfig& config, float* out) {
  size_t plane = static_cast<size_t>(img.width * img.height);
  float table[3][256];
  for (int ch = 0; ch < 3; ++ch)
    for (int byte = 0; byte < 256; ++byte) {
      if (config.hf_processor) {  // numpy: float64 product cast to float32, then float32 arithmetic
        double v = byte;
        float x = static_cast<float>(config.hf_do_rescale ? v * config.hf_rescale_factor : v);
        table[ch][byte] = config.hf_do_normalize ? (x - config.mean[ch]) / config.std[ch] : x;
      } else {
        float x = static_cast<float>(byte) / 255.0f;                 // ToTensor, in float32
        table[ch][byte] = (x - config.mean[ch]) / config.std[ch];  // Normalize
      }
    }
  for (int ch = 0; ch < 3; ++ch)
    for (size_t i = 0; i < plane; ++i) out[ch * plane + i] = table[ch][img.pixels[i * 3 + ch]];
}

RgbImage model_crop(const std::string& path, const std::vector<uint8_t>* bytes, const PreprocessConfig& config,
                    const DecodeOptions& decode) {
  return eval_crop(bytes ? decode_image(bytes->data(), bytes->size(), decode) : read_image(path, decode), config);
}

void load_model_input(const std::string& path, const std::vector<uint8_t>* bytes, const PreprocessConfig& config,
                      const DecodeOptions& decode, float* out) {
  normalize_to_chw(model_crop(path, bytes, config, decode), config, out);
}

}  // namespace vitbatch
