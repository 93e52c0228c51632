#include "commands.hpp"
#include "exit_codes.hpp"

#include <CLI/CLI.hpp>

#include <iostream>

int main(int argc, char** argv) {
  CLI::App app{"vitbatch: classify folders of images with Vision Transformers, as CSV"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "vitbatch 0.1.0");
  int exit_code = vitbatch_cli::kExitOk;
  vitbatch_cli::set_classify_command(app, &exit_code);
  vitbatch_cli::set_info_command(app, &exit_code);
  vitbatch_cli::set_backends_command(app, &exit_code);
  vitbatch_cli::set_bench_command(app, &exit_code);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);  // prints help/version to stdout, errors to stderr
    return code == 0 ? 0 : vitbatch_cli::kExitUsage;
  }
  return exit_code;
}
