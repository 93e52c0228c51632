// TIFF through libtiff (first page), samples mapped to RGB as Pillow 9.4 maps its TIFF modes
// and convert("RGB"): grey 1/2/4/8 bits scaled to 0..255 (inverted for min-is-white), 16-bit
// grey clipped to 255 (mode I;16), 32-bit integer and float grey clipped (I, F: floats cut
// toward zero), RGB(A) 8/16-bit (high byte; alpha dropped), palettes (16-bit colour map, high
// byte), CMYK with Pillow's formula, JPEG-compressed YCbCr converted to RGB by libjpeg, as
// Pillow asks libtiff to. Anything else is refused with its photometric and depth named.
#include "vitbatch/error.hpp"
#include "vitbatch/image.hpp"
#include "vitbatch/image_palette.hpp"

#include <tiffio.h>

#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <memory>

namespace vitbatch {
namespace {

struct Source {
  const uint8_t* data;
  toff_t size, offset;
  std::string error;
};

tmsize_t read_proc(thandle_t h, void* out, tmsize_t n) {
  auto* s = static_cast<Source*>(h);
  toff_t take = s->offset >= s->size ? 0 : std::min<toff_t>(static_cast<toff_t>(n), s->size - s->offset);
  std::memcpy(out, s->data + s->offset, take);
  s->offset += take;
  return static_cast<tmsize_t>(take);
}
tmsize_t write_proc(thandle_t, void*, tmsize_t) { return 0; }
toff_t seek_proc(thandle_t h, toff_t to, int whence) {
  auto* s = static_cast<Source*>(h);
  toff_t base = whence == SEEK_SET ? 0 : whence == SEEK_CUR ? s->offset : s->size;
  s->offset = base + to;
  return s->offset;
}
int close_proc(thandle_t) { return 0; }
toff_t size_proc(thandle_t h) { return static_cast<Source*>(h)->size; }
int map_proc(thandle_t, void**, toff_t*) { return 0; }
void unmap_proc(thandle_t, void*, toff_t) {}

// libtiff's messages are kept (the first error is the reason given), never printed.
int on_error(TIFF*, void* user, const char*, const char* format, va_list args) {
  auto* s = static_cast<Source*>(user);
  if (s->error.empty()) {
    char buf[512];
    std::vsnprintf(buf, sizeof buf, format, args);
    s->error = buf;
  }
  return 1;
}
int on_warning(TIFF*, void*, const char*, const char*, va_list) { return 1; }

struct TiffCloser {
  void operator()(TIFF* t) const { TIFFClose(t); }
};

}  // namespace

RgbImage decode_tiff(const uint8_t* data, size_t size, const DecodeOptions& options) {
  Source source{data, size, 0, ""};
  TIFFOpenOptions* opts = TIFFOpenOptionsAlloc();
  TIFFOpenOptionsSetErrorHandlerExtR(opts, on_error, &source);
  TIFFOpenOptionsSetWarningHandlerExtR(opts, on_warning, &source);
  // No single allocation past what an image within the pixel limit could need.
  TIFFOpenOptionsSetMaxSingleMemAlloc(opts, static_cast<tmsize_t>(std::max<int64_t>(int64_t{64} << 20, options.max_pixels * 16)));
  std::unique_ptr<TIFF, TiffCloser> tif(TIFFClientOpenExt("image", "rm", &source, read_proc, write_proc, seek_proc,
                                                          close_proc, size_proc, map_proc, unmap_proc, opts));
  TIFFOpenOptionsFree(opts);
  auto fail = [&](const std::string& what) -> Error {
    return Error("corrupt TIFF: " + (source.error.empty() ? what : source.error));
  };
  if (!tif) throw fail("cannot read its header");
  uint32_t width = 0, height = 0;
  uint16_t bits = 1, spp = 1, photometric = 0, planar = PLANARCONFIG_CONTIG, format = SAMPLEFORMAT_UINT,
           compression = COMPRESSION_NONE;
  TIFFGetField(tif.get(), TIFFTAG_IMAGEWIDTH, &width);
  TIFFGetField(tif.get(), TIFFTAG_IMAGELENGTH, &height);
  TIFFGetFieldDefaulted(tif.get(), TIFFTAG_BITSPERSAMPLE, &bits);
  TIFFGetFieldDefaulted(tif.get(), TIFFTAG_SAMPLESPERPIXEL, &spp);
  TIFFGetFieldDefaulted(tif.get(), TIFFTAG_PLANARCONFIG, &planar);
  TIFFGetFieldDefaulted(tif.get(), TIFFTAG_SAMPLEFORMAT, &format);
  TIFFGetFieldDefaulted(tif.get(), TIFFTAG_COMPRESSION, &compression);
  if (!TIFFGetField(tif.get(), TIFFTAG_PHOTOMETRIC, &photometric)) throw Error("unsupported TIFF: no photometric tag");
  check_pixel_limit(width, height, options);
  if (photometric == PHOTOMETRIC_YCBCR && compression == COMPRESSION_JPEG) {
    TIFFSetField(tif.get(), TIFFTAG_JPEGCOLORMODE, JPEGCOLORMODE_RGB);
    photometric = PHOTOMETRIC_RGB;
  }
  bool gray = photometric == PHOTOMETRIC_MINISBLACK || photometric == PHOTOMETRIC_MINISWHITE;
  bool supported =
      (gray && format == SAMPLEFORMAT_UINT && (bits == 1 || bits == 2 || bits == 4 || bits == 8 || bits == 16)) ||
      (photometric == PHOTOMETRIC_MINISBLACK && bits == 32 && (format == SAMPLEFORMAT_INT || format == SAMPLEFORMAT_IEEEFP)) ||
      (photometric == PHOTOMETRIC_RGB && spp >= 3 && (bits == 8 || bits == 16) && format == SAMPLEFORMAT_UINT) ||
      (photometric == PHOTOMETRIC_PALETTE && bits <= 8 && format == SAMPLEFORMAT_UINT) ||
      (photometric == PHOTOMETRIC_SEPARATED && spp >= 4 && bits == 8);
  if (photometric == PHOTOMETRIC_MINISWHITE && bits == 16) supported = false;
  if (spp > 8) supported = false;  // no photometric here has more; a forged count multiplies every buffer
  if (!supported)
    throw Error("unsupported TIFF: photometric " + std::to_string(photometric) + ", " + std::to_string(spp) + " x " +
                std::to_string(bits) + "-bit samples (format " + std::to_string(format) + ")");

  // Every sample, decoded: planes[p] holds rows of `row_bytes` (one plane when contiguous).
  const int planes = planar == PLANARCONFIG_SEPARATE ? spp : 1;
  const size_t row_bytes = (static_cast<size_t>(width) * bits * (planes == 1 ? spp : 1) + 7) / 8;
  std::vector<std::vector<uint8_t>> plane(planes, std::vector<uint8_t>(row_bytes * height));
  if (TIFFIsTiled(tif.get())) {
    uint32_t tw = 0, th = 0;
    TIFFGetField(tif.get(), TIFFTAG_TILEWIDTH, &tw);
    TIFFGetField(tif.get(), TIFFTAG_TILELENGTH, &th);
    tmsize_t tile_row = TIFFTileRowSize(tif.get());
    if (tw == 0 || th == 0 || tile_row <= 0) throw fail("bad tile size");
    // Found by fuzz_decode_tiff: a forged 4 GB tile. A tile never needs to be much larger than
    // the image it tiles: real tiles are 16 to 1024 pixels a side, whatever the image.
    if (static_cast<uint64_t>(tw) > uint64_t{width} + 4096 || static_cast<uint64_t>(th) > uint64_t{height} + 4096 ||
        TIFFTileSize(tif.get()) > static_cast<tmsize_t>(std::max<uint64_t>(uint64_t{64} << 20, row_bytes * height)))
      throw Error("corrupt TIFF: tile of " + std::to_string(tw) + "x" + std::to_string(th) + " for a " +
                  std::to_string(width) + "x" + std::to_string(height) + " image");
    std::vector<uint8_t> tile(static_cast<size_t>(TIFFTileSize(tif.get())));
    for (int p = 0; p < planes; ++p)
      for (uint32_t ty = 0; ty < height; ty += th)
        for (uint32_t tx = 0; tx < width; tx += tw) {
          if (TIFFReadTile(tif.get(), tile.data(), tx, ty, 0, static_cast<uint16_t>(p)) < 0) throw fail("cannot read a tile");
          size_t x_byte = static_cast<size_t>(tx) * bits * (planes == 1 ? spp : 1) / 8;
          size_t n = std::min(static_cast<size_t>(tile_row), row_bytes - x_byte);
          for (uint32_t y = 0; y < th && ty + y < height; ++y)
            std::memcpy(plane[p].data() + (ty + y) * row_bytes + x_byte, tile.data() + y * tile_row, n);
        }
  } else {
    std::vector<uint8_t> line(std::max<size_t>(static_cast<size_t>(TIFFScanlineSize(tif.get())), row_bytes));
    for (int p = 0; p < planes; ++p)
      for (uint32_t y = 0; y < height; ++y) {
        if (TIFFReadScanline(tif.get(), line.data(), y, static_cast<uint16_t>(p)) < 0) throw fail("cannot read row " + std::to_string(y));
        std::memcpy(plane[p].data() + y * row_bytes, line.data(), row_bytes);
      }
  }

  Palette palette;
  if (photometric == PHOTOMETRIC_PALETTE) {
    uint16_t *r = nullptr, *g = nullptr, *b = nullptr;
    if (!TIFFGetField(tif.get(), TIFFTAG_COLORMAP, &r, &g, &b)) throw fail("palette image without a colour map");
    for (int i = 0; i < (1 << bits); ++i) palette.set(i, r[i] >> 8, g[i] >> 8, b[i] >> 8);
  }
  // Sample s of pixel x in row y, as an integer (bits <= 16) or its raw 32 bits.
  auto sample = [&](uint32_t y, uint32_t x, int s) -> uint32_t {
    const uint8_t* row = plane[planes == 1 ? 0 : s].data() + y * row_bytes;
    size_t index = planes == 1 ? static_cast<size_t>(x) * spp + s : x;
    switch (bits) {
      case 8: return row[index];
      case 16: { uint16_t v; std::memcpy(&v, row + 2 * index, 2); return v; }
      case 32: { uint32_t v; std::memcpy(&v, row + 4 * index, 4); return v; }
      default: {
        size_t bit = index * bits;
        return (row[bit / 8] >> (8 - bits - bit % 8)) & ((1u << bits) - 1);
      }
    }
  };
  RgbImage image;
  image.width = width;
  image.height = height;
  image.pixels.resize(static_cast<size_t>(width) * height * 3);
  for (uint32_t y = 0; y < height; ++y) {
    uint8_t* out = image.pixels.data() + static_cast<size_t>(y) * width * 3;
    for (uint32_t x = 0; x < width; ++x, out += 3) {
      uint32_t v = sample(y, x, 0);
      if (gray) {
        uint8_t g;
        if (bits == 16) g = static_cast<uint8_t>(std::min<uint32_t>(v, 255));
        else if (bits == 32 && format == SAMPLEFORMAT_INT) g = static_cast<uint8_t>(std::clamp<int32_t>(static_cast<int32_t>(v), 0, 255));
        else if (bits == 32) {
          float f;
          std::memcpy(&f, &v, 4);
          g = static_cast<uint8_t>(f <= 0 || std::isnan(f) ? 0 : f >= 255 ? 255 : static_cast<int>(f));
        } else {
          g = static_cast<uint8_t>(v * 255 / ((1u << bits) - 1));
          if (photometric == PHOTOMETRIC_MINISWHITE) g = static_cast<uint8_t>(255 - g);
        }
        out[0] = out[1] = out[2] = g;
      } else if (photometric == PHOTOMETRIC_PALETTE) {
        std::memcpy(out, palette[static_cast<int>(v)], 3);
      } else if (photometric == PHOTOMETRIC_RGB) {
        int shift = bits == 16 ? 8 : 0;
        out[0] = static_cast<uint8_t>(v >> shift);
        out[1] = static_cast<uint8_t>(sample(y, x, 1) >> shift);
        out[2] = static_cast<uint8_t>(sample(y, x, 2) >> shift);
      } else {  // CMYK
        int k = static_cast<int>(sample(y, x, 3));
        out[0] = pillow_cmyk_channel(static_cast<int>(v), k);
        out[1] = pillow_cmyk_channel(static_cast<int>(sample(y, x, 1)), k);
        out[2] = pillow_cmyk_channel(static_cast<int>(sample(y, x, 2)), k);
      }
    }
  }
  return image;
}

}  // namespace vitbatch
