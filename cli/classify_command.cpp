// vitbatch classify PATH... | -
#include "commands.hpp"
#include "common_flags.hpp"
#include "exit_codes.hpp"

#include "vitbatch/classify_pipeline.hpp"
#include "usage_errors.hpp"

#include "vitbatch/error.hpp"
#include "vitbatch/input_paths.hpp"
#include "vitbatch/limits.hpp"
#include "vitbatch/run_record.hpp"
#include "vitbatch/system_memory.hpp"
#include "vitbatch/versions.hpp"
#include "vitbatch/labels.hpp"
#include "vitbatch/resume.hpp"
#include "vitbatch/shard.hpp"

#include <sys/stat.h>
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
  std::vector<std::string> inputs;
  std::vector<std::string> files_from;
  std::optional<int> top_k;
  std::optional<int> batch_size;
  std::optional<std::string> output;
  std::optional<std::string> labels;
  std::optional<int> decode_threads;
  std::optional<std::string> format;
  bool resume = false;
  std::optional<std::string> shard;
  bool null_separated = false;
  std::string progress = "auto";
  int64_t max_pixels = vitbatch::DecodeOptions{}.max_pixels;
  bool exif_transpose = false;
  bool absolute_paths = false;
};

std::atomic<int> g_stop_signal{0};
std::atomic<int64_t> g_in_flight{0};

// First SIGINT/SIGTERM: say so at once, finish the rows in flight, flush, summarise. A second
// one kills, as the default action does. Only async-signal-safe calls here (write(2)).
void on_stop_signal(int sig) {
  g_stop_signal.store(sig);
  std::signal(sig, SIG_DFL);
  char digits[24];
  int n = 0;
  long long v = g_in_flight.load();
  do digits[n++] = static_cast<char>('0' + v % 10); while ((v /= 10) > 0 && n < 20);
  char line[160] = "\r\033[Kvitbatch: stopping after the ";
  size_t at = std::strlen(line);
  while (n > 0) line[at++] = digits[--n];
  const char* rest = sig == SIGINT ? " images in flight; Ctrl-C again to quit\n" : " images in flight\n";
  std::memcpy(line + at, rest, std::strlen(rest));
  at += std::strlen(rest);
  (void)!::write(STDERR_FILENO, line, at);
}

// One decoder per core, up to 4, when the model runs on the CPU: decoders sleep while the
// model is the bottleneck (large models), and with a small model on few cores every extra
// decoder still pays (ViT-Ti on 2 cores: 42 img/s with one, 48 with two). When the model runs
// on a device, the cores have nothing else to do: one decoder each (on a 16-core H100 host,
// 4 decoders fed the GPU about 440 JPEGs/s, a fraction of what it classifies).
int default_decode_threads(bool model_on_device) {
  int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  return model_on_device ? std::min(cores, vitbatch::kMaxDecodeThreads) : std::max(1, std::min(4, cores));
}

// --format, else the output file's extension (.jsonl/.ndjson/.json: JSON Lines), else CSV.
std::string output_format(const std::optional<std::string>& flag, const std::string& output_path) {
  if (flag) return *flag;
  std::string ext = output_path.substr(std::min(output_path.size(), output_path.find_last_of('.')));
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return ext == ".jsonl" || ext == ".ndjson" || ext == ".json" ? "jsonl" : "csv";
}

std::string gib(uint64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f GiB", bytes / double(uint64_t{1} << 30));
  return buf;
}

// Refuses a batch whose buffers cannot fit in the memory there is, before allocating any.
void check_batch_memory(const vitbatch::Model& model, int batch) {
  uint64_t per_image = vitbatch::Executor::estimate_activation_bytes(model, 1) +
                       2 * sizeof(float) * 3 * static_cast<uint64_t>(model.preprocess.input_size * model.preprocess.input_size);
  uint64_t available = vitbatch::available_memory_bytes();
  if (available == 0 || per_image * batch <= available) return;
  uint64_t fits = std::max<uint64_t>(1, available / per_image / 2);  // half: weights, decoders and the rest
  throw vitbatch::Error("--batch-size " + std::to_string(batch) + " needs about " + gib(per_image * batch) +
                        " of activations (" + std::to_string(per_image >> 20) + " MiB an image) and " + gib(available) +
                        " is available: use --batch-size " + std::to_string(fits) + " or less");
}

