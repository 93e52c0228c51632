#include "vitbatch/input_paths.hpp"

#include "vitbatch/archive_reader.hpp"
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

// An input known bad before anything is read: it becomes an error row.
InputItem error_row(std::string path, std::string key, std::string error) {
  InputItem item;
  item.path = std::move(path);
  item.key = std::move(key);
  item.error = std::move(error);
  return item;
}

}  // namespace

bool looks_like_url(const std::string& path) {
  size_t colon = path.find("://");
  if (colon == std::string::npos || colon == 0 || !std::isalpha(static_cast<unsigned char>(path[0]))) return false;
  return std::all_of(path.begin(), path.begin() + static_cast<std::ptrdiff_t>(colon), [](unsigned char c) {
    return std::isalnum(c) || c == '+' || c == '-' || c == '.';
  });
}

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

// The archive being read, and the WebDataset sample its last member belongs to.
struct InputPaths::Archive {
  Archive(const std::string& p, const std::string& k) : reader(p), path(p), key(k) {}
  ArchiveReader reader;
  std::string path, key;
  std::string member;  // path of the member item handed out last ("" once read or passed)
  bool damage_reported = false;  // read_member() already made the error row
  std::string sample;
  int sample_members = 0;
  bool sample_has_image = false;
  std::vector<std::string> sample_others;  // extensions of its non-image members
};

InputPaths::InputPaths(std::vector<std::string> args, std::istream& stdin_stream, bool null_separated)
    : args_(std::move(args)), stdin_(std::make_unique<RecordReader>(&stdin_stream, -1, null_separated ? '\0' : '\n')),
      delimiter_(null_separated ? '\0' : '\n'), cwd_(current_directory()) {}

InputPaths::InputPaths(std::vector<std::string> args, int stdin_fd, bool null_separated)
    : args_(std::move(args)), stdin_(std::make_unique<RecordReader>(nullptr, stdin_fd, null_separated ? '\0' : '\n')),
      delimiter_(null_separated ? '\0' : '\n'), cwd_(current_directory()) {}

std::string current_directory() {
  std::vector<char> buf(4096);
  while (!getcwd(buf.data(), buf.size())) {
    if (errno != ERANGE) return "/";
    buf.resize(buf.size() * 2);
  }
  return buf.data();
}

InputPaths::~InputPaths() {
  if (list_fd_ >= 0) ::close(list_fd_);
}

bool InputPaths::reads_stdin() const {
  return std::find(args_.begin(), args_.end(), "-") != args_.end() ||
         std::find(lists_.begin(), lists_.end(), "-") != lists_.end();
}

void InputPaths::add_files_from(const std::string& list) { lists_.push_back(list); }

void InputPaths::open_next_list() {
  const std::string& list = lists_[next_list_++];
  if (list == "-") {
    records_ = stdin_.get();
    return;
  }
  if (list_fd_ >= 0) ::close(list_fd_);
  list_fd_ = ::open(list.c_str(), O_RDONLY | O_CLOEXEC);
  if (list_fd_ < 0) {
    pending_.push_back(error_row(list, lexically_absolute(list, cwd_), std::string("cannot read the file list: ") + std::strerror(errno)));
    return;
  }
  list_ = std::make_unique<RecordReader>(nullptr, list_fd_, delimiter_);
  records_ = list_.get();
}

bool InputPaths::take_file(const std::string& path, const std::string& key, InputItem& item) {
  bool archive = has_archive_extension(path), url = looks_like_url(path);
  struct stat st {};
  bool exists = (archive || url) && ::stat(path.c_str(), &st) == 0;
  if (archive && exists && S_ISREG(st.st_mode)) {
    open_archive(path, key);
    return false;
  }
  item.path = path;
  item.key = key;
  if (url && !exists)
    item.error = "a URL, not a local file: vitbatch reads local files only (download the images first, or mount the "
                 "bucket as a directory)";
  return true;
}

void InputPaths::open_archive(const std::string& path, const std::string& key) {
  archive_ = std::make_unique<Archive>(path, key);
}

void InputPaths::finish_sample() {
  Archive& a = *archive_;
  if (a.sample_members >= 2 && !a.sample_has_image) {
    std::string members;
    for (const auto& ext : a.sample_others) members += (members.empty() ? "" : ", ") + ext;
    pending_.push_back(error_row(a.path + "!" + a.sample, a.key + "!" + a.sample,
                                 "a WebDataset sample with no image member (it has " + members + ")"));
  } else if (a.sample_members == 1 && !a.sample_has_image) {
    ++ignored_[a.sample_others.front()];
  }
  a.sample.clear();
  a.sample_members = 0;
  a.sample_has_image = false;
  a.sample_others.clear();
}

