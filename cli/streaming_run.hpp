// streaming_run.hpp: what the commands that stream inputs through the model (classify,
// embed) share: the stop signal, the decode-thread default, the batch memory check, the
// "ignored" summary line, the progress bar's background count, and the output file made
// ready for a run (locked, its run record checked on --resume and written).
#pragma once

#include "vitbatch/image.hpp"
#include "vitbatch/input_paths.hpp"
#include "vitbatch/model.hpp"
#include "vitbatch/prediction_format.hpp"
#include "vitbatch/resume.hpp"
#include "vitbatch/run_record.hpp"

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
// `resume_help` says what --resume continues for this command.
void add_stream_flags(CLI::App& command, StreamFlags& flags, const std::string& resume_help);

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
