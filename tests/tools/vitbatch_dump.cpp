// vitbatch_dump: exposes core's intermediate results to the Python parity tests, so that
// each stage is compared with Pillow / PyTorch on its own.
//   vitbatch_dump decode IMAGE OUT.rgb [exif]      raw RGB bytes; prints "WIDTH HEIGHT"
//   vitbatch_dump crop MODEL IMAGE OUT.rgb         the resized, centre-cropped uint8 image
//   vitbatch_dump pixels MODEL IMAGE OUT.f32       the normalised float32 [3,S,S] the model reads
//   vitbatch_dump logits MODEL IN.f32 N OUT.f32 [BACKEND [PRECISION [IMAGE_SIZE]]]
//                                                  (BACKEND may carry options:
//                                                  onednn,bf16_gemm=own,...)
//                                                  (PRECISION int8: per-batch ranges;
//                                                  int8:FILE: the calibrated ranges in FILE)
//                                                  logits (a headless model: its pooled
//                                                  features) of N normalised [3,S,S] inputs
#include "vitbatch/error.hpp"
#include "vitbatch/image.hpp"
#include "vitbatch/model.hpp"
#include "vitbatch/plugin_host.hpp"
#include "vitbatch/preprocess.hpp"
#include "vitbatch/runtime.hpp"

#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

namespace {

void write_file(const std::string& path, const void* data, size_t bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(static_cast<const char*>(data), static_cast<std::streamsize>(bytes));
  if (!out) throw vitbatch::Error(path + ": cannot write");
}

std::vector<float> read_floats(const std::string& path, size_t count) {
  std::ifstream in(path, std::ios::binary);
  std::vector<float> v(count);
  in.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(count * sizeof(float)));
  if (!in) throw vitbatch::Error(path + ": expected " + std::to_string(count) + " floats");
  return v;
}

int run(const std::vector<std::string>& a) {
  if ((a.size() == 3 || (a.size() == 4 && a[3] == "exif")) && a[0] == "decode") {
    vitbatch::DecodeOptions options;
    options.exif_transpose = a.size() == 4;
    vitbatch::RgbImage img = vitbatch::read_image(a[1], options);
    write_file(a[2], img.pixels.data(), img.pixels.size());
    std::cout << img.width << " " << img.height << "\n";
    return 0;
  }
  if (a.size() == 4 && a[0] == "crop") {
    vitbatch::Model model = vitbatch::load_model(a[1]);
    vitbatch::RgbImage crop = vitbatch::eval_crop(vitbatch::read_image(a[2]), model.preprocess);
    write_file(a[3], crop.pixels.data(), crop.pixels.size());
    return 0;
  }
  if (a.size() == 4 && a[0] == "pixels") {
    vitbatch::Model model = vitbatch::load_model(a[1]);
    vitbatch::RgbImage crop = vitbatch::eval_crop(vitbatch::read_image(a[2]), model.preprocess);
    std::vector<float> pixels(crop.pixels.size());
    vitbatch::normalize_to_chw(crop, model.preprocess, pixels.data());
    write_file(a[3], pixels.data(), pixels.size() * sizeof(float));
    return 0;
  }
  if (a.size() >= 5 && a.size() <= 8 && a[0] == "logits") {
    vitbatch::RuntimeOptions options;
    options.model = a[1];
    if (a.size() == 8) options.model_options.image_size = std::stoll(a[7]);
    options.backend_options.threads = 2;
    if (a.size() >= 6) {
      const std::string spec = a[5];
      options.backend = spec.substr(0, spec.find(','));
      std::vector<std::string> pairs;
      for (size_t at = spec.find(','); at != std::string::npos;) {
        const size_t next = spec.find(',', at + 1);
        pairs.push_back(spec.substr(at + 1, next == std::string::npos ? std::string::npos : next - at - 1));
        at = next;
      }
      options.backend_options.options_json = vitbatch::with_option_pairs("{}", pairs);
    }
    if (a.size() >= 7) options.backend_options.precision = a[6];
    // "int8": per-batch ranges (--int8-dynamic); "int8:FILE": the calibrated ones in FILE.
    if (options.backend_options.precision.rfind("int8:", 0) == 0) {
      options.int8_scales = options.backend_options.precision.substr(5);
      options.backend_options.precision = "int8";
    } else if (options.backend_options.precision == "int8") {
      options.int8_dynamic = true;
    }
    vitbatch::Runtime runtime(options);
    const vitbatch::ViTConfig& c = runtime.model().config;
    int64_t n = std::stoll(a[3]);
    std::vector<float> pixels = read_floats(a[2], static_cast<size_t>(n * 3 * c.image_size * c.image_size));
    std::vector<float> logits(static_cast<size_t>(n * c.output_width()));
    runtime.executor().run(pixels.data(), n, logits.data());
    write_file(a[4], logits.data(), logits.size() * sizeof(float));
    return 0;
  }
  std::cerr << "usage: vitbatch_dump decode IMAGE OUT [exif] | crop MODEL IMAGE OUT | pixels MODEL IMAGE OUT | logits MODEL IN N OUT [BACKEND [PRECISION [IMAGE_SIZE]]]\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(std::vector<std::string>(argv + 1, argv + argc));
  } catch (const vitbatch::Error& e) {
    std::cerr << "vitbatch_dump: " << e.what() << "\n";
    return 1;
  }
}
