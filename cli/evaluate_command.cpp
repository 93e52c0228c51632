// vitbatch evaluate --model M DATASET: top-1/top-5 accuracy with 95% intervals, per-class
// accuracy, the most confused pairs and the misclassified files, on an ImageFolder tree or a
// path,label CSV (see vitbatch/evaluation.hpp), as a table or one JSON object.
#include "commands.hpp"
#include "common_flags.hpp"
#include "exit_codes.hpp"
#include "streaming_run.hpp"
#include "usage_errors.hpp"

#include "vitbatch/classify_pipeline.hpp"
#include "vitbatch/error.hpp"
#include "vitbatch/evaluation.hpp"
#include "vitbatch/file_io.hpp"
#include "vitbatch/html_report.hpp"
#include "vitbatch/labels.hpp"
#include "vitbatch/limits.hpp"

#include <nlohmann/json.hpp>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <memory>
#include <optional>

namespace vitbatch_cli {
namespace {

struct EvaluateFlags {
  CommonFlags common;
  std::string dataset;
  std::optional<std::string> labels;
  bool json = false;
  int misclassified_shown = 20;
  std::optional<int> batch_size;
  std::optional<int> decode_threads;
  std::string progress = "auto";
  int64_t max_pixels = vitbatch::DecodeOptions{}.max_pixels;
  bool exif_transpose = false;
  std::optional<std::string> report;
  int64_t report_thumbnails = 2000;
};

std::string percent(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f%%", 100 * x);
  return buf;
}

double fraction(int64_t k, int64_t n) { return n > 0 ? double(k) / n : 0.0; }

std::string label_of(const std::vector<std::string>& labels, int64_t i) {
  return i >= 0 && i < static_cast<int64_t>(labels.size()) ? labels[i] : std::to_string(i);
}

void print_table(const vitbatch::EvaluationReport& r, const vitbatch::LabelledSet& set,
                 const std::vector<std::string>& labels, const std::string& source, int shown) {
  std::map<std::string, int> how;
  for (const auto& [name, c] : set.classes) ++how[c.how];
  std::string mapped;
  for (const auto& [h, n] : how) mapped += (mapped.empty() ? "" : ", ") + std::to_string(n) + " by " + h;
  std::cout << r.count << " images in " << r.per_class.size() << " classes (" << source << "; " << set.classes.size()
            << (set.root.empty() ? " labels" : " folders") << " mapped: " << mapped << ")\n";
  for (auto [name, k] : {std::pair<const char*, int64_t>{"top-1", r.top1}, {"top-5", r.top5}}) {
    auto [lo, hi] = vitbatch::wilson_interval(k, r.count);
    std::cout << name << "  " << percent(fraction(k, r.count)) << "  (95% CI " << percent(lo) << " - " << percent(hi)
              << ")  " << k << " of " << r.count << "\n";
  }
  if (r.failed || r.unlabelled)
    std::cout << "not counted: " << r.failed << " failed to read or decode, " << r.unlabelled << " without a class\n";
  std::cout << "\nper class\n  images    top-1  class\n";
  for (const auto& [index, c] : r.per_class) {
    char line[64];
    std::snprintf(line, sizeof line, "  %6lld  %7.2f%%  ", static_cast<long long>(c.count), 100 * fraction(c.top1, c.count));
    std::cout << line << index << " " << label_of(labels, index) << "\n";
  }
  if (!r.confused.empty()) {
    std::cout << "\nmost confused (label -> predicted)\n";
    for (size_t i = 0; i < r.confused.size() && i < 10; ++i) {
      const auto& [pair, n] = r.confused[i];
      std::cout << "  " << n << "  " << label_of(labels, pair.first) << " -> " << label_of(labels, pair.second) << "\n";
    }
  }
  if (!r.misclassified.empty()) {
    std::cout << "\nmisclassified (" << std::min<size_t>(shown, r.misclassified.size()) << " of "
              << r.misclassified.size() << "; --json lists all)\n";
    for (size_t i = 0; i < r.misclassified.size() && static_cast<int>(i) < shown; ++i) {
      const auto& m = r.misclassified[i];
      char prob[32];
      std::snprintf(prob, sizeof prob, "%.3f", m.probability);
      std::cout << "  " << m.path << "  " << label_of(labels, m.label) << " -> " << label_of(labels, m.predicted) << " ("
                << prob << ")\n";
    }
  }
  for (const auto& [path, error] : r.errors) std::cout << "failed: " << path << ": " << error << "\n";
}

nlohmann::json report_json(const vitbatch::EvaluationReport& r, const vitbatch::LabelledSet& set,
                           const std::vector<std::string>& labels, const std::string& source) {
  using nlohmann::json;
  auto interval = [&](int64_t k) {
    auto [lo, hi] = vitbatch::wilson_interval(k, r.count);
    return json::array({lo, hi});
  };
  json classes = json::array();
  for (const auto& [name, c] : set.classes) {
    auto it = r.per_class.find(c.index);
    int64_t n = it == r.per_class.end() ? 0 : it->second.count, k = it == r.per_class.end() ? 0 : it->second.top1;
    classes.push_back({{"name", name}, {"index", c.index}, {"label", label_of(labels, c.index)}, {"mapped_by", c.how},
                       {"count", n}, {"top1", fraction(k, n)}});
  }
  json confused = json::array();
  for (const auto& [pair, n] : r.confused)
    confused.push_back({{"label", pair.first}, {"label_name", label_of(labels, pair.first)}, {"predicted", pair.second},
                        {"predicted_name", label_of(labels, pair.second)}, {"count", n}});
  json wrong = json::array();
  for (const auto& m : r.misclassified)
    wrong.push_back({{"path", m.path}, {"label", m.label}, {"predicted", m.predicted}, {"prob", m.probability}});
  json errors = json::array();
  for (const auto& [path, error] : r.errors) errors.push_back({{"path", path}, {"error", error}});
  return {{"dataset", source},         {"count", r.count},           {"top1", fraction(r.top1, r.count)},
          {"top5", fraction(r.top5, r.count)}, {"top1_ci95", interval(r.top1)}, {"top5_ci95", interval(r.top5)},
          {"correct_top1", r.top1},    {"correct_top5", r.top5},     {"failed", r.failed},
          {"unlabelled", r.unlabelled}, {"classes", classes},         {"confused", confused},
          {"misclassified", wrong},    {"errors", errors}};
}

std::vector<std::pair<std::string, std::string>> report_summary(const vitbatch::EvaluationReport& r,
                                                               const std::string& source, const std::string& running) {
  std::vector<std::pair<std::string, std::string>> lines{{"dataset", source}, {"running on", running},
                                                         {"images scored", std::to_string(r.count)}};
  for (auto [name, k] : {std::pair<const char*, int64_t>{"top-1", r.top1}, {"top-5", r.top5}}) {
    auto [lo, hi] = vitbatch::wilson_interval(k, r.count);
    lines.push_back({name, percent(fraction(k, r.count)) + " (95% CI " + percent(lo) + " - " + percent(hi) + ")"});
  }
  lines.push_back({"failed", std::to_string(r.failed)});
  lines.push_back({"without a class", std::to_string(r.unlabelled)});
  return lines;
}

int run_evaluate(const EvaluateFlags& flags) {
  vitbatch::RunConfig config;
  std::unique_ptr<vitbatch::Runtime> runtime;
  std::vector<std::string> labels;
  vitbatch::LabelledSet set;
  vitbatch::PipelineOptions options;
  std::string source;
  try {
    vitbatch::RuntimeOptions runtime_options = resolve_runtime_options(flags.common, config);
    options.batch_size = flags.batch_size.value_or(config.batch_size.value_or(16));
    options.decode.max_pixels = flags.max_pixels;
    options.decode.exif_transpose = flags.exif_transpose;
    runtime = std::make_unique<vitbatch::Runtime>(runtime_options);
    const vitbatch::Model& model = runtime->model();
    if (!model.config.has_head())
      throw vitbatch::Error(model.path + ": the model has no classifier head, so it cannot be evaluated on labels");
    std::optional<std::string> labels_path = flags.labels ? flags.labels : config.labels;
    labels = labels_path ? vitbatch::load_labels(*labels_path)
                         : !model.labels.empty() ? model.labels : vitbatch::imagenet1k_labels();
    if (static_cast<int64_t>(labels.size()) != model.config.num_classes)
      throw vitbatch::Error((labels_path ? *labels_path : std::string("built-in ImageNet-1k labels")) + " has " +
                            std::to_string(labels.size()) + " labels, the model has " +
                            std::to_string(model.config.num_classes) + " classes (pass --labels FILE)");
    struct stat st {};
    if (::stat(flags.dataset.c_str(), &st) != 0)
      throw vitbatch::Error(flags.dataset + ": " + std::strerror(errno));
    if (S_ISDIR(st.st_mode)) {
      set = vitbatch::image_folder(flags.dataset, labels);
      source = "ImageFolder " + flags.dataset;
    } else {
      set = vitbatch::labelled_csv(flags.dataset, labels);
      source = "CSV " + flags.dataset;
    }
    options.decode_threads =
        flags.decode_threads.value_or(default_decode_threads(runtime->backends().front()->device_memory()));
    check_batch_memory(model, options.batch_size);
  } catch (const vitbatch::Error& e) {
    std::cerr << "vitbatch: error: " << e.what() << "\n";
    return kExitUsage;
  }
  for (const std::string& notice : runtime->notices()) std::cerr << "vitbatch: " << notice << "\n";
  std::cerr << "vitbatch: running on " << runtime->running() << "\n";
  options.stop = &g_stop_signal;
  options.in_flight = &g_in_flight;
  install_stop_signals();
  std::optional<vitbatch::ProgressBar> bar;
  if (flags.progress == "always" || (flags.progress == "auto" && isatty(STDERR_FILENO))) bar.emplace(STDERR_FILENO);
  options.progress = bar ? &*bar : nullptr;
  std::istringstream no_stdin;
  vitbatch::InputPaths inputs(set.inputs, no_stdin);
  std::optional<vitbatch::HtmlReport> page;
  if (flags.report) {
    page.emplace("vitbatch evaluate", labels, flags.report_thumbnails);
    options.thumbnail_side = flags.report_thumbnails > 0 ? 96 : 0;
  }
  vitbatch::EvaluationSink sink(set, runtime->model().config.num_classes, page ? &*page : nullptr);
  try {
    vitbatch::PipelineSummary s = vitbatch::run_pipeline(inputs, runtime->model(), runtime->executor(), sink, options, std::cerr);
    bar.reset();
    if (s.interrupted) {
      std::cerr << "vitbatch: interrupted: no accuracy reported for part of the set\n";
      return 128 + g_stop_signal.load();
    }
    vitbatch::EvaluationReport report = sink.report();
    if (flags.json)
      std::cout << report_json(report, set, labels, source).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)
                << "\n";
    else
      print_table(report, set, labels, source, flags.misclassified_shown);
    std::cout.flush();
    if (page) {
      page->summary(report_summary(report, source, runtime->running()));
      std::vector<std::vector<std::string>> classes;
      for (const auto& [index, c] : report.per_class)
        classes.push_back({std::to_string(index), label_of(labels, index), std::to_string(c.count), percent(fraction(c.top1, c.count))});
      std::stable_sort(classes.begin(), classes.end(), [](const auto& a, const auto& b) { return std::stod(a[3]) < std::stod(b[3]); });
      page->table("per class, lowest top-1 first", {"index", "label", "images", "top-1"}, classes);
      std::vector<std::vector<std::string>> pairs;
      for (size_t i = 0; i < report.confused.size() && i < 20; ++i)
        pairs.push_back({label_of(labels, report.confused[i].first.first), label_of(labels, report.confused[i].first.second),
                         std::to_string(report.confused[i].second)});
      if (!pairs.empty()) page->table("most confused", {"label", "predicted", "images"}, pairs);
      try {
        vitbatch::write_file_atomically(*flags.report, page->render());
      } catch (const vitbatch::Error& e) {
        std::cerr << "vitbatch: error: " << e.what() << "\n";
        return kExitOutputFailed;
      }
    }
    std::cerr << vitbatch::summary_line({s.classified, s.failed, s.skipped, s.seconds, false, runtime->running()}) << "\n";
    if (report.count == 0) {
      std::cerr << "vitbatch: nothing was evaluated: no labelled image could be read\n";
      return kExitSomeFailed;
    }
    return report.failed > 0 ? kExitSomeFailed : kExitOk;
  } catch (const vitbatch::Error& e) {
    bar.reset();
    std::cerr << "vitbatch: error: " << e.what() << "\n";
    return kExitRuntime;
  }
}

}  // namespace

