// input_paths.hpp: turns command-line inputs into the stream of image paths to classify,
// in order: each argument in turn; a directory contributes its images (.jpg .jpeg .png, any
// case) recursively in path order; a file is taken as given (decoded by content); "-"
// reads paths from stdin, one per line or NUL-separated.
//
// The walk is lazy: a directory is listed only when the walk reaches it, and only one
// directory's entries per level of depth are held at a time, so the first path comes out at
// once however large the tree. Symlinked directories are followed; a directory already
// walked (a symlink loop, or two links to one place) is not walked again.
#pragma once

#include <istream>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace vitbatch {

bool has_image_extension(const std::string& path);

enum class InputStatus { Item, Pending, End };

struct InputItem {
  std::string path;
  std::string error;  // set for a directory that could not be listed: it becomes an error row
};

class InputPaths {
 public:
  // `null_separated`: stdin holds NUL-terminated paths (find -print0) instead of lines.
  // Blocking reads from a stream (tests, counting).
  InputPaths(std::vector<std::string> args, std::istream& stdin_stream, bool null_separated = false);
  // Reads stdin from a file descriptor with poll(), so next() can time out (Pending) while
  // a slow producer (`find` on a network drive) has nothing new to say.
  InputPaths(std::vector<std::string> args, int stdin_fd, bool null_separated = false);
  ~InputPaths();

  // Item: `item` holds the next input. Pending: nothing arrived within timeout_ms (only
  // while reading stdin from a descriptor). End: no more inputs.
  InputStatus next(InputItem& item, int timeout_ms = -1);
  // Blocking convenience: the next input, or nothing at the end.
  std::optional<InputItem> next();
  // True when the inputs include "-".
  bool reads_stdin() const;

 private:
  struct Level;
  class RecordReader;
  void descend(const std::string& dir);
  std::vector<std::string> args_;
  size_t next_arg_ = 0;
  std::unique_ptr<RecordReader> stdin_;
  bool reading_stdin_ = false;
  std::vector<std::unique_ptr<Level>> stack_;
  std::set<std::pair<unsigned long, unsigned long>> visited_;  // (device, inode) of walked dirs
  std::vector<InputItem> walk_errors_;
};

}  // namespace vitbatch
