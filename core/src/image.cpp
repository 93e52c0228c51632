#include "vitbatch/image.hpp"

#include "vitbatch/error.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace vitbatch {

std::string image_format(const uint8_t* d, size_t n) {
  auto starts = [&](const char* magic, size_t len, size_t at = 0) { return n >= at + len && std::memcmp(d + at, magic, len) == 0; };
  if (starts("\xFF\xD8\xFF", 3)) return "JPEG";
  if (starts("\x89PNG\r\n\x1A\n", 8)) return "PNG";
  if (starts("RIFF", 4) && starts("WEBP", 4, 8)) return "WebP";
  if (starts("II*\0", 4) || starts("MM\0*", 4) || starts("II+\0", 4) || starts("MM\0+", 4)) return "TIFF";
  if (starts("GIF87a", 6) || starts("GIF89a", 6)) return "GIF";
  if (starts("BM", 2)) return "BMP";
  return "";
}

RgbImage decode_image(const uint8_t* data, size_t size, const DecodeOptions& options) {
  if (size == 0) throw Error("empty file");
  std::string format = image_format(data, size);
  if (format == "JPEG") return decode_jpeg(data, size, options);
  if (format == "PNG") return decode_png(data, size, options);
  if (format == "WebP") return decode_webp(data, size, options);
  if (format == "TIFF") return decode_tiff(data, size, options);
  if (format == "GIF") return decode_gif(data, size, options);
  if (format == "BMP") return decode_bmp(data, size, options);
  throw Error("not an image vitbatch reads (JPEG, PNG, WebP, TIFF, GIF, BMP): unrecognised content");
}

int64_t max_image_file_bytes(const DecodeOptions& options) {
  // No image within the pixel limit needs more bytes than 8 per pixel (16-bit RGBA, stored).
  return std::max<int64_t>(int64_t{64} << 20, options.max_pixels * 8);
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
  int64_t max_bytes = max_image_file_bytes(options);
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
