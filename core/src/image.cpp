#include "vitbatch/image.hpp"

#include "vitbatch/error.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sys/stat.h>

namespace vitbatch {

RgbImage decode_image(const uint8_t* data, size_t size, const DecodeOptions& options) {
  if (size == 0) throw Error("empty file");
  if (size >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF) return decode_jpeg(data, size, options);
  static const uint8_t png_magic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  if (size >= 8 && std::memcmp(data, png_magic, 8) == 0) return decode_png(data, size, options);
  throw Error("not a JPEG or PNG file (unrecognised content)");
}

RgbImage read_image(const std::string& path, const DecodeOptions& options) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) throw Error(std::strerror(errno));
  if (S_ISDIR(st.st_mode)) throw Error("is a directory");
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) throw Error(std::strerror(errno));
  std::vector<uint8_t> bytes;
  uint8_t chunk[1 << 16];
  size_t n;
  while ((n = std::fread(chunk, 1, sizeof chunk, f)) > 0) bytes.insert(bytes.end(), chunk, chunk + n);
  bool failed = std::ferror(f);
  int err = errno;
  std::fclose(f);
  if (failed) throw Error(std::string("read error: ") + std::strerror(err));
  return decode_image(bytes.data(), bytes.size(), options);
}

}  // namespace vitbatch
