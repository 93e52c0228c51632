// html_report.hpp: `--report out.html` of classify and evaluate: one self-contained page (no
// network, no framework) to skim a run instead of its CSV. The rows are embedded as JSON and
// drawn a page at a time by a few lines of plain JavaScript, so 100,000 rows stay usable;
// each card shows the crop the model saw as a small JPEG data URI (for the first
// max_thumbnails rows), the top-k as bars, or the failure and its reason. A filter shows
// only failures (and, for evaluate, misclassified images).
#pragma once

#include "vitbatch/image.hpp"
#include "vitbatch/prediction_format.hpp"

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace vitbatch {

// The crop shrunk (area average) to fit `side` pixels and encoded as a JPEG (libjpeg, q 80).
std::string jpeg_thumbnail(const RgbImage& crop, int side);
std::string base64(const std::string& bytes);

struct ReportRow {
  std::string path;
  std::string error;
  std::string thumbnail;  // JPEG bytes, or empty
  std::vector<Prediction> predictions;
  int64_t label = -1;  // evaluate: the true class
};

class HtmlReport {
 public:
  HtmlReport(std::string title, const std::vector<std::string>& labels, int64_t max_thumbnails)
      : title_(std::move(title)), labels_(labels), max_thumbnails_(max_thumbnails) {}
  void add(ReportRow row);
  // Lines of the summary at the top: (name, value).
  void summary(std::vector<std::pair<std::string, std::string>> lines) { summary_ = std::move(lines); }
  // A table below the summary (evaluate's per-class accuracy, confused pairs).
  void table(std::string caption, std::vector<std::string> header, std::vector<std::vector<std::string>> rows);
  std::string render() const;
  int64_t rows() const { return static_cast<int64_t>(rows_.size()); }

 private:
  struct Table {
    std::string caption;
    std::vector<std::string> header;
    std::vector<std::vector<std::string>> rows;
  };
  std::string title_;
  const std::vector<std::string>& labels_;
  int64_t max_thumbnails_;
  int64_t thumbnails_ = 0;
  std::vector<ReportRow> rows_;
  std::vector<std::pair<std::string, std::string>> summary_;
  std::vector<Table> tables_;
};

}  // namespace vitbatch
