// Bad image files: each is an Error with a precise reason, and nothing hangs or aborts.
// Decoding parity with Pillow is tests/python/test_preprocess_parity.py.
#include "test_support.hpp"
#include "vitbatch/error.hpp"
#include "vitbatch/image.hpp"

#include <doctest/doctest.h>

#include <atomic>
#include <csignal>

#include <linux/capability.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

using namespace vitbatch;

namespace {

// Root reads any file, so to test "Permission denied" for real the test drops the two
// capabilities that bypass file permissions from this thread's effective set, and restores
// them afterwards (they stay in the permitted set).
class WithoutFileCapabilities {
 public:
  WithoutFileCapabilities() {
    if (geteuid() != 0) return;
    syscall(SYS_capget, &header_, saved_);
    __user_cap_data_struct reduced[2] = {saved_[0], saved_[1]};
    reduced[0].effective &= ~((1u << CAP_DAC_OVERRIDE) | (1u << CAP_DAC_READ_SEARCH));
    REQUIRE(syscall(SYS_capset, &header_, reduced) == 0);
    dropped_ = true;
  }
  ~WithoutFileCapabilities() {
    if (dropped_) syscall(SYS_capset, &header_, saved_);
  }

 private:
  __user_cap_header_struct header_{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct saved_[2]{};
  bool dropped_ = false;
};

const uint8_t kPngHeader[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};

uint32_t crc32(const uint8_t* p, size_t n) {
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < n; ++i) {
    c ^= p[i];
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
  }
  return ~c;
}

// A PNG signature and a valid IHDR claiming width x height, and nothing after it.
std::vector<uint8_t> png_header_only(uint32_t width, uint32_t height) {
  std::vector<uint8_t> b(kPngHeader, kPngHeader + 8);
  uint8_t ihdr[] = {0, 0, 0, 13, 'I', 'H', 'D', 'R', uint8_t(width >> 24), uint8_t(width >> 16), uint8_t(width >> 8),
                    uint8_t(width), uint8_t(height >> 24), uint8_t(height >> 16), uint8_t(height >> 8), uint8_t(height),
                    8, 2, 0, 0, 0, 0, 0, 0, 0};  // 8-bit RGB, then the CRC
  uint32_t crc = crc32(ihdr + 4, 17);
  for (int i = 0; i < 4; ++i) ihdr[21 + i] = uint8_t(crc >> (24 - 8 * i));
  b.insert(b.end(), ihdr, ihdr + sizeof ihdr);
  return b;
}

}  // namespace

TEST_CASE("files that are not images say why") {
  test_support::TempDir dir;
  CHECK_THROWS_WITH_AS(read_image(dir.write("empty.jpg", std::string())), "empty file", Error);
  CHECK_THROWS_WITH_AS(read_image(dir.write("text.png", std::string("hello, I am text"))),
                       "not an image vitbatch reads (JPEG, PNG, WebP, TIFF, GIF, BMP): unrecognised content", Error);
  CHECK_THROWS_WITH_AS(read_image(dir.file("missing.jpg")), "No such file or directory", Error);
  CHECK_THROWS_WITH_AS(read_image(dir.path()), "is a directory", Error);
  CHECK_THROWS_WITH_AS(read_image(dir.write("cut.png", std::vector<uint8_t>(kPngHeader, kPngHeader + 8))),
                       doctest::Contains("corrupt PNG"), Error);
  std::vector<uint8_t> jpeg_start = {0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, 'J', 'F', 'I', 'F'};
  CHECK_THROWS_WITH_AS(read_image(dir.write("cut.jpg", jpeg_start)), doctest::Contains("corrupt JPEG"), Error);
}

TEST_CASE("a FIFO named like an image fails at once instead of waiting for a writer") {
  test_support::TempDir dir;
  REQUIRE(mkfifo(dir.file("pipe.jpg").c_str(), 0644) == 0);
  CHECK_THROWS_WITH_AS(read_image(dir.file("pipe.jpg")), "not a regular file", Error);
}

TEST_CASE("an unreadable file is a permission error") {
  test_support::TempDir dir;
  std::string path = dir.write("secret.png", png_header_only(4, 4));
  REQUIRE(chmod(path.c_str(), 0) == 0);
  WithoutFileCapabilities as_a_user;
  CHECK_THROWS_WITH_AS(read_image(path), "Permission denied", Error);
}

TEST_CASE("the pixel limit is checked from the header, before any pixel is allocated") {
  test_support::TempDir dir;
  DecodeOptions options;
  // 60000 x 60000 would need 10 GB; the header alone decides.
  CHECK_THROWS_WITH_AS(read_image(dir.write("bomb.png", png_header_only(60000, 60000)), options),
                       "image is 60000x60000 = 3600000000 pixels, over the limit of 178956970 (--max-pixels)", Error);
  options.max_pixels = 15;
  CHECK_THROWS_WITH_AS(read_image(dir.write("small.png", png_header_only(4, 4)), options),
                       doctest::Contains("= 16 pixels, over the limit of 15"), Error);
}

