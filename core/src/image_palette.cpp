// Palette lookup as Pillow does it: a palette starts as the grey ramp (entry i = (i, i, i))
// and the file's entries overwrite the first ones, so an index past the file's palette comes
// out grey, not black.
#include "vitbatch/image_palette.hpp"

namespace vitbatch {

Palette::Palette() {
  for (int i = 0; i < 256; ++i) rgb[3 * i] = rgb[3 * i + 1] = rgb[3 * i + 2] = static_cast<uint8_t>(i);
}

void Palette::set(int index, uint8_t r, uint8_t g, uint8_t b) {
  if (index < 0 || index > 255) return;
  rgb[3 * index] = r, rgb[3 * index + 1] = g, rgb[3 * index + 2] = b;
}

}  // namespace vitbatch
