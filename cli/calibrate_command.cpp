// vitbatch calibrate --model M IMAGES... -o FILE: the activation ranges int8 quantises with,
// measured in fp32 over the given images (see vitbatch/calibration.hpp).
#include "commands.hpp"
#include "common_flags.hpp"
#include "exit_codes.hpp"
#include "usage_errors.hpp"

#include "vitbatch/calibration.hpp"
#include "vitbatch/error.hpp"

#include <cstdio>
#include <iostream>
#include <memory>

#include <unistd.h>

namespace vitbatch_cli {
namespace {

std::string format_number(double v) {
  char text[32];
  std::snprintf(text, sizeof text, "%g", v);
  return text;
}

struct CalibrateFlags {
  CommonFlags common;
  std::vector<std::string> inputs;
  std::string output;
  std::string method = "percentile";
  double percentile = 99.999;
  int batch_size = 16;
  int64_t max_images = 512;
  bool null_separated = false;
  std::vector<std::string> keep_float{"none"};
  double smoothquant = 0.8;
};

int run_calibrate(const CalibrateFlags& flags) {
  try {
    if (flags.common.precision && *flags.common.precision != "fp32")
      throw vitbatch::Error("calibrate measures in fp32; --precision " + *flags.common.precision + " does not apply");
    if (flags.common.int8_scales || flags.common.int8_dynamic)
      throw vitbatch::Error("calibrate makes int8 scales; --int8-scales / --int8-dynamic do not apply");
    vitbatch::RunConfig config;
    vitbatch::RuntimeOptions options = resolve_runtime_options(flags.common, config);
    options.backend_options.precision = "fp32";
    options.int8_scales.clear();
    options.int8_dynamic = false;
    vitbatch::Runtime runtime(options);
    for (const std::string& notice : runtime.notices()) std::cerr << "vitbatch: " << notice << "\n";
    vitbatch::CalibrationSettings settings;
    settings.method = {flags.method, flags.percentile};
    settings.batch_size = flags.batch_size;
    settings.max_images = flags.max_images;
    settings.smoothquant_alpha = flags.smoothquant;
    vitbatch::InputPaths inputs(flags.inputs, STDIN_FILENO, flags.null_separated);
    vitbatch::CalibrationResult result = vitbatch::calibrate_int8(
        runtime, inputs, settings,
        [](const std::string& path, const std::string& why) { std::cerr << "vitbatch: " << path << ": " << why << "\n"; });
    std::vector<std::string> kept;
    for (const std::string& s : flags.keep_float)
      if (s != "none") kept.push_back(s);
    size_t marked = vitbatch::keep_float(result.ranges, kept);
    std::map<std::string, std::string> metadata{
        {"method", flags.method},
        {"images", std::to_string(result.images)},
        {"model", runtime.model().path}};
    if (flags.method == "percentile") metadata["percentile"] = format_number(flags.percentile);
    metadata["smoothquant_alpha"] = format_number(flags.smoothquant);
    vitbatch::save_int8_ranges(flags.output, result.ranges, metadata, result.smoothing);
    std::cerr << "vitbatch: calibrated " << result.ranges.size() << " linears on " << result.images << " images ("
              << flags.method << (flags.method == "percentile" ? " " + format_number(flags.percentile) : "")
              << (result.failed ? ", " + std::to_string(result.failed) + " inputs skipped" : "") << "; " << marked
              << " kept out of int8; SmoothQuant "
              << (flags.smoothquant == 0 ? std::string("off")
                                           : "alpha " + format_number(flags.smoothquant) + " on the linears of " +
                                                 std::to_string(result.smoothing.size()) + " LayerNorms")
              << ") -> "
              << flags.output << "\n";
    return result.failed ? kExitSomeFailed : kExitOk;
  } catch (const vitbatch::Error& e) {
    std::cerr << "vitbatch: error: " << e.what() << "\n";
    return kExitUsage;
  }
}

}  // namespace

void set_calibrate_command(CLI::App& app, int* exit_code) {
  auto flags = std::make_shared<CalibrateFlags>();
  CLI::App* cmd = app.add_subcommand(
      "calibrate", "measure the activation ranges int8 quantises with (run in fp32 over sample images)");
  add_common_flags(*cmd, flags->common);
  cmd->add_option("inputs", flags->inputs, "images, directories, or - for paths on stdin")->required();
  cmd->add_option("-o,--output", flags->output, "the ranges file to write (safetensors); int8 runs read it with "
                  "--int8-scales, or by default as int8_scales.safetensors beside the model's weights")->required();
  cmd->add_option("--method", flags->method, "percentile (default): clip the rarest values; minmax: keep every value")
      ->check(CLI::IsMember({"percentile", "minmax"}));
  cmd->add_option("--percentile", flags->percentile, "the percentile kept at each end (default 99.999)")
      ->check(CLI::Range(50.000001, 100.0));
  cmd->add_option("--batch-size", flags->batch_size, "images per model call (default 16)")->check(int_range(1, 1024));
  cmd->add_option("--max-images", flags->max_images, "use at most this many images (default 512; 0: all)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 40));
  cmd->add_option("--keep-float", flags->keep_float,
                  "linears (names, or name endings such as mlp.fc2) that int8 runs leave in float (bf16 where that is "
                  "faster than fp32); 'none' (default) for none. The onednn backend quantises the MLPs' fc2 input, "
                  "GELU's output, with a scale per token, so fc2 keeps top-1 as well in int8 as in bf16")
      ->delimiter(',');
  cmd->add_option("--smoothquant", flags->smoothquant,
                  "SmoothQuant's alpha (default 0.8): the linears a LayerNorm feeds take part of its outlier "
                  "channels into their weights, folded into the LayerNorm at no cost at run time; 0 for none")
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_flag("-0,--null", flags->null_separated, "paths on stdin are NUL-separated (find -print0)");
  cmd->callback([flags, exit_code] { *exit_code = run_calibrate(*flags); });
}

}  // namespace vitbatch_cli
