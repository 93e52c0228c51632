#include "vitbatch/benchmark.hpp"

#include "vit_plugin_helpers.hpp"
#include "vitbatch/error.hpp"
#include "vitbatch/input_paths.hpp"
#include "vitbatch/preprocess.hpp"

#include <algorithm>
#include <chrono>
#include <fstream>
#include <random>
#include <sstream>

#include <sys/resource.h>

namespace vitbatch {
namespace {

using Clock = std::chrono::steady_clock;

double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// User + system CPU seconds this process (all its threads) has used so far.
double process_cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  auto seconds = [](const timeval& t) { return static_cast<double>(t.tv_sec) + 1e-6 * static_cast<double>(t.tv_usec); };
  return seconds(u.ru_utime) + seconds(u.ru_stime);
}

std::vector<float> random_floats(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

vit_tensor describe(const std::vector<int64_t>& shape, float* data) { return vit_plugin::dense_tensor(shape, data); }

}  // namespace

ModelBenchResult bench_model(Runtime& runtime, int64_t batch, double min_seconds, bool resident_input,
                             bool one_at_a_time) {
  const Model& m = runtime.model();
  Executor& executor = runtime.executor();
  size_t image = static_cast<size_t>(m.config.in_chans * m.config.image_size * m.config.image_size);
  // In the memory classify's batches use (pinned on a device backend).
  PixelBuffer pixels = executor.pixel_buffer(image * batch);
  const std::vector<float> values = random_floats(image * batch, 1);
  std::copy(values.begin(), values.end(), pixels.data());
  std::vector<float> logits(static_cast<size_t>(m.config.output_width() * batch));
  std::vector<float> other(logits.size());  // batches in flight each have their own logits
  ModelBenchResult r;
  r.batch = batch;
  auto t = Clock::now();
  executor.run(pixels.data(), batch, logits.data());
  r.first_batch_seconds = since(t);
  t = Clock::now();
  const double cpu = process_cpu_seconds();
  while (r.batches < 3 || since(t) < min_seconds) {
    const float* input = resident_input ? nullptr : pixels.data();
    if (one_at_a_time) executor.run(input, batch, logits.data());
    else executor.start(input, batch, (r.batches % 2 ? other : logits).data());
    ++r.batches;
  }
  while (executor.in_flight() > 0) executor.finish();
  r.seconds = since(t);
  r.cpu_seconds = process_cpu_seconds() - cpu;
  return r;
}

PhotoSet load_photos(const Model& model, const std::vector<std::string>& inputs) {
  PhotoSet set;
  const size_t image = static_cast<size_t>(model.config.in_chans * model.config.image_size * model.config.image_size);
  std::istringstream no_stdin;
  InputPaths walk(inputs, no_stdin);
  while (auto item = walk.next()) {
    walk.read_member(*item, max_image_file_bytes(DecodeOptions{}));
    if (!item->error.empty()) {
      set.failures.push_back(item->path + ": " + item->error);
      continue;
    }
    try {
      set.pixels.resize(set.pixels.size() + image);
      load_model_input(item->path, item->bytes.get(), model.preprocess, DecodeOptions{}, set.pixels.data() + set.pixels.size() - image);
      set.paths.push_back(item->path);
    } catch (const Error& e) {
      set.pixels.resize(set.pixels.size() - image);
      set.failures.push_back(item->path + ": " + e.what());
    }
  }
  return set;
}

std::vector<int64_t> top1_classes(Runtime& runtime, const PhotoSet& photos, int64_t batch) {
  const Model& m = runtime.model();
  const int64_t n = static_cast<int64_t>(photos.paths.size()), width = m.config.output_width();
  const size_t image = photos.pixels.size() / std::max<int64_t>(1, n);
  std::vector<float> logits(static_cast<size_t>(batch * width));
  std::vector<int64_t> top1;
  for (int64_t start = 0; start < n; start += batch) {
    int64_t count = std::min(batch, n - start);
    runtime.executor().run(photos.pixels.data() + start * image, count, logits.data());
    for (int64_t i = 0; i < count; ++i)
      top1.push_back(std::max_element(logits.begin() + i * width, logits.begin() + (i + 1) * width) -
                     (logits.begin() + i * width));
  }
  return top1;
}

GemmBenchResult bench_gemm(Backend& backend, int64_t m, int64_t k, int64_t n, double min_seconds) {
  std::vector<float> x = random_floats(static_cast<size_t>(m * k), 2), w = random_floats(static_cast<size_t>(n * k), 3),
                     b = random_floats(static_cast<size_t>(n), 4), y(static_cast<size_t>(m * n));
  std::vector<vit_tensor> in = {describe({m, k}, x.data()), describe({n, k}, w.data()), describe({n}, b.data())};
  std::vector<vit_tensor> out = {describe({m, n}, y.data())};
  // The weight and bias are constants.
  vit_node node = vit_plugin::make_node(VIT_OP_LINEAR, in, out, {}, {}, "gemm ceiling", {false, true, true});
  // A device backend computes in its own memory: the activations go there first.
  void* device_x = nullptr;
  void* device_y = nullptr;
  if (backend.device_memory()) {
    device_x = backend.alloc(x.size() * sizeof(float), VIT_ALLOC_DEVICE);
    device_y = backend.alloc(y.size() * sizeof(float), VIT_ALLOC_DEVICE);
    backend.copy(device_x, x.data(), x.size() * sizeof(float), VIT_COPY_HOST_TO_DEVICE);
    in[0].data = device_x;
    out[0].data = device_y;
  }
  std::string why;
  if (!backend.supports(node, &why)) throw Error("backend '" + backend.name() + "' declines a linear node: " + why);
  void* state = backend.prepare(node);
  backend.execute(state, node);  // warm up
  backend.synchronize();
  GemmBenchResult r{m, k, n, 0};
  int64_t runs = 0;
  auto t = Clock::now();
  while (runs < 3 || since(t) < min_seconds) {
    backend.execute(state, node);
    if (++runs % 8 == 0) backend.synchronize();  // a device queue must not run far ahead of the clock
  }
  backend.synchronize();
  r.gflops = 2.0 * m * k * n * runs / since(t) / 1e9;
  backend.release(state);
  if (device_x) backend.free(device_x, VIT_ALLOC_DEVICE);
  if (device_y) backend.free(device_y, VIT_ALLOC_DEVICE);
  return r;
}

int64_t peak_rss_bytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmHWM:", 0) == 0) {
      std::istringstream in(line.substr(6));
      int64_t kb = 0;
      in >> kb;
      return kb * 1024;
    }
  return 0;
}

}  // namespace vitbatch
