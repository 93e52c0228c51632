// executor.hpp: runs a model's graph on backends. For each batch size it meets, it builds a
// plan once: the graph, composites lowered unless a backend claims them, each node placed on
// the first backend (in the configured order) that accepts it, activation buffers assigned
// by liveness so that they are reused, and each node prepared once with its constants.
// Running a batch afterwards allocates nothing.
#pragma once

#include "vitbatch/graph.hpp"
#include "vitbatch/model.hpp"
#include "vitbatch/plugin_host.hpp"

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace vitbatch {

// Host memory for Executor::run's pixels (see Executor::pixel_buffer). Move-only; pinned
// memory goes back to the backend that gave it, which must outlive the buffer.
class PixelBuffer {
 public:
  PixelBuffer() = default;
  PixelBuffer(PixelBuffer&& other) noexcept { *this = std::move(other); }
  PixelBuffer& operator=(PixelBuffer&& other) noexcept;
  PixelBuffer(const PixelBuffer&) = delete;
  PixelBuffer& operator=(const PixelBuffer&) = delete;
  ~PixelBuffer();

  float* data() { return data_; }
  const float* data() const { return data_; }
  size_t size() const { return floats_; }
  // Page-locked memory of a device backend (its copy engine reads it directly).
  bool pinned() const { return owner_ != nullptr; }

 private:
  friend class Executor;
  float* data_ = nullptr;
  size_t floats_ = 0;
  Backend* owner_ = nullptr;  // the backend whose staging memory this is, or null
  std::vector<float> plain_;  // the memory where there is none
};

class Executor {
 public:
  // `backends` in priority order (the caller puts `reference` last). Both the model and the
  // backends must outlive the executor.
  Executor(const Model& model, std::vector<Backend*> backends);
  ~Executor();
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  // pixels: [n, C, S, S] float32, contiguous; logits: room for [n, num_classes]. pixels null:
  // the input of the previous batch of this size again, where it already is (benchmarks;
  // with lanes, the caller's buffer of that call, which must still hold it).
  void run(const float* pixels, int64_t n, float* logits);

  // Two batches in flight, where the pixels go to the device backend that also holds the
  // logits and it has a queue (CUDA: the next batch's upload overlaps this one's model, and
  // the host's launches the GPU's work; steps on other backends in between still run at
  // once, as in run()): start() queues a batch and returns; finish() waits for the oldest batch
  // started and writes its logits where start() was told. Until then that batch's pixels
  // stay as they are (best in pixel_buffer()'s memory, which the copy engine reads directly;
  // null: the input already in place, as in run()) and its logits are not read. A third
  // start() finishes the oldest first. Anywhere else start() runs the batch at once. run(),
  // placement() and a batch size without a plan finish what is in flight first.
  void start(const float* pixels, int64_t n, float* logits);
  void finish();
  size_t in_flight() const { return in_flight_.size(); }

  // Room for `floats` of run()'s pixels. Where a backend keeps activations in device memory,
  // its staging memory (pinned: the copy engine reads it directly, while a pageable buffer
  // goes through the driver's own staging; on an H200, ViT-Ti/16 bf16 at batch 256 ran at
  // 9,285 images/s uploading from pageable memory, 33,985 from pinned, 53,705 with its input
  // resident); plain memory otherwise, or if the backend has none to give.
  PixelBuffer pixel_buffer(size_t floats);

  // Lanes: the images of a batch run side by side, one at a time per lane, each lane on its
  // own thread with its own backends (contexts of the same plugins, each with a share of the
  // threads: see Backend::concurrent_contexts); an image goes to whichever lane is free, so a
  // lane slowed by another process takes fewer. On a CPU this keeps one image's activations
  // in a core's cache and the threads from waiting on each other after every op. Batches of
  // one image, and runs with an observer, go through this executor's own backends. An
  // image's answer does not depend on its batch: every image runs alone in a lane. Call
  // before the first run; `lanes` in the same order as this executor's backends.
  void set_lanes(const std::vector<std::vector<Backend*>>& lanes);
  int lanes() const { return static_cast<int>(lanes_.size()); }
  // Floats run() writes per image: the classes, or the feature width of a model without head.
  int64_t output_width() const { return model_.config.output_width(); }

  // Bytes of activation buffers a plan for `batch` images needs at most (all composites
  // lowered; backends' own scratch not counted). Builds no plan.
  static size_t estimate_activation_bytes(const Model& model, int64_t batch);

  // Calibration: after each linear node runs, observer(name, x, count) sees its input x
  // (count floats, host memory). Set it before the first run: plans then lower every
  // composite and let no backend fuse, so that every linear is a node of its own.
  using LinearObserver = std::function<void(const std::string& name, const float* x, int64_t count)>;
  void observe_linear_inputs(LinearObserver observer);
  // Explain: after each block's attention softmax runs, observer(block, probs) sees its
  // probabilities [n, heads, T, T] (host memory; block counts from 0). Set before the first
  // run: plans then lower every composite, so classify, which sets none, pays nothing.
  using AttentionObserver = std::function<void(int block, const float* probs)>;
  void observe_attention(AttentionObserver observer);

  // The graph as it runs for this batch size, each node with its backend.
  std::string placement(int64_t batch);
  size_t cached_plans() const { return plans_.size(); }

  // Plans kept at once. Partial batches (the last one, a slow stdin) come in many sizes;
  // each plan holds its own activation buffers, so the least recently used goes first.
  static constexpr size_t kMaxPlans = 3;

 private:
  struct Plan;
  Plan& plan_for(int64_t batch);

  const Model& model_;
  std::vector<Backend*> backends_;
  std::vector<std::unique_ptr<Executor>> lanes_;
  std::unique_ptr<class LanePool> lane_pool_;
  const float* lane_pixels_ = nullptr;  // the last batch the lanes ran, for run(nullptr)
  int64_t lane_batch_ = 0;
  bool run_lanes(const float* pixels, int64_t n, float* logits);
  void release(Plan& plan);
  void run_steps(Plan& plan, size_t first, size_t end, const float* pixels, bool queued);
  void queue_steps(Plan& plan, const float* pixels, bool queued);
  void finish_all();
  // Batches start()ed and not yet finished, oldest first: the backend's mark after the
  // batch, and where its logits wait (pinned memory of that backend) and go.
  struct Pending {
    Backend* device;
    uint64_t token;
    const void* staged;
    float* logits;
    size_t bytes;
  };
  std::deque<Pending> in_flight_;
  struct Staging {
    Backend* owner = nullptr;
    void* data = nullptr;
    size_t bytes = 0;
  };
  Staging logit_staging_[2];  // used in turn: at most two batches are in flight
  int next_staging_ = 0;
  std::map<int64_t, std::unique_ptr<Plan>> plans_;
  LinearObserver observer_;
  AttentionObserver attention_observer_;
  uint64_t uses_ = 0;  // stamps Plan::last_used
};

}  // namespace vitbatch
