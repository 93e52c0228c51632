#include "vitbatch/calibration.hpp"

#include "vitbatch/error.hpp"
#include "vitbatch/preprocess.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

namespace vitbatch {

CalibrationResult calibrate_int8(Runtime& runtime, InputPaths& inputs, const CalibrationSettings& settings,
                                 const std::function<void(const std::string&, const std::string&)>& on_error) {
  const Model& model = runtime.model();
  const int64_t S = model.config.image_size, C = model.config.in_chans, per_image = C * S * S;
  if (settings.smoothquant_alpha != 0 && !(settings.smoothquant_alpha > 0 && settings.smoothquant_alpha <= 1))
    throw Error("SmoothQuant's alpha must be in (0, 1], or 0 for none");
  // A model with no LayerNorm that feeds only linears has nothing to smooth: one pass.
  const std::vector<SmoothGroup> groups = settings.smoothquant_alpha != 0 ? smooth_groups(model) : std::vector<SmoothGroup>{};
  const bool smooth = !groups.empty();
  CalibrationResult result;
  std::vector<float> pixels(static_cast<size_t>(settings.batch_size * per_image));
  std::vector<float> logits(static_cast<size_t>(settings.batch_size * std::max<int64_t>(1, model.config.output_width())));
  int64_t filled = 0;
  auto flush = [&] {
    if (filled == 0) return;
    runtime.executor().run(pixels.data(), filled, logits.data());
    filled = 0;
  };

  // Pass 1 (without SmoothQuant the only one): the ranges; with it, each group's channel
  // maxima instead, and the crops kept for pass 2.
  RangeCollector collector(settings.method);
  std::map<std::string, size_t> group_of;  // a group's linears all read the same input
  for (size_t i = 0; i < groups.size(); ++i)
    for (const std::string& linear : groups[i].linears) group_of[linear] = i;
  std::vector<std::vector<float>> absmax(groups.size());
  for (size_t i = 0; i < groups.size(); ++i) absmax[i].assign(static_cast<size_t>(groups[i].channels), 0.0f);
  std::vector<RgbImage> crops;
  // Pass 2's: linear -> the factors its input is divided by.
  std::map<std::string, const std::vector<float>*> divide_by;
  std::vector<float> smoothed;
  bool second_pass = false;
  // One observer for both passes: the executor takes it before its first run only.
  runtime.executor().observe_linear_inputs([&](const std::string& name, const float* x, int64_t count) {
    if (!smooth) return collector.observe(name, x, count);
    if (second_pass) {
      auto it = divide_by.find(name);
      if (it == divide_by.end()) return collector.observe(name, x, count);
      const std::vector<float>& c = *it->second;
      const auto channels = static_cast<int64_t>(c.size());
      smoothed.resize(static_cast<size_t>(count));
      for (int64_t i = 0; i < count; ++i) smoothed[static_cast<size_t>(i)] = x[i] / c[static_cast<size_t>(i % channels)];
      return collector.observe(name, smoothed.data(), count);
    }
    auto it = group_of.find(name);
    if (it == group_of.end() || groups[it->second].linears.front() != name) return;
    std::vector<float>& m = absmax[it->second];
    const auto channels = static_cast<int64_t>(m.size());
    for (int64_t i = 0; i < count; ++i) {
      const float v = std::fabs(x[i]);
      if (!std::isfinite(v)) throw Error("the input of '" + name + "' holds a value that is not finite; these images cannot calibrate it");
      float& slot = m[static_cast<size_t>(i % channels)];
      slot = std::max(slot, v);
    }
  });
  while (auto item = inputs.next()) {
    if (settings.max_images > 0 && result.images >= settings.max_images) break;
    inputs.read_member(*item, max_image_file_bytes(settings.decode));
    if (!item->error.empty()) {
      on_error(item->path, item->error);
      ++result.failed;
      continue;
    }
    try {
      RgbImage crop = model_crop(item->path, item->bytes.get(), model.preprocess, settings.decode);
      normalize_to_chw(crop, model.preprocess, pixels.data() + filled * per_image);
      if (smooth) crops.push_back(std::move(crop));
    } catch (const Error& e) {
      on_error(item->path, e.what());
      ++result.failed;
      continue;
    }
    ++result.images;
    if (++filled == settings.batch_size) flush();
  }
  flush();
  if (result.images == 0) throw Error("no image could be used for calibration");
  if (!smooth) {
    result.ranges = collector.ranges();
    return result;
  }

  // Pass 2: the ranges, each group's input divided by its factors.
  for (size_t i = 0; i < groups.size(); ++i) {
    std::vector<float>& c = result.smoothing[groups[i].norm];
    c = smoothing_factors(model, groups[i], absmax[i], settings.smoothquant_alpha);
    for (const std::string& linear : groups[i].linears) divide_by[linear] = &c;
  }
  second_pass = true;
  for (const RgbImage& crop : crops) {
    normalize_to_chw(crop, model.preprocess, pixels.data() + filled * per_image);
    if (++filled == settings.batch_size) flush();
  }
  flush();
  result.ranges = collector.ranges();
  return result;
}

}  // namespace vitbatch
