#include "vitbatch/input_paths.hpp"

#include <algorithm>
#include <cctype>
#include <filesystem>

namespace fs = std::filesystem;

namespace vitbatch {

bool has_image_extension(const std::string& path) {
  std::string ext = fs::path(path).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return ext == ".jpg" || ext == ".jpeg" || ext == ".png";
}

InputPaths::InputPaths(std::vector<std::string> args, std::istream& stdin_stream)
    : args_(std::move(args)), stdin_(stdin_stream) {}

std::optional<std::string> InputPaths::next() {
  while (true) {
    if (!pending_.empty()) {
      std::string p = std::move(pending_.front());
      pending_.pop_front();
      return p;
    }
    if (reading_stdin_) {
      std::string line;
      if (std::getline(stdin_, line)) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (!line.empty()) return line;
        continue;
      }
      reading_stdin_ = false;
    }
    if (next_arg_ >= args_.size()) return std::nullopt;
    const std::string& arg = args_[next_arg_++];
    if (arg == "-") {
      reading_stdin_ = true;
      continue;
    }
    std::error_code ec;
    if (!fs::is_directory(arg, ec)) {
      pending_.push_back(arg);  // a file, or a missing path that will fail with its reason
      continue;
    }
    std::vector<std::string> found;
    // skip_permission_denied: an unreadable subdirectory must not end the walk.
    fs::recursive_directory_iterator it(arg, fs::directory_options::skip_permission_denied, ec), end;
    for (; !ec && it != end; it.increment(ec)) {
      const fs::directory_entry& e = *it;
      std::error_code fe;
      if (has_image_extension(e.path().string()) && !e.is_directory(fe)) found.push_back(e.path().string());
    }
    std::sort(found.begin(), found.end());
    pending_.insert(pending_.end(), found.begin(), found.end());
  }
}

}  // namespace vitbatch
