#include "vitbatch/csv_writer.hpp"

#include "vitbatch/labels.hpp"

#include <cstdio>

namespace vitbatch {

std::string csv_field(const std::string& text) {
  if (text.find_first_of(",\"\r\n") == std::string::npos) return text;
  std::string out = "\"";
  for (char c : text) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

CsvWriter::CsvWriter(std::ostream& out, int top_k, const std::vector<std::string>& labels)
    : out_(out), top_k_(top_k), labels_(labels) {}

void CsvWriter::write_header() {
  out_ << "path";
  for (int k = 1; k <= top_k_; ++k) {
    std::string t = "top" + std::to_string(k);
    out_ << ',' << t << "_index," << t << "_label," << t << "_prob";
  }
  out_ << ",error\n";
}

void CsvWriter::write_row(const std::string& path, const std::vector<Prediction>& predictions,
                          const std::string& error) {
  std::string line = csv_field(path);
  for (int k = 0; k < top_k_; ++k) {
    if (k < static_cast<int>(predictions.size())) {
      const Prediction& p = predictions[k];
      char prob[32];
      std::snprintf(prob, sizeof prob, "%.6f", p.probability);
      std::string label = p.index < static_cast<int>(labels_.size()) ? first_name(labels_[p.index]) : "";
      line += "," + std::to_string(p.index) + "," + csv_field(label) + "," + prob;
    } else {
      line += ",,,";
    }
  }
  line += "," + csv_field(error) + "\n";
  out_ << line;
}

}  // namespace vitbatch
