// JPEG decoding through libjpeg's own API (not TurboJPEG's), because only it decodes CMYK and
// YCCK files and lets us take over error handling: libjpeg's default handler prints and
// calls exit(), which a batch tool must never do.
#include "vitbatch/error.hpp"
#include "vitbatch/image.hpp"

#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <utility>

#include <jpeglib.h>
// jerror.h needs jpeglib.h first.
#include <jerror.h>

namespace vitbatch {
namespace {

struct ErrorManager {
  jpeg_error_mgr base;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

struct ProgressMonitor {
  jpeg_progress_mgr base;
  ErrorManager* err;
  const DecodeOptions* options;
};

// Called by libjpeg as it consumes input (every scan of a progressive file) and writes rows.
void on_progress(j_common_ptr cinfo) {
  auto* p = reinterpret_cast<ProgressMonitor*>(cinfo->progress);
  auto* d = reinterpret_cast<j_decompress_ptr>(cinfo);
  const char* why = nullptr;
  if (d->input_scan_number > p->options->max_jpeg_scans) why = "more than the allowed number of progressive scans";
  if (p->options->cancel && p->options->cancel->load()) why = "interrupted (stop signal)";
  if (!why) return;
  std::snprintf(p->err->message, sizeof p->err->message, "%s", why);
  std::longjmp(p->err->jump, 2);
}

void on_error(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<ErrorManager*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, err->message);
  std::longjmp(err->jump, 1);
}

// "Premature end of JPEG file" is fatal for us, as it is for Pillow ("image file is
// truncated"): libjpeg would otherwise fill the missing rows with grey and we would silently
// classify a damaged picture. Other warnings (extraneous bytes, ...) are dropped, as Pillow
// drops them, and nothing is printed.
// Entropy-coded data that does not decode (a bad arithmetic or Huffman code) is fatal too:
// libjpeg, and so Pillow, would go on and return noise, and classifying noise is silent
// substitution. Here vitbatch is deliberately stricter than Pillow.
void on_message(j_common_ptr cinfo, int level) {
  int code = cinfo->err->msg_code;
  if (level < 0 && (code == JWRN_JPEG_EOF || code == JWRN_ARITH_BAD_CODE || code == JWRN_HUFF_BAD_CODE)) on_error(cinfo);
}

}  // namespace

uint8_t pillow_cmyk_channel(int c, int k) {
  int nk = 255 - k;
  int tmp = c * nk + 128;
  int v = nk - (((tmp >> 8) + tmp) >> 8);
  return static_cast<uint8_t>(v < 0 ? 0 : v > 255 ? 255 : v);
}

RgbImage decode_jpeg(const uint8_t* data, size_t size, const DecodeOptions& options) {
  jpeg_decompress_struct cinfo{};
  ErrorManager err{};
  cinfo.err = jpeg_std_error(&err.base);
  err.base.error_exit = on_error;
  err.base.emit_message = on_message;
  RgbImage image;
  std::vector<uint8_t> row;
  ProgressMonitor progress{};
  progress.base.progress_monitor = on_progress;
  progress.err = &err;
  progress.options = &options;
  if (int why = setjmp(err.jump)) {
    jpeg_destroy_decompress(&cinfo);
    if (why == 2 && options.cancel && options.cancel->load()) throw Error(err.message);
    if (why == 2)
      throw Error("refused JPEG: " + std::string(err.message) + " (" + std::to_string(options.max_jpeg_scans) + ")");
    throw Error(std::string("corrupt JPEG: ") + err.message);
  }
  jpeg_create_decompress(&cinfo);
  cinfo.progress = &progress.base;
  jpeg_mem_src(&cinfo, data, static_cast<unsigned long>(size));
  if (options.exif_transpose) jpeg_save_markers(&cinfo, JPEG_APP0 + 1, 0xFFFF);
  jpeg_read_header(&cinfo, TRUE);
  try {
    check_pixel_limit(cinfo.image_width, cinfo.image_height, options);
  } catch (const Error&) {
    jpeg_destroy_decompress(&cinfo);
    throw;
  }
  int orientation = 1;
  for (jpeg_saved_marker_ptr m = cinfo.marker_list; m; m = m->next)
    if (m->marker == JPEG_APP0 + 1 && m->data_length > 6 && std::memcmp(m->data, "Exif\0\0", 6) == 0)
      orientation = exif_orientation(m->data + 6, m->data_length - 6);
  bool cmyk = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK;
  bool gray = cinfo.jpeg_color_space == JCS_GRAYSCALE;
  cinfo.out_color_space = cmyk ? JCS_CMYK : gray ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_start_decompress(&cinfo);
  image.width = cinfo.output_width;
  image.height = cinfo.output_height;
  image.pixels.resize(static_cast<size_t>(image.width * image.height * 3));
  if (!cmyk && !gray) {
    // RGB, the common case: libjpeg writes straight into the image's rows, no copy.
    while (cinfo.output_scanline < cinfo.output_height) {
      JSAMPROW rows[1] = {image.pixels.data() + static_cast<size_t>(cinfo.output_scanline) * image.width * 3};
      jpeg_read_scanlines(&cinfo, rows, 1);
    }
  } else {
    row.resize(static_cast<size_t>(image.width) * cinfo.output_components);
    while (cinfo.output_scanline < cinfo.output_height) {
      JSAMPROW rows[1] = {row.data()};
      size_t y = cinfo.output_scanline;
      jpeg_read_scanlines(&cinfo, rows, 1);
      uint8_t* out = image.pixels.data() + y * image.width * 3;
      if (gray) {
        for (int64_t x = 0; x < image.width; ++x) out[3 * x] = out[3 * x + 1] = out[3 * x + 2] = row[x];
        continue;
      }
      for (int64_t x = 0; x < image.width; ++x) {
        const uint8_t* p = row.data() + 4 * x;
        // Pillow reads every CMYK JPEG with raw mode "CMYK;I" (inverted, as Adobe writes
        // them), Adobe marker or not; so do we, to give the same pixels.
        int c = 255 - p[0], m = 255 - p[1], yy = 255 - p[2], k = 255 - p[3];
        out[3 * x] = pillow_cmyk_channel(c, k);
        out[3 * x + 1] = pillow_cmyk_channel(m, k);
        out[3 * x + 2] = pillow_cmyk_channel(yy, k);
      }
    }
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  return apply_orientation(std::move(image), orientation);
}

}  // namespace vitbatch
