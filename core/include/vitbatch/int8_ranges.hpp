// int8_ranges.hpp: the calibrated input range of every linear, for int8. `vitbatch calibrate`
// observes the inputs over a set of images (RangeCollector), reduces each tensor's values to
// one range (MinMax, or percentiles that clip rare outliers) and saves them as safetensors;
// a run in int8 loads them onto the model, and backends then quantise with fixed scales, so
// an image gets the same answer at any batch size and in any shard.
#pragma once

#include "vitbatch/model.hpp"
#include "vitbatch/smoothquant.hpp"

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace vitbatch {

using Int8Ranges = std::map<std::string, params::Range>;

struct CalibrationMethod {
  // "minmax": the smallest and largest value seen; "percentile": the `percentile`-th and
  // (100 - percentile)-th percentiles of all values seen (per tensor, over every image).
  std::string name = "percentile";
  double percentile = 99.999;
};

// Accumulates, per tensor name, the values it is shown: exact min/max, and a histogram whose
// range doubles (merging bin pairs) whenever a value falls outside it.
class RangeCollector {
 public:
  explicit RangeCollector(CalibrationMethod method);
  void observe(const std::string& name, const float* x, int64_t count);
  Int8Ranges ranges() const;

 private:
  struct Stats {
    double min = 0, max = 0;
    double half_width = 0;  // the histogram covers [-half_width, half_width)
    std::vector<uint64_t> bins;
    uint64_t count = 0;
  };
  CalibrationMethod method_;
  std::map<std::string, Stats> stats_;
};

// The names of the linears of `model` whose input an int8 backend quantises: the nodes of its
// graph with every composite lowered ("patch_embed.proj", "blocks.0.attn.qkv", ...).
std::vector<std::string> quantized_linear_names(const Model& model);

// Marks the linears whose name ends with one of `suffixes` ("mlp.fc2") to stay out of int8.
// Returns how many it marked. Throws Error for a suffix that matches none.
size_t keep_float(Int8Ranges& ranges, const std::vector<std::string>& suffixes);

// Writes `ranges` as safetensors (one F32 [2] tensor per linear: lo, hi) with `metadata`; the
// linears kept out of int8 are listed in the metadata's keep_float (comma-separated). The
// SmoothQuant factors, if any, go in as F32 [channels] tensors named "smoothquant/" + the
// LayerNorm's name; the ranges are then those of the smoothed inputs.
void save_int8_ranges(const std::string& path, const Int8Ranges& ranges,
                      const std::map<std::string, std::string>& metadata, const Smoothing& smoothing = {});

// Reads a file save_int8_ranges wrote; checks that it names exactly the model's linears and
// that every range is finite, folds its SmoothQuant factors into the model's weights
// (fold_smoothing), then sets model.int8_ranges. Throws Error naming the file.
void load_int8_ranges(const std::string& path, Model& model);

// Where a model keeps its default ranges: int8_scales.safetensors beside its weights file
// (Model::path).
std::string default_int8_ranges_path(const std::string& weights_path);

// The ranges file an int8 run reads: `given` when set, else the default when it exists, else "".
std::string find_int8_ranges(const std::string& weights_path, const std::string& given);

}  // namespace vitbatch
