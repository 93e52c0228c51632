// run_config.hpp: the YAML run configuration (see configs/). Every field is optional;
// command-line flags override it. Relative paths are taken relative to the YAML file.
// Unknown keys and bad values are errors naming the file, line and key.
#pragma once

#include "vitbatch/model.hpp"

#include <optional>
#include <string>
#include <vector>

namespace vitbatch {

struct PreprocessOverrides {
  std::optional<int64_t> input_size;
  std::optional<double> crop_pct;
  std::optional<std::string> interpolation;
  std::optional<std::array<float, 3>> mean;
  std::optional<std::array<float, 3>> std;
  void apply(PreprocessConfig& config) const;
};

struct RunConfig {
  std::optional<std::string> model;
  ModelOverrides model_options;
  PreprocessOverrides preprocess;
  std::optional<std::string> backend;
  std::optional<int> threads;
  std::optional<int> lanes;  // backend.lanes
  std::optional<std::string> precision;
  std::string backend_options_json = "{}";
  std::optional<std::string> int8_scales;  // backend.int8_scales
  bool int8_dynamic = false;               // backend.int8_dynamic
  std::optional<int> batch_size;
  std::optional<int> top_k;
  std::optional<std::string> labels;
  std::optional<std::string> output;
  std::vector<std::string> plugin_dirs;
};

RunConfig load_run_config(const std::string& path);
// Parses YAML text; `label` names it in errors, `base_dir` anchors relative paths.
RunConfig parse_run_config(const std::string& yaml, const std::string& label, const std::string& base_dir);

}  // namespace vitbatch
