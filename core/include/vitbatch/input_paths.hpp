// input_paths.hpp: turns command-line inputs into the stream of image paths to classify,
// in order: each argument in turn; a directory contributes its images (the extensions of
// image_extensions(), any case, and extensionless files whose content is an image)
// recursively in path order, and counts the files it leaves out by extension; a file is
// taken as given (decoded by content); "-" reads paths from stdin, one per line or
// NUL-separated.
//
// Each input also has a key that does not depend on how the argument was spelled, for
// --shard: below a directory argument, the path relative to that directory
// ("sub/a.jpg" whether the argument was "photos", "./photos/" or "/abs/photos"); for a file
// named directly or on stdin, its absolute path with "." and ".." resolved lexically.
//
// The walk is lazy: a directory is listed only when the walk reaches it, and only one
// directory's entries per level of depth are held at a time, so the first path comes out at
// once however large the tree. Symlinked directories are followed; a directory already
// walked (a symlink loop, or two links to one place) is not walked again.
#pragma once

#include <cstdint>
#include <istream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace vitbatch {

// The extensions a directory walk takes: .jpg .jpeg .jpe .jfif .png .webp .bmp .dib .tif
// .tiff .gif (lower case; matching ignores case).
const std::vector<std::string>& image_extensions();
bool has_image_extension(const std::string& path);
// `path` made absolute against `cwd` with ".", ".." and "//" resolved as text (symlinks are
// not followed: the same spelling rules as the shell's cd -L).
std::string lexically_absolute(const std::string& path, const std::string& cwd);
std::string current_directory();

enum class InputStatus { Item, Pending, End };

struct InputItem {
  std::string path;  // as the user gave it, or as the walk built it from the argument
  std::string key;   // see above
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
  // Files the directory walks left out, by lower-case extension ("no extension" for none):
  // known only once the walk is past them.
  const std::map<std::string, int64_t>& ignored() const { return ignored_; }

 private:
  struct Level;
  class RecordReader;
  void descend(const std::string& dir, const std::string& relative);
  std::vector<std::string> args_;
  size_t next_arg_ = 0;
  std::unique_ptr<RecordReader> stdin_;
  bool reading_stdin_ = false;
  std::vector<std::unique_ptr<Level>> stack_;
  std::set<std::pair<unsigned long, unsigned long>> visited_;  // (device, inode) of walked dirs
  std::vector<InputItem> walk_errors_;
  std::map<std::string, int64_t> ignored_;
  std::string cwd_;
};

}  // namespace vitbatch
