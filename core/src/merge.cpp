#include "vitbatch/merge.hpp"

#include "vitbatch/error.hpp"
#include "vitbatch/file_io.hpp"
#include "vitbatch/input_paths.hpp"
#include "vitbatch/prediction_format.hpp"

#include <algorithm>
#include <set>
#include <sstream>

namespace vitbatch {
namespace {

struct Row {
  std::string path, raw;
  size_t file;
};

// CSV files start with classify's header, whose column count gives the top-k; JSON Lines
// files with a record ('{'). Empty files (a shard that had no inputs) say nothing.
std::unique_ptr<PredictionFormat> format_of(const std::string& text, std::string* kind, const std::string& file) {
  static const std::vector<std::string> no_labels;
  if (text[0] == '{') {
    *kind = "jsonl";
    return PredictionFormat::make("jsonl", 1, no_labels);
  }
  std::string first = text.substr(0, text.find('\n'));
  size_t commas = static_cast<size_t>(std::count(first.begin(), first.end(), ','));
  if (first.rfind("path,", 0) != 0 || commas < 4 || (commas - 1) % 3 != 0)
    throw Error(file + ": not a vitbatch output (neither classify's CSV header nor JSON Lines)");
  *kind = "csv";
  // classify --activation none writes logits: topK_logit columns.
  const bool logits = first.find("_logit,") != std::string::npos;
  return PredictionFormat::make("csv", static_cast<int>((commas - 1) / 3), no_labels,
                                logits ? ScoreActivation::None : ScoreActivation::Softmax);
}

}  // namespace

MergeResult merge_outputs(const MergeInput& input) {
  if (input.files.empty()) throw Error("nothing to merge");
  std::vector<Row> rows;
  std::string kind, header, header_file;
  for (size_t f = 0; f < input.files.size(); ++f) {
    const std::string& file = input.files[f];
    std::string text = read_regular_file(file, uint64_t{1} << 40);
    if (text.empty()) continue;
    std::string this_kind;
    std::unique_ptr<PredictionFormat> format = format_of(text, &this_kind, file);
    if (kind.empty()) {
      kind = this_kind, header = format->header(), header_file = file;
    } else if (this_kind != kind) {
      throw Error(file + ": is " + this_kind + " but " + header_file + " is " + kind);
    } else if (format->header() != header) {
      throw Error(file + ": its header differs from " + header_file + "'s (another --top-k?)");
    }
    size_t complete = 0;
    std::vector<std::pair<std::string, RecordedRow>> parsed;
    try {
      parsed = format->parse(text, &complete);
    } catch (const Error& e) {
      throw Error(file + ": " + e.what());
    }
    if (complete != text.size())
      throw Error(file + ": its last row is cut short at byte " + std::to_string(complete) +
                  " (a shard still running, or killed: finish it with classify --resume)");
    for (auto& [raw, row] : parsed) rows.push_back({std::move(row.path), std::move(raw), f});
  }
  // Byte order (std::string compares as unsigned char); stable, so a duplicate names the
  // earlier file first.
  std::stable_sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) { return a.path < b.path; });
  for (size_t i = 1; i < rows.size(); ++i)
    if (rows[i].path == rows[i - 1].path)
      throw Error("'" + rows[i].path + "' has a row in " + input.files[rows[i - 1].file] +
                  (rows[i].file == rows[i - 1].file ? " twice" : " and in " + input.files[rows[i].file]));
  if (!input.inputs.empty()) {
    std::istringstream no_stdin;
    InputPaths walk(input.inputs, no_stdin);
    std::set<std::string> expected;
    while (auto item = walk.next()) {
      bool found = std::binary_search(rows.begin(), rows.end(), Row{item->path, "", 0},
                                      [](const Row& a, const Row& b) { return a.path < b.path; });
      if (!found) throw Error("'" + item->path + "' (an input) has no row in the merged files (a shard missing or unfinished?)");
      expected.insert(item->path);
    }
    for (const Row& r : rows)
      if (!expected.count(r.path))
        throw Error("'" + r.path + "' (in " + input.files[r.file] + ") is not one of the given inputs");
  }
  MergeResult result;
  result.text = header;
  for (const Row& r : rows) result.text += r.raw;
  result.rows = rows.size();
  return result;
}

}  // namespace vitbatch
