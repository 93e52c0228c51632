// CSV rows and top-k.
#include "vitbatch/classify_run.hpp"
#include "vitbatch/csv_writer.hpp"
#include "vitbatch/labels.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <sstream>

using namespace vitbatch;

TEST_CASE("RFC 4180 quoting") {
  CHECK(csv_field("plain.jpg") == "plain.jpg");
  CHECK(csv_field("a,b.jpg") == "\"a,b.jpg\"");
  CHECK(csv_field("say \"hi\".png") == "\"say \"\"hi\"\".png\"");
  CHECK(csv_field("line\nbreak.png") == "\"line\nbreak.png\"");
}

TEST_CASE("header and rows") {
  std::vector<std::string> labels = {"tench, Tinca tinca", "goldfish, Carassius auratus", "great white shark"};
  std::ostringstream out;
  CsvWriter w(out, 2, labels);
  w.write_header();
  w.write_row("a.jpg", {{1, 0.75}, {0, 0.2500004}}, "");
  w.write_row("b,c.jpg", {}, "corrupt JPEG: Premature end of JPEG file");
  CHECK(out.str() ==
        "path,top1_index,top1_label,top1_prob,top2_index,top2_label,top2_prob,error\n"
        "a.jpg,1,goldfish,0.750000,0,tench,0.250000,\n"
        "\"b,c.jpg\",,,,,,,corrupt JPEG: Premature end of JPEG file\n");
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