TEST_CASE("EXIF orientation: the tag is found and the eight transposes are right") {
  // A big-endian TIFF block with one IFD entry: Orientation = 6.
  const uint8_t tiff[] = {'M', 'M', 0, 42, 0, 0, 0, 8, 0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 0, 0, 0, 0, 0, 0};
  CHECK(exif_orientation(tiff, sizeof tiff) == 6);
  CHECK(exif_orientation(tiff, 10) == 1);  // cut short: no tag, no crash
  // 3x2 image whose red channel numbers the pixels 0..5 row by row.
  RgbImage img{3, 2, {}};
  for (int i = 0; i < 6; ++i) img.pixels.insert(img.pixels.end(), {uint8_t(i), 0, 0});
  auto reds = [](const RgbImage& im) {
    std::vector<int> r;
    for (size_t i = 0; i < im.pixels.size(); i += 3) r.push_back(im.pixels[i]);
    return r;
  };
  CHECK(reds(apply_orientation(img, 1)) == std::vector<int>{0, 1, 2, 3, 4, 5});
  CHECK(reds(apply_orientation(img, 2)) == std::vector<int>{2, 1, 0, 5, 4, 3});
  CHECK(reds(apply_orientation(img, 3)) == std::vector<int>{5, 4, 3, 2, 1, 0});
  CHECK(reds(apply_orientation(img, 4)) == std::vector<int>{3, 4, 5, 0, 1, 2});
  CHECK(reds(apply_orientation(img, 5)) == std::vector<int>{0, 3, 1, 4, 2, 5});
  CHECK(reds(apply_orientation(img, 6)) == std::vector<int>{3, 0, 4, 1, 5, 2});
  CHECK(reds(apply_orientation(img, 7)) == std::vector<int>{5, 2, 4, 1, 3, 0});
  CHECK(reds(apply_orientation(img, 8)) == std::vector<int>{2, 5, 1, 4, 0, 3});
  CHECK(apply_orientation(img, 6).width == 2);
}

TEST_CASE("a forged header's huge size is refused without overflowing") {
  // Found by fuzz_decode_bmp/png: width * height overflowed int64 (undefined behaviour).
  DecodeOptions options;
  CHECK_THROWS_WITH_AS(check_pixel_limit(4244635661LL, 4110417910LL, options),
                       "image is 4244635661x4110417910 = 17447226442399088510 pixels, over the limit of 178956970 (--max-pixels)",
                       Error);
}

TEST_CASE("a stop signal aborts a decode in progress") {
  std::atomic<int> stop{SIGTERM};
  DecodeOptions options;
  options.cancel = &stop;
  std::string photo = std::string(VITBATCH_SHARED_DIR) + "/images/dog.jpg";
  CHECK_THROWS_WITH_AS(read_image(photo, options), "interrupted (stop signal)", Error);
  stop = 0;
  CHECK(read_image(photo, options).width > 0);
}

TEST_CASE("a TIFF whose tile claims 4 GB is refused before allocating it") {
  // Found by fuzz_decode_tiff (out-of-memory): TileWidth without TileLength, which libtiff
  // then takes from RowsPerStrip = 0xfffffff7.
  const std::vector<uint8_t> forged = {0x49, 0x49, 0x2a, 0x00, 0x08, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x00, 0x01, 0x04, 0x00, 0x01, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x01, 0x01, 0x04, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x02, 0x49, 0x49, 0x2a, 0x00, 0x08, 0x08, 0x00, 0x0d, 0x00, 0x00, 0x00, 0x06, 0x01, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x11, 0x01, 0x04, 0x00, 0x81, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x16, 0x01, 0x04, 0x00, 0x01, 0x00, 0x00, 0x00, 0xf7, 0xff, 0xff, 0xff, 0x69, 0x00, 0x04, 0x00, 0x37, 0x5f, 0x47, 0x44, 0x09, 0x00, 0x00, 0x00, 0x0d, 0x00, 0x00, 0x00, 0x01, 0x01, 0xff, 0xff, 0x60, 0xf0, 0x00, 0x3e, 0x4a, 0x80, 0x04, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x40, 0x00, 0x00, 0x42, 0x01, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x08, 0x00, 0x01, 0x00, 0x00};
  CHECK_THROWS_WITH_AS(decode_tiff(forged.data(), forged.size()), doctest::Contains("corrupt TIFF: tile of"), Error);
}