void InputPaths::step_archive() {
  Archive& a = *archive_;
  a.member.clear();
  ArchiveReader::Status s = a.reader.next();
  if (s != ArchiveReader::Status::Member) {
    finish_sample();
    if (s == ArchiveReader::Status::Failed && !a.damage_reported) pending_.push_back(error_row(a.path, a.key, a.reader.error()));
    archive_.reset();
    return;
  }
  const std::string& name = a.reader.name();
  std::string sample = webdataset_key(name);
  if (a.sample_members > 0 && sample != a.sample) finish_sample();
  a.sample = sample;
  ++a.sample_members;
  if (has_image_extension(name)) {
    a.sample_has_image = true;
    InputItem member = error_row(a.path + "!" + name, a.key + "!" + sample, "");
    member.in_archive = true;
    a.member = member.path;
    pending_.push_back(std::move(member));
  } else {
    std::string ext = lower_extension(name);
    a.sample_others.push_back(ext.empty() ? "no extension" : ext);
  }
}

bool InputPaths::read_member(InputItem& item, int64_t max_bytes) {
  if (!item.in_archive) return true;
  if (!archive_ || archive_->member != item.path || !pending_.empty()) {
    item.error = "internal error: the archive has moved past this member";
    return false;
  }
  auto bytes = std::make_shared<std::vector<uint8_t>>();
  if (!archive_->reader.read(*bytes, max_bytes)) {
    item.error = archive_->reader.error();
    archive_->damage_reported = archive_->reader.finished();
    return false;
  }
  archive_->member.clear();
  item.bytes = std::move(bytes);
  return true;
}

void InputPaths::descend(const std::string& dir, const std::string& relative) {
  struct stat st {};
  if (stat(dir.c_str(), &st) != 0) {
    pending_.push_back(error_row(dir, lexically_absolute(dir, cwd_), std::string("cannot walk directory: ") + std::strerror(errno)));
    return;
  }
  if (!visited_.insert({static_cast<unsigned long>(st.st_dev), static_cast<unsigned long>(st.st_ino)}).second)
    return;  // already walked: a symlink loop or a second link to the same directory
  DIR* d = opendir(dir.c_str());
  if (!d) {
    pending_.push_back(error_row(dir, lexically_absolute(dir, cwd_), std::string("cannot list directory: ") + std::strerror(errno)));
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
    if (is_dir || has_image_extension(name) || has_archive_extension(name)) {
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
  item.in_archive = false;
  item.bytes.reset();
  while (true) {
    if (!pending_.empty()) {
      item = std::move(pending_.front());
      pending_.pop_front();
      return InputStatus::Item;
    }
    if (archive_) {  // an archive's members come before whatever named it continues
      step_archive();
      continue;
    }
    if (!stack_.empty()) {
      Level& top = *stack_.back();
      if (top.next == top.entries.size()) {
        stack_.pop_back();
        continue;
      }
      const auto& [key, is_dir] = top.entries[top.next++];
      std::string prefix = top.dir.back() == '/' ? top.dir : top.dir + "/";
      if (!is_dir && has_archive_extension(key)) {
        open_archive(prefix + key, top.relative + key);
        continue;
      }
      if (!is_dir) {
        item.path = prefix + key;
        item.key = top.relative + key;
        return InputStatus::Item;
      }
      descend(prefix + key.substr(0, key.size() - 1), top.relative + key);
      continue;
    }
    if (records_) {
      std::string record;
      InputStatus s = records_->read(record, timeout_ms);
      if (s == InputStatus::Pending) return s;
      if (s == InputStatus::Item) {
        if (record.empty()) continue;
        std::string key = lexically_absolute(record, cwd_);
        if (record.find('\0') != std::string::npos) {
          // No file name holds a NUL: the record is not a path (binary junk, or NUL-separated
          // input read as lines). Shown with the NULs spelled out, and never opened.
          std::string shown;
          for (char c : record) shown += c == '\0' ? std::string("\\0") : std::string(1, c);
          item.path = shown;
          item.key = key;
          item.error = "not a path: it holds a NUL byte (use -0 for NUL-separated input)";
          return s;
        }
        if (take_file(record, key, item)) return s;
        continue;
      }
      records_ = nullptr;
      list_.reset();
      if (list_fd_ >= 0) ::close(list_fd_), list_fd_ = -1;
      continue;
    }
    if (next_arg_ < args_.size()) {
      const std::string& arg = args_[next_arg_++];
      if (arg == "-") {
        records_ = stdin_.get();
        continue;
      }
      struct stat st {};
      if (stat(arg.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
        descend(arg, "");
        continue;
      }
      // a file, or a missing path that will fail with its reason
      if (take_file(arg, lexically_absolute(arg, cwd_), item)) return InputStatus::Item;
      continue;
    }
    if (next_list_ < lists_.size()) {
      open_next_list();
      continue;
    }
    return InputStatus::End;
  }
}

std::optional<InputItem> InputPaths::next() {
  InputItem item;
  if (next(item, -1) == InputStatus::Item) return item;
  return std::nullopt;
}

}  // namespace vitbatch
