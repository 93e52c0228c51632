// archive_reader.hpp: the members of a tar file (plain, or compressed with gzip, bzip2, xz,
// zstd or lz4), read in archive order as one stream without unpacking anything to disk
// (libarchive). A member's bytes are read only when asked for; a member not asked for is
// skipped (a seek in an uncompressed tar), which is what keeps a --shard task that owns a
// tenth of the members from reading the other nine tenths.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

struct archive;  // libarchive's handle, kept out of this header

namespace vitbatch {

// True for names ending in .tar .tar.gz .tgz .tar.bz2 .tbz2 .tar.xz .txz .tar.zst .tzst
// .tar.lz4 (any case): the inputs read as archives.
bool has_archive_extension(const std::string& path);

// WebDataset's sample key of a member: its directory and its base name up to the first dot
// ("train/000042.seg.png" -> "train/000042"). Members with one key form one sample.
std::string webdataset_key(const std::string& member);

class ArchiveReader {
 public:
  enum class Status { Member, End, Failed };

  // Never throws: a file that cannot be opened or is not an archive makes next() fail.
  explicit ArchiveReader(const std::string& path);
  ~ArchiveReader();
  ArchiveReader(const ArchiveReader&) = delete;
  ArchiveReader& operator=(const ArchiveReader&) = delete;

  // Advances to the next regular file (directories, links and devices are passed over).
  // Member: name() and size() describe it. End: the archive is over. Failed: error() says
  // why (not an archive, damaged, cut short); the reader is finished.
  Status next();
  const std::string& name() const { return name_; }
  int64_t size() const { return size_; }
  // The current member's bytes, at most max_bytes of them. False, with error() saying why,
  // for a member larger than that (the reader goes on) or one that cannot be read (the reader
  // is finished: a tar cut short inside a member has nothing after it).
  bool read(std::vector<uint8_t>& bytes, int64_t max_bytes);
  bool finished() const { return finished_; }
  const std::string& error() const { return error_; }
  // Regular members seen so far.
  int64_t members() const { return members_; }

 private:
  ::archive* archive_ = nullptr;
  bool finished_ = false;
  std::string name_, error_;
  int64_t size_ = 0;
  int64_t members_ = 0;
};

}  // namespace vitbatch
