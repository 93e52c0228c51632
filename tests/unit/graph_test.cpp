// The IR's builder and verifier: every failure names the node and the value at fault.
#include "vitbatch/error.hpp"
#include "vitbatch/graph.hpp"

#include <doctest/doctest.h>

using namespace vitbatch;

namespace {
float weights[64];

Graph small_graph(int* out = nullptr) {
  Graph g;
  int x = g.add_input("x", {2, 3, 4});
  int w = g.add_constant("w", {5, 4}, weights);
  int y = g.add_node(Op::LINEAR, {x, w}, {}, "proj");
  y = g.add_node(Op::GELU, {y}, {}, "act");
  g.mark_output(y);
  if (out) *out = y;
  return g;
}
}  // namespace

TEST_CASE("a well-formed graph verifies and prints") {
  Graph g = small_graph();
  CHECK_NOTHROW(g.verify());
  CHECK(g.value(g.outputs()[0]).shape == Shape{2, 3, 5});
  CHECK(g.total_macs() == 2 * 3 * 5 * 4);
  std::string text = g.to_string();
  CHECK(text.find("%2 = linear(%0, w) : [2,3,5]  # proj") != std::string::npos);
}

TEST_CASE("add_node rejects bad shapes naming the node") {
  Graph g;
  int x = g.add_input("x", {2, 3, 4});
  int w = g.add_constant("w", {5, 7}, weights);
  CHECK_THROWS_WITH_AS(g.add_node(Op::LINEAR, {x, w}, {}, "blocks.0.fc1"),
                       "node 'blocks.0.fc1' (linear): x [2,3,4] and weight [5,7] disagree on K", Error);
  CHECK_THROWS_WITH_AS(g.add_node(Op::GELU, {42}, {}, "act"),
                       "node 'act' (gelu): input value %42 does not exist", Error);
  Params bad_perm = dims_params({0, 0, 1});
  CHECK_THROWS_WITH_AS(g.add_node(Op::PERMUTE, {x}, bad_perm, "perm"),
                       "node 'perm' (permute): not a permutation: [0,0,1]", Error);
}

TEST_CASE("verify finds problems introduced after building") {
  SUBCASE("a recorded shape that the op does not give") {
    int y;
    Graph g = small_graph(&y);
    g.mutable_values()[y].shape = {2, 3, 6};
    CHECK_THROWS_WITH_AS(g.verify(),
                         "node #1 'act' (gelu): output %3 'act' has shape [2,3,6], the op gives [2,3,5]", Error);
  }
  SUBCASE("a value used before it is produced") {
    Graph g = small_graph();
    std::swap(g.mutable_nodes()[0], g.mutable_nodes()[1]);
    CHECK_THROWS_WITH_AS(g.verify(), "node #0 'act' (gelu): input %2 'proj' is used before it is produced", Error);
  }
  SUBCASE("a wrong dtype") {
    Graph g = small_graph();
    g.mutable_values()[1].dtype = DType::I8;
    CHECK_THROWS_WITH_AS(g.verify(), "node #0 'proj' (linear): input %1 'w' has dtype i8, expected f32", Error);
  }
  SUBCASE("no outputs") {
    Graph g;
    g.add_input("x", {1});
    CHECK_THROWS_WITH_AS(g.verify(), "graph has no outputs", Error);
  }
  SUBCASE("an orphan value") {
    Graph g = small_graph();
    g.mutable_values().push_back(Value{4, DType::F32, {1}, -1, nullptr, "stray"});
    CHECK_THROWS_WITH_AS(g.verify(), "value %4 'stray' is neither an input, a constant nor a node's result", Error);
  }
}

TEST_CASE("shape rules of the ops") {
  Params p;
  p.ints[0] = 16;
  CHECK(infer_shape(Op::PATCHIFY, {{2, 3, 224, 224}}, p) == Shape{2, 196, 768});
  CHECK_THROWS_WITH_AS(infer_shape(Op::PATCHIFY, {{2, 3, 225, 224}}, p), "patch size 16 does not divide [2,3,225,224]", Error);
  Params concat;
  concat.ints[0] = 1;
  CHECK(infer_shape(Op::CONCAT, {{1, 1, 8}, {4, 9, 8}}, concat) == Shape{4, 10, 8});
  CHECK(infer_shape(Op::ADD, {{4, 10, 8}, {1, 10, 8}}, {}) == Shape{4, 10, 8});
  CHECK_THROWS_AS(infer_shape(Op::ADD, {{4, 10, 8}, {4, 10, 7}}, {}), Error);
  Params tb;
  tb.ints[0] = 1;
  CHECK(infer_shape(Op::BATCH_MATMUL, {{2, 3, 5, 4}, {2, 3, 6, 4}}, tb) == Shape{2, 3, 5, 6});
  Params attn;
  attn.ints[0] = 3;
  CHECK(infer_shape(Op::ATTENTION, {{2, 197, 576}}, attn) == Shape{2, 197, 192});
  attn.ints[0] = 5;
  CHECK_THROWS_WITH_AS(infer_shape(Op::ATTENTION, {{2, 197, 576}}, attn), "heads 5 does not divide D=192", Error);
  Params sl;
  sl.ints[0] = 1, sl.ints[1] = 0, sl.ints[2] = 1;
  CHECK(infer_shape(Op::SLICE, {{2, 197, 8}}, sl) == Shape{2, 1, 8});
  CHECK(infer_shape(Op::RESHAPE, {{2, 1, 8}}, dims_params({2, 8})) == Shape{2, 8});
  CHECK_THROWS_AS(infer_shape(Op::RESHAPE, {{2, 1, 8}}, dims_params({3, 8})), Error);
  CHECK(std::string(op_name(Op::MLP)) == "mlp");
}