void set_evaluate_command(CLI::App& app, int* exit_code) {
  auto flags = std::make_shared<EvaluateFlags>();
  CLI::App* cmd = app.add_subcommand("evaluate", "accuracy on a labelled folder (ImageFolder) or a path,label CSV");
  add_common_flags(*cmd, flags->common);
  cmd->add_option("dataset", flags->dataset,
                  "ImageFolder root (one sub-folder a class, named by class name, WordNet id or index) or a CSV of "
                  "path,label (paths relative to the CSV)")
      ->required();
  cmd->add_option("--labels", flags->labels, "class names, one per line (default: the model's own, else ImageNet-1k)");
  cmd->add_flag("--json", flags->json, "one JSON object on stdout (count, top1, top5, intervals, classes, ...)");
  cmd->add_option("--report", flags->report,
                  "also write FILE.html: summary, per-class table, confused pairs and a card per image (thumbnail, "
                  "label, top-5), filterable to the misclassified and failed");
  cmd->add_option("--report-thumbnails", flags->report_thumbnails, "thumbnails in the report: the first N rows (default 2000)")
      ->check(int_range(0, int64_t{1} << 31));
  cmd->add_option("--show", flags->misclassified_shown, "misclassified files listed in the table (default 20)")
      ->check(int_range(0, 1000000));
  cmd->add_option("--batch-size", flags->batch_size, "images per model call (default 16)")
      ->check(int_range(1, vitbatch::kMaxBatchSize));
  cmd->add_option("--decode-threads", flags->decode_threads, "threads decoding ahead of the model (default as classify)")
      ->check(int_range(1, vitbatch::kMaxDecodeThreads));
  cmd->add_option("--progress", flags->progress, "progress bar on stderr: auto (if a terminal), always, never")
      ->check(CLI::IsMember({"auto", "always", "never"}));
  cmd->add_option("--max-pixels", flags->max_pixels, "refuse images with more pixels (default: Pillow's limit)")
      ->check(int_range(1, vitbatch::kMaxPixelLimit));
  cmd->add_flag("--exif-transpose", flags->exif_transpose, "rotate/flip by the EXIF Orientation tag first");
  cmd->footer(std::string("Examples:\n"
                          "  vitbatch evaluate --model M imagenet/val          # val/n01440764/*.JPEG, ...\n"
                          "  vitbatch evaluate --model M labels.csv --json | jq .top1\n\n") +
              kExitStatusHelp);
  cmd->callback([flags, exit_code] { *exit_code = run_evaluate(*flags); });
}

}  // namespace vitbatch_cli
