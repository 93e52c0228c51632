// image.hpp: decoding JPEG (libjpeg-turbo) and PNG (libpng) to 8-bit RGB exactly as Pillow's
// Image.open(...).convert("RGB") gives it. The decoder is chosen by the file's magic bytes,
// never its extension. Decoders never print and never abort: every failure is an Error
// whose message is the reason alone (the caller adds the path).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace vitbatch {

struct RgbImage {
  int64_t width = 0;
  int64_t height = 0;
  std::vector<uint8_t> pixels;  // height * width * 3, row-major, interleaved RGB
};

RgbImage decode_jpeg(const uint8_t* data, size_t size);
RgbImage decode_png(const uint8_t* data, size_t size);
// Dispatches on magic bytes.
RgbImage decode_image(const uint8_t* data, size_t size);
// Reads and decodes a file; Error messages are "<reason>" (no path).
RgbImage read_image(const std::string& path);

}  // namespace vitbatch
