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
};

int run_bench(const BenchFlags& flags) {
  try {
    auto start = std::chrono::steady_clock::now();
    vitbatch::RunConfig config;
    vitbatch::Runtime runtime(resolve_runtime_options(flags.common, config));
    double load_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const vitbatch::Model& m = runtime.model();
    double gflop_per_image = 2.0 * vitbatch::build_vit_graph(m, 1).total_macs() / 1e9;
    vitbatch::ModelBenchResult model = vitbatch::bench_model(runtime, flags.batch_size, flags.seconds, flags.resident_input);
    // Before the ceiling run, whose own matrices are not the model's.
    double rss_mib = vitbatch::peak_rss_bytes() / 1048576.0;
    vitbatch::Backend& backend = *runtime.backends().front();
    vitbatch::GemmBenchResult gemm =
        vitbatch::bench_gemm(backend, flags.gemm[0], flags.gemm[1], flags.gemm[2], std::max(1.0, flags.seconds / 3));
    double ips = model.images_per_second(), gflops = ips * gflop_per_image;
    double weights_mib = m.weights.parameter_count() * 4 / 1048576.0;
    const vitbatch::ViTConfig& c = m.config;
    char line[512];
    if (flags.json) {
      std::snprintf(line, sizeof line,
                    "{\"model\":\"%s\",\"dim\":%lld,\"depth\":%lld,\"backend\":\"%s\",\"describe\":\"%s\","
                    "\"batch\":%lld,\"images_per_second\":%.4f,\"ms_per_image\":%.4f,\"gflop_per_image\":%.4f,"
                    "\"gflops\":%.3f,\"gemm_gflops\":%.3f,\"ceiling_fraction\":%.4f,\"load_seconds\":%.4f,"
                    "\"first_batch_seconds\":%.4f,\"peak_rss_mib\":%.1f,\"weights_mib\":%.1f,\"resident_input\":%s}\n",
                    m.path.c_str(), static_cast<long long>(c.dim), static_cast<long long>(c.depth), backend.name().c_str(),
                    backend.describe().c_str(), static_cast<long long>(model.batch), ips, 1000.0 / ips, gflop_per_image,
                    gflops, gemm.gflops, gflops / gemm.gflops, load_seconds, model.first_batch_seconds, rss_mib,
                    weights_mib, flags.resident_input ? "true" : "false");
      std::cout << line;
      return kExitOk;
    }
    std::printf("model        %s: dim %lld, depth %lld, heads %lld, %.2f GFLOP per image\n", m.path.c_str(),
                static_cast<long long>(c.dim), static_cast<long long>(c.depth), static_cast<long long>(c.heads),
                gflop_per_image);
    std::printf("backend      %s (%s)\n", backend.name().c_str(), backend.describe().c_str());
    std::printf("batch        %lld images, %lld timed batches in %.2f s\n", static_cast<long long>(model.batch),
                static_cast<long long>(model.batches), model.seconds);
    std::printf("throughput   %.2f images/s, %.2f ms per image\n", ips, 1000.0 / ips);
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
  cmd->add_option("--seconds", flags->seconds, "time to spend on the model (default 5)")
      ->check(CLI::Range(0.01, 86400.0));
  cmd->add_option("--gemm", flags->gemm, "M K N of the ceiling matmul (default 3152 768 3072: ViT-B's MLP at batch 16)")
      ->expected(3);
  cmd->add_flag("--json", flags->json, "one JSON object on stdout");
  cmd->callback([flags, exit_code] { *exit_code = run_bench(*flags); });
}

}  // namespace vitbatch_cli
