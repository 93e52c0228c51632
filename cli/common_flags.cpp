#include "common_flags.hpp"

#include "usage_errors.hpp"

#include "vitbatch/error.hpp"
#include "vitbatch/limits.hpp"
#include "vitbatch/plugin_host.hpp"

#include <algorithm>
#include <thread>

namespace vitbatch_cli {

void add_common_flags(CLI::App& command, CommonFlags& flags) {
  command.add_option("-m,--model", flags.model,
                     "safetensors file, or a directory with model.safetensors (+ config.json)");
  command.add_option("-c,--config", flags.config, "YAML run configuration (flags override it)");
  command.add_option("-b,--backend", flags.backend,
                     "backend plugin to run on, a list tried in order (cuda,onednn), or auto (default): the "
                     "best usable one (see `vitbatch backends`)");
  command.add_option("--threads", flags.threads, "threads for the backend (default: all cores)")
      ->check(int_range(1, vitbatch::kMaxThreads));
  command.add_option("--lanes", flags.lanes,
                     "images run side by side, each lane on its share of the threads (default: one lane per thread "
                     "where the backend allows it; 1: all threads on each op of the whole batch)")
      ->check(int_range(1, vitbatch::kMaxThreads));
  command.add_option("--precision", flags.precision, "fp32 (default), bf16, fp16 or int8, if the backend has it")
      ->check(CLI::IsMember({"fp32", "bf16", "fp16", "int8"}));
  command.add_option("--backend-option", flags.backend_option_pairs,
                     "KEY=VALUE passed to the backend (as the YAML's backend.options), e.g. tf32=true")
      ->check([](const std::string& pair) {
        return pair.find('=') == std::string::npos || pair[0] == '=' ? std::string("expected KEY=VALUE, got '") + pair + "'"
                                                                      : std::string();
      });
  command.add_option("--int8-scales", flags.int8_scales,
                     "int8: the activation ranges from `vitbatch calibrate` (default: int8_scales.safetensors beside "
                     "the model's weights)");
  command.add_flag("--int8-dynamic", flags.int8_dynamic,
                   "int8 without calibration: quantise each model call by its own range (each image alone in lanes; "
                   "with --lanes 1 an image's answer depends on its batch-mates)");
  command.add_option("--plugin-dir", flags.plugin_dirs, "directory searched first for backend plugins");
  command.add_option("--heads", flags.heads,
                     "attention heads, for a checkpoint whose config.json names none (as the YAML's model_options.heads)")
      ->check(int_range(1, vitbatch::kMaxHeads));
  command.add_option("--image-size", flags.image_size,
                     "run at this input size (a multiple of the patch size): the position embedding is resampled as "
                     "timm does and the preprocessing follows; 'test': timm's test_input_size (as the YAML's "
                     "model_options.image_size)")
      ->check([](const std::string& v) {
        if (v == "test") return std::string();
        return int_range(1, vitbatch::kMaxInputSize)(v).empty() ? std::string() : "expected a size in 1.." +
               std::to_string(vitbatch::kMaxInputSize) + " or 'test', got '" + v + "'";
      });
}

vitbatch::RuntimeOptions resolve_runtime_options(const CommonFlags& flags, vitbatch::RunConfig& config) {
  if (flags.config) config = vitbatch::load_run_config(*flags.config);
  vitbatch::RuntimeOptions o;
  if (flags.model) o.model = *flags.model;
  else if (config.model) o.model = *config.model;
  else throw vitbatch::Error("no model: pass --model PATH or set 'model' in the --config file");
  o.model_options = config.model_options;
  if (flags.heads) o.model_options.heads = *flags.heads;
  if (flags.image_size) {
    o.model_options.test_input_size = *flags.image_size == "test";
    o.model_options.image_size.reset();
    if (!o.model_options.test_input_size) o.model_options.image_size = std::stoll(*flags.image_size);
  }
  o.preprocess = config.preprocess;
  o.backend = flags.backend.value_or(config.backend.value_or("auto"));
  int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  o.backend_options.threads = flags.threads.value_or(config.threads.value_or(cores));
  o.lanes = flags.lanes.value_or(config.lanes.value_or(0));
  o.backend_options.precision = flags.precision.value_or(config.precision.value_or("fp32"));
  o.backend_options.options_json = config.backend_options_json;
  if (!flags.backend_option_pairs.empty())  // each checked by the flag's validator
    o.backend_options.options_json = vitbatch::with_option_pairs(o.backend_options.options_json, flags.backend_option_pairs);
  if (flags.int8_scales) o.int8_scales = *flags.int8_scales;
  else if (config.int8_scales && !flags.int8_dynamic) o.int8_scales = *config.int8_scales;
  o.int8_dynamic = flags.int8_dynamic || (config.int8_dynamic && !flags.int8_scales);
  o.plugin_dirs_flag = flags.plugin_dirs;
  o.plugin_dirs_config = config.plugin_dirs;
  return o;
}

}  // namespace vitbatch_cli
