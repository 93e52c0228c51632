// The plugin host: found plugins, rejected ones with their reason, and failures that become
// errors instead of crashes.
#include "test_support.hpp"
#include "vit_plugin_helpers.hpp"
#include "vitbatch/runtime.hpp"
#include "vitbatch/error.hpp"
#include "vitbatch/executor.hpp"
#include "vitbatch/int8_ranges.hpp"
#include "vitbatch/plugin_host.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <fstream>
#include <iterator>
#include <map>

#include <sys/stat.h>

using namespace vitbatch;

namespace {
const PluginInfo* by_file(PluginHost& host, const std::string& fragment) {
  for (const auto& p : host.plugins())
    if (p.path.find(fragment) != std::string::npos) return &p;
  return nullptr;
}

// Each of got's values within 1e-5 (relative) of want's.
void check_near(const std::vector<float>& got, const std::vector<float>& want) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) CHECK(got[i] == doctest::Approx(want[i]).epsilon(1e-5));
}

// A two-block ViT with varied weights (images get distinct answers), written into `dir`,
// which must outlive the model (its weights are mapped from there).
Model two_block_vit(test_support::TempDir& dir) {
  dir.write("model.safetensors", test_support::safetensors_bytes(test_support::varied(test_support::tiny_vit(2))));
  dir.write("config.json", R"({"num_heads": 1})");
  return load_model(dir.path());
}

// Whether the onednn backend's own bf16 kernel can run here: bf16_gemm_available()'s test
// (AVX512_BF16 implies AVX512F and BW), asked directly because this file is built even where
// bf16_gemm.cpp is not linked into the tests (no OpenMP).
bool own_bf16_kernel_runs() { return __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512vl"); }
}  // namespace

TEST_CASE("the reference backend is found and usable") {
  PluginHost host({VITBATCH_PLUGIN_DIR});
  const PluginInfo& ref = host.find("reference");
  CHECK(ref.rejected.empty());
  CHECK(ref.abi_version == VIT_PLUGIN_ABI_VERSION);
  CHECK(std::find(ref.ops.begin(), ref.ops.end(), Op::LINEAR) != ref.ops.end());
  CHECK(std::find(ref.ops.begin(), ref.ops.end(), Op::ATTENTION) == ref.ops.end());  // left to lowering
  Backend b(ref, BackendOptions{});
  CHECK(b.describe().find("fp32") != std::string::npos);
  BackendOptions bf16;
  bf16.precision = "bf16";
  CHECK_THROWS_WITH_AS(Backend(ref, bf16), "backend 'reference' failed to start: reference: precision 'bf16' is not supported (fp32 only)", Error);
}

TEST_CASE("a plugin of another ABI version is rejected naming both numbers") {
  PluginHost host({VITBATCH_TEST_PLUGIN_DIR});
  const PluginInfo* bad = by_file(host, "libvitbatch_backend_bad_abi.so");
  REQUIRE(bad != nullptr);
  CHECK(bad->rejected == "plugin ABI version 999, this vitbatch loads ABI versions 1 to 2");
  CHECK_THROWS_WITH_AS(host.find("bad_abi"), doctest::Contains("backend 'bad_abi' was rejected"), Error);
  CHECK_THROWS_WITH_AS(host.find("nosuch"), "no backend named 'nosuch' (plugin files found for: bad_abi, crash, failing, fakedev, fusing, minimal_v2, rendezvous, spin, v1_layout; see `vitbatch backends`)", Error);
}

TEST_CASE("files that are not plugins are rejected with the loader's reason") {
  test_support::TempDir dir;
  dir.write("libvitbatch_backend_junk.so", std::string("not an ELF file"));
  PluginHost host({dir.path(), "/nonexistent/dir"});
  REQUIRE(host.plugins().size() == 1);
  CHECK(host.plugins()[0].rejected.find("cannot load: ") == 0);
}

