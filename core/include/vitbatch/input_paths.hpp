// input_paths.hpp: turns command-line inputs into the stream of image paths to classify,
// in order: each argument in turn; a directory contributes its images (.jpg .jpeg .png, any
// case) recursively, sorted by path; a file is taken as given (decoded by content); "-"
// reads newline-separated paths from stdin. Paths are produced lazily, one at a time.
#pragma once

#include <deque>
#include <istream>
#include <optional>
#include <string>
#include <vector>

namespace vitbatch {

bool has_image_extension(const std::string& path);

class InputPaths {
 public:
  InputPaths(std::vector<std::string> args, std::istream& stdin_stream);
  // The next path, or nothing at the end.
  std::optional<std::string> next();

 private:
  std::vector<std::string> args_;
  size_t next_arg_ = 0;
  std::istream& stdin_;
  bool reading_stdin_ = false;
  std::deque<std::string> pending_;
};

}  // namespace vitbatch
