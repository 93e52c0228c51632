// image_palette.hpp: the 256-entry palette of an indexed image, with Pillow's default for
// entries the file does not give (see image_palette.cpp).
#pragma once

#include <array>
#include <cstdint>

namespace vitbatch {

struct Palette {
  Palette();
  void set(int index, uint8_t r, uint8_t g, uint8_t b);
  const uint8_t* operator[](int index) const { return &rgb[3 * index]; }
  std::array<uint8_t, 768> rgb;
};

}  // namespace vitbatch
