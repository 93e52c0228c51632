#include "vitbatch/archive_reader.hpp"

#include <archive.h>
#include <archive_entry.h>

#include <algorithm>
#include <cctype>

namespace vitbatch {

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string reason(::archive* a, const char* fallback) {
  const char* e = a ? archive_error_string(a) : nullptr;
  return e && *e ? e : fallback;
}

}  // namespace

bool has_archive_extension(const std::string& path) {
  std::string lower = path.substr(path.find_last_of('/') == std::string::npos ? 0 : path.find_last_of('/') + 1);
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  for (const char* ext : {".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".tar.zst", ".tzst", ".tar.lz4"})
    if (ends_with(lower, ext) && lower.size() > std::string(ext).size()) return true;
  return false;
}

std::string webdataset_key(const std::string& member) {
  size_t slash = member.find_last_of('/');
  size_t base = slash == std::string::npos ? 0 : slash + 1;
  size_t dot = member.find('.', base);
  return dot == std::string::npos ? member : member.substr(0, dot);
}

ArchiveReader::ArchiveReader(const std::string& path) {
  archive_ = archive_read_new();
  if (!archive_) {
    error_ = "out of memory opening the archive";
    finished_ = true;
    return;
  }
  archive_read_support_filter_all(archive_);
  archive_read_support_format_tar(archive_);  // ustar, pax, GNU tar (WebDataset writes these)
  if (archive_read_open_filename(archive_, path.c_str(), 1 << 16) != ARCHIVE_OK) {
    error_ = "cannot read archive: " + reason(archive_, "not a tar archive");
    finished_ = true;
  }
}

ArchiveReader::~ArchiveReader() {
  if (archive_) archive_read_free(archive_);
}

ArchiveReader::Status ArchiveReader::next() {
  while (!finished_) {
    struct archive_entry* entry = nullptr;
    int r = archive_read_next_header(archive_, &entry);
    if (r == ARCHIVE_EOF) {
      finished_ = true;
      return Status::End;
    }
    if (r == ARCHIVE_RETRY) continue;
    if (r < ARCHIVE_WARN) {  // FATAL or FAILED: nothing after this point can be trusted
      error_ = (members_ == 0 ? "cannot read archive: " : "archive damaged or cut short after " +
                                                              std::to_string(members_) + " members: ") +
               reason(archive_, "unreadable header");
      finished_ = true;
      return Status::Failed;
    }
    if (archive_entry_filetype(entry) != AE_IFREG) continue;
    const char* name = archive_entry_pathname(entry);
    if (!name) name = archive_entry_pathname_utf8(entry);
    name_ = name ? name : "";
    size_ = archive_entry_size_is_set(entry) ? archive_entry_size(entry) : -1;
    ++members_;
    return Status::Member;
  }
  return error_.empty() ? Status::End : Status::Failed;
}

bool ArchiveReader::read(std::vector<uint8_t>& bytes, int64_t max_bytes) {
  bytes.clear();
  if (finished_) {
    error_ = error_.empty() ? "archive already finished" : error_;
    return false;
  }
  auto too_big = [&](int64_t n) {
    error_ = "member is " + std::to_string(n) + " bytes, more than an image within the pixel limit needs";
    bytes.clear();
    bytes.shrink_to_fit();
    return false;  // the rest of it is skipped by the next next()
  };
  if (size_ > max_bytes) return too_big(size_);
  if (size_ > 0) bytes.reserve(static_cast<size_t>(size_));
  uint8_t chunk[1 << 16];
  while (true) {
    la_ssize_t n = archive_read_data(archive_, chunk, sizeof chunk);
    if (n == 0) return true;
    if (n < 0) {
      error_ = "archive damaged or cut short inside this member: " + reason(archive_, "read error");
      finished_ = true;
      return false;
    }
    bytes.insert(bytes.end(), chunk, chunk + n);
    if (static_cast<int64_t>(bytes.size()) > max_bytes) return too_big(static_cast<int64_t>(bytes.size()));
  }
}

}  // namespace vitbatch
