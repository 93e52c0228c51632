#include "vitbatch/input_paths.hpp"

#include "vitbatch/image.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <unistd.h>
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>

namespace vitbatch {

namespace {

std::string lower_extension(const std::string& path) {
  size_t slash = path.find_last_of('/');
  size_t dot = path.find_last_of('.');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash) || dot == slash + 1) return "";
  std::string ext = path.substr(dot);
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return ext;
}

// A file without an extension is taken when its first bytes are an image's (cameras and
// some downloads write JPEGs with no extension). FIFOs and the like are never opened here.
bool looks_like_image(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return false;
  struct stat st {};
  uint8_t head[16] = {};
  ssize_t n = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) ? ::read(fd, head, sizeof head) : -1;
  ::close(fd);
  return n > 0 && !image_format(head, static_cast<size_t>(n)).empty();
}

}  // namespace

const std::vector<std::string>& image_extensions() {
  static const std::vector<std::string> extensions = {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp",
                                                      ".bmp", ".dib",  ".tif", ".tiff", ".gif"};
  return extensions;
}

bool has_image_extension(const std::string& path) {
  std::string ext = lower_extension(path);
  return std::find(image_extensions().begin(), image_extensions().end(), ext) != image_extensions().end();
}

std::string lexically_absolute(const std::string& path, const std::string& cwd) {
  std::string joined = !path.empty() && path[0] == '/' ? path : cwd + "/" + path;
  std::vector<std::string> parts;
  size_t at = 0;
  while (at <= joined.size()) {
    size_t slash = joined.find('/', at);
    if (slash == std::string::npos) slash = joined.size();
    std::string part = joined.substr(at, slash - at);
    if (part == "..") {
      if (!parts.empty()) parts.pop_back();
    } else if (!part.empty() && part != ".") {
      parts.push_back(part);
    }
    at = slash + 1;
  }
  std::string out;
  for (const auto& p : parts) out += "/" + p;
  return out.empty() ? "/" : out;
}

// One directory being walked: its entries, sorted, and where we are in them.
struct InputPaths::Level {
  std::string dir;
  std::string relative;  // this directory's path below the argument, "" or ending in '/' 
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
    : args_(std::move(args)), stdin_(std::make_unique<RecordReader>(&stdin_stream, -1, null_separated ? '\0' : '\n')),
      cwd_(current_directory()) {}

InputPaths::InputPaths(std::vector<std::string> args, int stdin_fd, bool null_separated)
    : args_(std::move(args)), stdin_(std::make_unique<RecordReader>(nullptr, stdin_fd, null_separated ? '\0' : '\n')),
      cwd_(current_directory()) {}

std::string current_directory() {
  std::vector<char> buf(4096);
  while (!getcwd(buf.data(), buf.size())) {
    if (errno != ERANGE) return "/";
    buf.resize(buf.size() * 2);
  }
  return buf.data();
}

InputPaths::~InputPaths() = default;

bool InputPaths::reads_stdin() const { return std::find(args_.begin(), args_.end(), "-") != args_.end(); }

void InputPaths::descend(const std::string& dir, const std::string& relative) {
  struct stat st {};
  if (stat(dir.c_str(), &st) != 0) {
    walk_errors_.push_back({dir, lexically_absolute(dir, cwd_), std::string("cannot walk directory: ") + std::strerror(errno)});
    return;
  }
  if (!visited_.insert({static_cast<unsigned long>(st.st_dev), static_cast<unsigned long>(st.st_ino)}).second)
    return;  // already walked: a symlink loop or a second link to the same directory
  DIR* d = opendir(dir.c_str());
  if (!d) {
    walk_errors_.push_back({dir, lexically_absolute(dir, cwd_), std::string("cannot list directory: ") + std::strerror(errno)});
    return;
  }
  auto level = std::make_unique<Level>();
  level->dir = dir;
  level->relative = relative;
  std::string prefix = dir.empty() || dir.back() == '/' ? dir : dir + "/";
  while (dirent* e = readdir(d)) {
    std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    bool is_dir = e->d_type == DT_DIR;
    if (e->d_type == DT_LNK || e->d_type == DT_UNKNOWN) {  // follow links to see what they are
      struct stat target {};
      is_dir = stat((prefix + name).c_str(), &target) == 0 && S_ISDIR(target.st_mode);
    }
    if (is_dir || has_image_extension(name)) {
      level->entries.emplace_back(is_dir ? name + "/" : name, is_dir);
    } else {
      std::string ext = lower_extension(name);
      if (ext.empty() && looks_like_image(prefix + name)) level->entries.emplace_back(name, false);
      else ++ignored_[ext.empty() ? "no extension" : ext];
    }
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
        item.key = top.relative + key;
        return InputStatus::Item;
      }
      descend(prefix + key.substr(0, key.size() - 1), top.relative + key);
      continue;
    }
    if (reading_stdin_) {
      std::string record;
      InputStatus s = stdin_->read(record, timeout_ms);
      if (s == InputStatus::Pending) return s;
      if (s == InputStatus::Item) {
        if (record.empty()) continue;
        item.key = lexically_absolute(record, cwd_);
        if (record.find('\0') != std::string::npos) {
          // No file name holds a NUL: the record is not a path (binary junk, or NUL-separated
          // input read as lines). Shown with the NULs spelled out, and never opened.
          std::string shown;
          for (char c : record) shown += c == '\0' ? std::string("\\0") : std::string(1, c);
          item.path = shown;
          item.error = "not a path: it holds a NUL byte (use -0 for NUL-separated input)";
          return s;
        }
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
      descend(arg, "");
      continue;
    }
    item.path = arg;  // a file, or a missing path that will fail with its reason
    item.key = lexically_absolute(arg, cwd_);
    return InputStatus::Item;
  }
}

std::optional<InputItem> InputPaths::next() {
  InputItem item;
  if (next(item, -1) == InputStatus::Item) return item;
  return std::nullopt;
}

}  // namespace vitbatch
