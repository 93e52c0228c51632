// RangeCollector: MinMax is exact, percentiles clip the rarest values, and a histogram that
// has to widen (a value beyond its range) keeps every count. The ranges travel to the graph.
#include "vitbatch/int8_ranges.hpp"

#include "vitbatch/error.hpp"
#include "vitbatch/vit_graph.hpp"

#include <doctest/doctest.h>

#include <random>
#include <vector>

using namespace vitbatch;

TEST_CASE("minmax keeps the extremes of every batch seen") {
  RangeCollector c({"minmax", 100});
  std::vector<float> a{-0.5f, 0.25f, 1.5f}, b{-3.0f, 0.0f, 0.75f};
  c.observe("fc", a.data(), 3);
  c.observe("fc", b.data(), 3);
  Int8Ranges r = c.ranges();
  CHECK(r.at("fc").lo == -3.0f);
  CHECK(r.at("fc").hi == 1.5f);
}

TEST_CASE("percentiles clip rare outliers, also after the histogram widens") {
  RangeCollector c({"percentile", 99.9});
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> x(100000);
  for (float& v : x) v = u(rng);
  c.observe("qkv", x.data(), static_cast<int64_t>(x.size()));
  std::vector<float> outliers{-40.0f, 55.0f};  // widens [-1, 1) to [-64, 64): bins merge 6 times
  c.observe("qkv", outliers.data(), 2);
  params::Range r = c.ranges().at("qkv");
  // 0.1% of 100,002 values is 100 at each end: the uniform's own tails, not the outliers;
  // at the widened histogram's resolution (128 / 2048 = 1/16).
  CHECK(r.lo >= -1.0f - 1.0f / 16);
  CHECK(r.lo <= -0.9f);
  CHECK(r.hi <= 1.0f + 1.0f / 16);
  CHECK(r.hi >= 0.9f);
  RangeCollector all({"minmax", 100});
  all.observe("qkv", x.data(), static_cast<int64_t>(x.size()));
  all.observe("qkv", outliers.data(), 2);
  CHECK(all.ranges().at("qkv").hi == 55.0f);
}

TEST_CASE("bad methods and values that are not finite are refused") {
  CHECK_THROWS_AS(RangeCollector({"entropy", 99}), Error);
  CHECK_THROWS_AS(RangeCollector({"percentile", 40}), Error);
  RangeCollector c({"minmax", 100});
  std::vector<float> x{1.0f, std::numeric_limits<float>::infinity()};
  CHECK_THROWS_WITH_AS(c.observe("head", x.data(), 2), doctest::Contains("'head'"), Error);
}

TEST_CASE("keep_float marks by name or name ending, and names what matches nothing") {
  Int8Ranges r{{"blocks.0.mlp.fc2", {}}, {"blocks.1.mlp.fc2", {}}, {"blocks.0.mlp.fc1", {}}, {"head", {}}};
  CHECK(keep_float(r, {"mlp.fc2"}) == 2);
  CHECK(r["blocks.0.mlp.fc2"].keep_float);
  CHECK_FALSE(r["blocks.0.mlp.fc1"].keep_float);
  CHECK(keep_float(r, {"head"}) == 1);
  CHECK_THROWS_WITH_AS(keep_float(r, {"fc3"}), doctest::Contains("'fc3'"), Error);
  CHECK_THROWS_AS(keep_float(r, {"c2"}), Error);  // a name ending only at a dot
}

TEST_CASE("the ranges reach the linear and MLP nodes, and lowering the MLP keeps them") {
  params::Range fc1{-2.0f, 3.0f}, fc2{-0.17f, 5.0f, true};
  Params p = params::mlp(&fc1, &fc2);
  CHECK(p.ints[0] == 1);
  CHECK(p.ints[1] == 2);
  std::vector<float> w1(8 * 4), b1(8), w2(4 * 8), b2(4);
  Graph g;
  int x = g.add_input("x", {1, 3, 4});
  int n = g.add_node(Op::MLP, {x, g.add_constant("w1", {8, 4}, w1.data()), g.add_constant("b1", {8}, b1.data()),
                               g.add_constant("w2", {4, 8}, w2.data()), g.add_constant("b2", {4}, b2.data())},
                     p, "blocks.0.mlp");
  g.mark_output(n);
  Graph lowered = lower_composites(g, [](const Graph&, const Node&) { return false; });
  const Node& first = lowered.nodes().front();
  const Node& last = lowered.nodes().back();
  CHECK(first.name == "blocks.0.mlp.fc1");
  CHECK(first.params.ints[0] == 1);
  CHECK(first.params.ints[1] == 0);
  CHECK(first.params.floats[1] == 3.0f);
  CHECK(last.name == "blocks.0.mlp.fc2");
  CHECK(last.params.ints[1] == 1);
  CHECK(last.params.floats[0] == -0.17f);
}
