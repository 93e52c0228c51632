// commands.hpp: one set_<name>_command per subcommand; main.cpp only wires them.
// Each registers its options and a callback that stores the exit status in *exit_code.
#pragma once

#include <CLI/CLI.hpp>

namespace vitbatch_cli {

void set_classify_command(CLI::App& app, int* exit_code);
void set_info_command(CLI::App& app, int* exit_code);
void set_backends_command(CLI::App& app, int* exit_code);
void set_bench_command(CLI::App& app, int* exit_code);
void set_calibrate_command(CLI::App& app, int* exit_code);
void set_merge_command(CLI::App& app, int* exit_code);
void set_embed_command(CLI::App& app, int* exit_code);
void set_evaluate_command(CLI::App& app, int* exit_code);
void set_explain_command(CLI::App& app, int* exit_code);

}  // namespace vitbatch_cli