// The ignored files of the walks, for the summary: "3 files ignored (not images by extension: .txt 2, .json 1)".
std::string ignored_line(const std::map<std::string, int64_t>& ignored) {
  int64_t total = 0;
  std::string detail;
  for (const auto& [ext, n] : ignored) {
    total += n;
    detail += (detail.empty() ? "" : ", ") + ext + " " + std::to_string(n);
  }
  if (total == 0) return "";
  return "vitbatch: " + std::to_string(total) + " file" + (total == 1 ? "" : "s") +
         " in the directories and archives ignored: not images by extension or content (" + detail + ")";
}

// Counts the inputs in the background for the progress bar's total and ETA (not possible
// when paths come from stdin).
class InputCounter {
 public:
  InputCounter(const std::vector<std::string>& args, const std::vector<std::string>& lists,
               const std::function<bool(const vitbatch::InputItem&)>& accept, std::atomic<int64_t>& total,
               bool null_separated)
      : thread_([this, args, lists, accept, &total, null_separated] {
          try {
            std::istringstream none;
            vitbatch::InputPaths walk(args, none, null_separated);
            for (const auto& list : lists) walk.add_files_from(list);
            int64_t n = 0;
            while (auto item = walk.next()) {
              if (cancel_.load()) return;
              if (!accept || accept(*item)) ++n;
            }
            total.store(n);
          } catch (...) {  // only the bar's total is lost: it stays unknown
          }
        }) {}
  ~InputCounter() {
    cancel_.store(true);
    thread_.join();
  }

 private:
  std::atomic<bool> cancel_{false};
  std::thread thread_;
};

// An output file made ready: locked against a second writer, its run record checked (on
// --resume) and written, and what it already holds.
struct PreparedOutput {
  std::unique_ptr<vitbatch::OutputLock> lock;
  vitbatch::ResumeState resumed;
  std::unordered_set<std::string> done_keys;  // absolute paths already predicted (--resume)
};

PreparedOutput prepare_output_file(const std::string& output_path, bool resume, vitbatch::RunRecord record,
                                   const vitbatch::PredictionFormat& format, const std::string& cwd) {
  PreparedOutput out;
  out.lock = std::make_unique<vitbatch::OutputLock>(output_path);  // before reading or writing anything of it
  std::string meta = vitbatch::run_record_path(output_path);
  if (resume) {
    std::optional<vitbatch::RunRecord> before = vitbatch::read_run_record(meta);
    if (before) {
      std::string diff = vitbatch::run_record_mismatch(*before, record);
      if (!diff.empty())
        throw vitbatch::Error("cannot resume " + output_path + ": it was written with other settings (" + diff +
                              "); resume with the same ones, or write to another file");
    }
    out.resumed = vitbatch::prepare_resume(output_path, format);
    // Rows are matched by absolute path, resolved against the directory they were written from.
    std::string old_cwd = before && !before->cwd.empty() ? before->cwd : cwd;
    bool relative_rows = false;
    for (const std::string& p : out.resumed.done) {
      relative_rows |= p.empty() || p[0] != '/';
      out.done_keys.insert(vitbatch::lexically_absolute(p, old_cwd));
    }
    if (relative_rows && old_cwd != cwd && !record.absolute_paths)
      throw vitbatch::Error("cannot resume " + output_path + " from here: its paths are relative to " + old_cwd +
                            "; run from there (or start the file with --absolute-paths)");
    record.cwd = old_cwd;
  }
  vitbatch::write_run_record(meta, record);
  return out;
}

