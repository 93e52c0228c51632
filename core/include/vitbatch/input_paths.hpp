// input_paths.hpp: turns command-line inputs into the stream of image paths to classify,
// in order: each argument in turn; a directory contributes its images (the extensions of
// image_extensions(), any case, and extensionless files whose content is an image)
// recursively in path order, and counts the files it leaves out by extension; a file is
// taken as given (decoded by content); "-" reads paths from stdin, one per line or
// NUL-separated, and add_files_from() lists read the same way after the arguments.
//
// A tar file (has_archive_extension(), named directly, listed, or met by a directory walk)
// contributes its image members in archive order, as "archive.tar!member.jpg", without being
// unpacked: their bytes come from read_member(). Members are grouped into samples by
// WebDataset's __key__ (the name up to the first dot of its base name): the other members of
// a sample with an image (.cls, .json, ...) are its metadata and pass silently; a sample of
// two or more members with no image at all is an error row ("archive.tar!000042"); a lone
// non-image member is counted in ignored() as a directory walk counts files. A damaged or
// cut-short archive is an error row naming the archive, after the members read before it.
//
// A path that does not exist and looks like a URL (s3://, https://, ...) is an error row:
// vitbatch reads local files only.
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
#include <deque>
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
  std::string error;  // set for an input known bad without reading it: it becomes an error row
  // An archive member: its bytes are read with InputPaths::read_member() before the next
  // next(), and then held here.
  bool in_archive = false;
  std::shared_ptr<const std::vector<uint8_t>> bytes;
};

// True for "scheme://..." (s3://, gs://, https://): not a local path.
bool looks_like_url(const std::string& path);

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
  // Paths listed in `list` ("-": stdin), one per line or NUL-separated as stdin is, read after
  // the arguments; lists are read in the order added.
  void add_files_from(const std::string& list);
  // For the item next() returned last, if item.in_archive: reads its bytes into item.bytes,
  // or sets item.error (too large for max_bytes, archive damaged) and returns false.
  bool read_member(InputItem& item, int64_t max_bytes);
  // True when the inputs include "-" (as an argument or a list).
  bool reads_stdin() const;
  // Files the directory walks left out, by lower-case extension ("no extension" for none):
  // known only once the walk is past them.
  const std::map<std::string, int64_t>& ignored() const { return ignored_; }

 private:
  struct Level;
  class RecordReader;
  struct Archive;
  void descend(const std::string& dir, const std::string& relative);
  // A file named by an argument or a list record: an archive is opened (false), anything
  // else becomes `item` (true).
  bool take_file(const std::string& path, const std::string& key, InputItem& item);
  void open_archive(const std::string& path, const std::string& key);
  void step_archive();
  void finish_sample();
  void open_next_list();
  std::vector<std::string> args_;
  size_t next_arg_ = 0;
  std::unique_ptr<RecordReader> stdin_;
  RecordReader* records_ = nullptr;  // the stdin or list being read, if any
  std::vector<std::string> lists_;
  size_t next_list_ = 0;
  std::unique_ptr<RecordReader> list_;
  int list_fd_ = -1;
  char delimiter_;
  std::vector<std::unique_ptr<Level>> stack_;
  std::set<std::pair<unsigned long, unsigned long>> visited_;  // (device, inode) of walked dirs
  std::unique_ptr<Archive> archive_;
  std::deque<InputItem> pending_;  // rows decided ahead of the next one: walk errors, samples, members
  std::map<std::string, int64_t> ignored_;
  std::string cwd_;
};

}  // namespace vitbatch
