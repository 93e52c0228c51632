// classify_pipeline.hpp: the classify loop. The calling thread walks the inputs and runs the
// model; decode_threads workers read, decode and preprocess ahead of it into a bounded ring
// of slots, so memory depends on the batch size and thread count, never on how many files
// there are. Rows are written in input order and flushed after every batch; a bad input
// becomes a row with its reason (and a line on stderr) and the run goes on.
#pragma once

#include "vitbatch/executor.hpp"
#include "vitbatch/image.hpp"
#include "vitbatch/input_paths.hpp"
#include "vitbatch/output_sink.hpp"
#include "vitbatch/prediction_format.hpp"
#include "vitbatch/progress.hpp"

#include <atomic>
#include <functional>
#include <ostream>

namespace vitbatch {

struct PipelineOptions {
  int batch_size = 16;
  int top_k = 5;
  int decode_threads = 1;
  DecodeOptions decode;
  // Inputs for which this returns false are skipped (--shard, --resume). Called on the
  // calling thread only.
  std::function<bool(const InputItem&)> accept;
  // Non-zero (a signal arrived): take no more inputs, finish what is in flight, return.
  const std::atomic<int>* stop = nullptr;
  ProgressBar* progress = nullptr;
  // Write each path made absolute (against the working directory) instead of as given.
  bool absolute_paths = false;
  // The output is the terminal the bar is drawn on: the bar is cleared around each write.
  bool output_is_terminal = false;
  // Set to the number of inputs taken but not yet written (for the Ctrl-C message).
  std::atomic<int64_t>* in_flight = nullptr;
};

struct PipelineSummary {
  int64_t classified = 0;
  int64_t failed = 0;
  int64_t skipped = 0;
  bool interrupted = false;    // stopped by options.stop
  bool output_closed = false;  // the output failed: stopped (quietly when output.pipe_closed())
  double seconds = 0.0;
};

// Throws Error if a backend fails; rows written before stay written.
PipelineSummary run_pipeline(InputPaths& inputs, const Model& model, Executor& executor, const PredictionFormat& format,
                             OutputSink& output, const PipelineOptions& options, std::ostream& diagnostics);

}  // namespace vitbatch
