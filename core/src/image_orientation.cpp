// EXIF orientation: just enough TIFF parsing to find tag 0x0112 in IFD0, and the eight
// transposes of PIL.ImageOps.exif_transpose.
#include "vitbatch/error.hpp"
#include "vitbatch/image.hpp"

namespace vitbatch {

int exif_orientation(const uint8_t* tiff, size_t size) {
  if (size < 8) return 1;
  bool little = tiff[0] == 'I' && tiff[1] == 'I';
  if (!little && !(tiff[0] == 'M' && tiff[1] == 'M')) return 1;
  auto u16 = [&](size_t at) -> uint32_t {
    return little ? tiff[at] | (tiff[at + 1] << 8) : (tiff[at] << 8) | tiff[at + 1];
  };
  auto u32 = [&](size_t at) -> uint32_t {
    return little ? u16(at) | (u16(at + 2) << 16) : (u16(at) << 16) | u16(at + 2);
  };
  size_t ifd = u32(4);
  if (ifd + 2 > size) return 1;
  uint32_t entries = u16(ifd);
  for (uint32_t i = 0; i < entries; ++i) {
    size_t e = ifd + 2 + 12 * i;
    if (e + 12 > size) return 1;
    if (u16(e) != 0x0112) continue;  // Orientation
    // Pillow reads the tag whatever integer type it is stored as (SHORT, LONG, BYTE, ...).
    uint32_t type = u16(e + 2), v = 0;
    if (type == 3 || type == 8) v = u16(e + 8);        // SHORT, SSHORT
    else if (type == 4 || type == 9) v = u32(e + 8);   // LONG, SLONG
    else if (type == 1 || type == 6) v = tiff[e + 8];  // BYTE, SBYTE
    return v >= 1 && v <= 8 ? static_cast<int>(v) : 1;
  }
  return 1;
}

RgbImage apply_orientation(RgbImage in, int orientation) {
  if (orientation <= 1 || orientation > 8) return in;
  bool swap = orientation >= 5;  // 5-8 exchange width and height
  RgbImage out;
  out.width = swap ? in.height : in.width;
  out.height = swap ? in.width : in.height;
  out.pixels.resize(in.pixels.size());
  int64_t W = in.width, H = in.height;
  for (int64_t y = 0; y < out.height; ++y)
    for (int64_t x = 0; x < out.width; ++x) {
      int64_t sx = 0, sy = 0;  // the source pixel of output (x, y)
      switch (orientation) {
        case 2: sx = W - 1 - x, sy = y; break;            // FLIP_LEFT_RIGHT
        case 3: sx = W - 1 - x, sy = H - 1 - y; break;    // ROTATE_180
        case 4: sx = x, sy = H - 1 - y; break;            // FLIP_TOP_BOTTOM
        case 5: sx = y, sy = x; break;                    // TRANSPOSE
        case 6: sx = y, sy = H - 1 - x; break;            // ROTATE_270 (90 clockwise)
        case 7: sx = W - 1 - y, sy = H - 1 - x; break;    // TRANSVERSE
        case 8: sx = W - 1 - y, sy = x; break;            // ROTATE_90 (counter-clockwise)
      }
      const uint8_t* s = &in.pixels[(sy * W + sx) * 3];
      uint8_t* d = &out.pixels[(y * out.width + x) * 3];
      d[0] = s[0], d[1] = s[1], d[2] = s[2];
    }
  return out;
}

void check_pixel_limit(int64_t width, int64_t height, const DecodeOptions& options) {
  if (width <= 0 || height <= 0) throw Error("image has no pixels (" + std::to_string(width) + "x" + std::to_string(height) + ")");
  // Compared by division: width * height can overflow for a forged header.
  if (width > options.max_pixels / height)
    throw Error("image is " + std::to_string(width) + "x" + std::to_string(height) + " = " +
                std::to_string(static_cast<unsigned long long>(width) * static_cast<unsigned long long>(height)) + " pixels, over the limit of " + std::to_string(options.max_pixels) +
                " (--max-pixels)");
}

}  // namespace vitbatch
