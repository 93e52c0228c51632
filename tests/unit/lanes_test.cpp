// Lanes: a batch's images run side by side, each alone, on contexts of their own
// (Executor::set_lanes, Runtime's lanes option).
#include "test_support.hpp"
#include "vitbatch/error.hpp"
#include "vitbatch/executor.hpp"
#include "vitbatch/plugin_host.hpp"
#include "vitbatch/runtime.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <memory>

using namespace vitbatch;

namespace {

struct TinyModel {
  test_support::TempDir dir;
  Model model;
  TinyModel() : model(load(dir)) {}
  static Model load(test_support::TempDir& dir) {
    dir.write("model.safetensors", test_support::safetensors_bytes(test_support::varied(test_support::tiny_vit(2))));
    dir.write("config.json", R"({"num_heads": 1})");
    return load_model(dir.path());
  }
};

std::vector<float> test_pixels(int64_t n) {
  std::vector<float> pixels(static_cast<size_t>(n * 3 * 8 * 8));
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = std::sin(0.37f * static_cast<float>(i));
  return pixels;
}

// `count` sets of contexts of `names`, each with `threads` threads and these options.
struct Contexts {
  std::vector<std::vector<std::unique_ptr<Backend>>> sets;
  Contexts(PluginHost& host, const std::vector<std::string>& names, int count, int threads,
           const std::vector<std::pair<std::string, std::string>>& options = {}) {
    for (int i = 0; i < count; ++i) {
      sets.emplace_back();
      for (const std::string& name : names) {
        BackendOptions o;
        o.threads = threads;
        o.options = options;
        sets.back().push_back(std::make_unique<Backend>(host.find(name), o));
      }
    }
  }
  std::vector<Backend*> set(int i) {
    std::vector<Backend*> out;
    for (auto& b : sets[i]) out.push_back(b.get());
    return out;
  }
  std::vector<std::vector<Backend*>> lanes() {
    std::vector<std::vector<Backend*>> out;
    for (int i = 1; i < static_cast<int>(sets.size()); ++i) out.push_back(set(i));
    return out;
  }
};

}  // namespace

TEST_CASE("lanes run each image of a batch alone, with the answers of one executor") {
  PluginHost host({VITBATCH_PLUGIN_DIR});
  TinyModel tiny;
  Contexts plain(host, {"reference"}, 1, 1), laned(host, {"reference"}, 3, 1);
  Executor reference(tiny.model, plain.set(0));
  Executor executor(tiny.model, laned.set(0));
  executor.set_lanes(laned.lanes());
  CHECK(executor.lanes() == 2);
  std::vector<float> pixels = test_pixels(7), expected(7 * 5);
  reference.run(pixels.data(), 7, expected.data());
  for (int64_t n : {7, 2, 3, 1, 5}) {
    CAPTURE(n);
    std::vector<float> logits(static_cast<size_t>(n * 5), -1.0f);
    executor.run(pixels.data(), n, logits.data());
    // The reference kernels do not depend on the thread count: equal to the bit.
    for (int64_t i = 0; i < n * 5; ++i) CHECK(logits[i] == expected[i]);
  }
  // Batches of 2+ went to the lanes (each with a plan for one image); the 1-image batch,
  // and nothing else, was planned here.
  CHECK(executor.cached_plans() == 1);
  // run(nullptr) after a laned batch runs the same images again.
  std::vector<float> again(5 * 5, -1.0f);
  executor.run(nullptr, 5, again.data());
  for (int64_t i = 0; i < 25; ++i) CHECK(again[i] == expected[i]);
  CHECK_THROWS_WITH_AS(executor.run(nullptr, 4, again.data()), "no earlier input of this batch size to run again", Error);
}

TEST_CASE("lanes run at the same time, and a lane's failure is the run's error") {
  PluginHost host({VITBATCH_TEST_PLUGIN_DIR, VITBATCH_PLUGIN_DIR});
  TinyModel tiny;
  // rendezvous contexts wait in their first execute until two of them are inside at once.
  Contexts pair(host, {"rendezvous", "reference"}, 3, 1);
  Executor executor(tiny.model, pair.set(0));
  executor.set_lanes(pair.lanes());
  std::vector<float> pixels = test_pixels(4), logits(4 * 5), expected(4 * 5);
  executor.run(pixels.data(), 4, logits.data());
  Contexts plain(host, {"reference"}, 1, 1);
  Executor(tiny.model, plain.set(0)).run(pixels.data(), 4, expected.data());
  for (size_t i = 0; i < logits.size(); ++i) CHECK(std::fabs(logits[i] - expected[i]) <= 1e-5f * (1 + std::fabs(expected[i])));

  // Three must meet, but there are two lanes: each lane fails, the run throws, nothing hangs.
  Contexts three(host, {"rendezvous", "reference"}, 3, 1, {{"meet", "3"}, {"wait_ms", "300"}});
  Executor stuck(tiny.model, three.set(0));
  stuck.set_lanes(three.lanes());
  try {
    stuck.run(pixels.data(), 4, logits.data());
    FAIL("the lanes' failure was lost");
  } catch (const Error& e) {
    const std::string what = e.what();
    CHECK(what.find("backend 'rendezvous' failed on node ") == 0);
    CHECK(what.find(": no other context ran at the same time") != std::string::npos);
  }
}

TEST_CASE("only backends that allow it run in lanes; the runtime picks one lane per thread") {
  PluginHost host({VITBATCH_TEST_PLUGIN_DIR, VITBATCH_PLUGIN_DIR});
  TinyModel tiny;
  Contexts failing(host, {"failing", "reference"}, 3, 1);
  Executor executor(tiny.model, failing.set(0));
  CHECK_THROWS_WITH_AS(executor.set_lanes(failing.lanes()), "internal: backend 'failing' cannot run in lanes", Error);

  RuntimeOptions o;
  o.model = tiny.dir.path();
  o.backend = "reference";
  o.plugin_dirs_flag = {VITBATCH_PLUGIN_DIR};
  o.backend_options.threads = 3;
  {
    Runtime runtime(o);
    CHECK(runtime.executor().lanes() == 3);
    CHECK(runtime.running() == "reference fp32, 3 threads, 3 lanes");
  }
  o.lanes = 1;
  CHECK(Runtime(o).executor().lanes() == 0);
  o.lanes = 2;  // 2 + 1 threads
  CHECK(Runtime(o).executor().lanes() == 2);
  o.lanes = 4;
  CHECK_THROWS_WITH_AS(Runtime{o}, "lanes (4) cannot be more than threads (3): each lane runs on threads of its own", Error);
  o.lanes = 0;
  o.backend_options.threads = 1;
  CHECK(Runtime(o).executor().lanes() == 0);
}
