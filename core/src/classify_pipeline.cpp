#include "vitbatch/classify_pipeline.hpp"

#include "vitbatch/error.hpp"
#include "vitbatch/html_report.hpp"
#include "vitbatch/preprocess.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <limits>
#include <mutex>
#include <thread>

namespace vitbatch {
namespace {

using Clock = std::chrono::steady_clock;

// One input between the walk and the model.
struct Slot {
  enum State { Free, Queued, Done } state = Free;
  std::string path;
  std::string error;
  std::shared_ptr<const std::vector<uint8_t>> bytes;  // an archive member's, else read from path
  std::vector<float> pixels;  // [3, S, S], allocated once per slot
  std::string thumbnail;      // JPEG of the crop (--report)
};

// The decode workers and the ring of slots they fill. Slot i holds input seq with
// seq % size == i; the caller never has more than `size` inputs in flight.
class DecodeStage {
 public:
  DecodeStage(size_t slots, int threads, const PreprocessConfig& pre, const DecodeOptions& decode, int thumbnail_side)
      : slots_(slots), pre_(pre), decode_(decode), thumbnail_side_(thumbnail_side) {
    // Slots get their pixels when first used: a huge --batch-size over three images
    // allocates for three.
    for (int i = 0; i < threads; ++i) workers_.emplace_back([this] { work(); });
  }
  ~DecodeStage() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      quit_ = true;
    }
    work_ready_.notify_all();
    for (auto& t : workers_) t.join();
  }
  size_t size() const { return slots_.size(); }

  void submit(int64_t seq, InputItem&& item) {
    Slot& s = slots_[seq % slots_.size()];
    std::lock_guard<std::mutex> lock(mutex_);
    s.path = std::move(item.path);
    s.error = std::move(item.error);
    s.bytes = std::move(item.bytes);
    if (!s.error.empty()) {  // nothing to decode
      s.state = Slot::Done;
      return;
    }
    s.state = Slot::Queued;
    queue_.push_back(seq);
    work_ready_.notify_one();
  }

  // The slot of `seq` if its worker has finished, waiting up to `wait`; null otherwise.
  // The returned slot belongs to the caller until release().
  Slot* finished(int64_t seq, std::chrono::milliseconds wait) {
    Slot& s = slots_[seq % slots_.size()];
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait_for(lock, wait, [&] { return s.state == Slot::Done; });
    return s.state == Slot::Done ? &s : nullptr;
  }

  void release(Slot& s) {
    std::lock_guard<std::mutex> lock(mutex_);
    s.state = Slot::Free;
  }

 private:
  void work() {
    while (true) {
      int64_t seq;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        work_ready_.wait(lock, [&] { return quit_ || !queue_.empty(); });
        if (quit_) return;
        seq = queue_.front();
        queue_.pop_front();
      }
      Slot& s = slots_[seq % slots_.size()];
      std::string error;
      try {
        s.pixels.resize(static_cast<size_t>(3 * pre_.input_size * pre_.input_size));
        // Decoded by this worker; the crop is kept for a picture when one is asked for.
        RgbImage crop = model_crop(s.path, s.bytes.get(), pre_, decode_);
        normalize_to_chw(crop, pre_, s.pixels.data());
        s.thumbnail = thumbnail_side_ > 0 ? jpeg_thumbnail(crop, thumbnail_side_) : std::string();
      } catch (const Error& e) {
        error = e.what();
      } catch (const std::bad_alloc&) {
        error = "out of memory decoding the image";
      } catch (const std::exception& e) {  // nothing may escape a worker thread
        error = std::string("internal error decoding the image: ") + e.what();
      } catch (...) {
        error = "internal error decoding the image";
      }
      {
        std::lock_guard<std::mutex> lock(mutex_);
        s.error = std::move(error);
        s.bytes.reset();  // the encoded bytes are not needed past the decode
        s.state = Slot::Done;
      }
      done_.notify_all();
    }
  }

  std::vector<Slot> slots_;
  const PreprocessConfig& pre_;
  DecodeOptions decode_;
  int thumbnail_side_;
  std::mutex mutex_;
  std::condition_variable work_ready_, done_;
  std::deque<int64_t> queue_;
  bool quit_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace

void PredictionSink::row(const std::string& path, const float* output, const std::string& error,
                         const std::string& thumbnail) {
  if (logits_) {
    if (output) {
      logits_->append(output, 1);
    } else {
      std::vector<float> nan(static_cast<size_t>(classes_), std::numeric_limits<float>::quiet_NaN());
      logits_->append(nan.data(), 1);
    }
  }
  std::vector<Prediction> predictions;
  if (output) {
    predictions = top_k(output, classes_, top_k_, activation_);
    if (min_prob_ > 0)
      predictions.erase(std::remove_if(predictions.begin(), predictions.end(),
                                       [&](const Prediction& p) { return p.probability < min_prob_; }),
                        predictions.end());
  }
  output_.write(format_.row(path, predictions, output ? "" : error));
  if (page_) page_->add({path, output ? "" : error, thumbnail, std::move(predictions), -1});
}

bool PredictionSink::flush() {
  // The logits first: a row in the CSV always has its logits row.
  if (logits_ && !logits_->flush()) return false;
  return output_.flush();
}

