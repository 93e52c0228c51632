// preprocess.hpp: timm's eval transform, bit-exact with torchvision on Pillow images:
// Resize(floor(size / crop_pct)) on the shortest side with Pillow's resampling (8-bit
// fixed-point, antialiased), CenterCrop(size), ToTensor, Normalize(mean, std).
#pragma once

#include "vitbatch/image.hpp"
#include "vitbatch/model.hpp"

#include <string>

namespace vitbatch {

// Pillow's Image.resize((width, height), filter) on an RGB image. filter: "bicubic",
// "bilinear", "lanczos", "box" or "hamming".
RgbImage resize_pillow(const RgbImage& image, int64_t width, int64_t height, const std::string& filter);

// torchvision's CenterCrop: pads first (with `fill`) when the image is smaller than the crop.
RgbImage center_crop(const RgbImage& image, int64_t size, std::array<uint8_t, 3> fill = {0, 0, 0});

// Resize + crop as the model's files say (timm's crop_mode center/squash/border, or Hugging
// Face's image processor): the uint8 image the model will see.
RgbImage eval_crop(const RgbImage& image, const PreprocessConfig& config);

// Writes (x / 255 - mean) / std as float32 [3, S, S] (channel-major) into out (Hugging Face:
// x * rescale_factor, then the optional normalisation, as its processor computes them).
void normalize_to_chw(const RgbImage& cropped, const PreprocessConfig& config, float* out);

// The crop the model sees of an input: `bytes` decoded when given (an archive member's, held
// in memory), else the file at `path`; then eval_crop. Throws Error with the reason (the
// caller adds the path).
RgbImage model_crop(const std::string& path, const std::vector<uint8_t>* bytes, const PreprocessConfig& config,
                    const DecodeOptions& decode);
// The whole path from an input to what the model reads: model_crop, then normalize_to_chw
// into out ([3, S, S]).
void load_model_input(const std::string& path, const std::vector<uint8_t>* bytes, const PreprocessConfig& config,
                      const DecodeOptions& decode, float* out);

// Checks interpolation names and sizes; throws Error naming the bad value.
void validate(const PreprocessConfig& config);

}  // namespace vitbatch
