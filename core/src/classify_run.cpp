#include "vitbatch/classify_run.hpp"

#include "vitbatch/error.hpp"
#include "vitbatch/preprocess.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace vitbatch {

std::vector<Prediction> top_k(const float* logits, int64_t classes, int k) {
  double mx = *std::max_element(logits, logits + classes), sum = 0.0;
  for (int64_t i = 0; i < classes; ++i) sum += std::exp(double(logits[i]) - mx);
  std::vector<int> order(static_cast<size_t>(classes));
  std::iota(order.begin(), order.end(), 0);
  int kk = static_cast<int>(std::min<int64_t>(k, classes));
  std::partial_sort(order.begin(), order.begin() + kk, order.end(),
                    [&](int a, int b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); });
  std::vector<Prediction> out;
  for (int i = 0; i < kk; ++i)
    out.push_back({order[i], std::exp(double(logits[order[i]]) - mx) / sum});
  return out;
}

ClassifySummary classify_inputs(InputPaths& inputs, const Model& model, Executor& executor,
                                CsvWriter& writer, int batch_size, int k, std::ostream& diagnostics) {
  const PreprocessConfig& pre = model.preprocess;
  size_t image_floats = static_cast<size_t>(3 * pre.input_size * pre.input_size);
  int64_t classes = model.config.num_classes;
  std::vector<float> pixels(image_floats * batch_size), logits(static_cast<size_t>(classes) * batch_size);
  struct Row {
    std::string path;
    std::string error;
    int slot = -1;  // position in the batch, -1 for a failed input
  };
  std::vector<Row> rows;
  int filled = 0;
  ClassifySummary summary;

  auto flush_rows = [&] {
    if (filled > 0) executor.run(pixels.data(), filled, logits.data());
    for (const Row& r : rows) {
      if (r.slot >= 0) {
        writer.write_row(r.path, top_k(logits.data() + r.slot * classes, classes, k), "");
        ++summary.classified;
      } else {
        writer.write_row(r.path, {}, r.error);
        ++summary.failed;
      }
    }
    writer.flush();
    rows.clear();
    filled = 0;
  };

  while (auto path = inputs.next()) {
    Row row{*path, "", -1};
    try {
      RgbImage image = read_image(*path);
      normalize_to_chw(eval_crop(image, pre), pre, pixels.data() + filled * image_floats);
      row.slot = filled++;
    } catch (const Error& e) {
      row.error = e.what();
      diagnostics << "vitbatch: " << *path << ": " << e.what() << "\n";
    } catch (const std::bad_alloc&) {
      row.error = "out of memory decoding the image";
      diagnostics << "vitbatch: " << *path << ": " << row.error << "\n";
    }
    rows.push_back(std::move(row));
    // A failure with no image waiting before it can be written at once: order is kept and
    // a run of bad files shows up without waiting for the next full batch.
    if (filled == batch_size || (filled == 0 && rows.back().slot < 0)) flush_rows();
  }
  flush_rows();
  return summary;
}

}  // namespace vitbatch
