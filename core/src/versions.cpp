#include "vitbatch/versions.hpp"

#include <gif_lib.h>
#include <nlohmann/json.hpp>
#include <png.h>
#include <tiffio.h>
#include <webp/decode.h>

#include <cstdio>
#include <jpeglib.h>

namespace vitbatch {

const std::string kVersion = "0.2.0";

namespace {
#define VITBATCH_STRINGIFY2(x) #x
#define VITBATCH_STRINGIFY(x) VITBATCH_STRINGIFY2(x)

std::string dotted(int v) {  // libwebp packs 1.2.4 as 0x010204
  return std::to_string((v >> 16) & 0xFF) + "." + std::to_string((v >> 8) & 0xFF) + "." + std::to_string(v & 0xFF);
}
}  // namespace

std::vector<std::pair<std::string, std::string>> library_versions() {
  std::string tiff = TIFFGetVersion();  // "LIBTIFF, Version 4.5.0\n..."
  size_t at = tiff.find("Version ");
  tiff = at == std::string::npos ? tiff : tiff.substr(at + 8, tiff.find('\n', at) - at - 8);
  return {
#ifdef LIBJPEG_TURBO_VERSION
      {"libjpeg-turbo", VITBATCH_STRINGIFY(LIBJPEG_TURBO_VERSION)},
#else
      {"libjpeg", std::to_string(JPEG_LIB_VERSION)},
#endif
      {"libpng", png_get_libpng_ver(nullptr)},
      {"libwebp", dotted(WebPGetDecoderVersion())},
      {"libtiff", tiff},
      {"giflib", std::to_string(GIFLIB_MAJOR) + "." + std::to_string(GIFLIB_MINOR) + "." + std::to_string(GIFLIB_RELEASE)},
      {"yaml-cpp", VITBATCH_YAML_CPP_VERSION},
      {"nlohmann_json", std::to_string(NLOHMANN_JSON_VERSION_MAJOR) + "." + std::to_string(NLOHMANN_JSON_VERSION_MINOR) +
                            "." + std::to_string(NLOHMANN_JSON_VERSION_PATCH)},
  };
}

}  // namespace vitbatch
