// vitbatch classify PATH... | -
#include "commands.hpp"
#include "common_flags.hpp"
#include "exit_codes.hpp"

#include "vitbatch/classify_pipeline.hpp"
#include "vitbatch/error.hpp"
#include "vitbatch/labels.hpp"
#include "vitbatch/resume.hpp"
#include "vitbatch/shard.hpp"

#include <unistd.h>

#include <atomic>
#include <csignal>
#include <iostream>
#include <memory>
#include <sstream>
#include <thread>

namespace vitbatch_cli {
namespace {

struct ClassifyFlags {
  CommonFlags common;
  std::vector<std::string> inputs;
  std::optional<int> top_k;
  std::optional<int> batch_size;
  std::optional<std::string> output;
  std::optional<std::string> labels;
  std::optional<int> decode_threads;
  std::string format = "csv";
  bool resume = false;
  std::optional<std::string> shard;
  bool null_separated = false;
  std::string progress = "auto";
  int64_t max_pixels = vitbatch::DecodeOptions{}.max_pixels;
  bool exif_transpose = false;
};

std::atomic<int> g_stop_signal{0};

// First SIGINT/SIGTERM: finish the rows in flight, flush, summarise. A second one kills, as
// the default action does.
void on_stop_signal(int sig) {
  g_stop_signal.store(sig);
  std::signal(sig, SIG_DFL);
}

// One decoder per core, up to 4: decoders sleep while the model is the bottleneck (large
// models), and with a small model on few cores every extra decoder still pays (ViT-Ti on
// 2 cores: 42 img/s with one, 48 with two).
int default_decode_threads() {
  int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  return std::max(1, std::min(4, cores));
}

// Counts the inputs in the background for the progress bar's total and ETA (not possible
// when paths come from stdin).
class InputCounter {
 public:
  InputCounter(const std::vector<std::string>& args, const std::function<bool(const std::string&)>& accept,
               std::atomic<int64_t>& total)
      : thread_([this, args, accept, &total] {
          std::istringstream none;
          vitbatch::InputPaths walk(args, none);
          int64_t n = 0;
          while (auto item = walk.next()) {
            if (cancel_.load()) return;
            if (!item->error.empty() || !accept || accept(item->path)) ++n;
          }
          total.store(n);
        }) {}
  ~InputCounter() {
    cancel_.store(true);
    thread_.join();
  }

