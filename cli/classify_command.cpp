// vitbatch classify PATH... | -
#include "commands.hpp"
#include "common_flags.hpp"
#include "exit_codes.hpp"

#include "streaming_run.hpp"
#include "usage_errors.hpp"
#include "vitbatch/classify_pipeline.hpp"

#include "vitbatch/error.hpp"
#include "vitbatch/file_io.hpp"
#include "vitbatch/html_report.hpp"
#include "vitbatch/input_paths.hpp"
#include "vitbatch/limits.hpp"
#include "vitbatch/run_record.hpp"
#include "vitbatch/system_memory.hpp"
#include "vitbatch/labels.hpp"
#include "vitbatch/resume.hpp"
#include "vitbatch/shard.hpp"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <map>
#include <unordered_set>
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
  StreamFlags stream;
  std::optional<int> top_k;
  std::optional<std::string> output;
  std::optional<std::string> labels;
  std::optional<std::string> format;
  std::string activation = "softmax";
  double min_prob = 0.0;
  std::optional<std::string> output_logits;
  std::optional<std::string> report;
  int64_t report_thumbnails = 2000;
};

// --format, else the output file's extension (.jsonl/.ndjson/.json: JSON Lines), else CSV.
std::string output_format(const std::optional<std::string>& flag, const std::string& output_path) {
  if (flag) return *flag;
  std::string ext = output_path.substr(std::min(output_path.size(), output_path.find_last_of('.')));
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return ext == ".jsonl" || ext == ".ndjson" || ext == ".json" ? "jsonl" : "csv";
}

