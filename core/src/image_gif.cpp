// GIF through giflib, first frame only, laid out as Pillow 9.4's GifImagePlugin loads frame 0:
// a canvas of the logical screen (grown if the frame reaches past it), filled with the
// frame's transparent index if it has one, else index 0; the frame's pixels (de-interlaced)
// at its offset; then the local palette, else the global one, else none (grey: index = value).
#include "vitbatch/error.hpp"
#include "vitbatch/image.hpp"
#include "vitbatch/image_palette.hpp"

#include <gif_lib.h>

#include <algorithm>
#include <cstring>
#include <memory>

namespace vitbatch {
namespace {

struct Source {
  const uint8_t* data;
  size_t size, offset;
};

int read_source(GifFileType* gif, GifByteType* out, int n) {
  auto* s = static_cast<Source*>(gif->UserData);
  size_t take = std::min(static_cast<size_t>(n), s->size - s->offset);
  std::memcpy(out, s->data + s->offset, take);
  s->offset += take;
  return static_cast<int>(take);
}

struct GifCloser {
  void operator()(GifFileType* gif) const {
    int error = 0;
    DGifCloseFile(gif, &error);
  }
};

[[noreturn]] void fail(int code) {
  const char* why = GifErrorString(code);
  throw Error(std::string("corrupt GIF: ") + (why ? why : "unknown error"));
}

}  // namespace

RgbImage decode_gif(const uint8_t* data, size_t size, const DecodeOptions& options) {
  Source source{data, size, 0};
  int error = 0;
  std::unique_ptr<GifFileType, GifCloser> gif(DGifOpen(&source, read_source, &error));
  if (!gif) fail(error);
  int transparent = -1;
  while (true) {
    GifRecordType record;
    if (DGifGetRecordType(gif.get(), &record) == GIF_ERROR) fail(gif->Error);
    if (record == TERMINATE_RECORD_TYPE) throw Error("corrupt GIF: no image in the file");
    if (record == EXTENSION_RECORD_TYPE) {
      int code = 0;
      GifByteType* block = nullptr;
      if (DGifGetExtension(gif.get(), &code, &block) == GIF_ERROR) fail(gif->Error);
      bool first = true;
      while (block) {
        // Graphic control: flags, delay (2 bytes), transparent index.
        if (first && code == GRAPHICS_EXT_FUNC_CODE && block[0] >= 4) transparent = (block[1] & 1) ? block[4] : -1;
        first = false;
        if (DGifGetExtensionNext(gif.get(), &block) == GIF_ERROR) fail(gif->Error);
      }
      continue;
    }
    if (record != IMAGE_DESC_RECORD_TYPE) continue;
    if (DGifGetImageDesc(gif.get()) == GIF_ERROR) fail(gif->Error);
    const GifImageDesc& d = gif->Image;
    int64_t x0 = d.Left, y0 = d.Top, w = d.Width, h = d.Height;
    int64_t width = std::max<int64_t>(gif->SWidth, x0 + w), height = std::max<int64_t>(gif->SHeight, y0 + h);
    check_pixel_limit(width, height, options);
    std::vector<uint8_t> canvas(static_cast<size_t>(width * height), static_cast<uint8_t>(transparent >= 0 ? transparent : 0));
    std::vector<int64_t> rows;  // the order rows arrive in
    if (d.Interlace) {
      for (int64_t start : {0, 4, 2, 1})
        for (int64_t y = start; y < h; y += start == 0 ? 8 : start == 4 ? 8 : start == 2 ? 4 : 2) rows.push_back(y);
    } else {
      for (int64_t y = 0; y < h; ++y) rows.push_back(y);
    }
    for (int64_t y : rows)
      if (w > 0 && DGifGetLine(gif.get(), canvas.data() + (y0 + y) * width + x0, static_cast<int>(w)) == GIF_ERROR)
        fail(gif->Error);
    const ColorMapObject* map = d.ColorMap ? d.ColorMap : gif->SColorMap;
    Palette palette;
    if (map)
      for (int i = 0; i < map->ColorCount && i < 256; ++i)
        palette.set(i, map->Colors[i].Red, map->Colors[i].Green, map->Colors[i].Blue);
    RgbImage image;
    image.width = width;
    image.height = height;
    image.pixels.resize(canvas.size() * 3);
    for (size_t i = 0; i < canvas.size(); ++i) std::memcpy(&image.pixels[3 * i], palette[canvas[i]], 3);
    return image;
  }
}

}  // namespace vitbatch
