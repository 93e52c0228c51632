// Rows in CSV and JSON Lines, read back for --resume, and top-k.
#include "vitbatch/error.hpp"
#include "vitbatch/labels.hpp"
#include "vitbatch/prediction_format.hpp"

#include <doctest/doctest.h>

#include <cmath>

using namespace vitbatch;

namespace {
const std::vector<std::string> kLabels = {"tench, Tinca tinca", "goldfish, Carassius auratus", "great white shark"};
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
        "{\"path\":\"caf\xc3\xa9/\\\"q\\\"\\u000a.png\",\"predictions\":[{\"index\":2,\"label\":\"great white shark\","
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

TEST_CASE("built-in labels") {
  const auto& labels = imagenet1k_labels();
  REQUIRE(labels.size() == 1000);
  CHECK(first_name(labels[285]) == "Egyptian cat");
  CHECK(first_name(labels[0]) == "tench");
  CHECK(first_name(labels[999]) == "toilet tissue");
}
