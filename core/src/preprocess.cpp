// The resampler follows Pillow's libImaging/Resample.c step for step (coefficients in double,
// normalised to 22-bit fixed point, horizontal pass first, round-half-up and clip to 8 bits)
// because "close" is not enough: the crops must equal Pillow's, or predictions drift from
// timm's on the same photo.
#include "vitbatch/preprocess.hpp"

#include "vitbatch/error.hpp"

#include <algorithm>
#include <cmath>

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

// Pillow's precompute_coeffs + normalize_coeffs_8bpc for the full box [0, in_size).
Coefficients precompute(int64_t in_size, int64_t out_size, const Filter& filter) {
  double scale = double(in_size) / double(out_size);
  double filterscale = std::max(scale, 1.0);
  double support = filter.support * filterscale;
  Coefficients c;
  c.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  c.bounds.resize(out_size * 2);
  c.k.assign(static_cast<size_t>(out_size) * c.ksize, 0);
  std::vector<double> w(c.ksize);
  for (int64_t xx = 0; xx < out_size; ++xx) {
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
      c.k[xx * c.ksize + x] = static_cast<int32_t>(v < 0 ? -0.5 + v * (1 << kPrecisionBits)
                                                         : 0.5 + v * (1 << kPrecisionBits));
    }
    c.bounds[xx * 2] = xmin;
    c.bounds[xx * 2 + 1] = xmax;
  }
  return c;
}

uint8_t clip8(int64_t v) {
  v >>= kPrecisionBits;
  return static_cast<uint8_t>(v < 0 ? 0 : v > 255 ? 255 : v);
}

// One pass along x (horizontal) or y (vertical) of an interleaved RGB image.
RgbImage resample_pass(const RgbImage& in, int64_t out_size, const Filter& filter, bool horizontal) {
  int64_t in_size = horizontal ? in.width : in.height;
  Coefficients c = precompute(in_size, out_size, filter);
  RgbImage out;
  out.width = horizontal ? out_size : in.width;
  out.height = horizontal ? in.height : out_size;
  out.pixels.resize(static_cast<size_t>(out.width * out.height * 3));
  int64_t step = horizontal ? 3 : in.width * 3;  // distance between neighbouring taps
  for (int64_t y = 0; y < out.height; ++y)
    for (int64_t x = 0; x < out.width; ++x) {
      int64_t o = horizontal ? x : y;
      int first = c.bounds[o * 2], count = c.bounds[o * 2 + 1];
      const int32_t* k = &c.k[o * c.ksize];
      const uint8_t* src = horizontal ? &in.pixels[(y * in.width + first) * 3]
                                      : &in.pixels[(first * in.width + x) * 3];
      for (int ch = 0; ch < 3; ++ch) {
        int64_t ss = 1 << (kPrecisionBits - 1);
        for (int t = 0; t < count; ++t) ss += int64_t(src[t * step + ch]) * k[t];
        out.pixels[(y * out.width + x) * 3 + ch] = clip8(ss);
      }
    }
  return out;
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
  // Pillow only runs the passes whose size changes.
  RgbImage tmp = width != image.width ? resample_pass(image, width, filter, true) : image;
  return height != image.height ? resample_pass(tmp, height, filter, false) : tmp;
}

RgbImage center_crop(const RgbImage& image, int64_t size) {
  RgbImage src = image;
  if (size > image.width || size > image.height) {  // pad with black, as torchvision does
    int64_t pad_left = size > image.width ? (size - image.width) / 2 : 0;
    int64_t pad_top = size > image.height ? (size - image.height) / 2 : 0;
    int64_t pad_right = size > image.width ? (size - image.width + 1) / 2 : 0;
    int64_t pad_bottom = size > image.height ? (size - image.height + 1) / 2 : 0;
    src.width = image.width + pad_left + pad_right;
    src.height = image.height + pad_top + pad_bottom;
    src.pixels.assign(static_cast<size_t>(src.width * src.height * 3), 0);
    for (int64_t y = 0; y < image.height; ++y)
      std::copy_n(&image.pixels[y * image.width * 3], image.width * 3,
                  &src.pixels[((y + pad_top) * src.width + pad_left) * 3]);
  }
  int64_t top = crop_offset(src.height, size), left = crop_offset(src.width, size);
  RgbImage out;
  out.width = out.height = size;
  out.pixels.resize(static_cast<size_t>(size * size * 3));
  for (int64_t y = 0; y < size; ++y)
    std::copy_n(&src.pixels[((y + top) * src.width + left) * 3], size * 3, &out.pixels[y * size * 3]);
  return out;
}

void validate(const PreprocessConfig& config) {
  filter_named(config.interpolation);
  if (config.input_size <= 0) throw Error("input size must be > 0");
  if (!(config.crop_pct > 0.0 && config.crop_pct <= 4.0)) throw Error("crop_pct must be in (0, 4]");
  for (float s : config.std)
    if (!(s != 0.0f)) throw Error("std must not be 0");
}

RgbImage eval_crop(const RgbImage& image, const PreprocessConfig& config) {
  if (image.width <= 0 || image.height <= 0) throw Error("image has no pixels");
  // torchvision Resize(int): the short side becomes `size`, the long one int(size * long / short).
  int64_t size = static_cast<int64_t>(std::floor(double(config.input_size) / config.crop_pct));
  bool portrait = image.width <= image.height;
  int64_t shorter = portrait ? image.width : image.height, longer = portrait ? image.height : image.width;
  int64_t new_long = static_cast<int64_t>(double(size * longer) / double(shorter));
  new_long = std::max<int64_t>(new_long, 1);
  RgbImage resized = portrait ? resize_pillow(image, size, new_long, config.interpolation)
                              : resize_pillow(image, new_long, size, config.interpolation);
  return center_crop(resized, config.input_size);
}

void normalize_to_chw(const RgbImage& img, const PreprocessConfig& config, float* out) {
  size_t plane = static_cast<size_t>(img.width * img.height);
  for (int ch = 0; ch < 3; ++ch)
    for (size_t i = 0; i < plane; ++i) {
      float x = static_cast<float>(img.pixels[i * 3 + ch]) / 255.0f;  // ToTensor, in float32
      out[ch * plane + i] = (x - config.mean[ch]) / config.std[ch];   // Normalize
    }
}

}  // namespace vitbatch
