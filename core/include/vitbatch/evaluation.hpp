// evaluation.hpp: accuracy on a labelled set, for `vitbatch evaluate`.
//
// A labelled set is an ImageFolder tree (one sub-directory a class) or a CSV of path,label.
// A class is named by the model's class name (exactly, or ignoring case with '_' and '-' read
// as spaces when that names one class), by its ImageNet-1k WordNet id (n01440764, when the
// model has the 1000 ImageNet classes), or by its index. How each name was mapped is kept, and
// names that map to no class are an error listing them: nothing is guessed or dropped.
#pragma once

#include "vitbatch/classify_pipeline.hpp"

#include <cstdint>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

namespace vitbatch {

class HtmlReport;

struct ClassName {
  int64_t index = -1;  // -1: names no class
  std::string how;     // "name", "name (case and _ ignored)", "WordNet id", "index"
};
ClassName map_class_name(const std::string& name, const std::vector<std::string>& labels);

// A labelled set: the inputs to classify (in order) and the class of each.
struct LabelledSet {
  std::vector<std::string> inputs;     // for InputPaths: the root, or the CSV's paths
  std::map<std::string, ClassName> classes;  // by folder name or CSV label
  // The class of an input path as the walk gives it; -1 when it has none (a file at the root).
  std::unordered_map<std::string, int64_t> by_path;  // CSV: every path
  std::string root;                                  // ImageFolder: the root, "/"-terminated
  int64_t class_of(const std::string& path) const;
};

// An ImageFolder tree: each sub-directory of `root` (not starting with '.') is a class.
// Throws Error listing the folders that name no class.
LabelledSet image_folder(const std::string& root, const std::vector<std::string>& labels);
// A CSV of path,label (an optional header line "path,label"); relative paths are relative to
// the CSV's directory. Throws Error naming the line of a bad record and the labels that name
// no class.
LabelledSet labelled_csv(const std::string& csv_path, const std::vector<std::string>& labels);

// Wilson score interval at 95% for k successes of n.
std::pair<double, double> wilson_interval(int64_t k, int64_t n);

struct Misclassified {
  std::string path;
  int64_t label = 0, predicted = 0;
  double probability = 0.0;  // of the predicted class
};

struct EvaluationReport {
  int64_t count = 0, top1 = 0, top5 = 0;  // inputs with an answer; correct at 1 and within 5
  int64_t failed = 0, unlabelled = 0;     // bad inputs; inputs with no class (skipped)
  struct PerClass {
    int64_t count = 0, top1 = 0;
  };
  std::map<int64_t, PerClass> per_class;  // the classes present in the set
  std::vector<std::pair<std::pair<int64_t, int64_t>, int64_t>> confused;  // ((label, predicted), n), most first
  std::vector<Misclassified> misclassified;  // in input order
  std::vector<std::pair<std::string, std::string>> errors;  // (path, reason)
};

// Scores each row against its class as it streams by; failed rows are kept as errors.
class EvaluationSink : public RowSink {
 public:
  // `page`: also a card for every row (--report).
  EvaluationSink(const LabelledSet& set, int64_t classes, HtmlReport* page = nullptr)
      : set_(set), classes_(classes), page_(page) {}
  void row(const std::string& path, const float* output, const std::string& error, const std::string& thumbnail) override;
  bool flush() override { return true; }
  EvaluationReport report() const;

 private:
  const LabelledSet& set_;
  int64_t classes_;
  HtmlReport* page_;
  EvaluationReport report_;
  std::map<std::pair<int64_t, int64_t>, int64_t> confusion_;
};

}  // namespace vitbatch
