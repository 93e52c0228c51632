// Rows in CSV and JSON Lines, read back for --resume, and top-k.
#include "vitbatch/error.hpp"
#include "vitbatch/labels.hpp"
#include "vitbatch/prediction_format.hpp"

#include <doctest/doctest.h>

#include "test_support.hpp"

#include <cmath>
#include <set>

using namespace vitbatch;

namespace {
// Display names, as labels.hpp gives them: a custom label keeps its comma.
const std::vector<std::string> kLabels = {"tench", "goldfish", "great white shark, the big one"};
}

TEST_CASE("RFC 4180 quoting") {
  CHECK(csv_field("plain.jpg") == "plain.jpg");
  CHECK(csv_field("a,b.jpg") == "\"a,b.jpg\"");
  CHECK(csv_field("say \"hi\".png") == "\"say \"\"hi\"\".png\"");
  CHECK(csv_field("line\nbreak.png") == "\"line\nbreak.png\"");
}

TEST_CASE("CSV header and rows") {
  auto csv = PredictionFormat::make("csv", 2, kLabels);
  CHECK(csv->header() == "path,top1_index,top1_label,top1_prob,top2_index,top2_label,top2_prob,error\n");
  CHECK(csv->row("a.jpg", {{1, 0.75}, {0, 0.2500004}}, "") == "a.jpg,1,goldfish,0.750000,0,tench,0.250000,\n");
  CHECK(csv->row("b,c.jpg", {}, "corrupt JPEG: Premature end of JPEG file") ==
        "\"b,c.jpg\",,,,,,,corrupt JPEG: Premature end of JPEG file\n");
  CHECK_THROWS_AS(PredictionFormat::make("xml", 2, kLabels), Error);
}

TEST_CASE("JSON Lines rows escape bytes that are not UTF-8 as \\udcXX") {
  auto jsonl = PredictionFormat::make("jsonl", 1, kLabels);
  CHECK(jsonl->header().empty());
  CHECK(jsonl->row("caf\xc3\xa9/\"q\"\n.png", {{2, 0.5}}, "") ==
        "{\"path\":\"caf\xc3\xa9/\\\"q\\\"\\u000a.png\",\"predictions\":[{\"index\":2,\"label\":\"great white shark, the big one\","
        "\"prob\":0.500000}],\"error\":null}\n");
  CHECK(json_string("bad\xff\xfe") == "\"bad\\udcff\\udcfe\"");
  CHECK(json_string("\xed\xa0\x80") == "\"\\udced\\udca0\\udc80\"");  // an encoded surrogate is not UTF-8
  CHECK(jsonl->row("x.png", {}, "empty file") == "{\"path\":\"x.png\",\"predictions\":[],\"error\":\"empty file\"}\n");
}

TEST_CASE("records read back, whatever the path holds; a torn last record is not a record") {
  std::string weird = "dir,with \"quotes\"\nand newline \xff.png";
  for (const char* name : {"csv", "jsonl"}) {
    CAPTURE(name);
    auto f = PredictionFormat::make(name, 2, kLabels);
    std::string text = f->header() + f->row(weird, {{1, 0.9}, {0, 0.1}}, "") + f->row("bad.jpg", {}, "empty file");
    size_t complete_before_tail = text.size();
    std::string torn = f->row("torn.png", {{1, 0.9}, {0, 0.1}}, "");
    text += torn.substr(0, torn.size() / 2);
    size_t complete = 0;
    auto rows = f->parse(text, &complete);
    REQUIRE(rows.size() == 2);
    CHECK(rows[0].second.path == weird);
    CHECK(rows[0].second.has_prediction);
    CHECK(rows[1].second.path == "bad.jpg");
    CHECK_FALSE(rows[1].second.has_prediction);
    CHECK(complete == complete_before_tail);
  }
  auto csv3 = PredictionFormat::make("csv", 3, kLabels), csv2 = PredictionFormat::make("csv", 2, kLabels);
  size_t complete = 0;
  CHECK_THROWS_WITH_AS(csv2->parse(csv3->header(), &complete), doctest::Contains("another --top-k"), Error);
}

TEST_CASE("top_k is the softmax's k largest, ties to the lower index") {
  float logits[4] = {1.0f, 3.0f, 3.0f, -1.0f};
  auto p = top_k(logits, 4, 3);
  REQUIRE(p.size() == 3);
  CHECK(p[0].index == 1);
  CHECK(p[1].index == 2);
  CHECK(p[2].index == 0);
  double z = std::exp(1.0) + 2 * std::exp(3.0) + std::exp(-1.0);
  CHECK(p[0].probability == doctest::Approx(std::exp(3.0) / z));
  CHECK(top_k(logits, 4, 10).size() == 4);
}

TEST_CASE("built-in labels: first names, each class's name unique") {
  const auto& labels = imagenet1k_labels();
  REQUIRE(labels.size() == 1000);
  CHECK(labels[285] == "Egyptian cat");
  CHECK(labels[0] == "tench");
  CHECK(labels[999] == "toilet tissue");
  // Regression: 134/517 were both "crane" and 638/639 both "maillot".
  CHECK(labels[134] == "crane (bird)");
  CHECK(labels[517] == "crane (machine)");
  CHECK(labels[638] == "maillot");
  CHECK(labels[639] == "tank suit");
  std::set<std::string> unique(labels.begin(), labels.end());
  CHECK(unique.size() == 1000);
}

TEST_CASE("a custom label keeps its commas, in CSV (quoted) and JSONL") {
  auto csv = PredictionFormat::make("csv", 1, kLabels);
  CHECK(csv->row("a.jpg", {{2, 0.5}}, "") == "a.jpg,2,\"great white shark, the big one\",0.500000,\n");
}

TEST_CASE("probabilities below 1e-6 keep their magnitude") {
  auto csv = PredictionFormat::make("csv", 2, kLabels);
  CHECK(csv->row("a.jpg", {{1, 0.999999997}, {0, 3.14159265e-9}}, "") ==
        "a.jpg,1,goldfish,1.000000,0,tench,3.141593e-09,\n");
  CHECK(csv->row("a.jpg", {{1, 0.5}, {0, 1e-6}}, "") == "a.jpg,1,goldfish,0.500000,0,tench,0.000001,\n");
}

TEST_CASE("labels files: whole lines; a blank line inside is an error naming the line") {
  test_support::TempDir dir;
  std::string ok = dir.write("ok.txt", "cat, domestic\r\ndog\n\n\n");
  CHECK(load_labels(ok) == std::vector<std::string>{"cat, domestic", "dog"});
  std::string blank = dir.write("blank.txt", "cat\n\ndog\n");
  CHECK_THROWS_WITH_AS(load_labels(blank), doctest::Contains("blank.txt:2: blank line"), Error);
}

TEST_CASE("a JSON Lines record whose path is not a string ends the records, it does not throw") {
  // Found by fuzz_resume_reader: nlohmann's get<std::string>() threw type_error 302.
  auto jsonl = PredictionFormat::make("jsonl", 1, kLabels);
  std::string text = "{\"path\":\"a.png\",\"predictions\":[],\"error\":null}\n{\"path\":[],\"error\":\"x\"}\n";
  size_t complete = 0;
  auto rows = jsonl->parse(text, &complete);
  CHECK(rows.size() == 1);
  CHECK(complete == text.find('\n') + 1);
  CHECK_THROWS_AS(jsonl->parse("{\"path\":7,\"error\":null}\n", &complete), Error);
}
