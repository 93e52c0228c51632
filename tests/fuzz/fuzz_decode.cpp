// One image format's decoder through the path classify takes: decode with a pixel limit,
// resize and centre crop, normalise. Any Error is a refused input; anything else (a crash,
// a sanitizer report, a hang past libFuzzer's timeout, memory past -rss_limit_mb) is a bug.
#include "vitbatch/error.hpp"
#include "vitbatch/image.hpp"
#include "vitbatch/preprocess.hpp"

#include <cstddef>
#include <cstdint>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  vitbatch::DecodeOptions options;
  options.max_pixels = 4 << 20;  // the fuzzer's memory limit, not Pillow's
  options.exif_transpose = size > 0 && (data[size - 1] & 1);
  vitbatch::PreprocessConfig pre;
  pre.input_size = 32;
  try {
    vitbatch::RgbImage image = vitbatch::VITBATCH_FUZZ_FORMAT(data, size, options);
    std::vector<float> out(3 * 32 * 32);
    vitbatch::normalize_to_chw(vitbatch::eval_crop(image, pre), pre, out.data());
  } catch (const vitbatch::Error&) {
  }
  return 0;
}
