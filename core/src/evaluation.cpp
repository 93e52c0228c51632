#include "vitbatch/evaluation.hpp"

#include "vitbatch/error.hpp"
#include "vitbatch/file_io.hpp"
#include "vitbatch/html_report.hpp"
#include "vitbatch/labels.hpp"
#include "vitbatch/prediction_format.hpp"

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <numeric>

namespace vitbatch {

namespace {

// Lower case, '_' and '-' as spaces, runs of spaces as one: "Egyptian_cat" ~ "egyptian cat".
std::string loose(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    char k = c == '_' || c == '-' ? ' ' : static_cast<char>(std::tolower(c));
    if (k == ' ' && (out.empty() || out.back() == ' ')) continue;
    out += k;
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

std::string unmapped_error(const std::vector<std::string>& names, const std::string& what, size_t classes) {
  std::string list;
  for (size_t i = 0; i < names.size() && i < 10; ++i) list += (i ? ", " : "") + std::string("'") + names[i] + "'";
  if (names.size() > 10) list += ", and " + std::to_string(names.size() - 10) + " more";
  return std::to_string(names.size()) + " " + what + (names.size() == 1 ? " names" : "s name") +
         " no class of the model (" + list + "): name a class by its label, " +
         (classes == 1000 ? "its ImageNet WordNet id (n01440764), " : "") + "or its index 0.." +
         std::to_string(classes - 1) + " (--labels FILE gives other names)";
}

}  // namespace

ClassName map_class_name(const std::string& name, const std::vector<std::string>& labels) {
  const int64_t classes = static_cast<int64_t>(labels.size());
  for (int64_t i = 0; i < classes; ++i)
    if (labels[i] == name) return {i, "name"};
  if (classes == 1000) {
    const auto& wnids = imagenet1k_wnids();
    auto it = std::find(wnids.begin(), wnids.end(), name);
    if (it != wnids.end()) return {it - wnids.begin(), "WordNet id"};
  }
  if (!name.empty() && name.size() < 10 && std::all_of(name.begin(), name.end(), [](unsigned char c) { return std::isdigit(c); })) {
    int64_t i = std::stoll(name);
    if (i < classes) return {i, "index"};
  }
  const std::string key = loose(name);
  int64_t found = -1;
  for (int64_t i = 0; i < classes; ++i) {
    if (loose(labels[i]) != key) continue;
    if (found >= 0) return {};  // two classes: ambiguous, not guessed
    found = i;
  }
  if (found >= 0) return {found, "name (case and _ ignored)"};
  return {};
}

int64_t LabelledSet::class_of(const std::string& path) const {
  if (root.empty()) {
    auto it = by_path.find(path);
    return it == by_path.end() ? -1 : it->second;
  }
  if (path.compare(0, root.size(), root) != 0) return -1;
  size_t slash = path.find('/', root.size());
  if (slash == std::string::npos) return -1;  // a file at the root: no class folder
  auto it = classes.find(path.substr(root.size(), slash - root.size()));
  return it == classes.end() ? -1 : it->second.index;
}

LabelledSet image_folder(const std::string& root, const std::vector<std::string>& labels) {
  LabelledSet set;
  set.root = root.empty() || root.back() == '/' ? root : root + "/";
  set.inputs = {root};
  DIR* d = opendir(root.c_str());
  if (!d) throw Error(root + ": cannot list the labelled folder: " + std::strerror(errno));
  std::vector<std::string> folders;
  while (dirent* e = readdir(d)) {
    std::string name = e->d_name;
    if (name.empty() || name[0] == '.') continue;
    struct stat st {};
    if (::stat((set.root + name).c_str(), &st) == 0 && S_ISDIR(st.st_mode)) folders.push_back(name);
  }
  closedir(d);
  std::sort(folders.begin(), folders.end());
  if (folders.empty()) throw Error(root + ": no class folders in it (the ImageFolder layout: ROOT/CLASS/image.jpg)");
  std::vector<std::string> unmapped;
  for (const auto& f : folders) {
    ClassName c = map_class_name(f, labels);
    if (c.index < 0) unmapped.push_back(f);
    set.classes[f] = c;
  }
  if (!unmapped.empty()) throw Error(root + ": " + unmapped_error(unmapped, "folder", labels.size()));
  return set;
}

LabelledSet labelled_csv(const std::string& csv_path, const std::vector<std::string>& labels) {
  LabelledSet set;
  const std::string text = read_regular_file(csv_path, uint64_t{1} << 32);
  const size_t slash = csv_path.find_last_of('/');
  const std::string base = slash == std::string::npos ? "" : csv_path.substr(0, slash + 1);
  std::vector<std::string> fields, unmapped;
  size_t pos = 0;
  int64_t line = 0;
  while (pos < text.size()) {
    ++line;
    size_t next = split_csv_record(text, pos, fields);
    if (next == std::string::npos) {  // a last line without its newline
      split_csv_record(text + "\n", pos, fields);
      next = text.size();
    }
    pos = next;
    if (fields.size() == 1 && fields[0].empty()) continue;  // a blank line
    if (fields.size() != 2)
      throw Error(csv_path + ":" + std::to_string(line) + ": expected 2 fields (path,label), found " +
                  std::to_string(fields.size()));
    if (line == 1 && fields[0] == "path" && fields[1] == "label") continue;
    const std::string path = !fields[0].empty() && fields[0][0] == '/' ? fields[0] : base + fields[0];
    auto it = set.classes.find(fields[1]);
    if (it == set.classes.end()) {
      it = set.classes.emplace(fields[1], map_class_name(fields[1], labels)).first;
      if (it->second.index < 0) unmapped.push_back(fields[1]);
    }
    if (!set.by_path.emplace(path, it->second.index).second)
      throw Error(csv_path + ":" + std::to_string(line) + ": '" + fields[0] + "' is listed twice");
    set.inputs.push_back(path);
  }
  if (!unmapped.empty()) throw Error(csv_path + ": " + unmapped_error(unmapped, "label", labels.size()));
  if (set.inputs.empty()) throw Error(csv_path + ": no rows (expected path,label lines)");
  return set;
}

std::pair<double, double> wilson_interval(int64_t k, int64_t n) {
  if (n <= 0) return {0.0, 1.0};
  const double z = 1.959963984540054, p = double(k) / n, z2n = z * z / n;
  const double centre = (p + z2n / 2) / (1 + z2n);
  const double half = z * std::sqrt(p * (1 - p) / n + z2n / (4.0 * n)) / (1 + z2n);
  return {std::max(0.0, centre - half), std::min(1.0, centre + half)};
}

void EvaluationSink::row(const std::string& path, const float* output, const std::string& error,
                         const std::string& thumbnail) {
  const int64_t label = set_.class_of(path);
  // The 5 largest logits (ties to the lower index), as classify ranks them.
  std::vector<Prediction> top = output ? top_k(output, classes_, 5) : std::vector<Prediction>{};
  if (page_) page_->add({path, error, thumbnail, top, label});
  if (!output) {
    ++report_.failed;
    report_.errors.emplace_back(path, error);
    return;
  }
  if (label < 0) {
    ++report_.unlabelled;
    return;
  }
  ++report_.count;
  auto& cls = report_.per_class[label];
  ++cls.count;
  if (top[0].index == label) {
    ++report_.top1;
    ++cls.top1;
  } else {
    ++confusion_[{label, top[0].index}];
    report_.misclassified.push_back({path, label, top[0].index, top[0].probability});
  }
  for (const Prediction& p : top)
    if (p.index == label) ++report_.top5;
}

EvaluationReport EvaluationSink::report() const {
  EvaluationReport r = report_;
  r.confused.assign(confusion_.begin(), confusion_.end());
  std::stable_sort(r.confused.begin(), r.confused.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  return r;
}

}  // namespace vitbatch
