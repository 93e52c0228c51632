#include "vitbatch/input_paths.hpp"

#include <dirent.h>
#include <poll.h>
#include <unistd.h>
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>

namespace vitbatch {

bool has_image_extension(const std::string& path) {
  size_t slash = path.find_last_of('/');
  size_t dot = path.find_last_of('.');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash)) return false;
  std::string ext = path.substr(dot);
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return ext == ".jpg" || ext == ".jpeg" || ext == ".png";
}

// One directory being walked: its entries, sorted, and where we are in them.
struct InputPaths::Level {
  std::string dir;
  // Sort key is the entry's name, with "/" appended for directories: sorting a directory's
  // entries that way and walking depth-first gives exactly the byte order of full paths.
  std::vector<std::pair<std::string, bool>> entries;  // (name, is_directory)
  size_t next = 0;
};

// Stdin records (lines or NUL-terminated), from a stream (blocking) or a descriptor (poll).
class InputPaths::RecordReader {
 public:
  RecordReader(std::istream* stream, int fd, char delimiter) : stream_(stream), fd_(fd), delimiter_(delimiter) {}

  InputStatus read(std::string& record, int timeout_ms) {
    if (stream_) {
      if (!std::getline(*stream_, record, delimiter_)) return InputStatus::End;
      return finish(record);
    }
    while (true) {
      size_t at = buffer_.find(delimiter_);
      if (at != std::string::npos) {
        record = buffer_.substr(0, at);
        buffer_.erase(0, at + 1);
        return finish(record);
      }
      if (eof_) {
        if (buffer_.empty()) return InputStatus::End;
        record.swap(buffer_);  // a last record without its terminator
        buffer_.clear();
        return finish(record);
      }
      pollfd p{fd_, POLLIN, 0};
      int ready = poll(&p, 1, timeout_ms);
      if (ready < 0 && errno == EINTR) return InputStatus::Pending;
      if (ready == 0) return InputStatus::Pending;
      char chunk[65536];
      ssize_t n = ::read(fd_, chunk, sizeof chunk);
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (n <= 0) eof_ = true;
      else buffer_.append(chunk, static_cast<size_t>(n));
    }
  }

 private:
  // Lines from Windows tools end in CR LF; NUL-separated records are taken as they are.
  InputStatus finish(std::string& record) const {
    if (delimiter_ == '\n' && !record.empty() && record.back() == '\r') record.pop_back();
    return InputStatus::Item;
  }
  std::istream* stream_;
  int fd_;
  char delimiter_;
  std::string buffer_;
  bool eof_ = false;
};

InputPaths::InputPaths(std::vector<std::string> args, std::istream& stdin_stream, bool null_separated)
    : args_(std::move(args)), stdin_(std::make_unique<RecordReader>(&stdin_stream, -1, null_separated ? '\0' : '\n')) {}

InputPaths::InputPaths(std::vector<std::string> args, int stdin_fd, bool null_separated)
    : args_(std::move(args)), stdin_(std::make_unique<RecordReader>(nullptr, stdin_fd, null_separated ? '\0' : '\n')) {}

InputPaths::~InputPaths() = default;

bool InputPaths::reads_stdin() const { return std::find(args_.begin(), args_.end(), "-") != args_.end(); }

void InputPaths::descend(const std::string& dir) {
  struct stat st {};
  if (stat(dir.c_str(), &st) != 0) {
    walk_errors_.push_back({dir, std::string("cannot walk directory: ") + std::strerror(errno)});
    return;
  }
  if (!visited_.insert({static_cast<unsigned long>(st.st_dev), static_cast<unsigned long>(st.st_ino)}).second)
    return;  // already walked: a symlink loop or a second link to the same directory
  DIR* d = opendir(dir.c_str());
  if (!d) {
    walk_errors_.push_back({dir, std::string("cannot list directory: ") + std::strerror(errno)});
    return;
  }
  auto level = std::make_unique<Level>();
  level->dir = dir;
  std::string prefix = dir.empty() || dir.back() == '/' ? dir : dir + "/";
  while (dirent* e = readdir(d)) {
    std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    bool is_dir = e->d_type == DT_DIR;
    if (e->d_type == DT_LNK || e->d_type == DT_UNKNOWN) {  // follow links to see what they are
      struct stat target {};
      is_dir = stat((prefix + name).c_str(), &target) == 0 && S_ISDIR(target.st_mode);
    }
    if (is_dir || has_image_extension(name)) level->entries.emplace_back(is_dir ? name + "/" : name, is_dir);
  }
  closedir(d);
  std::sort(level->entries.begin(), level->entries.end());
  stack_.push_back(std::move(level));
}

InputStatus InputPaths::next(InputItem& item, int timeout_ms) {
  item.error.clear();
  while (true) {
    if (!walk_errors_.empty()) {
      item = std::move(walk_errors_.front());
      walk_errors_.erase(walk_errors_.begin());
      return InputStatus::Item;
    }
    if (!stack_.empty()) {
      Level& top = *stack_.back();
      if (top.next == top.entries.size()) {
        stack_.pop_back();
        continue;
      }
      const auto& [key, is_dir] = top.entries[top.next++];
      std::string prefix = top.dir.back() == '/' ? top.dir : top.dir + "/";
      if (!is_dir) {
        item.path = prefix + key;
        return InputStatus::Item;
      }
      descend(prefix + key.substr(0, key.size() - 1));
      continue;
    }
    if (reading_stdin_) {
      std::string record;
      InputStatus s = stdin_->read(record, timeout_ms);
      if (s == InputStatus::Pending) return s;
      if (s == InputStatus::Item) {
        if (record.empty()) continue;
        item.path = std::move(record);
        return s;
      }
      reading_stdin_ = false;
    }
    if (next_arg_ >= args_.size()) return InputStatus::End;
    const std::string& arg = args_[next_arg_++];
    if (arg == "-") {
      reading_stdin_ = true;
      continue;
    }
    struct stat st {};
    if (stat(arg.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
      descend(arg);
      continue;
    }
    item.path = arg;  // a file, or a missing path that will fail with its reason
    return InputStatus::Item;
  }
}

std::optional<InputItem> InputPaths::next() {
  InputItem item;
  if (next(item, -1) == InputStatus::Item) return item;
  return std::nullopt;
}

}  // namespace vitbatch