PipelineSummary run_pipeline(InputPaths& inputs, const Model& model, Executor& executor, RowSink& sink,
                             const PipelineOptions& options, std::ostream& diagnostics) {
  const auto start = Clock::now();
  const int B = std::max(1, options.batch_size);
  const PreprocessConfig& pre = model.preprocess;
  const size_t image_floats = static_cast<size_t>(3 * pre.input_size * pre.input_size);
  const int64_t classes = executor.output_width();
  // Enough slots to keep every worker busy while a full batch waits for the model.
  DecodeOptions decode = options.decode;
  decode.cancel = options.stop;  // a stop signal aborts a decode in progress (a scan bomb)
  DecodeStage stage(static_cast<size_t>(B + 4 * std::max(1, options.decode_threads)), std::max(1, options.decode_threads),
                    pre, decode, options.thumbnail_side);
  // Grown as images arrive (doubling), never past one batch: memory follows the images
  // there are, not the batch size asked for. On a device backend it is pinned memory, which
  // the upload reads directly.
  PixelBuffer pixels;
  std::vector<float> logits;

  struct Row {
    std::string path, error, thumbnail;
    int slot = -1;  // position in the batch, -1 for a failed input
  };
  std::vector<Row> rows;  // rows waiting for the batch they belong to
  int filled = 0;
  Clock::time_point batch_opened{};
  PipelineSummary summary;

  auto write_rows = [&] {
    if (filled > 0) {
      logits.resize(static_cast<size_t>(classes) * filled);
      executor.run(pixels.data(), filled, logits.data());
    }
    for (const Row& r : rows) {
      const float* l = r.slot >= 0 ? logits.data() + r.slot * classes : nullptr;
      if (l && !std::all_of(l, l + classes, [](float v) { return std::isfinite(v); })) {
        // NaN weights or overflowing activations: a row of "nan" would pass for an answer
        // (and --resume would keep it). It is an error row, and the run's status says so.
        std::string line = "vitbatch: " + r.path + ": non-finite " + options.output_name +
                           " (NaN or Inf): the model or its preprocessing overflows\n";
        if (options.progress) options.progress->print(line);
        else diagnostics << line << std::flush;
        sink.row(r.path, nullptr, "non-finite " + options.output_name + " (NaN or Inf)", r.thumbnail);
        ++summary.failed;
      } else if (l) {
        sink.row(r.path, l, "", r.thumbnail);
        ++summary.classified;
      } else {
        sink.row(r.path, nullptr, r.error, r.thumbnail);
        ++summary.failed;
      }
    }
    if (options.progress && options.output_is_terminal) options.progress->pause();
    if (!sink.flush()) summary.output_closed = true;
    if (options.progress && options.output_is_terminal) options.progress->resume();
    if (options.progress) options.progress->update(summary.classified + summary.failed, summary.failed);
    rows.clear();
    filled = 0;
  };

  const std::string cwd = options.absolute_paths ? current_directory() : std::string();
  int64_t next_seq = 0, next_out = 0;
  bool feeding = true;
  InputItem item;
  while (!summary.output_closed) {
    if (options.stop && options.stop->load()) feeding = false, summary.interrupted = true;
    // Feed the workers, never more than the ring holds. Wait for stdin only when idle.
    while (feeding && next_seq - next_out < static_cast<int64_t>(stage.size())) {
      bool idle = next_seq == next_out && filled == 0;
      InputStatus s = inputs.next(item, idle ? 50 : 0);
      if (s == InputStatus::Pending) break;
      if (s == InputStatus::End) {
        feeding = false;
        break;
      }
      // Error rows are sharded like the rest, so that each lands in exactly one shard's output.
      if (options.accept && !options.accept(item)) {
        ++summary.skipped;
        continue;
      }
      // Read on this thread, in order: an archive is one stream.
      if (item.in_archive) inputs.read_member(item, max_image_file_bytes(options.decode));
      if (options.absolute_paths) item.path = lexically_absolute(item.path, cwd);
      stage.submit(next_seq++, std::move(item));
    }
    // Take finished inputs in order.
    bool progressed = false;
    while (next_out < next_seq && !summary.output_closed) {
      Slot* slot = stage.finished(next_out, std::chrono::milliseconds(progressed ? 0 : 20));
      if (!slot) break;
      progressed = true;
      Row row{std::move(slot->path), std::move(slot->error), std::move(slot->thumbnail), -1};
      if (row.error.empty()) {
        size_t need = (filled + 1) * image_floats;
        if (pixels.size() < need) {
          PixelBuffer larger = executor.pixel_buffer(std::min(image_floats * B, std::max(need, 2 * pixels.size())));
          if (filled > 0) std::memcpy(larger.data(), pixels.data(), filled * image_floats * sizeof(float));
          pixels = std::move(larger);
        }
        std::memcpy(pixels.data() + filled * image_floats, slot->pixels.data(), image_floats * sizeof(float));
        if (filled == 0) batch_opened = Clock::now();
        row.slot = filled++;
      } else {
        std::string line = "vitbatch: " + row.path + ": " + row.error + "\n";
        if (options.progress) options.progress->print(line);
        else diagnostics << line << std::flush;
      }
      stage.release(*slot);
      ++next_out;
      rows.push_back(std::move(row));
      // A failure with no image waiting before it is written at once: order is kept, and a
      // run of bad files shows up without waiting for the next full batch.
      if (filled == B || (filled == 0 && rows.back().slot < 0)) write_rows();
    }
    if (options.in_flight) options.in_flight->store(next_seq - next_out + filled);
    // Checked again here: with every input already taken the loop may end before the top.
    if (options.stop && options.stop->load()) feeding = false, summary.interrupted = true;
    if (!feeding && next_out == next_seq) break;
    // Inputs trickling in (a slow `find | vitbatch`): do not hold a partial batch forever.
    if (!progressed && filled > 0 && Clock::now() - batch_opened > std::chrono::milliseconds(500)) write_rows();
  }
  if (!summary.output_closed) write_rows();
  if (options.progress) options.progress->finish();
  summary.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return summary;
}

}  // namespace vitbatch
