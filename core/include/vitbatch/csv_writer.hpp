// csv_writer.hpp: the prediction CSV. RFC 4180 quoting; header
// path,top1_index,top1_label,top1_prob,...,topK_index,topK_label,topK_prob,error
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace vitbatch {

struct Prediction {
  int index = 0;
  double probability = 0.0;
};

// Quotes a field when it holds a comma, quote, CR or LF, doubling inner quotes.
std::string csv_field(const std::string& text);

class CsvWriter {
 public:
  // `labels` must outlive the writer.
  CsvWriter(std::ostream& out, int top_k, const std::vector<std::string>& labels);
  void write_header();
  // An empty `predictions` with a non-empty `error` writes a failed row.
  void write_row(const std::string& path, const std::vector<Prediction>& predictions, const std::string& error);
  void flush() { out_.flush(); }

 private:
  std::ostream& out_;
  int top_k_;
  const std::vector<std::string>& labels_;
};

}  // namespace vitbatch
