#include "commands.hpp"
#include "exit_codes.hpp"
#include "usage_errors.hpp"

#include "vit_plugin.h"
#include "vitbatch/versions.hpp"

#include <CLI/CLI.hpp>

#include <cstdlib>
#include <iostream>

namespace {

std::string version_text() {
  std::string text = "vitbatch " + vitbatch::kVersion + "\nplugin ABI " + std::to_string(VIT_PLUGIN_ABI_VERSION) + "\n";
  for (const auto& [library, version] : vitbatch::library_versions()) text += library + " " + version + "\n";
  text += std::string("CLI11 ") + CLI11_VERSION;
  return text;
}

}  // namespace

int main(int argc, char** argv) {
  // libgomp (the onednn plugin's OpenMP) spins 300,000 times at a barrier before sleeping. On
  // a machine where another process holds a core, the spinning thread takes the time its
  // partner needs: ViT-Ti kept 27% of its quiet rate beside one busy process. 1000 spins keep
  // it near half (the fair share) at no cost when the machine is quiet (BENCHMARKS.md). Set
  // before any plugin loads libgomp; the user's own OMP_WAIT_POLICY / GOMP_SPINCOUNT win.
  if (!std::getenv("OMP_WAIT_POLICY") && !std::getenv("GOMP_SPINCOUNT")) setenv("GOMP_SPINCOUNT", "1000", 0);
  CLI::App app{"vitbatch: classify folders of images with Vision Transformers, as CSV"};
  app.require_subcommand(1);
  app.set_version_flag("--version", version_text(), "print the version, the plugin ABI and the libraries' versions");
  app.footer(std::string("Examples:\n"
                         "  vitbatch classify --model vit_tiny_patch16_224/ photos/ > preds.csv\n"
                         "  find photos -name '*.jpg' | vitbatch classify --model M - | sort -t, -k3\n\n") +
             vitbatch_cli::kExitStatusHelp);
  int exit_code = vitbatch_cli::kExitOk;
  vitbatch_cli::set_classify_command(app, &exit_code);
  vitbatch_cli::set_info_command(app, &exit_code);
  vitbatch_cli::set_backends_command(app, &exit_code);
  vitbatch_cli::set_bench_command(app, &exit_code);
  vitbatch_cli::set_calibrate_command(app, &exit_code);
  vitbatch_cli::set_merge_command(app, &exit_code);
  vitbatch_cli::set_embed_command(app, &exit_code);
  vitbatch_cli::set_evaluate_command(app, &exit_code);
  vitbatch_cli::set_explain_command(app, &exit_code);
  std::string unknown = vitbatch_cli::unknown_command_error(app, argc, argv);
  if (!unknown.empty()) {
    std::cerr << unknown << "\n";
    return vitbatch_cli::kExitUsage;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {
    return app.exit(e);  // --help, --version: to stdout, status 0
  } catch (const CLI::ParseError& e) {
    std::cerr << vitbatch_cli::usage_error_message(app, e, argc, argv) << "\n";
    return vitbatch_cli::kExitUsage;
  } catch (const std::bad_alloc&) {
    // The last line of defence: whatever a command did not turn into its own message is
    // still one line and a status, never an abort with a core dump.
    std::cerr << "vitbatch: error: out of memory\n";
    return vitbatch_cli::kExitRuntime;
  } catch (const std::exception& e) {
    std::cerr << "vitbatch: error: " << e.what() << "\n";
    return vitbatch_cli::kExitRuntime;
  } catch (...) {
    std::cerr << "vitbatch: error: unexpected failure\n";
    return vitbatch_cli::kExitRuntime;
  }
  return exit_code;
}