TEST_CASE("a backend failing to start or mid-run gives an error, not a crash") {
  PluginHost host({VITBATCH_TEST_PLUGIN_DIR, VITBATCH_PLUGIN_DIR});
  BackendOptions fail_create;
  fail_create.options_json = R"({"fail_create": true})";
  CHECK_THROWS_WITH_AS(Backend(host.find("failing"), fail_create), "backend 'failing' failed to start: refusing to start as asked", Error);

  test_support::TempDir dir;
  dir.write("model.safetensors", test_support::safetensors_bytes(test_support::tiny_vit()));
  dir.write("config.json", R"({"num_heads": 1})");
  Model model = load_model(dir.path());
  Backend failing(host.find("failing"), BackendOptions{});
  Backend reference(host.find("reference"), BackendOptions{});
  Executor executor(model, {&failing, &reference});
  std::vector<float> pixels(3 * 8 * 8, 0.1f), logits(5);
  CHECK_THROWS_WITH_AS(executor.run(pixels.data(), 1, logits.data()),
                       "backend 'failing' failed on node 'patch_embed.proj' (linear): kernel exploded", Error);
  // Placement: linear goes to the first backend that accepts it, the rest to reference.
  std::string placement = executor.placement(1);
  CHECK(placement.find("failing  linear  patch_embed.proj") != std::string::npos);
  CHECK(placement.find("reference  patchify  patch_embed.patchify") != std::string::npos);
}

TEST_CASE("the executor keeps a bounded number of plans and results do not depend on them") {
  PluginHost host({VITBATCH_PLUGIN_DIR});
  test_support::TempDir dir;
  dir.write("model.safetensors", test_support::safetensors_bytes(test_support::tiny_vit()));
  dir.write("config.json", R"({"num_heads": 1})");
  Model model = load_model(dir.path());
  Backend reference(host.find("reference"), BackendOptions{});
  Executor executor(model, {&reference});
  std::vector<float> pixels(6 * 3 * 8 * 8);
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<float>(i % 17) / 17.0f;
  std::vector<float> all(6 * 5), one(5);
  executor.run(pixels.data(), 6, all.data());
  for (int64_t n = 1; n <= 5; ++n) {  // five more batch sizes: older plans are dropped
    std::vector<float> part(static_cast<size_t>(n * 5));
    executor.run(pixels.data(), n, part.data());
    CHECK(executor.cached_plans() <= Executor::kMaxPlans);
    for (int64_t i = 0; i < n * 5; ++i) CHECK(part[i] == all[i]);
  }
  executor.run(pixels.data() + 5 * 3 * 8 * 8, 1, one.data());  // a size that was evicted and comes back
  for (int i = 0; i < 5; ++i) CHECK(one[i] == all[25 + i]);
}

