#include "streaming_run.hpp"

#include "usage_errors.hpp"

#include "vitbatch/error.hpp"
#include "vitbatch/executor.hpp"
#include "vitbatch/limits.hpp"
#include "vitbatch/system_memory.hpp"

#include "vitbatch/versions.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <sstream>

namespace vitbatch_cli {

namespace {

// Only async-signal-safe calls here (write(2)).
void on_stop_signal(int sig) {
  g_stop_signal.store(sig);
  std::signal(sig, SIG_DFL);
  char digits[24];
  int n = 0;
  long long v = g_in_flight.load();
  do digits[n++] = static_cast<char>('0' + v % 10); while ((v /= 10) > 0 && n < 20);
  char line[160] = "\r\033[Kvitbatch: stopping after the ";
  size_t at = std::strlen(line);
  while (n > 0) line[at++] = digits[--n];
  const char* rest = sig == SIGINT ? " images in flight; Ctrl-C again to quit\n" : " images in flight\n";
  std::memcpy(line + at, rest, std::strlen(rest));
  at += std::strlen(rest);
  (void)!::write(STDERR_FILENO, line, at);
}

std::string gib(uint64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f GiB", bytes / double(uint64_t{1} << 30));
  return buf;
}

}  // namespace

void add_input_flags(CLI::App& cmd, StreamFlags& flags) {
  cmd.add_option("inputs", flags.inputs,
                 "image files, directories (recursive, in path order), tar files (WebDataset shards too: rows "
                 "named archive.tar!member.jpg), or - for paths on stdin");
  cmd.add_option("--files-from", flags.files_from,
                 "read paths from FILE (- for stdin), one per line, or NUL-separated with -0; after the inputs")
      ->check(CLI::ExistingFile | CLI::IsMember({"-"}));
  cmd.add_flag("-0,--null", flags.null_separated, "paths on stdin and in --files-from are NUL-separated (find -print0)");
  cmd.add_option("--max-pixels", flags.max_pixels,
                 "refuse images with more pixels, checked before decoding (default: Pillow's limit, 178956970)")
      ->check(int_range(1, vitbatch::kMaxPixelLimit));
  cmd.add_flag("--exif-transpose", flags.exif_transpose,
               "rotate/flip by the EXIF Orientation tag first (off by default, as in timm)");
}

void add_stream_flags(CLI::App& cmd, StreamFlags& flags, const std::string& resume_help) {
  add_input_flags(cmd, flags);
  cmd.add_option("--batch-size", flags.batch_size, "images per model call (default 16)")
      ->check(int_range(1, vitbatch::kMaxBatchSize));
  cmd.add_option("--decode-threads", flags.decode_threads,
                 "threads decoding and preprocessing ahead of the model (default: one per core, at most 4 when the "
                 "model runs on the CPU)")
      ->check(int_range(1, vitbatch::kMaxDecodeThreads));
  cmd.add_flag("--resume", flags.resume, resume_help);
  cmd.add_option("--shard", flags.shard,
                 "I/N: take only the I-th of N disjoint parts of the inputs (0 <= I < N), by a hash of each "
                 "path relative to its directory argument");
  cmd.add_flag("--absolute-paths", flags.absolute_paths, "write each path made absolute instead of as given");
  cmd.add_option("--progress", flags.progress, "progress bar on stderr: auto (if a terminal), always, never")
      ->check(CLI::IsMember({"auto", "always", "never"}));
}

void require_inputs(const StreamFlags& flags) {
  if (flags.inputs.empty() && flags.files_from.empty())
    throw vitbatch::Error("no inputs: name image files, directories or tar files, - for paths on stdin, or --files-from FILE");
}

std::atomic<int> g_stop_signal{0};
std::atomic<int64_t> g_in_flight{0};

void install_stop_signals() {
  std::signal(SIGINT, on_stop_signal);
  std::signal(SIGTERM, on_stop_signal);
  std::signal(SIGPIPE, SIG_IGN);  // a closed pipe shows up as EPIPE on write: stop quietly
}

// One decoder per core, up to 4, when the model runs on the CPU: decoders sleep while the
// model is the bottleneck (large models), and with a small model on few cores every extra
// decoder still pays (ViT-Ti on 2 cores: 42 img/s with one, 48 with two). When the model runs
// on a device, the cores have nothing else to do: one decoder each (on a 16-core H100 host,
// 4 decoders fed the GPU about 440 JPEGs/s, a fraction of what it classifies).
int default_decode_threads(bool model_on_device) {
  int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  return model_on_device ? std::min(cores, vitbatch::kMaxDecodeThreads) : std::max(1, std::min(4, cores));
}

StreamRun::StreamRun(const StreamFlags& flags, std::optional<vitbatch::Shard> shard,
                     const std::unordered_set<std::string>& done_keys, const std::string& cwd,
                     vitbatch::PipelineOptions& options)
    : shard_(std::move(shard)), done_keys_(done_keys), cwd_(cwd),
      inputs_(flags.inputs, STDIN_FILENO, flags.null_separated) {
  for (const auto& list : flags.files_from) inputs_.add_files_from(list);
  if (shard_ || !done_keys_.empty())
    options.accept = [this](const vitbatch::InputItem& item) {
      return (!shard_ || shard_->contains(item.key)) && !done_keys_.count(vitbatch::lexically_absolute(item.path, cwd_));
    };
  options.absolute_paths = flags.absolute_paths;
  options.stop = &g_stop_signal;
  options.in_flight = &g_in_flight;
  install_stop_signals();
  if (flags.progress == "always" || (flags.progress == "auto" && isatty(STDERR_FILENO))) bar_.emplace(STDERR_FILENO);
  options.progress = bar_ ? &*bar_ : nullptr;
  if (bar_ && !inputs_.reads_stdin())
    counter_.emplace(flags.inputs, flags.files_from, options.accept, bar_->total, flags.null_separated);
}

void StreamRun::finished() {
  counter_.reset();
  bar_.reset();
}

// Refuses a batch whose buffers cannot fit in the memory there is, before allocating any.
void check_batch_memory(const vitbatch::Model& model, int batch) {
  uint64_t per_image = vitbatch::Executor::estimate_activation_bytes(model, 1) +
                       2 * sizeof(float) * 3 * static_cast<uint64_t>(model.preprocess.input_size * model.preprocess.input_size);
  uint64_t available = vitbatch::available_memory_bytes();
  if (available == 0 || per_image * batch <= available) return;
  uint64_t fits = std::max<uint64_t>(1, available / per_image / 2);  // half: weights, decoders and the rest
  throw vitbatch::Error("--batch-size " + std::to_string(batch) + " needs about " + gib(per_image * batch) +
                        " of activations (" + std::to_string(per_image >> 20) + " MiB an image) and " + gib(available) +
                        " is available: use --batch-size " + std::to_string(fits) + " or less");
}

// The ignored files of the walks, for the summary: "3 files ignored (not images by extension: .txt 2, .json 1)".
std::string ignored_line(const std::map<std::string, int64_t>& ignored) {
  int64_t total = 0;
  std::string detail;
  for (const auto& [ext, n] : ignored) {
    total += n;
    detail += (detail.empty() ? "" : ", ") + ext + " " + std::to_string(n);
  }
  if (total == 0) return "";
  return "vitbatch: " + std::to_string(total) + " file" + (total == 1 ? "" : "s") +
         " in the directories and archives ignored: not images by extension or content (" + detail + ")";
}

InputCounter::InputCounter(const std::vector<std::string>& args, const std::vector<std::string>& lists,
                           const std::function<bool(const vitbatch::InputItem&)>& accept, std::atomic<int64_t>& total,
                           bool null_separated)
    : thread_([this, args, lists, accept, &total, null_separated] {
        try {
          std::istringstream none;
          vitbatch::InputPaths walk(args, none, null_separated);
          for (const auto& list : lists) walk.add_files_from(list);
          int64_t n = 0;
          while (auto item = walk.next()) {
            if (cancel_.load()) return;
            if (!accept || accept(*item)) ++n;
          }
          total.store(n);
        } catch (...) {  // only the bar's total is lost: it stays unknown
        }
      }) {}

InputCounter::~InputCounter() {
  cancel_.store(true);
  thread_.join();
}

vitbatch::RunRecord base_run_record(const vitbatch::Runtime& runtime, const std::string& precision, const std::string& cwd,
                                    bool absolute_paths) {
  vitbatch::RunRecord record;
  record.vitbatch_version = vitbatch::kVersion;
  const std::string& weights = runtime.model().path;
  record.model = vitbatch::lexically_absolute(weights, cwd);
  struct stat st {};
  record.model_bytes = ::stat(weights.c_str(), &st) == 0 ? st.st_size : 0;
  record.backend = runtime.backends().front()->name();
  record.precision = precision;
  record.cwd = cwd;
  record.absolute_paths = absolute_paths;
  return record;
}

PreparedOutput prepare_output_file(const std::string& output_path, bool resume, vitbatch::RunRecord record,
                                   const vitbatch::RecordFormat& format, const std::string& cwd) {
  PreparedOutput out;
  out.lock = std::make_unique<vitbatch::OutputLock>(output_path);  // before reading or writing anything of it
  std::string meta = vitbatch::run_record_path(output_path);
  if (resume) {
    std::optional<vitbatch::RunRecord> before = vitbatch::read_run_record(meta);
    if (before) {
      std::string diff = vitbatch::run_record_mismatch(*before, record);
      if (!diff.empty())
        throw vitbatch::Error("cannot resume " + output_path + ": it was written with other settings (" + diff +
                              "); resume with the same ones, or write to another file");
    }
    out.resumed = vitbatch::prepare_resume(output_path, format);
    // Rows are matched by absolute path, resolved against the directory they were written from.
    std::string old_cwd = before && !before->cwd.empty() ? before->cwd : cwd;
    bool relative_rows = false;
    for (const std::string& p : out.resumed.done) {
      relative_rows |= p.empty() || p[0] != '/';
      out.done_keys.insert(vitbatch::lexically_absolute(p, old_cwd));
    }
    if (relative_rows && old_cwd != cwd && !record.absolute_paths)
      throw vitbatch::Error("cannot resume " + output_path + " from here: its paths are relative to " + old_cwd +
                            "; run from there (or start the file with --absolute-paths)");
    record.cwd = old_cwd;
  }
  vitbatch::write_run_record(meta, record);
  return out;
}


}  // namespace vitbatch_cli
