// YAML run configs: values land where they belong; unknown keys and bad values name the
// file, the line and the key.
#include "vitbatch/error.hpp"
#include "vitbatch/run_config.hpp"

#include <doctest/doctest.h>

using namespace vitbatch;

TEST_CASE("a full config parses") {
  RunConfig c = parse_run_config(R"(
model: models/vit
model_options: {heads: 3, layer_norm_eps: 1.0e-6}
preprocess:
  crop_pct: 0.9
  interpolation: bilinear
  mean: [0.5, 0.5, 0.5]
  std: [0.5, 0.5, 0.5]
backend:
  name: reference
  threads: 2
  lanes: 2
  precision: fp32
  options: {block: 64, fused: true, label: "x"}
batch_size: 8
top_k: 3
labels: /abs/labels.txt
output: "-"
plugin_dirs: [plugins]
)", "run.yaml", "/base");
  CHECK(*c.model == "/base/models/vit");
  CHECK(*c.model_options.heads == 3);
  CHECK(*c.preprocess.crop_pct == 0.9);
  CHECK(*c.preprocess.interpolation == "bilinear");
  CHECK((*c.preprocess.mean)[2] == 0.5f);
  CHECK(*c.backend == "reference");
  CHECK(*c.threads == 2);
  CHECK(*c.lanes == 2);
  CHECK(*c.precision == "fp32");
  CHECK(c.backend_options_json == R"({"block":64,"fused":true,"label":"x"})");
  CHECK(*c.batch_size == 8);
  CHECK(*c.top_k == 3);
  CHECK(*c.labels == "/abs/labels.txt");
  CHECK(*c.output == "-");
  CHECK(c.plugin_dirs == std::vector<std::string>{"/base/plugins"});
}

TEST_CASE("backend may be just a name; an empty file is fine") {
  CHECK(*parse_run_config("backend: reference\n", "a.yaml", "").backend == "reference");
  // A list of backends, tried in order: kept as --backend's comma form.
  CHECK(*parse_run_config("backends: [cuda, onednn]\n", "a.yaml", "").backend == "cuda,onednn");
  CHECK(*parse_run_config("backend: {name: [cuda, onednn], precision: fp16}\n", "a.yaml", "").backend == "cuda,onednn");
  CHECK_THROWS_WITH_AS(parse_run_config("backend: cuda\nbackends: [onednn]\n", "a.yaml", ""),
                       doctest::Contains("give the backends either here or as backend.name, not both"), Error);
  CHECK_THROWS_WITH_AS(parse_run_config("backends: []\n", "a.yaml", ""), doctest::Contains("the list of backends is empty"), Error);
  CHECK_FALSE(parse_run_config("", "a.yaml", "").model);
}

TEST_CASE("errors name file, line and key") {
  CHECK_THROWS_WITH_AS(parse_run_config("model: m\nbakend: x\n", "run.yaml", ""),
                       doctest::Contains("run.yaml:2: 'bakend': unknown key (expected one of: backend,"), Error);
  CHECK_THROWS_WITH_AS(parse_run_config("backend:\n  name: reference\n  threads: many\n", "run.yaml", ""),
                       "run.yaml:3: 'backend.threads': expected an integer from 1 to 1024, got 'many'", Error);
  CHECK_THROWS_WITH_AS(parse_run_config("backend:\n  name: reference\n  lanes: 0\n", "run.yaml", ""),
                       "run.yaml:3: 'backend.lanes': expected an integer from 1 to 1024, got 0", Error);
  CHECK_THROWS_WITH_AS(parse_run_config("batch_size: -4\n", "run.yaml", ""),
                       "run.yaml:1: 'batch_size': expected an integer from 1 to 4096, got -4", Error);
  // Regression: these passed and then aborted the run (bad_alloc, overflow).
  CHECK_THROWS_WITH_AS(parse_run_config("batch_size: 2147483647\n", "run.yaml", ""),
                       "run.yaml:1: 'batch_size': expected an integer from 1 to 4096, got 2147483647", Error);
  CHECK_THROWS_WITH_AS(parse_run_config("top_k: 99999999999\n", "run.yaml", ""),
                       "run.yaml:1: 'top_k': expected an integer from 1 to 100000, got 99999999999", Error);
  CHECK_THROWS_WITH_AS(parse_run_config("backend: {precision: fp64}\n", "run.yaml", ""),
                       "run.yaml:1: 'backend.precision': 'fp64' is not one of: bf16, fp16, fp32, int8", Error);
  CHECK_THROWS_WITH_AS(parse_run_config("preprocess:\n  mean: [1, 2]\n", "run.yaml", ""),
                       "run.yaml:2: 'preprocess.mean': expected a list of 3 numbers", Error);
  CHECK_THROWS_WITH_AS(parse_run_config("preprocess:\n  interpolation: cubic\n", "run.yaml", ""),
                       doctest::Contains("run.yaml:2: 'preprocess.interpolation': 'cubic' is not one of"), Error);
  CHECK_THROWS_WITH_AS(parse_run_config("model: [a, b\n", "run.yaml", ""), doctest::Contains("run.yaml:2: invalid YAML"), Error);
  CHECK_THROWS_WITH_AS(parse_run_config("- a\n- b\n", "run.yaml", ""), "run.yaml:1: '': expected a mapping", Error);
  CHECK_THROWS_WITH_AS(load_run_config("/nonexistent.yaml"), "/nonexistent.yaml: no such config file", Error);
  // Regression: a directory opened as an empty stream and passed as an empty config.
  CHECK_THROWS_WITH_AS(load_run_config("/tmp"), "/tmp: is a directory, not a YAML config file", Error);
}

