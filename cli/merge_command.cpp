// vitbatch merge FILE... [-o OUT] [--inputs ARG...]: the outputs of a sharded run joined into
// one (see vitbatch/merge.hpp).
#include "commands.hpp"
#include "exit_codes.hpp"

#include "vitbatch/error.hpp"
#include "vitbatch/file_io.hpp"
#include "vitbatch/merge.hpp"

#include <cstdio>
#include <iostream>
#include <memory>

namespace vitbatch_cli {
namespace {

struct MergeFlags {
  std::vector<std::string> files;
  std::vector<std::string> inputs;
  std::string output = "-";
};

int run_merge(const MergeFlags& flags) {
  try {
    for (const std::string& arg : flags.inputs)
      if (arg == "-") throw vitbatch::Error("--inputs takes files and directories, not - (stdin)");
    vitbatch::MergeResult merged = vitbatch::merge_outputs({flags.files, flags.inputs});
    if (flags.output == "-") {
      std::fwrite(merged.text.data(), 1, merged.text.size(), stdout);
      if (std::fflush(stdout) != 0) {
        std::cerr << "vitbatch: error: writing the merged rows to stdout failed\n";
        return kExitOutputFailed;
      }
    } else {
      vitbatch::write_file_atomically(flags.output, merged.text);
    }
    std::cerr << "vitbatch: merged " << merged.rows << " rows from " << flags.files.size() << " files"
              << (flags.inputs.empty() ? "" : ", every input present") << "\n";
    return kExitOk;
  } catch (const vitbatch::Error& e) {
    std::cerr << "vitbatch: error: " << e.what() << "\n";
    return kExitUsage;
  }
}

}  // namespace

void set_merge_command(CLI::App& app, int* exit_code) {
  auto flags = std::make_shared<MergeFlags>();
  CLI::App* cmd = app.add_subcommand(
      "merge", "join the outputs of a sharded run (CSV or JSON Lines) into one, rows in path order");
  cmd->add_option("files", flags->files, "the shard outputs")->required();
  cmd->add_option("-o,--output", flags->output, "the merged file (default -: stdout); written whole, then renamed");
  cmd->add_option("--inputs", flags->inputs,
                  "the run's inputs as given to classify (files, directories): check that every one has a row and "
                  "no other does")
      ->expected(1, -1);
  cmd->footer("Rows come out in byte order of their paths, the order classify's directory walk gives: merging the\n"
              "shards of one directory run reproduces the unsharded output byte for byte.\n"
              "  for i in 0 1 2 3; do vitbatch classify --model M --shard $i/4 photos/ -o part$i.csv; done\n"
              "  vitbatch merge part*.csv --inputs photos/ -o all.csv");
  cmd->callback([flags, exit_code] { *exit_code = run_merge(*flags); });
}

}  // namespace vitbatch_cli
