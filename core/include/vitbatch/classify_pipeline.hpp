// classify_pipeline.hpp: the streaming loop of classify and embed. The calling thread walks
// the inputs and runs the model; decode_threads workers read, decode and preprocess ahead of
// it into a bounded ring of slots, so memory depends on the batch size and thread count,
// never on how many files there are. Rows go to a RowSink in input order and are flushed
// after every batch; a bad input becomes a row with its reason (and a line on stderr) and the
// run goes on.
#pragma once

#include "vitbatch/executor.hpp"
#include "vitbatch/html_report.hpp"
#include "vitbatch/image.hpp"
#include "vitbatch/input_paths.hpp"
#include "vitbatch/npy_writer.hpp"
#include "vitbatch/output_sink.hpp"
#include "vitbatch/prediction_format.hpp"
#include "vitbatch/progress.hpp"

#include <atomic>
#include <functional>
#include <ostream>

namespace vitbatch {

// Where the rows go, in input order, one per input.
class RowSink {
 public:
  virtual ~RowSink() = default;
  // `output`: what the model gave for the image (Executor::output_width() floats, all
  // finite), or null for an input that failed with `error`. `thumbnail`: a JPEG of the crop
  // when PipelineOptions::thumbnail_side asks for one, else empty.
  virtual void row(const std::string& path, const float* output, const std::string& error,
                   const std::string& thumbnail) = 0;
  // After each batch: make the rows so far durable. False: the output failed; the run stops.
  virtual bool flush() = 0;
};

// Classify's rows: the top-k of each output scored by the activation, predictions under
// min_prob dropped, written in `format` to `output`; when `logits` is given, each row's
// logits (NaN for a failed row) to a .npy beside it, row i of the file for row i of the
// output; when `page` is given, a card with the same predictions (--report).
class PredictionSink : public RowSink {
 public:
  PredictionSink(const PredictionFormat& format, OutputSink& output, int64_t classes, int top_k, ScoreActivation activation,
                 double min_prob, NpyWriter* logits, HtmlReport* page)
      : format_(format), output_(output), classes_(classes), top_k_(top_k), activation_(activation),
        min_prob_(min_prob), logits_(logits), page_(page) {}
  void row(const std::string& path, const float* output, const std::string& error, const std::string& thumbnail) override;
  bool flush() override;

 private:
  const PredictionFormat& format_;
  OutputSink& output_;
  int64_t classes_;
  int top_k_;
  ScoreActivation activation_;
  double min_prob_;
  NpyWriter* logits_;
  HtmlReport* page_;
};

struct PipelineOptions {
  int batch_size = 16;
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
  // What the model's output is called in the error row for a non-finite one.
  std::string output_name = "logits";
  // Non-zero: the decode workers also make a JPEG thumbnail of each crop, this many pixels a
  // side, for the sink (--report).
  int thumbnail_side = 0;
};

struct PipelineSummary {
  int64_t classified = 0;
  int64_t failed = 0;
  int64_t skipped = 0;
  bool interrupted = false;    // stopped by options.stop
  bool output_closed = false;  // the output failed: stopped (quietly when output.pipe_closed())
  double seconds = 0.0;
};

// Throws Error if a backend fails; rows written before stay written. `classified` counts the
// rows with an output.
PipelineSummary run_pipeline(InputPaths& inputs, const Model& model, Executor& executor, RowSink& sink,
                             const PipelineOptions& options, std::ostream& diagnostics);

}  // namespace vitbatch