TEST_CASE("misbehaving plugin files are rejected with a reason, never loaded into vitbatch") {
  // Regressions: a plugin whose init crashed took down every command (even `backends`), one
  // that spun hung them, a FIFO named like a plugin blocked, a truncated .so raised SIGBUS.
  PluginHost host({VITBATCH_TEST_PLUGIN_DIR}, 1000);
  std::string why;
  CHECK(host.try_find("crash", &why) == nullptr);
  CHECK(why.find("crashed while loading (signal 11") != std::string::npos);
  CHECK(host.try_find("spin", &why) == nullptr);
  CHECK(why.find("did not finish loading within 1.00 s (killed)") != std::string::npos);
  // Asking for one backend loads that one only.
  PluginHost lazy({VITBATCH_TEST_PLUGIN_DIR}, 1000);
  CHECK_NOTHROW(lazy.find("failing"));

  test_support::TempDir dir;
  REQUIRE(mkfifo(dir.file("libvitbatch_backend_fifo.so").c_str(), 0600) == 0);
  std::string real = std::string(VITBATCH_TEST_PLUGIN_DIR) + "/libvitbatch_backend_failing.so";
  std::ifstream in(real, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<uint8_t> half(bytes.begin(), bytes.begin() + bytes.size() / 2);
  dir.write("libvitbatch_backend_truncated.so", half);
  std::vector<uint8_t> whole(bytes.begin(), bytes.end());
  std::string open_to_all = dir.write("libvitbatch_backend_failing.so", whole);
  REQUIRE(chmod(open_to_all.c_str(), 0666) == 0);
  PluginHost odd({dir.path()}, 2000);
  CHECK(odd.try_find("fifo", &why) == nullptr);
  CHECK(why.find("not a regular file") != std::string::npos);
  CHECK(odd.try_find("truncated", &why) == nullptr);
  CHECK(why.find("was rejected") != std::string::npos);
  CHECK(odd.try_find("failing", &why) == nullptr);
  CHECK(why.find("writable by group or others") != std::string::npos);
}

TEST_CASE("ABI 2 reads only the slots a table has: an ABI 1 plugin and a minimal ABI 2 plugin both run") {
  PluginHost host({VITBATCH_TEST_PLUGIN_DIR, VITBATCH_PLUGIN_DIR});
  std::vector<float> x{1.0f, -2.0f, 3.5f}, y(3, 0.0f);
  std::vector<vit_tensor> ins{vit_plugin::dense_tensor({3}, x.data())}, outs{vit_plugin::dense_tensor({3}, y.data())};
  vit_node node = vit_plugin::make_node(VIT_OP_SCALE, ins, outs, {}, {2.0f}, "double");

  const PluginInfo& old = host.find("v1_layout");
  CHECK(old.abi_version == 1);
  CHECK(old.score == 0);  // ABI 1 has no score(): never picked by auto
  Backend v1(old, BackendOptions{});
  CHECK_FALSE(v1.device_memory());
  CHECK_FALSE(v1.concurrent_contexts());  // a slot ABI 1 lacks: never run in lanes
  CHECK(v1.supports(node, nullptr));
  v1.execute(v1.prepare(node), node);
  CHECK(y == std::vector<float>{2.0f, -4.0f, 7.0f});

  const PluginInfo& minimal = host.find("minimal_v2");
  CHECK(minimal.abi_version == 2);
  CHECK(minimal.score == 0);
  CHECK(minimal.unavailable == "a test plugin: never picked by auto");
  Backend v2(minimal, BackendOptions{});
  v2.execute(v2.prepare(node), node);
  CHECK(y == std::vector<float>{3.0f, -3.0f, 8.0f});
  v2.synchronize();  // no synchronize entry: nothing to wait for

  // auto ranks by score: the test plugins score 0, so the real backends win.
  AutoChoice pick = choose_auto_backend(host);
  CHECK(pick.backend != "v1_layout");
  CHECK(pick.backend != "minimal_v2");
}

TEST_CASE("--backend-option's KEY=VALUE pairs go on top of the YAML's backend.options") {
  auto m = [](const std::string& json) {
    auto kv = flatten_options(json);
    return std::map<std::string, std::string>(kv.begin(), kv.end());
  };
  const auto merged = m(with_option_pairs(R"({"tf32": true, "device": 1})", {"device=0", "expr=a=b"}));
  CHECK(merged.size() == 3);
  CHECK(merged.at("tf32") == "true");  // kept from the YAML
  CHECK(merged.at("device") == "0");   // the flag wins
  CHECK(merged.at("expr") == "a=b");   // split at the first '='
  CHECK(m(with_option_pairs("not json", {"k=v"})) == std::map<std::string, std::string>{{"k", "v"}});
  CHECK(with_option_pairs("{}", {}) == "{}");
  CHECK_THROWS_WITH_AS(with_option_pairs("{}", {"k"}), "expected KEY=VALUE, got 'k'", Error);
  CHECK_THROWS_WITH_AS(with_option_pairs("{}", {"=v"}), "expected KEY=VALUE, got '=v'", Error);
}

TEST_CASE("backend options arrive as key/value text") {
  auto kv = flatten_options(R"({"tf32": true, "workspace": {"mb": 64}, "name": "x", "list": [1, 2]})");
  std::map<std::string, std::string> m(kv.begin(), kv.end());
  CHECK(m.at("tf32") == "true");
  CHECK(m.at("workspace.mb") == "64");
  CHECK(m.at("name") == "x");
  CHECK(m.at("list") == "[1,2]");
  CHECK(flatten_options("{}").empty());
  vit_option pairs[] = {{"tf32", "true"}};
  vit_backend_config config{};
  config.struct_size = sizeof config;
  config.n_options = 1;
  config.options = pairs;
  CHECK(vit_plugin::option(config, "tf32") == "true");
  CHECK(vit_plugin::option(config, "missing", "d") == "d");
  CHECK(vit_plugin::unknown_options(config, {"workspace"}) == "tf32");
  config.struct_size = offsetof(vit_backend_config, n_options);  // an ABI 1 host's config
  CHECK(vit_plugin::option(config, "tf32", "unset") == "unset");
}

TEST_CASE("a backend may claim a run of nodes: it runs them as one step, the inner value gets no buffer") {
  PluginHost host({VITBATCH_TEST_PLUGIN_DIR, VITBATCH_PLUGIN_DIR});
  test_support::TempDir dir;
  Model model = two_block_vit(dir);
  Backend fusing(host.find("fusing"), BackendOptions{});
  Backend reference(host.find("reference"), BackendOptions{});
  std::vector<float> pixels(2 * 3 * 8 * 8);
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = std::sin(0.37f * static_cast<float>(i));
  std::vector<float> fused(2 * 5), plain(2 * 5);
  Executor with_fusion(model, {&fusing, &reference});
  with_fusion.run(pixels.data(), 2, fused.data());
  Executor without(model, {&reference});
  without.run(pixels.data(), 2, plain.data());
  check_near(fused, plain);
  std::string placement = with_fusion.placement(2);
  CAPTURE(placement);
  // Each block's attention projection and its residual add, as one step.
  CHECK(placement.find("fusing  fused(linear+add)  blocks.0.attn.proj blocks.0.residual1") != std::string::npos);
  CHECK(placement.find("fusing  fused(linear+add)  blocks.1.attn.proj blocks.1.residual1") != std::string::npos);
  CHECK(placement.find("reference  linear  blocks.0.attn.proj\n") == std::string::npos);
}

TEST_CASE("onednn runs each projection and MLP with its residual add as one matmul, at every precision") {
  PluginHost host({VITBATCH_PLUGIN_DIR});
  test_support::TempDir dir;
  Model model = two_block_vit(dir);
  Backend reference(host.find("reference"), BackendOptions{});
  std::vector<float> pixels(3 * 3 * 8 * 8);
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = std::sin(0.37f * static_cast<float>(i));
  std::vector<float> plain(3 * 5);
  Executor(model, {&reference}).run(pixels.data(), 3, plain.data());
  float largest = 0.0f;
  for (float v : plain) largest = std::max(largest, std::fabs(v));
  // Tolerances on the scale of the logits, as the op tests' (int8 here quantises per call);
  // int8 on vitbatch's VNNI kernel (the default where the CPU has it) and on oneDNN's; bf16 on
  // both matmul kernels where the CPU has AVX512_BF16 (the own one's residual and GELU
  // epilogues run only in these claimed runs).
  struct Run {
    std::string precision;
    double tolerance;
    std::string option, value;
  };
  std::vector<Run> runs = {{"fp32", 1e-5, "", ""}, {"bf16", 3e-2, "", ""}, {"int8", 8e-2, "", ""},
                           {"int8", 8e-2, "int8_gemm", "onednn"}};
  if (own_bf16_kernel_runs()) {
    runs.push_back({"bf16", 3e-2, "bf16_gemm", "own"});
    runs.push_back({"bf16", 3e-2, "bf16_gemm", "onednn"});
  }
  for (const Run& run : runs) {
    const std::string& precision = run.precision;
    const double tolerance = run.tolerance;
    CAPTURE(precision);
    CAPTURE(run.option);
    CAPTURE(run.value);
    BackendOptions options;
    options.precision = precision;
    if (!run.option.empty()) options.options = {{run.option, run.value}};
    Backend onednn(host.find("onednn"), options);
    Executor executor(model, {&onednn, &reference});
    std::vector<float> fused(3 * 5);
    executor.run(pixels.data(), 3, fused.data());
    std::string placement = executor.placement(3);
    CAPTURE(placement);
    for (int b = 0; b < 2; ++b) {
      const std::string block = "blocks." + std::to_string(b);
      CHECK(placement.find("onednn  fused(linear+add)  " + block + ".attn.proj " + block + ".residual1") !=
            std::string::npos);
      CHECK(placement.find("onednn  fused(mlp+add)  " + block + ".mlp " + block + ".residual2") != std::string::npos);
    }
    CHECK(placement.find("  add  blocks.") == std::string::npos);  // every residual add went into a matmul
    for (size_t i = 0; i < fused.size(); ++i) CHECK(std::fabs(fused[i] - plain[i]) <= tolerance * largest);
  }
  BackendOptions typo;
  typo.precision = "int8";
  typo.options = {{"int8_gemm", "fast"}};
  CHECK_THROWS_WITH_AS(Backend(host.find("onednn"), typo), doctest::Contains("int8_gemm must be vnni or onednn, not 'fast'"),
                       Error);
  typo.precision = "bf16";
  typo.options = {{"bf16_gemm", "fast"}};
  CHECK_THROWS_WITH_AS(Backend(host.find("onednn"), typo), doctest::Contains("bf16_gemm must be own or onednn, not 'fast'"),
                       Error);
  // The own bf16 kernel where the CPU has AVX512_BF16, and a clear refusal where it has not.
  BackendOptions own_bf16;
  own_bf16.precision = "bf16";
  own_bf16.options = {{"bf16_gemm", "own"}};
  if (own_bf16_kernel_runs()) {
    CHECK(Backend(host.find("onednn"), own_bf16).describe().find("bf16 matmuls on vitbatch's AVX512_BF16 kernel") !=
          std::string::npos);
  } else {
    CHECK_THROWS_WITH_AS(Backend(host.find("onednn"), own_bf16), doctest::Contains("bf16_gemm=own needs AVX512_BF16"), Error);
  }
}

TEST_CASE("onednn's calibrated int8 normalises each matmul's input as it quantises it, on its VNNI kernel") {
  PluginHost host({VITBATCH_PLUGIN_DIR});
  Backend probe(host.find("onednn"), BackendOptions{1, "int8", "{}", {}});
  if (probe.describe().find("VNNI") == std::string::npos) {
    MESSAGE("skipped: this CPU has no AVX512_VNNI");
    return;
  }
  // Dim 36: two whole vectors of a LayerNorm row and a tail of four.
  test_support::TempDir dir;
  dir.write("model.safetensors",
            test_support::safetensors_bytes(test_support::random_values(test_support::tiny_vit(2, 36), 0.3f, 11)));
  dir.write("config.json", R"({"num_heads": 1})");
  Model model = load_model(dir.path());
  Int8Ranges ranges;
  for (const std::string& name : quantized_linear_names(model))
    ranges[name] = name.find("fc2") != std::string::npos ? params::Range{-0.17f, 3.0f} : params::Range{-3.0f, 3.0f};
  save_int8_ranges(dir.path() + "/int8_scales.safetensors", ranges, {});
  load_int8_ranges(dir.path() + "/int8_scales.safetensors", model);
  Backend reference(host.find("reference"), BackendOptions{});
  std::vector<float> pixels(3 * 3 * 8 * 8);
  for (size_t i = 0; i < pixels.size(); ++i)  // a pattern of another frequency per image
    pixels[i] = std::sin(0.37f * static_cast<float>(i) * static_cast<float>(1 + i / (3 * 8 * 8)));
  std::vector<float> plain(3 * 5), fused(3 * 5), unfused(3 * 5);
  Executor(model, {&reference}).run(pixels.data(), 3, plain.data());
  Backend vnni(host.find("onednn"), BackendOptions{2, "int8", "{}", {}});
  Executor with_norm(model, {&vnni, &reference});
  with_norm.run(pixels.data(), 3, fused.data());
  std::string placement = with_norm.placement(3);
  CAPTURE(placement);
  for (int b = 0; b < 2; ++b) {
    const std::string block = "blocks." + std::to_string(b);
    CHECK(placement.find("onednn  fused(layer_norm+linear)  " + block + ".norm1 " + block + ".attn.qkv") != std::string::npos);
    CHECK(placement.find("onednn  fused(layer_norm+mlp+add)  " + block + ".norm2 " + block + ".mlp " + block + ".residual2") !=
          std::string::npos);
  }
  // On oneDNN's int8 matmuls the LayerNorms stay steps of their own: the same quantised
  // inputs but for a rounding here and there, so the logits agree far more closely than
  // either does with fp32's.
  Backend onednn(host.find("onednn"), BackendOptions{2, "int8", "{}", {{"int8_gemm", "onednn"}}});
  Executor without_norm(model, {&onednn, &reference});
  without_norm.run(pixels.data(), 3, unfused.data());
  CHECK(without_norm.placement(3).find("layer_norm+") == std::string::npos);
  float largest = 0.0f, apart = 0.0f;
  for (size_t i = 0; i < plain.size(); ++i) {
    largest = std::max(largest, std::fabs(plain[i]));
    apart = std::max(apart, std::fabs(plain[i] - plain[i % 5]));
  }
  CHECK(apart > 0.05f * largest);  // the three images' logits differ: a wrong row order shows
  for (size_t i = 0; i < plain.size(); ++i) {
    CHECK(std::fabs(fused[i] - unfused[i]) <= 1e-2 * largest);
    CHECK(std::fabs(fused[i] - plain[i]) <= 0.1 * largest);
  }
}

TEST_CASE("a device backend's buffers are its own: the executor copies wherever a value crosses, and nowhere else") {
  // fakedev keeps its floats bit-inverted: a read that skips copy() gives garbage, so equal
  // logits mean every crossing had its copy.
  PluginHost host({VITBATCH_TEST_PLUGIN_DIR, VITBATCH_PLUGIN_DIR});
  test_support::TempDir dir;
  Model model = two_block_vit(dir);
  Backend device(host.find("fakedev"), BackendOptions{});
  Backend reference(host.find("reference"), BackendOptions{});
  CHECK(device.device_memory());
  std::vector<float> pixels(3 * 3 * 8 * 8);
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = std::cos(0.21f * static_cast<float>(i));
  std::vector<float> on_device(3 * 5), plain(3 * 5);
  Executor mixed(model, {&device, &reference});
  mixed.run(pixels.data(), 3, on_device.data());
  Executor host_only(model, {&reference});
  host_only.run(pixels.data(), 3, plain.data());
  check_near(on_device, plain);
  // Run again with the input left where it is (the benchmark's resident input): same answer.
  std::vector<float> again(3 * 5);
  mixed.run(nullptr, 3, again.data());
  CHECK(again == on_device);
  // The images differ, and so do their answers: the comparison above can fail.
  CHECK(std::fabs(plain[0] - plain[5]) > 1e-4);
  std::string placement = mixed.placement(3);
  CAPTURE(placement);
  CHECK(placement.find("fakedev  linear  patch_embed.proj") != std::string::npos);
  CHECK(placement.find("fakedev  add  blocks.0.residual1") != std::string::npos);
  CHECK(placement.find("copy  patch_embed.patchify to fakedev") != std::string::npos);  // host -> device
  CHECK(placement.find("copy  patch_embed.proj from fakedev") != std::string::npos);    // device -> host (concat)
  CHECK(placement.find("reference  linear") == std::string::npos);
  // The logits come from the head on the device, copied straight into the caller's array.
  CHECK(placement.find("fakedev  linear  head") != std::string::npos);
}

TEST_CASE("pixels for a device backend go in its staging memory, which the upload reads; plain memory elsewhere") {
  PluginHost host({VITBATCH_TEST_PLUGIN_DIR, VITBATCH_PLUGIN_DIR});
  test_support::TempDir dir;
  Model model = two_block_vit(dir);
  // With patchify on the device, the pixels themselves are what is uploaded.
  Backend device(host.find("fakedev"), BackendOptions{1, "fp32", "{}", {{"patchify", "true"}}});
  Backend reference(host.find("reference"), BackendOptions{});
  const size_t floats = 3 * 3 * 8 * 8;
  std::vector<float> values(floats);
  for (size_t i = 0; i < floats; ++i) values[i] = std::cos(0.37f * static_cast<float>(i));
  std::vector<float> from_staging(3 * 5), from_plain(3 * 5), host_only(3 * 5);
  {
    Executor mixed(model, {&device, &reference});
    PixelBuffer pixels = mixed.pixel_buffer(floats);
    CHECK(pixels.pinned());
    CHECK(pixels.size() == floats);
    CHECK(device.describe() == "fakedev: 1 staging buffer(s) out, 0 upload(s) from staging");
    std::copy(values.begin(), values.end(), pixels.data());
    // Moved, it is the same memory, given back once (fakedev aborts on a second free).
    PixelBuffer moved = std::move(pixels);
    CHECK(moved.pinned());
    CHECK(!pixels.pinned());
    CHECK(pixels.data() == nullptr);
    mixed.run(moved.data(), 3, from_staging.data());
    CHECK(device.describe() == "fakedev: 1 staging buffer(s) out, 1 upload(s) from staging");
    CHECK(mixed.placement(3).find("fakedev  patchify") != std::string::npos);
    mixed.run(values.data(), 3, from_plain.data());  // any host memory still does
    CHECK(device.describe() == "fakedev: 1 staging buffer(s) out, 1 upload(s) from staging");
  }
  CHECK(device.describe() == "fakedev: 0 staging buffer(s) out, 1 upload(s) from staging");
  Executor plain(model, {&reference});
  PixelBuffer pixels = plain.pixel_buffer(floats);
  CHECK(!pixels.pinned());
  CHECK(pixels.size() == floats);
  std::copy(values.begin(), values.end(), pixels.data());
  plain.run(pixels.data(), 3, host_only.data());
  CHECK(from_staging == from_plain);
  check_near(from_staging, host_only);
  CHECK(std::fabs(host_only[0] - host_only[5]) > 1e-4);  // the images differ: the comparison can fail
}

TEST_CASE("a device backend that records runs of its steps replays them whole: same answers, no executes from the host") {
  PluginHost host({VITBATCH_TEST_PLUGIN_DIR, VITBATCH_PLUGIN_DIR});
  test_support::TempDir dir;
  Model model = two_block_vit(dir);
  Backend reference(host.find("reference"), BackendOptions{});
  const size_t floats = 3 * 3 * 8 * 8;
  std::vector<float> first(floats), second(floats);
  for (size_t i = 0; i < floats; ++i) {
    first[i] = std::cos(0.21f * static_cast<float>(i));
    second[i] = std::sin(0.13f * static_cast<float>(i));
  }
  std::vector<float> want1(3 * 5), want2(3 * 5);
  Executor host_only(model, {&reference});
  host_only.run(first.data(), 3, want1.data());
  host_only.run(second.data(), 3, want2.data());
  CHECK(want1 != want2);  // the two batches differ: a replay of stale input would show
  auto counts = [](const std::string& describe) {
    std::vector<int> n;
    for (size_t at = describe.find("; "); at < describe.size(); ++at)
      if (std::isdigit(static_cast<unsigned char>(describe[at])) && !std::isdigit(static_cast<unsigned char>(describe[at - 1])))
        n.push_back(std::stoi(describe.substr(at)));
    return n;  // executes, recorded, replayed, forgotten
  };

  Backend device(host.find("fakedev"), BackendOptions{1, "fp32", "{}", {{"record", "true"}}});
  {
    Executor mixed(model, {&device, &reference});
    std::vector<float> got(3 * 5);
    mixed.run(first.data(), 3, got.data());  // records each run (computing nothing), then runs it
    check_near(got, want1);
    std::vector<int> after1 = counts(device.describe());
    CAPTURE(device.describe());
    REQUIRE(after1.size() == 4);
    const int executes = after1[0], runs = after1[1];
    CHECK(runs >= 2);  // e.g. fc1+gelu+fc2+add of each block
    CHECK(after1[2] == 0);
    mixed.run(second.data(), 3, got.data());  // replayed: new input, no executes
    check_near(got, want2);
    std::vector<int> after2 = counts(device.describe());
    // Only the steps outside any run (one between two copies) were executed again.
    const int single = after2[0] - executes;
    CHECK(executes - single >= 2 * runs);
    CHECK(after2[1] == runs);
    CHECK(after2[2] == runs);
    mixed.run(nullptr, 3, got.data());  // the input where it was: replayed again
    check_near(got, want2);
    std::vector<int> after3 = counts(device.describe());
    CHECK(after3[0] == after2[0] + single);
    CHECK(after3[2] == 2 * runs);
    CHECK(after3[3] == 0);
    CHECK(mixed.placement(3).find("fakedev  the next 4 steps as one run it records") != std::string::npos);
  }
  // The plan's release drops its recordings (their buffers are gone).
  std::vector<int> end = counts(device.describe());
  CHECK(end[3] == end[1]);

  // A recording that fails: the host executes the run again, and the answers stay right.
  Backend failing(host.find("fakedev"), BackendOptions{1, "fp32", "{}", {{"record", "fail"}}});
  Executor mixed(model, {&failing, &reference});
  std::vector<float> got(3 * 5);
  for (int round = 0; round < 2; ++round) {
    mixed.run(round ? second.data() : first.data(), 3, got.data());
    const std::vector<float>& want = round ? want2 : want1;
    check_near(got, want);
  }
  std::vector<int> failed = counts(failing.describe());
  CHECK(failed[1] == 0);
  CHECK(failed[2] == 0);
}

TEST_CASE("two batches in flight on a device backend with a queue: each batch its own answers, in its caller's array") {
  PluginHost host({VITBATCH_TEST_PLUGIN_DIR, VITBATCH_PLUGIN_DIR});
  test_support::TempDir dir;
  Model model = two_block_vit(dir);
  Backend reference(host.find("reference"), BackendOptions{});
  // queue=true: fakedev does its work only when waited for, so logits read before finish(),
  // or two batches sharing a buffer, come out wrong.
  Backend device(host.find("fakedev"), BackendOptions{1, "fp32", "{}", {{"patchify", "true"}, {"queue", "true"}}});
  CHECK(device.queues());
  const size_t image = 3 * 8 * 8;
  std::vector<std::vector<float>> batches;
  for (int b = 0; b < 5; ++b) {
    std::vector<float> v(3 * image);
    for (size_t i = 0; i < v.size(); ++i) v[i] = std::cos(0.07f * static_cast<float>(i) * static_cast<float>(b + 1) + b);
    batches.push_back(v);
  }
  Executor host_only(model, {&reference});
  std::vector<std::vector<float>> want(5, std::vector<float>(3 * 5));
  for (int b = 0; b < 5; ++b) host_only.run(batches[b].data(), 3, want[b].data());
  CHECK(want[0] != want[1]);

  Executor mixed(model, {&device, &reference});
  PixelBuffer pixels[2] = {mixed.pixel_buffer(3 * image), mixed.pixel_buffer(3 * image)};
  std::vector<std::vector<float>> got(5, std::vector<float>(3 * 5, -1.0f));
  // The first start builds the plan and runs at once; then two at a time stay in flight.
  for (int b = 0; b < 5; ++b) {
    if (mixed.in_flight() == 2) mixed.finish();  // frees the pixels of batch b - 2
    std::copy(batches[b].begin(), batches[b].end(), pixels[b % 2].data());
    mixed.start(pixels[b % 2].data(), 3, got[b].data());
    CHECK(mixed.in_flight() == (b == 0 ? 0u : std::min<size_t>(b, 2)));
  }
  CHECK(got[4] == std::vector<float>(3 * 5, -1.0f));  // not written before finish()
  while (mixed.in_flight()) mixed.finish();
  for (int b = 0; b < 5; ++b) {
    CAPTURE(b);
    check_near(got[b], want[b]);
  }
  std::string describe = device.describe();
  CAPTURE(describe);
  CHECK(describe.find("; 4 mark(s), 8 queued copies") != std::string::npos);  // batches 1-4: pixels up, logits down

  // run() and a new batch size finish what is in flight first; the input left in place
  // (null pixels) runs again.
  std::vector<float> a(3 * 5), b(3 * 5), c(5);
  mixed.start(pixels[0].data(), 3, a.data());
  mixed.run(nullptr, 3, b.data());
  CHECK(mixed.in_flight() == 0);
  CHECK(a == b);
  mixed.start(pixels[1].data(), 3, a.data());
  mixed.start(pixels[1].data(), 1, c.data());  // no plan for one image yet: built, run at once
  CHECK(mixed.in_flight() == 0);
  for (size_t i = 0; i < 5; ++i) CHECK(c[i] == doctest::Approx(a[i]).epsilon(1e-5));

  // Pixels in plain memory do too (read at once), and may be changed as soon as start() returns.
  std::vector<float> plain_pixels = batches[2], e(3 * 5), f(3 * 5);
  mixed.start(plain_pixels.data(), 3, e.data());
  std::fill(plain_pixels.begin(), plain_pixels.end(), 0.0f);
  mixed.start(plain_pixels.data(), 3, f.data());
  mixed.finish();
  mixed.finish();
  check_near(e, want[2]);
  CHECK(e != f);

  // Without a queue (the reference backend alone) start() runs at once.
  Executor plain(model, {&reference});
  std::vector<float> d(3 * 5);
  plain.start(batches[3].data(), 3, d.data());
  CHECK(plain.in_flight() == 0);
  CHECK(d == want[3]);
}
