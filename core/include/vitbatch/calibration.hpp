// calibration.hpp: `vitbatch calibrate`'s loop. Runs the model in fp32 over calibration images
// (decoded and preprocessed as classify does) with the executor showing every linear's input
// to a RangeCollector, and returns the ranges int8 then quantises with. With SmoothQuant
// (smoothquant.hpp) it runs twice over the same crops, held in memory (150 KB an image at
// 224 px): first for each channel's largest |x| at the linears LayerNorms feed, which give
// the factors, then for the ranges, those linears' inputs divided by their factors as the
// folded model will see them.
#pragma once

#include "vitbatch/image.hpp"
#include "vitbatch/input_paths.hpp"
#include "vitbatch/int8_ranges.hpp"
#include "vitbatch/runtime.hpp"

#include <functional>
#include <string>

namespace vitbatch {

struct CalibrationSettings {
  CalibrationMethod method;
  int64_t batch_size = 16;
  int64_t max_images = 0;  // 0: every input
  DecodeOptions decode;
  double smoothquant_alpha = 0;  // 0: no SmoothQuant; else in (0, 1]
};

struct CalibrationResult {
  Int8Ranges ranges;
  Smoothing smoothing;  // empty without SmoothQuant
  int64_t images = 0;  // decoded and run
  int64_t failed = 0;  // could not be decoded (each reported through on_error)
};

// `runtime` must run at fp32 and not have run yet. on_error(path, reason) for each input that
// cannot be used; those are skipped. Throws Error when no image could be used.
CalibrationResult calibrate_int8(Runtime& runtime, InputPaths& inputs, const CalibrationSettings& settings,
                                 const std::function<void(const std::string&, const std::string&)>& on_error);

}  // namespace vitbatch
