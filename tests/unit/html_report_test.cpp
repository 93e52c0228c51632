// The report page's pieces: base64, thumbnails, and that no path can end the data's <script>.
#include "vitbatch/html_report.hpp"

#include <doctest/doctest.h>

using namespace vitbatch;

TEST_CASE("base64 as RFC 4648 pads it") {
  CHECK(base64("") == "");
  CHECK(base64("f") == "Zg==");
  CHECK(base64("fo") == "Zm8=");
  CHECK(base64("foo") == "Zm9v");
  CHECK(base64("foobar") == "Zm9vYmFy");
  CHECK(base64(std::string("\xff\x00\x80", 3)) == "/wCA");
}

TEST_CASE("a thumbnail is a JPEG within the side asked for") {
  RgbImage crop;
  crop.width = 224;
  crop.height = 112;
  crop.pixels.assign(224 * 112 * 3, 200);
  std::string jpeg = jpeg_thumbnail(crop, 96);
  REQUIRE(jpeg.size() > 100);
  CHECK(static_cast<unsigned char>(jpeg[0]) == 0xFF);
  CHECK(static_cast<unsigned char>(jpeg[1]) == 0xD8);
}

TEST_CASE("paths and labels cannot break out of the page's script or markup") {
  std::vector<std::string> labels{"<b>bold</b>", "cat"};
  HtmlReport page("title <x>", labels, 10);
  page.add({"</script><script>alert(1)</script>.jpg", "", "", {{0, 0.9}}, -1});
  page.summary({{"model", "<img src=x onerror=alert(1)>"}});
  std::string html = page.render();
  CHECK(html.find("</script><script>alert(1)") == std::string::npos);
  CHECK(html.find("<img src=x") == std::string::npos);
  CHECK(html.find("title &lt;x&gt;") != std::string::npos);
  CHECK(html.find("<\\/script><script>alert(1)<\\/script>.jpg") != std::string::npos);
}
