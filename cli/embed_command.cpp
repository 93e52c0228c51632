// vitbatch embed --model M PATH... -o DIR: the pooled feature of every image (what the
// model's head reads), streamed into DIR/features-*.npy with DIR/index.csv naming each row
// (see vitbatch/embedding_output.hpp). Inputs, --shard, --resume and bad-input rows work as
// in classify.
#include "commands.hpp"
#include "common_flags.hpp"
#include "exit_codes.hpp"
#include "streaming_run.hpp"
#include "usage_errors.hpp"

#include "vitbatch/classify_pipeline.hpp"
#include "vitbatch/embedding_output.hpp"
#include "vitbatch/error.hpp"
#include "vitbatch/limits.hpp"
#include "vitbatch/progress.hpp"
#include "vitbatch/shard.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>

namespace vitbatch_cli {
namespace {

struct EmbedFlags {
  CommonFlags common;
  StreamFlags stream;
  std::string output;
  bool normalize = false;
  std::string dtype = "float32";
  int64_t shard_rows = 65536;
  bool tokens = false;
};

// What --resume must find unchanged, besides the model and backend: the shape of the files.
std::string layout_name(const EmbedFlags& flags) {
  return "embed " + flags.dtype + (flags.normalize ? " L2-normalised" : "") + (flags.tokens ? " with patch tokens" : "") +
         ", " + std::to_string(flags.shard_rows) + " rows a file";
}

int run_embed(const EmbedFlags& flags) {
  vitbatch::RunConfig config;
  std::unique_ptr<vitbatch::Runtime> runtime;
  std::optional<vitbatch::OutputSink> index;
  std::unique_ptr<vitbatch::EmbedSink> sink;
  PreparedOutput prepared;
  std::optional<vitbatch::Shard> shard;
  vitbatch::PipelineOptions options;
  const std::string cwd = vitbatch::current_directory();
  const std::string index_path = flags.output + "/index.csv";
  try {
    require_inputs(flags.stream);
    vitbatch::RuntimeOptions runtime_options = resolve_runtime_options(flags.common, config);
    runtime_options.features = true;
    runtime_options.patch_tokens = flags.tokens;
    options.batch_size = flags.stream.batch_size.value_or(config.batch_size.value_or(16));
    options.decode.max_pixels = flags.stream.max_pixels;
    options.decode.exif_transpose = flags.stream.exif_transpose;
    if (flags.stream.shard) shard = vitbatch::Shard::parse(*flags.stream.shard);
    runtime = std::make_unique<vitbatch::Runtime>(runtime_options);
    options.decode_threads =
        flags.stream.decode_threads.value_or(default_decode_threads(runtime->backends().front()->device_memory()));
    const vitbatch::Model& model = runtime->model();
    check_batch_memory(model, options.batch_size);

    std::error_code ec;
    std::filesystem::create_directories(flags.output, ec);
    if (ec) throw vitbatch::Error(flags.output + ": cannot create the output directory: " + ec.message());
    struct stat st {};
    if (!flags.stream.resume && ::stat(index_path.c_str(), &st) == 0 && st.st_size > 0)
      throw vitbatch::Error(flags.output + " already holds an embedding (index.csv): --resume continues it; to start "
                            "over, remove it or choose another directory");
    vitbatch::RunRecord record =
        base_run_record(*runtime, runtime_options.backend_options.precision, cwd, flags.stream.absolute_paths);
    record.format = layout_name(flags);
    record.activation = "none";
    vitbatch::EmbedIndexFormat format(flags.shard_rows);
    prepared = prepare_output_file(index_path, flags.stream.resume, record, format, cwd);
    index.emplace(vitbatch::OutputSink::to_file(index_path, flags.stream.resume));
    if (!prepared.resumed.has_header) index->write(format.header());
    vitbatch::EmbedOutputOptions out;
    out.dir = flags.output;
    out.width = model.config.feature_width();
    if (flags.tokens) {
      out.patch_tokens = model.config.grid() * model.config.grid();
      out.token_dim = model.config.dim;
    }
    out.dtype = flags.dtype == "float16" ? vitbatch::NpyDtype::Float16 : vitbatch::NpyDtype::Float32;
    out.shard_rows = flags.shard_rows;
    out.normalize = flags.normalize;
    sink = std::make_unique<vitbatch::EmbedSink>(out, *index, prepared.resumed.last_position + 1);
    if (!index->flush()) throw vitbatch::Error(index_path + ": " + index->error());
  } catch (const vitbatch::Error& e) {
    std::cerr << "vitbatch: error: " << e.what() << "\n";
    return kExitUsage;
  }
  for (const std::string& notice : runtime->notices()) std::cerr << "vitbatch: " << notice << "\n";
  std::cerr << "vitbatch: running on " << runtime->running() << ", writing " << runtime->model().config.feature_width()
            << "-wide features" << (flags.tokens ? " and patch tokens" : "") << " to " << flags.output << "\n";

  options.output_name = "features";
  StreamRun run(flags.stream, shard, prepared.done_keys, cwd, options);

  try {
    vitbatch::PipelineSummary s =
        vitbatch::run_pipeline(run.inputs(), runtime->model(), runtime->executor(), *sink, options, std::cerr);
    run.finished();
    char rate[64];
    std::snprintf(rate, sizeof rate, "%.1f s (%.1f images/s", s.seconds, s.seconds > 0 ? s.classified / s.seconds : 0.0);
    std::string summary = "vitbatch: " + std::to_string(s.classified) + " embedded, " + std::to_string(s.failed) +
                          " failed, " + std::to_string(s.skipped) + " skipped in " + rate + ", " + runtime->running() +
                          "); " + std::to_string(sink->rows()) + " feature rows in " + flags.output +
                          (s.interrupted ? " (interrupted: --resume continues)" : "");
    if (s.output_closed) {
      std::cerr << "vitbatch: error: " << sink->error() << " (every row before the last complete batch is kept; --resume "
                << "finishes the run)\n"
                << summary << "\n";
      return kExitOutputFailed;
    }
    std::string ignored = ignored_line(run.inputs().ignored());
    if (!ignored.empty()) std::cerr << ignored << "\n";
    std::cerr << summary << "\n";
    if (s.interrupted) return 128 + g_stop_signal.load();
    if (s.classified == 0 && s.failed == 0 && s.skipped == 0) {
      std::cerr << "vitbatch: nothing was embedded: no image found in the inputs given\n";
      return kExitSomeFailed;
    }
    return s.failed > 0 ? kExitSomeFailed : kExitOk;
  } catch (const vitbatch::Error& e) {
    run.finished();
    sink->flush();
    std::cerr << "vitbatch: error: " << e.what() << "\n";
    return kExitRuntime;
  }
}

}  // namespace

void set_embed_command(CLI::App& app, int* exit_code) {
  auto flags = std::make_shared<EmbedFlags>();
  CLI::App* cmd = app.add_subcommand(
      "embed", "write each image's feature (what the head reads) to DIR/features-*.npy, named by DIR/index.csv");
  add_common_flags(*cmd, flags->common);
  add_stream_flags(*cmd, flags->stream,
                   "continue the run in DIR: skip inputs that have a feature, retry failed ones, append the rest");
  cmd->add_option("-o,--output", flags->output,
                  "directory to write: index.csv (path,shard,row,error) and features-00000.npy, ...")
      ->required();
  cmd->add_flag("--normalize", flags->normalize, "L2-normalise each feature (for cosine similarity; not the tokens)");
  cmd->add_flag("--tokens", flags->tokens,
                "also write every patch token after the final norm to DIR/tokens-*.npy ([rows, patches, D])");
  cmd->add_option("--dtype", flags->dtype, "float32 (default) or float16")->check(CLI::IsMember({"float32", "float16"}));
  cmd->add_option("--shard-rows", flags->shard_rows, "rows in each features-*.npy before the next is started (default 65536)")
      ->check(int_range(1, int64_t{1} << 31));
  cmd->footer(std::string("Examples:\n"
                          "  vitbatch embed --model M photos/ -o feats/ --normalize\n"
                          "  python3 -c \"import numpy, csv; f = numpy.load('feats/features-00000.npy')\"\n\n") +
              kExitStatusHelp);
  cmd->callback([flags, exit_code] { *exit_code = run_embed(*flags); });
}

}  // namespace vitbatch_cli