int run_classify(const ClassifyFlags& flags) {
  vitbatch::RunConfig config;
  std::unique_ptr<vitbatch::Runtime> runtime;
  std::vector<std::string> labels;
  std::unique_ptr<vitbatch::PredictionFormat> format;
  std::optional<vitbatch::OutputSink> output;
  std::unique_ptr<vitbatch::NpyWriter> logits_file;
  const vitbatch::ScoreActivation activation = vitbatch::parse_activation(flags.activation);
  int top_k = 5;
  vitbatch::PipelineOptions options;
  PreparedOutput prepared;
  const vitbatch::ResumeState& resumed = prepared.resumed;
  const std::unordered_set<std::string>& done_keys = prepared.done_keys;
  std::optional<vitbatch::Shard> shard;
  const std::string cwd = vitbatch::current_directory();
  try {
    require_inputs(flags.stream);
    vitbatch::RuntimeOptions runtime_options = resolve_runtime_options(flags.common, config);
    top_k = flags.top_k.value_or(config.top_k.value_or(5));
    options.batch_size = flags.stream.batch_size.value_or(config.batch_size.value_or(16));
    options.decode.max_pixels = flags.stream.max_pixels;
    options.decode.exif_transpose = flags.stream.exif_transpose;
    if (flags.stream.shard) shard = vitbatch::Shard::parse(*flags.stream.shard);
    std::string output_path = flags.output.value_or(config.output.value_or("-"));
    if (flags.stream.resume && output_path == "-") throw vitbatch::Error("--resume needs --output FILE (the file to resume)");
    if (flags.min_prob > 0 && activation == vitbatch::ScoreActivation::None)
      throw vitbatch::Error("--min-prob is a probability: it needs --activation softmax or sigmoid, not none");
    if (flags.output_logits && flags.stream.resume)
      throw vitbatch::Error("--output-logits cannot be resumed (its rows follow the output's, which --resume rewrites): "
                            "start the run again, or use --shard to split it");
    runtime = std::make_unique<vitbatch::Runtime>(runtime_options);
    options.decode_threads =
        flags.stream.decode_threads.value_or(default_decode_threads(runtime->backends().front()->device_memory()));
    const vitbatch::Model& model = runtime->model();
    if (!model.config.has_head())
      throw vitbatch::Error(model.path + ": the model has no classifier head (a backbone or embedder: its output is a " +
                            std::to_string(model.config.dim) + "-wide feature, not class scores), so it cannot classify");
    std::optional<std::string> labels_path = flags.labels ? flags.labels : config.labels;
    // The model's own class names (timm's label_names, Hugging Face's id2label) come first.
    labels = labels_path ? vitbatch::load_labels(*labels_path)
                         : !model.labels.empty() ? model.labels : vitbatch::imagenet1k_labels();
    int64_t classes = model.config.num_classes;
    if (static_cast<int64_t>(labels.size()) != classes)
      throw vitbatch::Error((labels_path ? *labels_path : std::string("built-in ImageNet-1k labels")) + " has " +
                            std::to_string(labels.size()) + " labels, the model has " + std::to_string(classes) +
                            " classes (pass --labels FILE)");
    if (top_k > classes) {
      std::cerr << "vitbatch: note: --top-k " << top_k << " is more than the model's " << classes
                << " classes: writing all " << classes << "\n";
      top_k = static_cast<int>(classes);
    }
    check_batch_memory(model, options.batch_size);
    std::string format_name = output_format(flags.format, output_path);
    format = vitbatch::PredictionFormat::make(format_name, top_k, labels, activation);

    vitbatch::RunRecord record =
        base_run_record(*runtime, runtime_options.backend_options.precision, cwd, flags.stream.absolute_paths);
    record.format = format_name;
    record.top_k = top_k;
    record.activation = flags.activation;
    record.min_prob = flags.min_prob;
    if (output_path != "-") prepared = prepare_output_file(output_path, flags.stream.resume, record, *format, cwd);
    if (output_path == "-") output.emplace(vitbatch::OutputSink::to_stdout());
    else output.emplace(vitbatch::OutputSink::to_file(output_path, flags.stream.resume));
    if (flags.output_logits)
      logits_file = std::make_unique<vitbatch::NpyWriter>(*flags.output_logits, std::vector<int64_t>{model.config.num_classes},
                                                          vitbatch::NpyDtype::Float32);
  } catch (const vitbatch::Error& e) {
    std::cerr << "vitbatch: error: " << e.what() << "\n";
    return kExitUsage;
  }
  for (const std::string& notice : runtime->notices()) std::cerr << "vitbatch: " << notice << "\n";
  std::cerr << "vitbatch: running on " << runtime->running() << "\n";

  if (!resumed.has_header) output->write(format->header());
  if (!output->flush()) {
    if (output->pipe_closed()) return kExitOutputClosed;
    std::cerr << "vitbatch: error: " << output->name() << ": " << output->error() << "\n";
    return kExitOutputFailed;
  }
  StreamRun run(flags.stream, shard, done_keys, cwd, options);
  options.output_is_terminal = !flags.output && isatty(STDOUT_FILENO);

  std::optional<vitbatch::HtmlReport> page;
  if (flags.report) {
    page.emplace("vitbatch classify", labels, flags.report_thumbnails);
    options.thumbnail_side = flags.report_thumbnails > 0 ? 96 : 0;
  }
  try {
    vitbatch::PredictionSink sink(*format, *output, runtime->model().config.num_classes, top_k, activation, flags.min_prob,
                                  logits_file.get(), page ? &*page : nullptr);
    vitbatch::PipelineSummary s =
        vitbatch::run_pipeline(run.inputs(), runtime->model(), runtime->executor(), sink, options, std::cerr);
    run.finished();
    if (page) {  // written whole, then renamed into place: a page is never half there
      char rate[64];
      std::snprintf(rate, sizeof rate, "%.1f s, %.1f images/s", s.seconds, s.seconds > 0 ? s.classified / s.seconds : 0.0);
      page->summary({{"model", runtime->model().path},
                     {"running on", runtime->running()},
                     {"classified", std::to_string(s.classified)},
                     {"failed", std::to_string(s.failed)},
                     {"skipped (--resume, --shard)", std::to_string(s.skipped)},
                     {"time", rate},
                     {"scores", vitbatch::activation_name(activation)}});
      try {
        vitbatch::write_file_atomically(*flags.report, page->render());
      } catch (const vitbatch::Error& e) {
        std::cerr << "vitbatch: error: " << e.what() << "\n";
        return kExitOutputFailed;
      }
    }
    if (s.output_closed && output->pipe_closed()) return kExitOutputClosed;  // the reader left: say nothing
    if (s.output_closed && logits_file && !logits_file->error().empty()) {
      std::cerr << "vitbatch: error: " << logits_file->path() << ": " << logits_file->error()
                << " (its rows and the output's up to the last complete batch are kept)\n";
      return kExitOutputFailed;
    }
    if (s.output_closed) {
      std::cerr << "vitbatch: error: " << output->name() << ": " << output->error()
                << " (every complete row before it is kept; --resume finishes the file)\n";
      std::cerr << vitbatch::summary_line({s.classified, s.failed, s.skipped, s.seconds, s.interrupted, runtime->running()})
                << "\n";
      return kExitOutputFailed;
    }
    std::string ignored = ignored_line(run.inputs().ignored());
    if (!ignored.empty()) std::cerr << ignored << "\n";
    std::cerr << vitbatch::summary_line({s.classified, s.failed, s.skipped, s.seconds, s.interrupted, runtime->running()})
              << "\n";
    if (s.interrupted) return 128 + g_stop_signal.load();
    if (s.classified == 0 && s.failed == 0) {
      std::cerr << "vitbatch: nothing was classified: "
                << (s.skipped > 0 ? "every input was skipped (--resume or --shard)"
                                  : "no image found in the inputs given")
                << "\n";
      return s.skipped > 0 ? kExitOk : kExitSomeFailed;
    }
    return s.failed > 0 ? kExitSomeFailed : kExitOk;
  } catch (const vitbatch::Error& e) {
    run.finished();
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
  add_stream_flags(*cmd, flags->stream,
                   "skip the inputs already predicted in --output FILE and append the rest (error rows are retried)");
  cmd->add_option("-k,--top-k", flags->top_k, "predictions per image (default 5; more than the classes: all)")
      ->check(int_range(1, vitbatch::kMaxTopK));
  cmd->add_option("-o,--output", flags->output,
                  "file to write (default: stdout); FILE.meta.json beside it records the run for --resume");
  cmd->add_option("--format", flags->format, "csv or jsonl (default: jsonl for -o *.jsonl/*.ndjson/*.json, else csv)")
      ->check(CLI::IsMember({"csv", "jsonl"}));
  cmd->add_option("--labels", flags->labels, "class names, one per line (default: the model's own, else built-in ImageNet-1k)");
  cmd->add_option("--activation", flags->activation,
                  "scores written: softmax (default, single-label heads), sigmoid (multi-label heads) or none "
                  "(the logits: columns topK_logit)")
      ->check(CLI::IsMember({"softmax", "sigmoid", "none"}));
  cmd->add_option("--min-prob", flags->min_prob,
                  "leave out predictions scored under P (0..1); a row may then have fewer than --top-k, or none")
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--report", flags->report,
                  "also write FILE.html: one self-contained page of cards (thumbnail, top-k bars, failures), paged");
  cmd->add_option("--report-thumbnails", flags->report_thumbnails,
                  "thumbnails in the report: the first N rows get one (default 2000; 0: none)")
      ->check(int_range(0, int64_t{1} << 31));
  cmd->add_option("--output-logits", flags->output_logits,
                  "also write every row's logits to FILE.npy (rows x classes float32, NaN for a failed row), row i "
                  "for the output's row i");
  cmd->footer(std::string("Examples:\n"
                          "  vitbatch classify --model M photos/ > preds.csv\n"
                          "  find photos -name '*.jpg' -print0 | vitbatch classify --model M -0 - -o preds.jsonl\n"
                          "  vitbatch classify --model M shards/*.tar --files-from more.txt -o preds.csv\n\n") +
              kExitStatusHelp);
  cmd->callback([flags, exit_code] { *exit_code = run_classify(*flags); });
}

}  // namespace vitbatch_cli