 private:
  std::atomic<bool> cancel_{false};
  std::thread thread_;
};

int run_classify(const ClassifyFlags& flags) {
  vitbatch::RunConfig config;
  std::unique_ptr<vitbatch::Runtime> runtime;
  std::vector<std::string> labels;
  std::unique_ptr<vitbatch::PredictionFormat> format;
  std::optional<vitbatch::OutputSink> output;
  vitbatch::PipelineOptions options;
  vitbatch::ResumeState resumed;
  std::optional<vitbatch::Shard> shard;
  try {
    vitbatch::RuntimeOptions runtime_options = resolve_runtime_options(flags.common, config);
    options.top_k = flags.top_k.value_or(config.top_k.value_or(5));
    options.batch_size = flags.batch_size.value_or(config.batch_size.value_or(16));
    options.decode_threads = flags.decode_threads.value_or(default_decode_threads());
    options.decode.max_pixels = flags.max_pixels;
    options.decode.exif_transpose = flags.exif_transpose;
    if (flags.shard) shard = vitbatch::Shard::parse(*flags.shard);
    std::string output_path = flags.output.value_or(config.output.value_or("-"));
    if (flags.resume && output_path == "-") throw vitbatch::Error("--resume needs --output FILE (the file to resume)");
    runtime = std::make_unique<vitbatch::Runtime>(runtime_options);
    std::optional<std::string> labels_path = flags.labels ? flags.labels : config.labels;
    labels = labels_path ? vitbatch::load_labels(*labels_path) : vitbatch::imagenet1k_labels();
    int64_t classes = runtime->model().config.num_classes;
    if (static_cast<int64_t>(labels.size()) != classes)
      throw vitbatch::Error((labels_path ? *labels_path : std::string("built-in ImageNet-1k labels")) + " has " +
                            std::to_string(labels.size()) + " labels, the model has " + std::to_string(classes) +
                            " classes (pass --labels FILE)");
    format = vitbatch::PredictionFormat::make(flags.format, options.top_k, labels);
    if (flags.resume) resumed = vitbatch::prepare_resume(output_path, *format);
    if (output_path == "-") output.emplace(vitbatch::OutputSink::to_stdout());
    else output.emplace(vitbatch::OutputSink::to_file(output_path, flags.resume));
  } catch (const vitbatch::Error& e) {
    std::cerr << "vitbatch: error: " << e.what() << "\n";
    return kExitUsage;
  }

  if (!resumed.has_header) output->write(format->header());
  if (!output->flush()) return kExitOutputClosed;
  if (shard || !resumed.done.empty())
    options.accept = [&](const std::string& path) {
      return (!shard || shard->contains(path)) && !resumed.done.count(path);
    };
  options.stop = &g_stop_signal;
  std::signal(SIGINT, on_stop_signal);
  std::signal(SIGTERM, on_stop_signal);
  std::signal(SIGPIPE, SIG_IGN);  // a closed pipe shows up as EPIPE on write: stop quietly

  bool tty = isatty(STDERR_FILENO);
  std::optional<vitbatch::ProgressBar> bar;
  if (flags.progress == "always" || (flags.progress == "auto" && tty)) bar.emplace();
  options.progress = bar ? &*bar : nullptr;
  vitbatch::InputPaths inputs(flags.inputs, STDIN_FILENO, flags.null_separated);
  std::optional<InputCounter> counter;
  if (bar && !inputs.reads_stdin()) counter.emplace(flags.inputs, options.accept, bar->total);

  try {
    vitbatch::PipelineSummary s =
        vitbatch::run_pipeline(inputs, runtime->model(), runtime->executor(), *format, *output, options, std::cerr);
    if (s.output_closed) return kExitOutputClosed;  // the reader left: say nothing
    std::cerr << vitbatch::summary_line(s.classified, s.failed, s.skipped, s.seconds, s.interrupted) << "\n";
    if (s.interrupted) return 128 + g_stop_signal.load();
    return s.failed > 0 ? kExitSomeFailed : kExitOk;
  } catch (const vitbatch::Error& e) {
    output->flush();
    std::cerr << "vitbatch: error: " << e.what() << "\n";
    return kExitRuntime;
  }
}

}  // namespace

void set_classify_command(CLI::App& app, int* exit_code) {
  auto flags = std::make_shared<ClassifyFlags>();
  CLI::App* cmd = app.add_subcommand("classify", "classify images and write predictions in input order");
  add_common_flags(*cmd, flags->common);
  cmd->add_option("inputs", flags->inputs,
                  "image files, directories (recursive, in path order), or - for paths on stdin")
      ->required();
  cmd->add_option("-k,--top-k", flags->top_k, "predictions per image (default 5)")->check(CLI::PositiveNumber);
  cmd->add_option("--batch-size", flags->batch_size, "images per model call (default 16)")->check(CLI::PositiveNumber);
  cmd->add_option("-o,--output", flags->output, "file to write (default: stdout)");
  cmd->add_option("--format", flags->format, "csv (default) or jsonl")->check(CLI::IsMember({"csv", "jsonl"}));
  cmd->add_option("--labels", flags->labels, "class names, one per line (default: built-in ImageNet-1k)");
  cmd->add_option("--decode-threads", flags->decode_threads,
                  "threads decoding and preprocessing ahead of the model (default: one per core, at most 4)")
      ->check(CLI::PositiveNumber);
  cmd->add_flag("--resume", flags->resume,
                "skip the inputs already predicted in --output FILE and append the rest (error rows are retried)");
  cmd->add_option("--shard", flags->shard, "I/N: classify only the I-th of N disjoint parts of the inputs (0 <= I < N)");
  cmd->add_flag("-0,--null", flags->null_separated, "paths on stdin are NUL-separated (find -print0)");
  cmd->add_option("--progress", flags->progress, "progress bar on stderr: auto (if a terminal), always, never")
      ->check(CLI::IsMember({"auto", "always", "never"}));
  cmd->add_option("--max-pixels", flags->max_pixels,
                  "refuse images with more pixels, checked before decoding (default: Pillow's limit, 178956970)")
      ->check(CLI::PositiveNumber);
  cmd->add_flag("--exif-transpose", flags->exif_transpose,
                "rotate/flip by the EXIF Orientation tag first (off by default, as in timm)");
  cmd->callback([flags, exit_code] { *exit_code = run_classify(*flags); });
}

}  // namespace vitbatch_cli
