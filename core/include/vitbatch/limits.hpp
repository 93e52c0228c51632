// limits.hpp: the ranges of the numeric settings, shared by the command-line flags and the
// YAML config so that both refuse the same values with the same words. They are far above
// any sensible use and far below what would overflow an int or a size computation.
#pragma once

#include <cstdint>

namespace vitbatch {

constexpr int kMaxBatchSize = 4096;       // images per model call
constexpr int kMaxTopK = 100000;          // clamped to the model's class count at run time
constexpr int kMaxThreads = 1024;         // backend threads
constexpr int kMaxDecodeThreads = 256;    // decode workers
constexpr int kMaxInputSize = 8192;       // preprocess.input_size, pixels a side
constexpr int kMaxHeads = 4096;
constexpr int64_t kMaxPixelLimit = int64_t{1} << 40;  // --max-pixels

}  // namespace vitbatch
