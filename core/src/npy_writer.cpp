#include "vitbatch/npy_writer.hpp"

#include "vitbatch/error.hpp"
#include "vitbatch/file_io.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace vitbatch {

namespace {

// Magic, version 1.0, a 2-byte header length, then the dict padded with spaces to this total
// and ended by '\n': room for any row count, so the header can be rewritten in place.
constexpr size_t kHeaderBytes = 128;

std::string descr(NpyDtype d) { return d == NpyDtype::Float32 ? "<f4" : "<f2"; }
size_t item_bytes(NpyDtype d) { return d == NpyDtype::Float32 ? 4 : 2; }

std::string npy_header(int64_t rows, const std::vector<int64_t>& row_shape, NpyDtype dtype) {
  std::string shape = "(" + std::to_string(rows);
  for (int64_t d : row_shape) shape += ", " + std::to_string(d);
  if (row_shape.empty()) shape += ",";
  shape += ")";
  std::string dict = "{'descr': '" + descr(dtype) + "', 'fortran_order': False, 'shape': " + shape + ", }";
  const size_t dict_bytes = kHeaderBytes - 10;
  if (dict.size() + 1 > dict_bytes) throw Error(".npy header too long for the shape " + shape);
  dict.append(dict_bytes - 1 - dict.size(), ' ');
  dict += '\n';
  std::string h("\x93NUMPY\x01\x00", 8);
  h += static_cast<char>(dict_bytes & 0xFF);
  h += static_cast<char>(dict_bytes >> 8);
  return h + dict;
}

}  // namespace

uint16_t float_to_half(float value) {
  uint32_t x;
  std::memcpy(&x, &value, 4);
  const uint32_t sign = (x >> 16) & 0x8000u, mag = x & 0x7FFFFFFFu;
  if (mag >= 0x7F800000u) return static_cast<uint16_t>(sign | (mag > 0x7F800000u ? 0x7E00u : 0x7C00u));  // NaN, Inf
  if (mag >= 0x477FF000u) return static_cast<uint16_t>(sign | 0x7C00u);  // rounds past 65504: Inf
  uint32_t out, rest, halfway;
  if (mag < 0x38800000u) {  // below half's smallest normal (2^-14): a subnormal in units of 2^-24
    if (mag < 0x33000000u) return static_cast<uint16_t>(sign);  // at most 2^-25: rounds to zero
    const uint32_t mant = (mag & 0x7FFFFFu) | 0x800000u;
    const int shift = 126 - static_cast<int>(mag >> 23);  // 14..24
    out = mant >> shift;
    rest = mant & ((1u << shift) - 1);
    halfway = 1u << (shift - 1);
  } else {
    out = (mag - 0x38000000u) >> 13;  // exponent rebiased 127 -> 15, mantissa cut to 10 bits
    rest = mag & 0x1FFFu;
    halfway = 0x1000u;
  }
  if (rest > halfway || (rest == halfway && (out & 1u))) ++out;  // to nearest, ties to even
  return static_cast<uint16_t>(sign | out);
}

NpyWriter::NpyWriter(const std::string& path, std::vector<int64_t> row_shape, NpyDtype dtype, int64_t keep_rows)
    : path_(path), row_shape_(std::move(row_shape)), dtype_(dtype) {
  for (int64_t d : row_shape_) row_floats_ *= d;
  if (keep_rows >= 0) {
    int64_t have = count_rows(path, row_shape_, dtype);
    if (keep_rows > have)
      throw Error(path + ": holds " + std::to_string(have) + " rows, the index needs " + std::to_string(keep_rows));
    fd_ = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd_ < 0) throw Error(path + ": " + std::strerror(errno));
    const off_t end = static_cast<off_t>(kHeaderBytes + keep_rows * row_floats_ * item_bytes(dtype));
    if (ftruncate(fd_, end) != 0 || lseek(fd_, end, SEEK_SET) != end) {
      int e = errno;
      ::close(fd_);
      fd_ = -1;
      throw Error(path + ": " + std::strerror(e));
    }
    rows_ = keep_rows;
    flushed_rows_ = have;  // the header still says `have`: the flush below corrects it
  } else {
    fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) throw Error(path + ": " + std::strerror(errno));
    buffer_ = header(0);
    flushed_rows_ = 0;
  }
  if (!flush()) {
    ::close(fd_);
    fd_ = -1;
    throw Error(path + ": " + error_);
  }
}

NpyWriter::~NpyWriter() {
  if (fd_ >= 0) {
    flush();
    ::close(fd_);
  }
}

std::string NpyWriter::header(int64_t rows) const { return npy_header(rows, row_shape_, dtype_); }

void NpyWriter::append(const float* rows, int64_t count) {
  const size_t n = static_cast<size_t>(count * row_floats_);
  if (dtype_ == NpyDtype::Float32) {
    buffer_.append(reinterpret_cast<const char*>(rows), n * 4);  // '<f4': a little-endian host (x86-64, arm64)
  } else {
    const size_t at = buffer_.size();
    buffer_.resize(at + n * 2);
    for (size_t i = 0; i < n; ++i) {
      uint16_t h = float_to_half(rows[i]);
      std::memcpy(&buffer_[at + 2 * i], &h, 2);
    }
  }
  rows_ += count;
}

bool NpyWriter::flush() {
  if (!error_.empty()) return false;
  if (!buffer_.empty()) {
    if (write_fully(fd_, buffer_.data(), buffer_.size()) != 0) {
      error_ = std::strerror(errno);
      return false;
    }
    buffer_.clear();
  }
  if (flushed_rows_ != rows_) {
    // The data first, then the count that covers it: a kill in between loses rows, never
    // claims rows that are not there.
    std::string h = header(rows_);
    if (pwrite(fd_, h.data(), h.size(), 0) != static_cast<ssize_t>(h.size())) {
      error_ = std::strerror(errno);
      return false;
    }
    flushed_rows_ = rows_;
  }
  return true;
}

int64_t NpyWriter::count_rows(const std::string& path, const std::vector<int64_t>& row_shape, NpyDtype dtype) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error(path + ": " + std::strerror(errno));
  char head[kHeaderBytes];
  ssize_t got = ::read(fd, head, sizeof head);
  struct stat st {};
  const int stat_ok = fstat(fd, &st);
  ::close(fd);
  const std::string text(head, got > 0 ? static_cast<size_t>(got) : 0);
  const std::string marker = "'shape': (";
  const size_t at = text.find(marker);
  int64_t rows = -1;
  if (got == static_cast<ssize_t>(kHeaderBytes) && at != std::string::npos)
    rows = std::strtoll(text.c_str() + at + marker.size(), nullptr, 10);
  // Written by this writer, with this dtype and row shape: the header is exactly ours.
  if (rows < 0 || text != npy_header(rows, row_shape, dtype))
    throw Error(path + ": not a .npy of " + descr(dtype) + " rows of this shape (written by another run?)");
  int64_t row_bytes = static_cast<int64_t>(item_bytes(dtype));
  for (int64_t d : row_shape) row_bytes *= d;
  if (stat_ok != 0 || st.st_size < static_cast<off_t>(kHeaderBytes + rows * row_bytes))
    throw Error(path + ": shorter than the " + std::to_string(rows) + " rows its header counts (damaged)");
  return rows;
}

}  // namespace vitbatch
