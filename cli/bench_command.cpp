// vitbatch bench --model M [--backend B --precision P --batch-size N]: throughput of the model
// on the backend, and the GEMM ceiling of that backend measured in the same run.
#include "commands.hpp"
#include "common_flags.hpp"
#include "exit_codes.hpp"
#include "usage_errors.hpp"

#include "vitbatch/limits.hpp"

#include "vitbatch/benchmark.hpp"
#include "vitbatch/error.hpp"
#include "vitbatch/vit_graph.hpp"

#include "vitbatch/int8_ranges.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>

namespace vitbatch_cli {
namespace {

struct BenchFlags {
  CommonFlags common;
  int batch_size = 16;
  double seconds = 5.0;
  std::vector<int64_t> gemm{3152, 768, 3072};
  bool json = false;
  bool resident_input = false;
  bool one_at_a_time = false;
  bool compare = false;
  std::vector<std::string> photos;  // --compare: top-1 agreement with fp32 on these
};

// --compare: every precision the backend has, images/s and top-1 agreement with fp32 side by
// side, and which is fastest here (on one CPU bf16 outruns fp32, on another it trails it).
int run_compare(const BenchFlags& flags) {
  try {
    if (flags.common.precision) throw vitbatch::Error("--compare runs every precision; leave out --precision");
    vitbatch::RunConfig config;
    const vitbatch::RuntimeOptions base = resolve_runtime_options(flags.common, config);
    struct Row {
      std::string precision, note;
      double ips = 0;
      int64_t same = -1;
    };
    std::vector<Row> rows;
    std::vector<int64_t> reference;
    vitbatch::PhotoSet photos;
    std::string backend_name, model_path;
    for (std::string precision : {"fp32", "bf16", "fp16", "int8"}) {
      vitbatch::RuntimeOptions options = base;
      options.backend_options.precision = precision;
      Row row{precision, "", 0, -1};
      if (precision == "int8" && !options.int8_dynamic && vitbatch::find_int8_ranges(model_path, options.int8_scales).empty()) {
        options.int8_dynamic = true;  // no ranges: measure what there is, and say so
        row.note = "dynamic ranges, per model call (no int8_scales.safetensors; see vitbatch calibrate)";
      }
      std::unique_ptr<vitbatch::Runtime> runtime;
      try {
        runtime = std::make_unique<vitbatch::Runtime>(options);
      } catch (const vitbatch::Error& e) {
        if (precision == "fp32") throw;
        continue;  // the backend has no such precision
      }
      if (precision == "fp32") {
        backend_name = runtime->backends().front()->name() + " (" + runtime->backends().front()->describe() + ")";
        model_path = runtime->model().path;
        if (!flags.photos.empty()) photos = vitbatch::load_photos(runtime->model(), flags.photos);
        for (const std::string& f : photos.failures) std::cerr << "vitbatch: " << f << " (left out)\n";
      }
      if (precision == "int8" && row.note.empty()) row.note = runtime->running();
      row.ips = vitbatch::bench_model(*runtime, flags.batch_size, flags.seconds).images_per_second();
      if (!photos.paths.empty()) {
        std::vector<int64_t> top1 = vitbatch::top1_classes(*runtime, photos, flags.batch_size);
        if (precision == "fp32") reference = top1;
        row.same = 0;
        for (size_t i = 0; i < top1.size(); ++i) row.same += top1[i] == reference[i];
      }
      rows.push_back(row);
    }
    const Row* fastest = &rows.front();
    for (const Row& r : rows)
      if (r.ips > fastest->ips) fastest = &r;
    const double fp32 = rows.front().ips;
    const auto n = static_cast<long long>(photos.paths.size());
    if (flags.json) {
      nlohmann::json j = {{"model", model_path}, {"backend", backend_name}, {"batch", flags.batch_size},
                          {"photos", n}, {"fastest", fastest->precision}, {"precisions", nlohmann::json::array()}};
      for (const Row& r : rows) {
        nlohmann::json e = {{"precision", r.precision}, {"images_per_second", r.ips}, {"vs_fp32", r.ips / fp32}};
        if (r.same >= 0) e["top1_as_fp32"] = r.same;
        if (!r.note.empty()) e["note"] = r.note;
        j["precisions"].push_back(e);
      }
      std::cout << j.dump() << "\n";
      return kExitOk;
    }
    std::printf("model      %s\nbackend    %s, batch %d\n\n", model_path.c_str(), backend_name.c_str(), flags.batch_size);
    std::printf("precision   images/s   vs fp32   top-1 as fp32\n");
    for (const Row& r : rows) {
      std::string agree = r.same < 0 ? "- (give photos to measure)" : std::to_string(r.same) + "/" + std::to_string(n);
      std::printf("%-9s %10.2f %8.2fx   %s%s\n", r.precision.c_str(), r.ips, r.ips / fp32, agree.c_str(),
                  r.note.empty() ? "" : ("   " + r.note).c_str());
    }
    std::printf("\nfastest here: %s, %.2fx fp32", fastest->precision.c_str(), fastest->ips / fp32);
    if (fastest->same >= 0) std::printf(" (top-1 as fp32 on %lld of %lld photos)", static_cast<long long>(fastest->same), n);
    std::printf("\n");
    return kExitOk;
  } catch (const vitbatch::Error& e) {
    std::cerr << "vitbatch: error: " << e.what() << "\n";
    return kExitUsage;
  }
}

int run_bench(const BenchFlags& flags) {
  try {
    auto start = std::chrono::steady_clock::now();
    vitbatch::RunConfig config;
    vitbatch::Runtime runtime(resolve_runtime_options(flags.common, config));
    double load_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const vitbatch::Model& m = runtime.model();
    double gflop_per_image = 2.0 * vitbatch::build_vit_graph(m, 1).total_macs() / 1e9;
    vitbatch::ModelBenchResult model = vitbatch::bench_model(runtime, flags.batch_size, flags.seconds, flags.resident_input,
                                                                   flags.one_at_a_time);
    // Before the ceiling run, whose own matrices are not the model's.
    double rss_mib = vitbatch::peak_rss_bytes() / 1048576.0;
    vitbatch::Backend& backend = *runtime.backends().front();
    vitbatch::GemmBenchResult gemm =
        vitbatch::bench_gemm(backend, flags.gemm[0], flags.gemm[1], flags.gemm[2], std::max(1.0, flags.seconds / 3));
    double ips = model.images_per_second(), gflops = ips * gflop_per_image;
    double weights_mib = m.weights.parameter_count() * 4 / 1048576.0;
    const vitbatch::ViTConfig& c = m.config;
    // Lanes run batches of 2+ images only (Executor::set_lanes).
    const int lanes = model.batch >= 2 ? std::max(1, runtime.executor().lanes()) : 1;
    char line[4096];
    if (flags.json) {
      std::snprintf(line, sizeof line,
                    "{\"model\":\"%s\",\"dim\":%lld,\"depth\":%lld,\"backend\":\"%s\",\"describe\":\"%s\","
                    "\"batch\":%lld,\"images_per_second\":%.4f,\"ms_per_image\":%.4f,\"gflop_per_image\":%.4f,"
                    "\"gflops\":%.3f,\"gemm_gflops\":%.3f,\"ceiling_fraction\":%.4f,\"load_seconds\":%.4f,"
                    "\"first_batch_seconds\":%.4f,\"peak_rss_mib\":%.1f,\"weights_mib\":%.1f,\"resident_input\":%s,"
                    "\"one_at_a_time\":%s,\"lanes\":%d,\"cpu_ms_per_image\":%.4f}\n",
                    m.path.c_str(), static_cast<long long>(c.dim), static_cast<long long>(c.depth), backend.name().c_str(),
                    backend.describe().c_str(), static_cast<long long>(model.batch), ips, 1000.0 / ips, gflop_per_image,
                    gflops, gemm.gflops, gflops / gemm.gflops, load_seconds, model.first_batch_seconds, rss_mib,
                    weights_mib, flags.resident_input ? "true" : "false", flags.one_at_a_time ? "true" : "false", lanes, model.cpu_ms_per_image());
      std::cout << line;
      return kExitOk;
    }
    std::printf("model        %s: dim %lld, depth %lld, heads %lld, %.2f GFLOP per image\n", m.path.c_str(),
                static_cast<long long>(c.dim), static_cast<long long>(c.depth), static_cast<long long>(c.heads),
                gflop_per_image);
    std::printf("backend      %s (%s)\n", backend.name().c_str(), backend.describe().c_str());
    std::printf("batch        %lld images, %lld timed batches in %.2f s\n", static_cast<long long>(model.batch),
                static_cast<long long>(model.batches), model.seconds);
    if (lanes > 1) std::printf("lanes        %d: each image of a batch alone, in the next free lane\n", lanes);
    std::printf("throughput   %.2f images/s, %.2f ms per image\n", ips, 1000.0 / ips);
    // Steal time (CPU the hypervisor gave another guest) slows images/s but is not in this.
    std::printf("cpu time     %.2f core-ms per image (user + system, the timed batches)\n", model.cpu_ms_per_image());
    std::printf("compute      %.1f GFLOP/s = %.0f%% of the GEMM ceiling, %.1f GFLOP/s (linear %lldx%lldx%lld, same "
                "backend and precision)\n",
                gflops, 100.0 * gflops / gemm.gflops, gemm.gflops, static_cast<long long>(gemm.m),
                static_cast<long long>(gemm.k), static_cast<long long>(gemm.n));
    std::printf("startup      %.3f s to load, %.3f s for the first batch (planning, packing)\n", load_seconds,
                model.first_batch_seconds);
    std::printf("peak RSS     %.1f MiB (float32 weights %.1f MiB)\n", rss_mib, weights_mib);
    return kExitOk;
  } catch (const vitbatch::Error& e) {
    std::cerr << "vitbatch: error: " << e.what() << "\n";
    return kExitUsage;
  }
}

}  // namespace

void set_bench_command(CLI::App& app, int* exit_code) {
  auto flags = std::make_shared<BenchFlags>();
  CLI::App* cmd = app.add_subcommand("bench", "measure images/s, GFLOP/s and the backend's GEMM ceiling");
  add_common_flags(*cmd, flags->common);
  cmd->add_option("--batch-size", flags->batch_size, "images per model call (default 16)")
      ->check(int_range(1, vitbatch::kMaxBatchSize));
  cmd->add_flag("--resident-input", flags->resident_input,
               "time the model alone: every batch reuses the first one's input where it already is (on a GPU "
               "backend: no upload), as timm's benchmark does");
  cmd->add_flag("--one-at-a-time", flags->one_at_a_time,
               "each batch finished before the next starts (default: on a GPU backend two batches are in flight, "
               "the next one's upload overlapping this one's model)");
  cmd->add_option("--seconds", flags->seconds, "time to spend on the model (default 5)")
      ->check(CLI::Range(0.01, 86400.0));
  cmd->add_option("--gemm", flags->gemm, "M K N of the ceiling matmul (default 3152 768 3072: ViT-B's MLP at batch 16)")
      ->expected(3);
  cmd->add_flag("--json", flags->json, "one JSON object on stdout");
  cmd->add_flag("--compare", flags->compare,
                "every precision the backend has, side by side: images/s, and top-1 agreement with fp32 on the "
                "photos given; says which is fastest here");
  cmd->add_option("photos", flags->photos, "--compare: images or directories to measure top-1 agreement on");
  cmd->callback([flags, exit_code] {
    if (!flags->compare && !flags->photos.empty()) {
      std::cerr << "vitbatch: error: photos are for --compare; plain bench times random inputs\n";
      *exit_code = kExitUsage;
      return;
    }
    *exit_code = flags->compare ? run_compare(*flags) : run_bench(*flags);
  });
}

}  // namespace vitbatch_cli
