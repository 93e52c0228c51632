// PNG decoding with libpng's progressive-free low-level API, set up so that every colour
// type ends as Pillow's convert("RGB") ends it: alpha and tRNS dropped (not composited),
// palette expanded, 1/2/4-bit gray scaled to 0..255, 16-bit samples cut to their high byte,
// except 16-bit gray, which Pillow opens as mode "I" and clips to 255 when converting.
#include "vitbatch/error.hpp"
#include "vitbatch/image.hpp"
#include "vitbatch/image_palette.hpp"

#include <png.h>

#include <cstring>
#include <utility>

namespace vitbatch {
namespace {

struct Reader {
  const uint8_t* data;
  size_t size;
  size_t offset;
  std::string error;
};

void on_error(png_structp png, png_const_charp message) {
  auto* r = static_cast<Reader*>(png_get_error_ptr(png));
  r->error = message ? message : "unknown libpng error";
  png_longjmp(png, 1);
}

void on_warning(png_structp, png_const_charp) {}  // libpng must never print

void read_bytes(png_structp png, png_bytep out, png_size_t n) {
  auto* r = static_cast<Reader*>(png_get_io_ptr(png));
  if (n > r->size - r->offset) png_error(png, "file is truncated");
  std::memcpy(out, r->data + r->offset, n);
  r->offset += n;
}

}  // namespace

RgbImage decode_png(const uint8_t* data, size_t size, const DecodeOptions& options) {
  Reader reader{data, size, 8, ""};
  if (size < 8 || png_sig_cmp(data, 0, 8)) throw Error("not a PNG file");
  // IHDR is the first chunk: its size is known before libpng reads anything further.
  if (size >= 24 && std::memcmp(data + 12, "IHDR", 4) == 0) {
    auto be32 = [&](size_t at) { return (uint32_t(data[at]) << 24) | (data[at + 1] << 16) | (data[at + 2] << 8) | data[at + 3]; };
    check_pixel_limit(be32(16), be32(20), options);
  }
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &reader, on_error, on_warning);
  if (!png) throw Error("out of memory");
  png_infop info = png_create_info_struct(png);
  RgbImage image;
  std::vector<uint8_t> raw;
  std::vector<png_bytep> rows;
  if (!info || setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, info ? &info : nullptr, nullptr);
    throw Error("corrupt PNG: " + (reader.error.empty() ? std::string("out of memory") : reader.error));
  }
  png_set_read_fn(png, &reader, read_bytes);
  png_set_sig_bytes(png, 8);
  png_read_info(png, info);
  png_uint_32 width = png_get_image_width(png, info), height = png_get_image_height(png, info);
  int depth = png_get_bit_depth(png, info), type = png_get_color_type(png, info);
  bool gray16 = type == PNG_COLOR_TYPE_GRAY && depth == 16;
  check_pixel_limit(width, height, options);  // IHDR need not be where the fast check looked
  // Palette images are looked up here, not by libpng: an index past the PLTE is grey in
  // Pillow (its palettes start as the grey ramp) and black in libpng.
  bool indexed = type == PNG_COLOR_TYPE_PALETTE;
  Palette palette;
  if (indexed) {
    png_colorp entries = nullptr;
    int count = 0;
    if (png_get_PLTE(png, info, &entries, &count))
      for (int i = 0; i < count; ++i) palette.set(i, entries[i].red, entries[i].green, entries[i].blue);
    png_set_packing(png);  // one index per byte
  }
  if (type == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  if (depth == 16 && !gray16) png_set_strip_16(png);
  if (type & PNG_COLOR_MASK_ALPHA) png_set_strip_alpha(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  size_t channels = png_get_channels(png, info), rowbytes = png_get_rowbytes(png, info);
  raw.resize(rowbytes * height);
  rows.resize(height);
  for (png_uint_32 y = 0; y < height; ++y) rows[y] = raw.data() + y * rowbytes;
  png_read_image(png, rows.data());
  png_read_end(png, info);  // eXIf may follow the image data
  int orientation = 1;
  png_uint_32 exif_size = 0;
  png_bytep exif = nullptr;
  if (options.exif_transpose && png_get_eXIf_1(png, info, &exif_size, &exif) && exif)
    orientation = exif_orientation(exif, exif_size);
  png_destroy_read_struct(&png, &info, nullptr);

  image.width = width;
  image.height = height;
  image.pixels.resize(static_cast<size_t>(width) * height * 3);
  for (png_uint_32 y = 0; y < height; ++y) {
    const uint8_t* in = rows[y];
    uint8_t* out = image.pixels.data() + static_cast<size_t>(y) * width * 3;
    for (png_uint_32 x = 0; x < width; ++x) {
      // libpng may still hand over an alpha channel (palette + tRNS): it is skipped.
      const uint8_t* px = in + x * channels * (gray16 ? 2 : 1);
      if (indexed) {
        std::memcpy(out + 3 * x, palette[px[0]], 3);
      } else if (gray16) {
        unsigned v = (unsigned(px[0]) << 8) | px[1];
        out[3 * x] = out[3 * x + 1] = out[3 * x + 2] = static_cast<uint8_t>(v > 255 ? 255 : v);
      } else if (channels <= 2) {
        out[3 * x] = out[3 * x + 1] = out[3 * x + 2] = px[0];
      } else {
        std::memcpy(out + 3 * x, px, 3);
      }
    }
  }
  return apply_orientation(std::move(image), orientation);
}

}  // namespace vitbatch
