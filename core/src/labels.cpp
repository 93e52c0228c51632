#include "vitbatch/labels.hpp"

#include "vitbatch/error.hpp"

#include <fstream>
#include <sstream>

namespace vitbatch {

extern const char* const kImagenet1kLabelsText;  // generated from core/data/imagenet1k.txt

namespace {
std::vector<std::string> split_lines(std::istream& in) {
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    lines.push_back(line);
  }
  while (!lines.empty() && lines.back().empty()) lines.pop_back();
  return lines;
}
}  // namespace

const std::vector<std::string>& imagenet1k_labels() {
  static const std::vector<std::string> labels = [] {
    std::istringstream in(kImagenet1kLabelsText);
    return split_lines(in);
  }();
  return labels;
}

std::vector<std::string> load_labels(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw Error(path + ": cannot read labels file");
  return split_lines(in);
}

std::string first_name(const std::string& label) { return label.substr(0, label.find(", ")); }

}  // namespace vitbatch
