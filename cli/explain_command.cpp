// vitbatch explain --model M PATH... -o DIR: for each image, where the model looked: attention
// rollout and the last layer's class-token attention (see vitbatch/attention_maps.hpp),
// overlaid on the crop the model saw, written as DIR/NAME.png (crop | rollout | last layer),
// optionally the raw maps as DIR/NAME.npy ([2, grid, grid]), and DIR/index.csv naming them
// with the top-1 prediction. The attention probabilities are observed only here: classify's
// plans never expose them.
#include "commands.hpp"
#include "common_flags.hpp"
#include "exit_codes.hpp"
#include "streaming_run.hpp"
#include "usage_errors.hpp"

#include "vitbatch/attention_maps.hpp"
#include "vitbatch/error.hpp"
#include "vitbatch/labels.hpp"
#include "vitbatch/limits.hpp"
#include "vitbatch/npy_writer.hpp"
#include "vitbatch/output_sink.hpp"
#include "vitbatch/preprocess.hpp"
#include "vitbatch/prediction_format.hpp"

#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <memory>
#include <set>

namespace vitbatch_cli {
namespace {

struct ExplainFlags {
  CommonFlags common;
  StreamFlags stream;  // the inputs and their decoding (add_input_flags)
  std::string output;
  std::string fusion = "mean";
  double discard = 0.0;
  double alpha = 0.5;
  bool save_npy = false;
  int batch_size = 8;
};

// A name below DIR for an input: its path below its directory argument, else its file name;
// "-2", "-3", ... when taken.
std::string output_name(const vitbatch::InputItem& item, std::set<std::string>& taken) {
  std::string base = !item.key.empty() && item.key[0] != '/' ? item.key : item.path.substr(item.path.find_last_of('/') + 1);
  for (char& c : base)
    if (c == '!') c = '/';  // archive.tar!member.jpg -> archive.tar/member.jpg
  std::string name = base;
  for (int n = 2; !taken.insert(name).second; ++n) name = base + "-" + std::to_string(n);
  return name;
}

// Nearest-neighbour enlargement by a whole factor, so that small models' crops show.
vitbatch::RgbImage enlarge(const vitbatch::RgbImage& image, int64_t factor) {
  if (factor <= 1) return image;
  vitbatch::RgbImage out;
  out.width = image.width * factor;
  out.height = image.height * factor;
  out.pixels.resize(static_cast<size_t>(out.width * out.height * 3));
  for (int64_t y = 0; y < out.height; ++y)
    for (int64_t x = 0; x < out.width; ++x)
      std::memcpy(&out.pixels[static_cast<size_t>((y * out.width + x) * 3)],
                  &image.pixels[static_cast<size_t>(((y / factor) * image.width + x / factor) * 3)], 3);
  return out;
}

int run_explain(const ExplainFlags& flags) {
  vitbatch::RunConfig config;
  std::unique_ptr<vitbatch::Runtime> runtime;
  std::optional<vitbatch::OutputSink> index;
  std::vector<std::string> labels;
  vitbatch::HeadFusion fusion = vitbatch::parse_head_fusion(flags.fusion);
  vitbatch::AttentionShape shape;
  try {
    require_inputs(flags.stream);
    runtime = std::make_unique<vitbatch::Runtime>(resolve_runtime_options(flags.common, config));
    const vitbatch::ViTConfig& c = runtime->model().config;
    shape = {c.heads, c.tokens(), c.prefix_tokens(), c.class_token, c.grid()};
    if (c.has_head()) labels = !runtime->model().labels.empty() ? runtime->model().labels
                               : c.num_classes == 1000 ? vitbatch::imagenet1k_labels() : std::vector<std::string>{};
    std::error_code ec;
    std::filesystem::create_directories(flags.output, ec);
    if (ec) throw vitbatch::Error(flags.output + ": cannot create the output directory: " + ec.message());
    index.emplace(vitbatch::OutputSink::to_file(flags.output + "/index.csv", false));
  } catch (const vitbatch::Error& e) {
    std::cerr << "vitbatch: error: " << e.what() << "\n";
    return kExitUsage;
  }
  for (const std::string& notice : runtime->notices()) std::cerr << "vitbatch: " << notice << "\n";
  std::cerr << "vitbatch: running on " << runtime->running() << ", attention observed (every composite lowered)\n";

  const vitbatch::Model& model = runtime->model();
  const int64_t S = model.preprocess.input_size, image_floats = 3 * S * S;
  const int64_t per_image = shape.heads * shape.tokens * shape.tokens;
  const int64_t factor = (224 + S - 1) / S;  // panels at least 224 pixels a side
  std::vector<std::vector<float>> probs(static_cast<size_t>(model.config.depth));
  int64_t batch_n = 0;
  runtime->executor().observe_attention([&](int block, const float* p) {
    auto& dst = probs[static_cast<size_t>(block)];
    dst.assign(p, p + batch_n * per_image);
  });
  index->write("path,png,top1_index,top1_label,top1_prob,error\n");
  install_stop_signals();

  // Inputs since the last model call, in input order: failures wait with the images so that
  // index.csv keeps the input order.
  struct Pending {
    std::string path, name, error;
    vitbatch::RgbImage crop;
  };
  std::vector<Pending> batch;
  int images = 0;  // in `batch` without an error
  std::vector<float> pixels, logits;
  std::set<std::string> taken;
  int64_t written = 0, failed = 0;
  auto fail = [&](const std::string& path, const std::string& why) {
    std::cerr << "vitbatch: " << path << ": " << why << "\n";
    index->write(vitbatch::csv_field(path) + ",,,,," + vitbatch::csv_field(why) + "\n");
    ++failed;
  };
  auto run_batch = [&] {
    batch_n = images;
    if (batch_n > 0) {
      logits.resize(static_cast<size_t>(batch_n * runtime->executor().output_width()));
      runtime->executor().run(pixels.data(), batch_n, logits.data());
    }
    int64_t i = -1;
    for (Pending& item : batch) {
      if (!item.error.empty()) {
        fail(item.path, item.error);
        continue;
      }
      ++i;
      std::vector<const float*> blocks;
      for (const auto& b : probs) blocks.push_back(b.data() + i * per_image);
      std::vector<float> rollout = vitbatch::attention_rollout(blocks, shape, fusion, flags.discard);
      std::vector<float> last = vitbatch::last_layer_attention(blocks.back(), shape, fusion);
      vitbatch::RgbImage crop = enlarge(item.crop, factor);
      vitbatch::RgbImage a = vitbatch::overlay(crop, rollout, shape.grid, flags.alpha);
      vitbatch::RgbImage b = vitbatch::overlay(crop, last, shape.grid, flags.alpha);
      const std::string png = item.name + ".png";
      try {
        std::filesystem::create_directories(std::filesystem::path(flags.output + "/" + png).parent_path());
        vitbatch::write_png(flags.output + "/" + png, vitbatch::side_by_side({&crop, &a, &b}));
        if (flags.save_npy) {
          vitbatch::NpyWriter npy(flags.output + "/" + item.name + ".npy", {shape.grid, shape.grid},
                                  vitbatch::NpyDtype::Float32);
          npy.append(rollout.data(), 1);
          npy.append(last.data(), 1);
          if (!npy.flush()) throw vitbatch::Error(npy.path() + ": " + npy.error());
        }
      } catch (const vitbatch::Error& e) {
        fail(item.path, e.what());
        continue;
      }
      std::string prediction = ",,";
      if (!labels.empty()) {
        const int64_t classes = runtime->executor().output_width();
        vitbatch::Prediction top = vitbatch::top_k(logits.data() + i * classes, classes, 1)[0];
        char prob[32];
        std::snprintf(prob, sizeof prob, "%.6f", top.probability);
        prediction = std::to_string(top.index) + "," + vitbatch::csv_field(labels[static_cast<size_t>(top.index)]) + "," + prob;
      }
      index->write(vitbatch::csv_field(item.path) + "," + vitbatch::csv_field(png) + "," + prediction + ",\n");
      ++written;
    }
    batch.clear();
    images = 0;
    index->flush();
  };

  vitbatch::DecodeOptions decode;
  decode.max_pixels = flags.stream.max_pixels;
  decode.exif_transpose = flags.stream.exif_transpose;
  decode.cancel = &g_stop_signal;
  vitbatch::InputPaths inputs(flags.stream.inputs, STDIN_FILENO, flags.stream.null_separated);
  for (const auto& list : flags.stream.files_from) inputs.add_files_from(list);
  try {
    while (!g_stop_signal.load()) {
      std::optional<vitbatch::InputItem> item = inputs.next();
      if (!item) break;
      inputs.read_member(*item, vitbatch::max_image_file_bytes(decode));
      if (!item->error.empty()) {
        batch.push_back({item->path, "", item->error, {}});
        continue;
      }
      try {
        vitbatch::RgbImage crop = vitbatch::model_crop(item->path, item->bytes.get(), model.preprocess, decode);
        pixels.resize(static_cast<size_t>((images + 1) * image_floats));
        vitbatch::normalize_to_chw(crop, model.preprocess, pixels.data() + images * image_floats);
        batch.push_back({item->path, output_name(*item, taken), "", std::move(crop)});
        ++images;
      } catch (const vitbatch::Error& e) {
        batch.push_back({item->path, "", e.what(), {}});
        continue;
      }
      if (images == flags.batch_size) run_batch();
    }
    run_batch();
  } catch (const vitbatch::Error& e) {
    index->flush();
    std::cerr << "vitbatch: error: " << e.what() << "\n";
    return kExitRuntime;
  }
  if (!index->flush()) {
    std::cerr << "vitbatch: error: " << index->name() << ": " << index->error() << "\n";
    return kExitOutputFailed;
  }
  std::string ignored = ignored_line(inputs.ignored());
  if (!ignored.empty()) std::cerr << ignored << "\n";
  std::cerr << "vitbatch: " << written << " explained, " << failed << " failed; pictures and index.csv in " << flags.output
            << "\n";
  if (g_stop_signal.load()) return 128 + g_stop_signal.load();
  if (written == 0 && failed == 0) {
    std::cerr << "vitbatch: nothing was explained: no image found in the inputs given\n";
    return kExitSomeFailed;
  }
  return failed > 0 ? kExitSomeFailed : kExitOk;
}

}  // namespace

void set_explain_command(CLI::App& app, int* exit_code) {
  auto flags = std::make_shared<ExplainFlags>();
  CLI::App* cmd = app.add_subcommand(
      "explain", "attention rollout and last-layer attention of each image, overlaid on its crop: DIR/*.png");
  add_common_flags(*cmd, flags->common);
  add_input_flags(*cmd, flags->stream);
  cmd->add_option("-o,--output", flags->output,
                  "directory to write: NAME.png (crop | rollout | last layer) per image and index.csv")
      ->required();
  cmd->add_option("--head-fusion", flags->fusion, "how the heads' attention is combined: mean (default), max or min")
      ->check(CLI::IsMember({"mean", "max", "min"}));
  cmd->add_option("--discard", flags->discard,
                  "rollout: fraction of each block's weakest attention set to zero, class token kept (default 0)")
      ->check(CLI::Range(0.0, 0.99));
  cmd->add_option("--alpha", flags->alpha, "opacity of the map over the crop (default 0.5)")->check(CLI::Range(0.0, 1.0));
  cmd->add_flag("--save-npy", flags->save_npy, "also write NAME.npy: [2, grid, grid] float32, rollout then last layer");
  cmd->add_option("--batch-size", flags->batch_size,
                  "images per model call (default 8; every block's attention of a batch is held)")
      ->check(int_range(1, 256));
  cmd->footer(std::string("Examples:\n"
                          "  vitbatch explain --model M photos/ -o maps/\n"
                          "  vitbatch explain --model M dog.jpg -o maps/ --head-fusion max --discard 0.9 --save-npy\n\n") +
              kExitStatusHelp);
  cmd->callback([flags, exit_code] { *exit_code = run_explain(*flags); });
}

}  // namespace vitbatch_cli
