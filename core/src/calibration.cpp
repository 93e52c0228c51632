#include "vitbatch/calibration.hpp"

#include "vitbatch/error.hpp"
#include "vitbatch/preprocess.hpp"

#include <vector>

namespace vitbatch {

CalibrationResult calibrate_int8(Runtime& runtime, InputPaths& inputs, const CalibrationSettings& settings,
                                 const std::function<void(const std::string&, const std::string&)>& on_error) {
  const Model& model = runtime.model();
  const int64_t S = model.config.image_size, C = model.config.in_chans, per_image = C * S * S;
  RangeCollector collector(settings.method);
  runtime.executor().observe_linear_inputs(
      [&](const std::string& name, const float* x, int64_t count) { collector.observe(name, x, count); });
  CalibrationResult result;
  std::vector<float> pixels(static_cast<size_t>(settings.batch_size * per_image));
  std::vector<float> logits(static_cast<size_t>(settings.batch_size * std::max<int64_t>(1, model.config.output_width())));
  int64_t filled = 0;
  auto flush = [&] {
    if (filled == 0) return;
    runtime.executor().run(pixels.data(), filled, logits.data());
    result.images += filled;
    filled = 0;
  };
  while (auto item = inputs.next()) {
    if (settings.max_images > 0 && result.images + filled >= settings.max_images) break;
    inputs.read_member(*item, max_image_file_bytes(settings.decode));
    if (!item->error.empty()) {
      on_error(item->path, item->error);
      ++result.failed;
      continue;
    }
    try {
      load_model_input(item->path, item->bytes.get(), model.preprocess, settings.decode, pixels.data() + filled * per_image);
    } catch (const Error& e) {
      on_error(item->path, e.what());
      ++result.failed;
      continue;
    }
    if (++filled == settings.batch_size) flush();
  }
  flush();
  if (result.images == 0) throw Error("no image could be used for calibration");
  result.ranges = collector.ranges();
  return result;
}

}  // namespace vitbatch
