// Input expansion: order, filtering, stdin.
#include "test_support.hpp"
#include "vitbatch/input_paths.hpp"

#include <doctest/doctest.h>

#include <sstream>

using namespace vitbatch;

namespace {
std::vector<std::string> all(InputPaths& in) {
  std::vector<std::string> out;
  while (auto p = in.next()) out.push_back(*p);
  return out;
}
}  // namespace

TEST_CASE("directories are walked recursively, filtered by extension and sorted") {
  test_support::TempDir dir;
  for (const char* f : {"b.JPG", "a.png", "sub/c.jpeg", "sub/z.txt", "d.gif", "A.PNG", "sub/deeper/e.jpg"})
    dir.write(f, std::string("x"));
  std::istringstream stdin_text;
  InputPaths in({dir.path()}, stdin_text);
  std::string d = dir.path() + "/";
  CHECK(all(in) == std::vector<std::string>{d + "A.PNG", d + "a.png", d + "b.JPG", d + "sub/c.jpeg", d + "sub/deeper/e.jpg"});
}

TEST_CASE("arguments keep their order; files are taken as given; - reads stdin") {
  test_support::TempDir dir;
  dir.write("x/1.png", std::string("x"));
  std::istringstream stdin_text("from/stdin one.jpg\r\n\nsecond.png\n");
  InputPaths in({"given.txt", "-", dir.file("x"), "missing.jpg"}, stdin_text);
  CHECK(all(in) == std::vector<std::string>{"given.txt", "from/stdin one.jpg", "second.png", dir.file("x") + "/1.png", "missing.jpg"});
  CHECK(has_image_extension("a/b.JpEg"));
  CHECK_FALSE(has_image_extension("a/b.webp"));
}
