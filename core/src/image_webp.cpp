// WebP through libwebp's animation decoder, as Pillow 9.4 (WebPImagePlugin with WebPAnimDecoder)
// reads every WebP, still or animated: RGBA canvas (alpha not premultiplied), first frame,
// alpha then dropped by convert("RGB") without compositing.
#include "vitbatch/error.hpp"
#include "vitbatch/image.hpp"

#include <webp/decode.h>
#include <webp/demux.h>

namespace vitbatch {

RgbImage decode_webp(const uint8_t* data, size_t size, const DecodeOptions& options) {
  WebPBitstreamFeatures features;
  VP8StatusCode status = WebPGetFeatures(data, size, &features);
  if (status != VP8_STATUS_OK)
    throw Error(status == VP8_STATUS_NOT_ENOUGH_DATA ? "corrupt WebP: file is truncated" : "corrupt WebP: bad header");
  WebPData webp{data, size};
  WebPDemuxer* demux = WebPDemux(&webp);
  if (!demux) throw Error("corrupt WebP: cannot parse its chunks");
  int64_t width = WebPDemuxGetI(demux, WEBP_FF_CANVAS_WIDTH), height = WebPDemuxGetI(demux, WEBP_FF_CANVAS_HEIGHT);
  WebPDemuxDelete(demux);
  check_pixel_limit(width, height, options);

  WebPAnimDecoderOptions anim_options;
  WebPAnimDecoderOptionsInit(&anim_options);
  anim_options.color_mode = MODE_RGBA;
  anim_options.use_threads = 0;
  WebPAnimDecoder* decoder = WebPAnimDecoderNew(&webp, &anim_options);
  if (!decoder) throw Error("corrupt WebP: cannot start decoding");
  uint8_t* rgba = nullptr;
  int timestamp = 0;
  if (!WebPAnimDecoderGetNext(decoder, &rgba, &timestamp) || !rgba) {
    WebPAnimDecoderDelete(decoder);
    throw Error("corrupt WebP: cannot decode the first frame (truncated or damaged)");
  }
  RgbImage image;
  image.width = width;
  image.height = height;
  image.pixels.resize(static_cast<size_t>(width * height * 3));
  for (int64_t i = 0; i < width * height; ++i) {
    image.pixels[3 * i] = rgba[4 * i];
    image.pixels[3 * i + 1] = rgba[4 * i + 1];
    image.pixels[3 * i + 2] = rgba[4 * i + 2];
  }
  WebPAnimDecoderDelete(decoder);
  return image;
}

}  // namespace vitbatch
