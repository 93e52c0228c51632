// vitbatch classify PATH... | -
#include "commands.hpp"
#include "common_flags.hpp"
#include "exit_codes.hpp"

#include "vitbatch/classify_run.hpp"
#include "vitbatch/error.hpp"
#include "vitbatch/labels.hpp"

#include <fstream>
#include <iostream>
#include <memory>

namespace vitbatch_cli {
namespace {

struct ClassifyFlags {
  CommonFlags common;
  std::vector<std::string> inputs;
  std::optional<int> top_k;
  std::optional<int> batch_size;
  std::optional<std::string> output;
  std::optional<std::string> labels;
};

int run_classify(const ClassifyFlags& flags) {
  vitbatch::RunConfig config;
  std::unique_ptr<vitbatch::Runtime> runtime;
  std::vector<std::string> labels;
  std::ofstream file;
  int top_k = 5, batch_size = 16;
  try {
    vitbatch::RuntimeOptions options = resolve_runtime_options(flags.common, config);
    top_k = flags.top_k.value_or(config.top_k.value_or(5));
    batch_size = flags.batch_size.value_or(config.batch_size.value_or(16));
    runtime = std::make_unique<vitbatch::Runtime>(options);
    std::optional<std::string> labels_path = flags.labels ? flags.labels : config.labels;
    labels = labels_path ? vitbatch::load_labels(*labels_path) : vitbatch::imagenet1k_labels();
    int64_t classes = runtime->model().config.num_classes;
    if (static_cast<int64_t>(labels.size()) != classes)
      throw vitbatch::Error((labels_path ? *labels_path : std::string("built-in ImageNet-1k labels")) + " has " +
                            std::to_string(labels.size()) + " labels, the model has " +
                            std::to_string(classes) + " classes (pass --labels FILE)");
    std::string output = flags.output.value_or(config.output.value_or("-"));
    if (output != "-") {
      file.open(output, std::ios::out | std::ios::trunc);
      if (!file) throw vitbatch::Error(output + ": cannot open for writing");
    }
  } catch (const vitbatch::Error& e) {
    std::cerr << "vitbatch: error: " << e.what() << "\n";
    return kExitUsage;
  }

  std::ostream& out = file.is_open() ? static_cast<std::ostream&>(file) : std::cout;
  vitbatch::CsvWriter writer(out, top_k, labels);
  writer.write_header();
  vitbatch::InputPaths inputs(flags.inputs, std::cin);
  try {
    vitbatch::ClassifySummary s = vitbatch::classify_inputs(inputs, runtime->model(), runtime->executor(),
                                                            writer, batch_size, top_k, std::cerr);
    writer.flush();
    if (!out) {
      std::cerr << "vitbatch: error: writing the output failed\n";
      return kExitRuntime;
    }
    return s.failed > 0 ? kExitSomeFailed : kExitOk;
  } catch (const vitbatch::Error& e) {
    writer.flush();
    std::cerr << "vitbatch: error: " << e.what() << "\n";
    return kExitRuntime;
  }
}

}  // namespace

void set_classify_command(CLI::App& app, int* exit_code) {
  auto flags = std::make_shared<ClassifyFlags>();
  CLI::App* cmd = app.add_subcommand("classify", "classify images and write CSV predictions in input order");
  add_common_flags(*cmd, flags->common);
  cmd->add_option("inputs", flags->inputs,
                  "image files, directories (recursive, sorted), or - for newline-separated paths on stdin")
      ->required();
  cmd->add_option("-k,--top-k", flags->top_k, "predictions per image (default 5)")->check(CLI::PositiveNumber);
  cmd->add_option("--batch-size", flags->batch_size, "images per model call (default 16)")->check(CLI::PositiveNumber);
  cmd->add_option("-o,--output", flags->output, "CSV file to write (default: stdout)");
  cmd->add_option("--labels", flags->labels, "class names, one per line (default: built-in ImageNet-1k)");
  cmd->callback([flags, exit_code] { *exit_code = run_classify(*flags); });
}

}  // namespace vitbatch_cli
