// --resume's repair of an interrupted output, and --shard's partition.
#include "test_support.hpp"
#include "vitbatch/error.hpp"
#include "vitbatch/resume.hpp"
#include "vitbatch/run_record.hpp"
#include "vitbatch/shard.hpp"

#include <doctest/doctest.h>

#include <fstream>
#include <sstream>

using namespace vitbatch;

namespace {
std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}
}  // namespace

TEST_CASE("resume keeps prediction rows, drops error rows and a torn tail") {
  test_support::TempDir dir;
  std::vector<std::string> labels = {"a", "b"};
  auto csv = PredictionFormat::make("csv", 1, labels);
  std::string good1 = csv->row("one.jpg", {{0, 1.0}}, ""), bad = csv->row("two.jpg", {}, "empty file"),
              good2 = csv->row("three,3.jpg", {{1, 1.0}}, "");
  std::string path = dir.write("out.csv", csv->header() + good1 + bad + good2 + "four.jpg,1,b,0.99");
  ResumeState s = prepare_resume(path, *csv);
  CHECK(s.done == std::unordered_set<std::string>{"one.jpg", "three,3.jpg"});
  CHECK(s.has_header);
  CHECK(s.dropped_errors == 1);
  CHECK(s.repaired_tail);
  CHECK(slurp(path) == csv->header() + good1 + good2);

  SUBCASE("a missing file is a fresh start") {
    ResumeState fresh = prepare_resume(dir.file("none.csv"), *csv);
    CHECK(fresh.done.empty());
    CHECK_FALSE(fresh.has_header);
  }
  SUBCASE("a file of another shape is refused") {
    std::string other = dir.write("other.csv", std::string("path,label\nx,y\n"));
    CHECK_THROWS_WITH_AS(prepare_resume(other, *csv), doctest::Contains("other.csv: cannot resume: its header"), Error);
  }
}

TEST_CASE("shards partition the inputs") {
  CHECK_THROWS_AS(Shard::parse("3/3"), Error);
  CHECK_THROWS_AS(Shard::parse("1"), Error);
  CHECK_THROWS_AS(Shard::parse("-1/2"), Error);
  CHECK_THROWS_AS(Shard::parse("0/0"), Error);
  std::vector<Shard> shards = {Shard::parse("0/3"), Shard::parse("1/3"), Shard::parse("2/3")};
  std::vector<int> sizes(3);
  for (int i = 0; i < 3000; ++i) {
    std::string path = "photos/" + std::to_string(i) + ".jpg";
    int owners = 0;
    for (int s = 0; s < 3; ++s)
      if (shards[s].contains(path)) ++owners, ++sizes[s];
    CHECK(owners == 1);
  }
  for (int n : sizes) CHECK(n > 900);  // FNV-1a spreads evenly
  CHECK(fnv1a64("") == 1469598103934665603ULL);
}

TEST_CASE("a run record's counts must be integers") {
  test_support::TempDir dir;
  const std::string fields = R"("model": "m", "backend": "reference", "precision": "fp32")";
  dir.write("a.meta.json", "{" + fields + R"(, "top_k": 5, "model_bytes": 1234})");
  auto r = read_run_record(dir.file("a.meta.json"));
  REQUIRE(r);
  CHECK(r->top_k == 5);
  CHECK(r->model_bytes == 1234);
  dir.write("b.meta.json", "{" + fields + R"(, "top_k": 1e30})");
  CHECK_THROWS_WITH_AS(read_run_record(dir.file("b.meta.json")), doctest::Contains("not a vitbatch run record: top_k must be an integer, got 1e+30"), Error);
  dir.write("c.meta.json", "{" + fields + R"(, "top_k": -3})");
  CHECK_THROWS_WITH_AS(read_run_record(dir.file("c.meta.json")), doctest::Contains("top_k -3 is out of range"), Error);
  dir.write("d.meta.json", "{" + fields + R"(, "model_bytes": 12.5})");
  CHECK_THROWS_WITH_AS(read_run_record(dir.file("d.meta.json")), doctest::Contains("model_bytes must be an integer, got 12.5"), Error);
}
