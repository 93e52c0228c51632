// benchmark.hpp: what `vitbatch bench` measures: model throughput on random inputs, and the
// GEMM ceiling of the same backend and precision (one large linear node run through the
// plugin), so that the model's GFLOP/s can be read as a share of what the backend can do.
#pragma once

#include "vitbatch/runtime.hpp"

#include <string>
#include <vector>

namespace vitbatch {

struct ModelBenchResult {
  int64_t batch = 0;
  int64_t batches = 0;
  double seconds = 0;        // timed batches only
  double first_batch_seconds = 0;  // includes planning and weight packing
  // User + system CPU time of the whole process over the timed batches: on a machine whose
  // other guests take CPU away (steal), time this process was not running is not in it.
  double cpu_seconds = 0;
  double images_per_second() const { return seconds > 0 ? batch * batches / seconds : 0; }
  double cpu_ms_per_image() const { return batches > 0 ? 1000.0 * cpu_seconds / (batch * batches) : 0; }
};

// Runs batches of random inputs until `min_seconds` have passed (and at least 3 batches),
// after one untimed batch. resident_input: the timed batches reuse the input the first one
// put in place (the model alone, as timm's benchmark times it: no upload to a GPU). Two
// batches in flight where the backend queues them (Executor::start: the next upload overlaps
// this batch's model); one_at_a_time: each batch done before the next starts (Executor::run).
ModelBenchResult bench_model(Runtime& runtime, int64_t batch, double min_seconds, bool resident_input = false,
                             bool one_at_a_time = false);

struct GemmBenchResult {
  int64_t m = 0, k = 0, n = 0;
  double gflops = 0;
};

// A linear node [m, k] x [n, k]^T run on `backend` until `min_seconds` have passed.
GemmBenchResult bench_gemm(Backend& backend, int64_t m, int64_t k, int64_t n, double min_seconds);

// Photos decoded and preprocessed as classify does, for measuring agreement between runs.
struct PhotoSet {
  std::vector<std::string> paths;  // the ones that decoded
  std::vector<float> pixels;       // [paths.size(), C, S, S]
  std::vector<std::string> failures;  // "PATH: reason" for the ones that did not
};
// `inputs`: files and directories (walked as classify walks them).
PhotoSet load_photos(const Model& model, const std::vector<std::string>& inputs);

// The model's top-1 class for each photo, run in batches of `batch`.
std::vector<int64_t> top1_classes(Runtime& runtime, const PhotoSet& photos, int64_t batch);

// This process's peak resident set (VmHWM), in bytes; 0 if unknown.
int64_t peak_rss_bytes();

}  // namespace vitbatch