TEST_CASE("the configs shipped in configs/ parse") {
  const std::vector<std::pair<std::string, std::string>> configs = {
      {"vit_tiny_reference.yaml", "reference"}, {"preprocess_override.yaml", "reference"},
      {"vit_tiny_onednn.yaml", "onednn"},      {"vit_tiny_onednn_int8.yaml", "onednn"},
      {"vit_tiny_blas.yaml", "blas"},          {"vit_tiny_cuda.yaml", "cuda,onednn"}};
  for (const auto& [name, backend] : configs) {
    CAPTURE(name);
    RunConfig c = load_run_config(std::string(VITBATCH_SOURCE_DIR) + "/configs/" + name);
    REQUIRE(c.model);
    CHECK(c.model->find("vit_tiny_patch16_224") != std::string::npos);
    CHECK(*c.backend == backend);
  }
  RunConfig cuda = load_run_config(std::string(VITBATCH_SOURCE_DIR) + "/configs/vit_tiny_cuda.yaml");
  CHECK(*cuda.precision == "bf16");
  CHECK(cuda.backend_options_json == R"({"device":0,"tf32":false})");
  RunConfig int8 = load_run_config(std::string(VITBATCH_SOURCE_DIR) + "/configs/vit_tiny_onednn_int8.yaml");
  REQUIRE(int8.int8_scales);
  CHECK(*int8.int8_scales == std::string(VITBATCH_SOURCE_DIR) + "/configs/ti_int8_scales.safetensors");
  CHECK_FALSE(int8.int8_dynamic);
}

TEST_CASE("int8 ranges: backend.int8_scales is a path relative to the file, int8_dynamic a bool") {
  RunConfig c = parse_run_config("backend: {precision: int8, int8_dynamic: true}\n", "run.yaml", "/cfg");
  CHECK(c.int8_dynamic);
  CHECK_FALSE(c.int8_scales);
  c = parse_run_config("backend: {int8_scales: s.safetensors}\n", "run.yaml", "/cfg");
  CHECK(*c.int8_scales == "/cfg/s.safetensors");
  CHECK_THROWS_WITH_AS(parse_run_config("backend: {int8_dynamic: maybe}\n", "run.yaml", "/cfg"),
                       doctest::Contains("backend.int8_dynamic"), Error);
}

TEST_CASE("backend options that are not UTF-8 are an error, not an abort") {
  // Found by fuzz_yaml_config: nlohmann::json threw type_error 316 out of the config reader.
  CHECK_THROWS_WITH_AS(parse_run_config("backend:\n  name: onednn\n  options: {a: [1, \xff\xff]}\n", "run.yaml", ""),
                       "run.yaml:3: 'backend.options': holds text that is not valid UTF-8", Error);
}
