// BMP, read the way Pillow 9.4's BmpImagePlugin reads it (the rules below are its rules,
// quirks included, because matching Pillow is what keeps answers equal to timm's):
// - headers: OS/2 core (12 bytes) and Windows 40/64/108/124; negative height = top-down;
// - 1/4/8-bit palettes (BGR0 entries, BGR for core headers); a palette that is exactly the
//   grey ramp makes the image "L" (or "1" for 2 colours, black and white), whose pixels are
//   then unpacked at 8 (or 1) bits whatever the file's depth;
// - 16 bits: BGR;15 unless bit fields say 5-6-5; 24: BGR; 32: BGRX (alpha dropped);
// - bit fields only in the layouts Pillow lists; RLE8/RLE4 with its decoder's exact rules.
#include "vitbatch/error.hpp"
#include "vitbatch/image.hpp"
#include "vitbatch/image_palette.hpp"

#include <cstring>

namespace vitbatch {
namespace {

uint32_t le32(const uint8_t* p) { return p[0] | (p[1] << 8) | (p[2] << 16) | (uint32_t(p[3]) << 24); }
uint16_t le16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }

enum class Raw { Bit1, Gray8, Index1, Index4, Index8, BGR15, BGR16, BGR, BGRX, XBGR, ABGR, RGBA, BGRA };

// Pillow's RLE decoder (BmpRleDecoder.decode): indices in file order, rows bottom-up or not
// as the header says. Returns fewer than w*h indices when the data runs out.
std::vector<uint8_t> decode_rle(const uint8_t* file, size_t size, size_t at, int64_t w, int64_t h, bool rle4) {
  std::vector<uint8_t> out;
  const size_t want = static_cast<size_t>(w * h);
  int64_t x = 0;
  auto read = [&](size_t n) {
    size_t take = at < size ? std::min(n, size - at) : 0;
    const uint8_t* p = file + at;
    at += n;
    return std::make_pair(p, take);
  };
  while (out.size() < want) {
    auto [pp, np] = read(1);
    auto [bp, nb] = read(1);
    if (!np || !nb) break;
    int64_t count = pp[0];
    uint8_t byte = bp[0];
    if (count) {
      if (x + count > w) count = std::max<int64_t>(0, w - x);
      for (int64_t i = 0; i < count; ++i) out.push_back(rle4 ? (i % 2 == 0 ? byte >> 4 : byte & 0x0F) : byte);
      x += count;
    } else if (byte == 0) {  // end of line
      while (out.size() % static_cast<size_t>(w)) out.push_back(0);
      x = 0;
    } else if (byte == 1) {  // end of bitmap
      break;
    } else if (byte == 2) {  // delta: Pillow reads two bytes, then uses the two after them
      if (read(2).second < 2) break;
      auto [dp, nd] = read(2);
      if (nd < 2) break;  // Pillow would raise on unpacking too few bytes
      out.insert(out.end(), static_cast<size_t>(dp[0] + dp[1] * w), 0);
      x = static_cast<int64_t>(out.size() % static_cast<size_t>(w));
    } else {  // absolute run
      size_t bytes = rle4 ? byte / 2 : byte;
      auto [ap, na] = read(bytes);
      for (size_t i = 0; i < na; ++i) {
        if (rle4) {
          out.push_back(ap[i] >> 4);
          out.push_back(ap[i] & 0x0F);
        } else {
          out.push_back(ap[i]);
        }
      }
      if (na < bytes) break;
      x += byte;
      if (at % 2) ++at;  // runs are padded to 16 bits (Pillow checks the file offset)
    }
  }
  return out;
}

}  // namespace

