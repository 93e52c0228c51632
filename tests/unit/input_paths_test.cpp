// Input expansion: order, filtering, stdin.
#include "test_support.hpp"
#include "vitbatch/archive_reader.hpp"
#include "vitbatch/input_paths.hpp"

#include <doctest/doctest.h>

#include <map>
#include <sstream>

#include <unistd.h>

using namespace vitbatch;

namespace {
std::vector<std::string> all(InputPaths& in) {
  std::vector<std::string> out;
  while (auto p = in.next()) out.push_back(p->error.empty() ? p->path : p->path + " ! " + p->error);
  return out;
}
}  // namespace

TEST_CASE("directories are walked recursively, filtered by extension and sorted; the rest is counted") {
  test_support::TempDir dir;
  // Regression: .webp .bmp .tif .tiff .gif .jfif .jpe and extensionless JPEGs were skipped
  // without a word.
  for (const char* f : {"b.JPG", "a.png", "sub/c.jpeg", "sub/z.txt", "d.gif", "A.PNG", "sub/deeper/e.jpg", "f.webp",
                        "g.BMP", "h.tif", "i.tiff", "j.jfif", "k.jpe", "notes.txt", "README", ".hidden"})
    dir.write(f, std::string("x"));
  dir.write("camera0001", std::string("\xFF\xD8\xFF\xE0 a JPEG without an extension"));
  std::istringstream stdin_text;
  InputPaths in({dir.path()}, stdin_text);
  std::string d = dir.path() + "/";
  CHECK(all(in) == std::vector<std::string>{d + "A.PNG", d + "a.png", d + "b.JPG", d + "camera0001", d + "d.gif",
                                            d + "f.webp", d + "g.BMP", d + "h.tif", d + "i.tiff", d + "j.jfif",
                                            d + "k.jpe", d + "sub/c.jpeg", d + "sub/deeper/e.jpg"});
  CHECK(in.ignored() == std::map<std::string, int64_t>{{".txt", 2}, {"no extension", 2}});
}

TEST_CASE("keys: relative to the directory argument, whatever its spelling; absolute for files") {
  test_support::TempDir dir;
  dir.write("photos/sub/a.jpg", std::string("x"));
  std::istringstream none;
  std::string cwd = current_directory();
  for (const std::string& arg : {dir.file("photos"), dir.file("photos") + "/", dir.file("photos") + "/./sub/.."}) {
    InputPaths in({arg}, none);
    auto item = in.next();
    REQUIRE(item);
    CHECK(item->key == "sub/a.jpg");
  }
  InputPaths files({"x/../y.jpg", "/abs//z.png"}, none);
  CHECK(files.next()->key == cwd + "/y.jpg");
  CHECK(files.next()->key == "/abs/z.png");
  CHECK(lexically_absolute("../a/./b", "/w/c") == "/w/a/b");
  CHECK(lexically_absolute("/../..", "/w") == "/");
}

TEST_CASE("arguments keep their order; files are taken as given; - reads stdin") {
  test_support::TempDir dir;
  dir.write("x/1.png", std::string("x"));
  std::istringstream stdin_text("from/stdin one.jpg\r\n\nsecond.png\n");
  InputPaths in({"given.txt", "-", dir.file("x"), "missing.jpg"}, stdin_text);
  CHECK(all(in) == std::vector<std::string>{"given.txt", "from/stdin one.jpg", "second.png", dir.file("x") + "/1.png", "missing.jpg"});
  CHECK(has_image_extension("a/b.JpEg"));
  CHECK(has_image_extension("a/b.webp"));
  CHECK_FALSE(has_image_extension("a/b.txt"));
  CHECK_FALSE(has_image_extension("a.jpg/b"));
}

TEST_CASE("a directory is walked in full-path byte order, symlink loops are walked once") {
  test_support::TempDir dir;
  for (const char* f : {"a/b.jpg", "a/b/c.jpg", "a/b-c.png", "a.png"}) dir.write(f, std::string("x"));
  REQUIRE(symlink(dir.path().c_str(), dir.file("a/b/loop").c_str()) == 0);
  REQUIRE(symlink("nowhere.jpg", dir.file("a/broken.jpg").c_str()) == 0);
  std::istringstream none;
  InputPaths in({dir.path()}, none);
  std::string d = dir.path() + "/";
  // "a/b-c.png" < "a/b.jpg" < "a/b/c.jpg" as bytes ('-' < '.' < '/'); the loop adds nothing.
  CHECK(all(in) == std::vector<std::string>{d + "a.png", d + "a/b-c.png", d + "a/b.jpg", d + "a/b/c.jpg", d + "a/broken.jpg"});
}

TEST_CASE("NUL-separated stdin keeps newlines in names") {
  std::istringstream stdin_text(std::string("one\nline.png\0two.jpg\0", 22));
  InputPaths in({"-"}, stdin_text, true);
  CHECK(all(in) == std::vector<std::string>{"one\nline.png", "two.jpg"});
}

TEST_CASE("reading stdin from a descriptor times out instead of blocking") {
  int fds[2];
  REQUIRE(pipe(fds) == 0);
  InputPaths in({"-"}, fds[0]);
  InputItem item;
  CHECK(in.next(item, 10) == InputStatus::Pending);
  REQUIRE(write(fds[1], "x.png\ny.png", 11) == 11);
  CHECK(in.next(item, 100) == InputStatus::Item);
  CHECK(item.path == "x.png");
  close(fds[1]);
  CHECK(in.next(item, 100) == InputStatus::Item);  // the last line has no newline
  CHECK(item.path == "y.png");
  CHECK(in.next(item, 100) == InputStatus::End);
  close(fds[0]);
}

TEST_CASE("archive names, WebDataset keys and URLs") {
  CHECK(has_archive_extension("shards/part-000001.tar"));
  CHECK(has_archive_extension("x.TGZ"));
  CHECK(has_archive_extension("a.tar.zst"));
  CHECK_FALSE(has_archive_extension(".tar"));
  CHECK_FALSE(has_archive_extension("dir.tar/photo.jpg"));
  CHECK_FALSE(has_archive_extension("photo.tar.jpg"));
  CHECK(webdataset_key("train/000042.seg.png") == "train/000042");
  CHECK(webdataset_key("a.b/c") == "a.b/c");
  CHECK(webdataset_key("x.jpg") == "x");
  CHECK(looks_like_url("s3://bucket/key.jpg"));
  CHECK(looks_like_url("https://example.com/a.png"));
  CHECK(looks_like_url("gs+x.y-z://a"));
  CHECK_FALSE(looks_like_url("photos/s3://x"));
  CHECK_FALSE(looks_like_url("://x"));
  CHECK_FALSE(looks_like_url("/abs/a.jpg"));
}
