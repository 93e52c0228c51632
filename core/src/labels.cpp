#include "vitbatch/labels.hpp"

#include "vitbatch/error.hpp"
#include "vitbatch/file_io.hpp"

#include <fstream>
#include <map>
#include <sstream>

namespace vitbatch {

extern const char* const kImagenet1kLabelsText;  // generated from core/data/imagenet1k.txt
extern const char* const kImagenet1kWnidsText;   // generated from core/data/imagenet1k_wnids.txt

namespace {

std::vector<std::string> split_lines(std::istream& in, const std::string& source) {
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    lines.push_back(line);
  }
  while (!lines.empty() && lines.back().empty()) lines.pop_back();
  for (size_t i = 0; i < lines.size(); ++i)
    if (lines[i].empty())
      throw Error(source + ":" + std::to_string(i + 1) +
                  ": blank line among the labels (every later class would shift by one); one name per line, "
                  "no blank lines");
  return lines;
}

std::vector<std::string> synonyms(const std::string& label) {
  std::vector<std::string> out;
  size_t at = 0;
  while (true) {
    size_t comma = label.find(", ", at);
    out.push_back(label.substr(at, comma == std::string::npos ? std::string::npos : comma - at));
    if (comma == std::string::npos) return out;
    at = comma + 2;
  }
}

}  // namespace

std::vector<std::string> unique_first_names(const std::vector<std::string>& lists,
                                            const std::vector<std::pair<int, std::string>>& qualifiers) {
  std::vector<std::string> names;
  std::map<std::string, int> uses;
  for (const std::string& l : lists) ++uses[names.emplace_back(first_name(l))];
  // First pass: a shared name gives way to the class's next synonym; the other class may
  // then keep the name alone (639 "tank suit" leaves 638 "maillot").
  for (size_t i = 0; i < names.size(); ++i) {
    std::vector<std::string> syn = synonyms(lists[i]);
    if (uses[names[i]] > 1 && syn.size() > 1 && !uses.count(syn[1])) {
      --uses[names[i]];
      ++uses[names[i] = syn[1]];
    }
  }
  std::map<int, std::string> qualifier(qualifiers.begin(), qualifiers.end());
  for (size_t i = 0; i < names.size(); ++i) {
    if (uses[names[i]] < 2) continue;
    if (qualifier.count(static_cast<int>(i))) names[i] += qualifier[static_cast<int>(i)];
    else names[i] += " (class " + std::to_string(i) + ")";
  }
  return names;
}

const std::vector<std::string>& imagenet1k_labels() {
  static const std::vector<std::string> labels = [] {
    std::istringstream in(kImagenet1kLabelsText);
    // WordNet n02012849 (the bird) and n03126707 (the machine) both list only "crane".
    return unique_first_names(split_lines(in, "built-in labels"), {{134, " (bird)"}, {517, " (machine)"}});
  }();
  return labels;
}

const std::vector<std::string>& imagenet1k_wnids() {
  static const std::vector<std::string> wnids = [] {
    std::istringstream in(kImagenet1kWnidsText);
    return split_lines(in, "built-in WordNet ids");
  }();
  return wnids;
}

std::vector<std::string> load_labels(const std::string& path) {
  std::istringstream in(read_regular_file(path, uint64_t{64} << 20));
  return split_lines(in, path);
}

std::string first_name(const std::string& label) { return label.substr(0, label.find(", ")); }

}  // namespace vitbatch