RgbImage decode_bmp(const uint8_t* file, size_t size, const DecodeOptions& options) {
  if (size < 18 || file[0] != 'B' || file[1] != 'M') throw Error("not a BMP file");
  size_t offset = le32(file + 10);
  size_t header = le32(file + 14);
  if (size < 14 + header) throw Error("corrupt BMP: file is truncated in its header");
  const uint8_t* h = file + 18;
  int64_t width = 0, height = 0;
  int bits = 0, compression = 0, padding = 4;
  uint32_t colors = 0, masks[4] = {0, 0, 0, 0};
  bool top_down = false;
  if (header == 12) {
    width = le16(h), height = le16(h + 2), bits = le16(h + 6), padding = 3;
  } else if (header == 40 || header == 64 || header == 108 || header == 124) {
    width = le32(h);
    top_down = h[7] == 0xFF;
    height = top_down ? int64_t{1} << 32 : 0;
    height = top_down ? height - le32(h + 4) : le32(h + 4);
    bits = le16(h + 10), compression = static_cast<int>(le32(h + 12)), colors = le32(h + 28);
    if (compression == 3) {
      if (header >= 56) {
        for (int i = 0; i < 4; ++i) masks[i] = le32(h + 36 + 4 * i);
      } else {  // 40-byte header: three masks follow it
        if (size < 14 + header + 12) throw Error("corrupt BMP: file is truncated in its bit fields");
        for (int i = 0; i < 3; ++i) masks[i] = le32(file + 14 + header + 4 * i);
      }
    }
  } else {
    throw Error("unsupported BMP header type (" + std::to_string(header) + ")");
  }
  check_pixel_limit(width, height, options);
  if (colors == 0) colors = bits < 32 ? uint32_t{1} << bits : 0;
  if (offset == 14 + header && bits <= 8) offset += 4 * colors;

  Raw raw;
  switch (bits) {
    case 1: raw = Raw::Index1; break;
    case 4: raw = Raw::Index4; break;
    case 8: raw = Raw::Index8; break;
    case 16: raw = Raw::BGR15; break;
    case 24: raw = Raw::BGR; break;
    case 32: raw = Raw::BGRX; break;
    default: throw Error("unsupported BMP pixel depth (" + std::to_string(bits) + ")");
  }
  bool rle = false;
  if (compression == 3) {
    auto is = [&](uint32_t r, uint32_t g, uint32_t b, uint32_t a) {
      return masks[0] == r && masks[1] == g && masks[2] == b && masks[3] == a;
    };
    auto rgb_is = [&](uint32_t r, uint32_t g, uint32_t b) { return masks[0] == r && masks[1] == g && masks[2] == b; };
    if (bits == 32 && is(0xFF0000, 0xFF00, 0xFF, 0)) raw = Raw::BGRX;
    else if (bits == 32 && is(0xFF000000, 0xFF0000, 0xFF00, 0)) raw = Raw::XBGR;
    else if (bits == 32 && is(0xFF000000, 0xFF0000, 0xFF00, 0xFF)) raw = Raw::ABGR;
    else if (bits == 32 && is(0xFF, 0xFF00, 0xFF0000, 0xFF000000)) raw = Raw::RGBA;
    else if (bits == 32 && (is(0xFF0000, 0xFF00, 0xFF, 0xFF000000) || is(0, 0, 0, 0))) raw = Raw::BGRA;
    else if (bits == 24 && rgb_is(0xFF0000, 0xFF00, 0xFF)) raw = Raw::BGR;
    else if (bits == 16 && rgb_is(0xF800, 0x7E0, 0x1F)) raw = Raw::BGR16;
    else if (bits == 16 && rgb_is(0x7C00, 0x3E0, 0x1F)) raw = Raw::BGR15;
    else throw Error("unsupported BMP bit fields layout");
  } else if (compression == 1 || compression == 2) {
    rle = true;
  } else if (compression != 0) {
    throw Error("unsupported BMP compression (" + std::to_string(compression) + ")");
  }

  Palette palette;
  if (bits <= 8) {
    if (colors == 0 || colors > 65536) throw Error("unsupported BMP palette size (" + std::to_string(colors) + ")");
    size_t at = 14 + header + (compression == 3 && header == 40 ? 12 : 0);
    if (size < at + padding * colors) throw Error("corrupt BMP: file is truncated in its palette");
    bool grey = true;
    for (uint32_t i = 0; i < colors; ++i) {
      const uint8_t* e = file + at + padding * i;
      uint32_t expect = colors == 2 ? (i == 0 ? 0 : i == 1 ? 255 : 256) : i;
      if (!(e[0] == expect && e[1] == expect && e[2] == expect)) grey = false;
      palette.set(static_cast<int>(i), e[2], e[1], e[0]);
    }
    if (grey) raw = colors == 2 ? Raw::Bit1 : Raw::Gray8;
  }

  RgbImage image;
  image.width = width;
  image.height = height;
  image.pixels.resize(static_cast<size_t>(width * height * 3));
  auto row_out = [&](int64_t file_row) {  // rows are stored bottom-up unless top_down
    return image.pixels.data() + (top_down ? file_row : height - 1 - file_row) * width * 3;
  };
  auto put_index = [&](uint8_t* out, int v) {
    if (raw == Raw::Bit1) out[0] = out[1] = out[2] = v ? 255 : 0;
    else if (raw == Raw::Gray8) out[0] = out[1] = out[2] = static_cast<uint8_t>(v);
    else std::memcpy(out, palette[v], 3);
  };
  if (rle) {
    if (raw == Raw::Bit1) throw Error("unsupported BMP: run-length coded black-and-white");
    std::vector<uint8_t> indices = decode_rle(file, size, offset, width, height, compression == 2);
    if (indices.size() < static_cast<size_t>(width * height)) throw Error("corrupt BMP: not enough image data");
    for (int64_t y = 0; y < height; ++y)
      for (int64_t x = 0; x < width; ++x) put_index(row_out(y) + 3 * x, indices[y * width + x]);
    return image;
  }
  size_t stride = ((static_cast<size_t>(width) * bits + 31) >> 3) & ~size_t{3};
  // Pillow's raw decoder needs every row that the unpacker reads, not the row padding.
  int unpack_bits = raw == Raw::Bit1 || raw == Raw::Index1 ? 1 : raw == Raw::Index4 ? 4 : raw == Raw::Gray8 || raw == Raw::Index8 ? 8
                    : raw == Raw::BGR15 || raw == Raw::BGR16 ? 16 : raw == Raw::BGR ? 24 : 32;
  size_t row_bytes = (static_cast<size_t>(width) * unpack_bits + 7) / 8;
  if (offset > size || (size - offset) < stride * static_cast<size_t>(height - 1) + row_bytes)
    throw Error("corrupt BMP: image file is truncated");
  for (int64_t y = 0; y < height; ++y) {
    const uint8_t* in = file + offset + stride * static_cast<size_t>(y);
    uint8_t* out = row_out(y);
    for (int64_t x = 0; x < width; ++x, out += 3) {
      switch (raw) {
        case Raw::Bit1:
        case Raw::Index1: put_index(out, (in[x >> 3] >> (7 - (x & 7))) & 1); break;
        case Raw::Index4: put_index(out, (in[x >> 1] >> ((x & 1) ? 0 : 4)) & 0x0F); break;
        case Raw::Gray8:
        case Raw::Index8: put_index(out, in[x]); break;
        case Raw::BGR15: {
          unsigned p = le16(in + 2 * x);
          out[0] = static_cast<uint8_t>(((p >> 10) & 31) * 255 / 31);
          out[1] = static_cast<uint8_t>(((p >> 5) & 31) * 255 / 31);
          out[2] = static_cast<uint8_t>((p & 31) * 255 / 31);
          break;
        }
        case Raw::BGR16: {
          unsigned p = le16(in + 2 * x);
          out[0] = static_cast<uint8_t>(((p >> 11) & 31) * 255 / 31);
          out[1] = static_cast<uint8_t>(((p >> 5) & 63) * 255 / 63);
          out[2] = static_cast<uint8_t>((p & 31) * 255 / 31);
          break;
        }
        case Raw::BGR: out[0] = in[3 * x + 2], out[1] = in[3 * x + 1], out[2] = in[3 * x]; break;
        case Raw::BGRX:
        case Raw::BGRA: out[0] = in[4 * x + 2], out[1] = in[4 * x + 1], out[2] = in[4 * x]; break;
        case Raw::XBGR:
        case Raw::ABGR: out[0] = in[4 * x + 3], out[1] = in[4 * x + 2], out[2] = in[4 * x + 1]; break;
        case Raw::RGBA: out[0] = in[4 * x], out[1] = in[4 * x + 1], out[2] = in[4 * x + 2]; break;
      }
    }
  }
  return image;
}

}  // namespace vitbatch
