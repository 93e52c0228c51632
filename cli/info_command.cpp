// vitbatch info --model M: architecture, parameters, GFLOPs per image, placement, the IR.
#include "commands.hpp"
#include "common_flags.hpp"
#include "exit_codes.hpp"

#include "vitbatch/error.hpp"
#include "vitbatch/vit_graph.hpp"

#include <cstdio>
#include <iostream>
#include <memory>

namespace vitbatch_cli {
namespace {

int run_info(const CommonFlags& flags) {
  try {
    vitbatch::RunConfig config;
    vitbatch::Runtime runtime(resolve_runtime_options(flags, config));
    const vitbatch::Model& m = runtime.model();
    const vitbatch::ViTConfig& c = m.config;
    const vitbatch::PreprocessConfig& p = m.preprocess;
    vitbatch::Graph graph = vitbatch::build_vit_graph(m, 1);
    double gmacs = graph.total_macs() / 1e9;
    char line[256];
    std::cout << "model:        " << m.path << " (" << c.naming << " names)\n";
    std::cout << "architecture: " << (c.distilled ? "DeiT (distilled) " : "ViT ") << "patch " << c.patch_size
              << ", image " << c.image_size << ", dim " << c.dim << ", depth " << c.depth << ", heads " << c.heads
              << ", mlp " << c.mlp_dim << ", tokens " << c.tokens() << ", classes " << c.num_classes << "\n";
    std::snprintf(line, sizeof line, "layer norm:   eps %g\n", c.layer_norm_eps);
    std::cout << line;
    std::cout << "parameters:   " << m.weights.parameter_count() << "\n";
    std::snprintf(line, sizeof line, "compute:      %.3f GMACs = %.3f GFLOPs per image\n", gmacs, 2 * gmacs);
    std::cout << line;
    std::snprintf(line, sizeof line,
                  "preprocess:   resize shortest side to %d (%s, crop_pct %g), centre crop %d, "
                  "mean [%g, %g, %g], std [%g, %g, %g]\n",
                  static_cast<int>(p.input_size / p.crop_pct), p.interpolation.c_str(), p.crop_pct,
                  static_cast<int>(p.input_size), p.mean[0], p.mean[1], p.mean[2], p.std[0], p.std[1], p.std[2]);
    std::cout << line;
    std::cout << "backends:    ";
    for (const auto& b : runtime.backends()) std::cout << " " << b->name() << " (" << b->describe() << ")";
    std::cout << "\n\ngraph (batch 1, as built):\n" << graph.to_string();
    std::cout << "\nplacement (batch 1, after lowering):\n" << runtime.executor().placement(1);
    return kExitOk;
  } catch (const vitbatch::Error& e) {
    std::cerr << "vitbatch: error: " << e.what() << "\n";
    return kExitUsage;
  }
}

}  // namespace

void set_info_command(CLI::App& app, int* exit_code) {
  auto flags = std::make_shared<CommonFlags>();
  CLI::App* cmd = app.add_subcommand("info", "describe a model: architecture, size, cost, graph IR");
  add_common_flags(*cmd, *flags);
  cmd->callback([flags, exit_code] { *exit_code = run_info(*flags); });
}

}  // namespace vitbatch_cli