int run_classify(const ClassifyFlags& flags) {
  vitbatch::RunConfig config;
  std::unique_ptr<vitbatch::Runtime> runtime;
  std::vector<std::string> labels;
  std::unique_ptr<vitbatch::PredictionFormat> format;
  std::optional<vitbatch::OutputSink> output;
  vitbatch::PipelineOptions options;
  PreparedOutput prepared;
  const vitbatch::ResumeState& resumed = prepared.resumed;
  const std::unordered_set<std::string>& done_keys = prepared.done_keys;
  std::optional<vitbatch::Shard> shard;
  const std::string cwd = vitbatch::current_directory();
  try {
    if (flags.inputs.empty() && flags.files_from.empty())
      throw vitbatch::Error("no inputs: name image files, directories or tar files, - for paths on stdin, or --files-from FILE");
    vitbatch::RuntimeOptions runtime_options = resolve_runtime_options(flags.common, config);
    options.top_k = flags.top_k.value_or(config.top_k.value_or(5));
    options.batch_size = flags.batch_size.value_or(config.batch_size.value_or(16));
    options.decode.max_pixels = flags.max_pixels;
    options.decode.exif_transpose = flags.exif_transpose;
    if (flags.shard) shard = vitbatch::Shard::parse(*flags.shard);
    std::string output_path = flags.output.value_or(config.output.value_or("-"));
    if (flags.resume && output_path == "-") throw vitbatch::Error("--resume needs --output FILE (the file to resume)");
    runtime = std::make_unique<vitbatch::Runtime>(runtime_options);
    options.decode_threads =
        flags.decode_threads.value_or(default_decode_threads(runtime->backends().front()->device_memory()));
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
    if (options.top_k > classes) {
      std::cerr << "vitbatch: note: --top-k " << options.top_k << " is more than the model's " << classes
                << " classes: writing all " << classes << "\n";
      options.top_k = static_cast<int>(classes);
    }
    check_batch_memory(model, options.batch_size);
    std::string format_name = output_format(flags.format, output_path);
    format = vitbatch::PredictionFormat::make(format_name, options.top_k, labels);

    vitbatch::RunRecord record;
    record.vitbatch_version = vitbatch::kVersion;
    record.model = vitbatch::lexically_absolute(model.path, cwd);
    struct stat st {};
    record.model_bytes = ::stat(model.path.c_str(), &st) == 0 ? st.st_size : 0;
    record.backend = runtime->backends().front()->name();
    record.precision = runtime_options.backend_options.precision;
    record.format = format_name;
    record.top_k = options.top_k;
    record.cwd = cwd;
    record.absolute_paths = flags.absolute_paths;
    if (output_path != "-") prepared = prepare_output_file(output_path, flags.resume, record, *format, cwd);
    if (output_path == "-") output.emplace(vitbatch::OutputSink::to_stdout());
    else output.emplace(vitbatch::OutputSink::to_file(output_path, flags.resume));
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
  if (shard || !done_keys.empty())
    options.accept = [&](const vitbatch::InputItem& item) {
      return (!shard || shard->contains(item.key)) && !done_keys.count(vitbatch::lexically_absolute(item.path, cwd));
    };
  options.absolute_paths = flags.absolute_paths;
  options.stop = &g_stop_signal;
  options.in_flight = &g_in_flight;
  std::signal(SIGINT, on_stop_signal);
  std::signal(SIGTERM, on_stop_signal);
  std::signal(SIGPIPE, SIG_IGN);  // a closed pipe shows up as EPIPE on write: stop quietly

  bool tty = isatty(STDERR_FILENO);
  std::optional<vitbatch::ProgressBar> bar;
  if (flags.progress == "always" || (flags.progress == "auto" && tty)) bar.emplace(STDERR_FILENO);
  options.progress = bar ? &*bar : nullptr;
  options.output_is_terminal = !flags.output && isatty(STDOUT_FILENO);
  vitbatch::InputPaths inputs(flags.inputs, STDIN_FILENO, flags.null_separated);
  for (const auto& list : flags.files_from) inputs.add_files_from(list);
  std::optional<InputCounter> counter;
  if (bar && !inputs.reads_stdin())
    counter.emplace(flags.inputs, flags.files_from, options.accept, bar->total, flags.null_separated);

  try {
    vitbatch::PipelineSummary s =
        vitbatch::run_pipeline(inputs, runtime->model(), runtime->executor(), *format, *output, options, std::cerr);
    counter.reset();
    bar.reset();
    if (s.output_closed && output->pipe_closed()) return kExitOutputClosed;  // the reader left: say nothing
    if (s.output_closed) {
      std::cerr << "vitbatch: error: " << output->name() << ": " << output->error()
                << " (every complete row before it is kept; --resume finishes the file)\n";
      std::cerr << vitbatch::summary_line({s.classified, s.failed, s.skipped, s.seconds, s.interrupted, runtime->running()})
                << "\n";
      return kExitOutputFailed;
    }
    std::string ignored = ignored_line(inputs.ignored());
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
    bar.reset();
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
                  "image files, directories (recursive, in path order), tar files (WebDataset shards too: rows "
                  "named archive.tar!member.jpg), or - for paths on stdin");
  cmd->add_option("--files-from", flags->files_from,
                  "read paths from FILE (- for stdin), one per line, or NUL-separated with -0; after the inputs")
      ->check(CLI::ExistingFile | CLI::IsMember({"-"}));
  cmd->add_option("-k,--top-k", flags->top_k, "predictions per image (default 5; more than the classes: all)")
      ->check(int_range(1, vitbatch::kMaxTopK));
  cmd->add_option("--batch-size", flags->batch_size, "images per model call (default 16)")
      ->check(int_range(1, vitbatch::kMaxBatchSize));
  cmd->add_option("-o,--output", flags->output,
                  "file to write (default: stdout); FILE.meta.json beside it records the run for --resume");
  cmd->add_option("--format", flags->format, "csv or jsonl (default: jsonl for -o *.jsonl/*.ndjson/*.json, else csv)")
      ->check(CLI::IsMember({"csv", "jsonl"}));
  cmd->add_option("--labels", flags->labels, "class names, one per line (default: the model's own, else built-in ImageNet-1k)");
  cmd->add_option("--decode-threads", flags->decode_threads,
                  "threads decoding and preprocessing ahead of the model (default: one per core, at most 4 when the "
                  "model runs on the CPU)")
      ->check(int_range(1, vitbatch::kMaxDecodeThreads));
  cmd->add_flag("--resume", flags->resume,
                "skip the inputs already predicted in --output FILE and append the rest (error rows are retried)");
  cmd->add_option("--shard", flags->shard,
                  "I/N: classify only the I-th of N disjoint parts of the inputs (0 <= I < N), by a hash of each "
                  "path relative to its directory argument");
  cmd->add_flag("--absolute-paths", flags->absolute_paths, "write each path made absolute instead of as given");
  cmd->add_flag("-0,--null", flags->null_separated,
                "paths on stdin and in --files-from are NUL-separated (find -print0)");
  cmd->add_option("--progress", flags->progress, "progress bar on stderr: auto (if a terminal), always, never")
      ->check(CLI::IsMember({"auto", "always", "never"}));
  cmd->add_option("--max-pixels", flags->max_pixels,
                  "refuse images with more pixels, checked before decoding (default: Pillow's limit, 178956970)")
      ->check(int_range(1, vitbatch::kMaxPixelLimit));
  cmd->add_flag("--exif-transpose", flags->exif_transpose,
                "rotate/flip by the EXIF Orientation tag first (off by default, as in timm)");
  cmd->footer(std::string("Examples:\n"
                          "  vitbatch classify --model M photos/ > preds.csv\n"
                          "  find photos -name '*.jpg' -print0 | vitbatch classify --model M -0 - -o preds.jsonl\n"
                          "  vitbatch classify --model M shards/*.tar --files-from more.txt -o preds.csv\n\n") +
              kExitStatusHelp);
  cmd->callback([flags, exit_code] { *exit_code = run_classify(*flags); });
}

}  // namespace vitbatch_cli
