#include "vitbatch/image.hpp"

#include "vitbatch/error.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace vitbatch {

RgbImage decode_image(const uint8_t* data, size_t size, const DecodeOptions& options) {
  if (size == 0) throw Error("empty file");
  if (size >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF) return decode_jpeg(data, size, options);
  static const uint8_t png_magic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  if (size >= 8 && std::memcmp(data, png_magic, 8) == 0) return decode_png(data, size, options);
  throw Error("not a JPEG or PNG file (unrecognised content)");
}

RgbImage read_image(const std::string& path, const DecodeOptions& options) {
  // O_NONBLOCK: opening a FIFO that happens to be called x.jpg must not wait for a writer.
  int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) throw Error(std::strerror(errno));
  struct FdCloser {
    int fd;
    ~FdCloser() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (fstat(fd, &st) != 0) throw Error(std::strerror(errno));
  if (S_ISDIR(st.st_mode)) throw Error("is a directory");
  if (!S_ISREG(st.st_mode)) throw Error("not a regular file");
  // No image within the pixel limit needs more bytes than 8 per pixel (16-bit RGBA, stored).
  int64_t max_bytes = std::max<int64_t>(int64_t{64} << 20, options.max_pixels * 8);
  if (st.st_size > max_bytes)
    throw Error("file is " + std::to_string(st.st_size) + " bytes, more than an image within the pixel limit needs");
  std::vector<uint8_t> bytes(static_cast<size_t>(st.st_size));
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::read(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw Error(std::string("read error: ") + std::strerror(errno));
    if (n == 0) break;  // the file shrank while we read it
    done += static_cast<size_t>(n);
  }
  return decode_image(bytes.data(), done, options);
}

}  // namespace vitbatch
