// image.hpp: decoding JPEG (libjpeg-turbo), PNG (libpng), WebP (libwebp), TIFF (libtiff),
// GIF (giflib, first frame) and BMP to 8-bit RGB exactly as Pillow 9.4's
// Image.open(...).convert("RGB") gives it. The decoder is chosen by the file's magic bytes,
// never its extension. Decoders never print and never abort: every failure is an Error
// whose message is the reason alone (the caller adds the path).
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

namespace vitbatch {

struct RgbImage {
  int64_t width = 0;
  int64_t height = 0;
  std::vector<uint8_t> pixels;  // height * width * 3, row-major, interleaved RGB
};

struct DecodeOptions {
  // Refuse images with more pixels, checked from the header before any pixel is allocated.
  // The default is where Pillow raises DecompressionBombError (2 * Image.MAX_IMAGE_PIXELS).
  int64_t max_pixels = 2 * 89478485LL;
  // Apply the EXIF Orientation tag as PIL.ImageOps.exif_transpose does. Off by default:
  // timm does not, and matching timm is the point.
  bool exif_transpose = false;
  // Progressive JPEGs can hold any number of scans, each re-read over the whole image: a
  // 100,000-scan file takes minutes. More scans than this is an error (djpeg's -maxscans).
  int max_jpeg_scans = 1000;
  // When non-zero (a stop signal), decodes in progress give up with an error ("interrupted").
  const std::atomic<int>* cancel = nullptr;
};

RgbImage decode_jpeg(const uint8_t* data, size_t size, const DecodeOptions& options = {});
RgbImage decode_png(const uint8_t* data, size_t size, const DecodeOptions& options = {});
RgbImage decode_webp(const uint8_t* data, size_t size, const DecodeOptions& options = {});
RgbImage decode_tiff(const uint8_t* data, size_t size, const DecodeOptions& options = {});
RgbImage decode_gif(const uint8_t* data, size_t size, const DecodeOptions& options = {});
RgbImage decode_bmp(const uint8_t* data, size_t size, const DecodeOptions& options = {});
// The format named by the magic bytes ("JPEG", "PNG", "WebP", "TIFF", "GIF", "BMP"), or "".
std::string image_format(const uint8_t* data, size_t size);
// Dispatches on magic bytes.
RgbImage decode_image(const uint8_t* data, size_t size, const DecodeOptions& options = {});
// The largest file an image within options.max_pixels can need (8 bytes a pixel, 16-bit
// RGBA stored raw; at least 64 MiB): bigger files are refused before they are read.
int64_t max_image_file_bytes(const DecodeOptions& options);
// Reads and decodes a file; Error messages are "<reason>" (no path).
RgbImage read_image(const std::string& path, const DecodeOptions& options = {});

// The Orientation (1-8) in an EXIF block (the TIFF structure after "Exif\0\0"), or 1.
int exif_orientation(const uint8_t* tiff, size_t size);
// Applies an EXIF orientation the way PIL.ImageOps.exif_transpose does.
// Takes the image by value: the common orientation 1 hands it back without a copy.
RgbImage apply_orientation(RgbImage image, int orientation);
// Pillow's CMYK -> RGB for one channel (Convert.c cmyk2rgb): (255 - k) - c * (255 - k) / 255,
// rounded as Pillow rounds.
uint8_t pillow_cmyk_channel(int c, int k);
// Throws Error when width * height is over the limit.
void check_pixel_limit(int64_t width, int64_t height, const DecodeOptions& options);

}  // namespace vitbatch
