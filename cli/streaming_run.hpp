// streaming_run.hpp: what the commands that stream inputs through the model (classify,
// embed) share: the stop signal, the decode-thread default, the batch memory check, the
// "ignored" summary line, the progress bar's background count, and the output file made
// ready for a run (locked, its run record checked on --resume and written).
#pragma once

#include "vitbatch/classify_pipeline.hpp"
#include "vitbatch/image.hpp"
#include "vitbatch/input_paths.hpp"
#include "vitbatch/model.hpp"
#include "vitbatch/prediction_format.hpp"
#include "vitbatch/resume.hpp"
#include "vitbatch/run_record.hpp"
#include "vitbatch/runtime.hpp"
#include "vitbatch/shard.hpp"

#include <CLI/CLI.hpp>

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

namespace vitbatch_cli {

// The flags of a command that streams inputs through the model (classify, embed): where the
// inputs come from, how they are decoded and batched, which part of them (--shard), resuming.
struct StreamFlags {
  std::vector<std::string> inputs;
  std::vector<std::string> files_from;
  std::optional<int> batch_size;
  std::optional<int> decode_threads;
  bool resume = false;
  std::optional<std::string> shard;
  bool null_separated = false;
  std::string progress = "auto";
  int64_t max_pixels = vitbatch::DecodeOptions{}.max_pixels;
  bool exif_transpose = false;
  bool absolute_paths = false;
};
// Where the inputs come from and how they are decoded: inputs, --files-from, -0,
// --max-pixels, --exif-transpose.
void add_input_flags(CLI::App& command, StreamFlags& flags);
// add_input_flags and the rest of StreamFlags; `resume_help` says what --resume continues.
void add_stream_flags(CLI::App& command, StreamFlags& flags, const std::string& resume_help);
// Throws the usage error for a command given no inputs at all.
void require_inputs(const StreamFlags& flags);

// Set by the first SIGINT/SIGTERM (install_stop_signals); the pipeline stops taking inputs.
extern std::atomic<int> g_stop_signal;
// The pipeline's count of inputs in flight, for the stop message.
extern std::atomic<int64_t> g_in_flight;
// First SIGINT/SIGTERM: say so at once, finish the rows in flight, flush, summarise. A second
// one kills, as the default action does. SIGPIPE is ignored: a closed pipe is an EPIPE.
void install_stop_signals();

// One decoder per core, up to 4, when the model runs on the CPU; every core on a device.
int default_decode_threads(bool model_on_device);

// Refuses a batch whose buffers cannot fit in the memory there is, before allocating any.
void check_batch_memory(const vitbatch::Model& model, int batch);

// "vitbatch: 3 files in the directories and archives ignored: ..." or "" when none were.
std::string ignored_line(const std::map<std::string, int64_t>& ignored);

// Counts the inputs in the background for the progress bar's total and ETA (not possible
// when paths come from stdin).
class InputCounter {
 public:
  InputCounter(const std::vector<std::string>& args, const std::vector<std::string>& lists,
               const std::function<bool(const vitbatch::InputItem&)>& accept, std::atomic<int64_t>& total,
               bool null_separated);
  ~InputCounter();

 private:
  std::atomic<bool> cancel_{false};
  std::thread thread_;
};

// The pipeline's surroundings in a streaming command, from its flags: the inputs (arguments,
// then --files-from lists), which of them to take (--shard, and not those --resume found
// done), the stop signals, and the progress bar with its background count. Sets those parts
// of `options`; lives through run_pipeline. `done_keys` must outlive it.
class StreamRun {
 public:
  StreamRun(const StreamFlags& flags, std::optional<vitbatch::Shard> shard,
            const std::unordered_set<std::string>& done_keys, const std::string& cwd, vitbatch::PipelineOptions& options);
  vitbatch::InputPaths& inputs() { return inputs_; }
  // Stops the count and clears the bar: before anything else is written to stderr.
  void finished();

 private:
  std::optional<vitbatch::Shard> shard_;
  const std::unordered_set<std::string>& done_keys_;
  std::string cwd_;
  vitbatch::InputPaths inputs_;
  std::optional<vitbatch::ProgressBar> bar_;
  std::optional<InputCounter> counter_;  // after bar_: it writes the bar's total, so it goes first
};

// What every run's record holds: vitbatch's version, the model (absolute path and size), the
// backend that runs it and the precision, the working directory, --absolute-paths. The
// command adds what its output's shape depends on (format, top-k, ...).
vitbatch::RunRecord base_run_record(const vitbatch::Runtime& runtime, const std::string& precision, const std::string& cwd,
                                    bool absolute_paths);

// An output file made ready: locked against a second writer, its run record checked (on
// --resume) and written, and what it already holds.
struct PreparedOutput {
  std::unique_ptr<vitbatch::OutputLock> lock;
  vitbatch::ResumeState resumed;
  std::unordered_set<std::string> done_keys;  // absolute paths already done (--resume)
};

PreparedOutput prepare_output_file(const std::string& output_path, bool resume, vitbatch::RunRecord record,
                                   const vitbatch::RecordFormat& format, const std::string& cwd);

}  // namespace vitbatch_cli
