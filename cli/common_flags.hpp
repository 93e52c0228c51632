// common_flags.hpp: the flags that choose a model and a backend, shared by the subcommands
// that run a model, and their merge with the YAML config (flags win).
#pragma once

#include "vitbatch/run_config.hpp"
#include "vitbatch/runtime.hpp"

#include <CLI/CLI.hpp>

#include <optional>
#include <string>
#include <vector>

namespace vitbatch_cli {

struct CommonFlags {
  std::optional<std::string> model;
  std::optional<std::string> config;
  std::optional<std::string> backend;
  std::optional<int> threads;
  std::optional<int> lanes;
  std::optional<std::string> precision;
  std::vector<std::string> backend_option_pairs;  // --backend-option KEY=VALUE
  std::vector<std::string> plugin_dirs;
  std::optional<int> heads;  // where neither config.json nor timm's registry gives them
  std::optional<std::string> image_size;  // N, or "test"
  std::optional<std::string> int8_scales;
  bool int8_dynamic = false;
};

void add_common_flags(CLI::App& command, CommonFlags& flags);

// Loads --config (if given) and merges: flags over the config over defaults. Throws
// vitbatch::Error for a bad config or a missing model.
vitbatch::RuntimeOptions resolve_runtime_options(const CommonFlags& flags, vitbatch::RunConfig& config);

}  // namespace vitbatch_cli
