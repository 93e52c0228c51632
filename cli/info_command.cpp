// vitbatch info --model M: architecture, parameters, GFLOPs per image, placement, the IR.
#include "commands.hpp"
#include "common_flags.hpp"
#include "exit_codes.hpp"

#include "vitbatch/error.hpp"
#include "vitbatch/vit_graph.hpp"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <iostream>
#include <memory>

namespace vitbatch_cli {
namespace {

struct InfoFlags {
  CommonFlags common;
  bool json = false;
  bool graph = false;
};

int run_info(const InfoFlags& flags) {
  try {
    vitbatch::RunConfig config;
    vitbatch::Runtime runtime(resolve_runtime_options(flags.common, config));
    const vitbatch::Model& m = runtime.model();
    const vitbatch::ViTConfig& c = m.config;
    const vitbatch::PreprocessConfig& p = m.preprocess;
    vitbatch::Graph graph = vitbatch::build_vit_graph(m, 1);
    double gmacs = graph.total_macs() / 1e9;
    if (flags.json) {
      nlohmann::json j = {
          {"model", m.path},
          {"naming", c.naming},
          {"architecture", {{"kind", c.distilled ? "deit_distilled" : "vit"}, {"patch_size", c.patch_size},
                            {"image_size", c.image_size}, {"dim", c.dim}, {"depth", c.depth}, {"heads", c.heads},
                            {"mlp_dim", c.mlp_dim}, {"tokens", c.tokens()}, {"classes", c.num_classes},
                            {"in_chans", c.in_chans}, {"layer_norm_eps", c.layer_norm_eps}}},
          {"variant", {{"timm_architecture", c.architecture}, {"class_token", c.class_token}, {"register_tokens", c.reg_tokens},
                       {"distillation_token", c.distilled}, {"prefix_tokens", c.prefix_tokens()},
                       {"abs_pos_embed", c.abs_pos_embed}, {"pos_embed_covers_prefix", c.abs_pos_embed && !c.no_embed_class},
                       {"relative_position_bias", c.rel_pos_bias}, {"rotary_embedding", c.rope}, {"patch_bias", c.patch_bias}, {"norm_pre", c.norm_pre},
                       {"qkv_bias", c.qkv_bias}, {"qk_norm", c.qk_norm}, {"attn_norm", c.attn_norm},
                       {"layer_scale", c.layer_scale}, {"mlp", vitbatch::mlp_kind_name(c.mlp)},
                       {"activation", vitbatch::activation_name(c.act)}, {"mlp_norm", c.mlp_norm},
                       {"pooling", vitbatch::pooling_name(c.pool)}, {"final_norm", c.final_norm}, {"fc_norm", c.fc_norm},
                       {"head", c.has_head()}, {"output_width", c.output_width()}}},
          {"parameters", m.weights.parameter_count()},
          {"gmacs_per_image", gmacs},
          {"preprocess", {{"input_size", p.input_size}, {"crop_pct", p.crop_pct}, {"crop_mode", p.crop_mode},
                          {"interpolation", p.interpolation}, {"mean", p.mean}, {"std", p.std},
                          {"huggingface_processor", p.hf_processor}}},
          {"labels", m.labels.empty() ? "none in the model's files" : std::to_string(m.labels.size()) + " from config.json"},
          {"defaults_used", m.defaulted},
          {"running", runtime.running()}};
      nlohmann::json backends = nlohmann::json::array();
      for (const auto& b : runtime.backends()) backends.push_back({{"name", b->name()}, {"runs", b->describe()}});
      j["backends"] = backends;
      if (flags.graph) j["graph"] = graph.to_string();
      // A path that is not UTF-8 shows U+FFFD there instead of failing the command.
      std::cout << j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
      return kExitOk;
    }
    char line[256];
    std::cout << "model:        " << m.path << " (" << c.naming << " names)\n";
    std::cout << "architecture: " << (c.distilled ? "DeiT (distilled) " : "ViT ") << "patch " << c.patch_size
              << ", image " << c.image_size << ", dim " << c.dim << ", depth " << c.depth << ", heads " << c.heads
              << ", mlp " << c.mlp_dim << ", tokens " << c.tokens() << ", classes " << c.num_classes << "\n";
    std::snprintf(line, sizeof line, "layer norm:   eps %g\n", c.layer_norm_eps);
    std::cout << line;
    std::cout << "variant:      " << vitbatch::describe_variant(c) << "\n";
    std::cout << "parameters:   " << m.weights.parameter_count() << "\n";
    std::snprintf(line, sizeof line, "compute:      %.3f GMACs = %.3f GFLOPs per image\n", gmacs, 2 * gmacs);
    std::cout << line;
    std::cout << "preprocess:   " << vitbatch::describe_preprocess(p) << "\n";
    for (const auto& [key, text] : m.defaulted) std::cout << "default:      " << text << "\n";
    std::cout << "runs on:      " << runtime.running() << "\n";
    std::cout << "backends:    ";
    for (const auto& b : runtime.backends()) std::cout << " " << b->name() << " (" << b->describe() << ")";
    std::cout << "\n";
    if (flags.graph) {
      std::cout << "\ngraph (batch 1, as built):\n" << graph.to_string();
      std::cout << "\nplacement (batch 1, after lowering):\n" << runtime.executor().placement(1);
    } else {
      std::cout << "(--graph prints the graph IR and where each node runs)\n";
    }
    return kExitOk;
  } catch (const vitbatch::Error& e) {
    std::cerr << "vitbatch: error: " << e.what() << "\n";
    return kExitUsage;
  }
}

}  // namespace

void set_info_command(CLI::App& app, int* exit_code) {
  auto flags = std::make_shared<InfoFlags>();
  CLI::App* cmd = app.add_subcommand("info", "describe a model: architecture, size, cost, graph IR");
  add_common_flags(*cmd, flags->common);
  cmd->add_flag("--json", flags->json, "one JSON object on stdout");
  cmd->add_flag("--graph", flags->graph, "also print the graph IR and each node's backend");
  cmd->callback([flags, exit_code] { *exit_code = run_info(*flags); });
}

}  // namespace vitbatch_cli
