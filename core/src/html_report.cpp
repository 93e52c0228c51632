#include "vitbatch/html_report.hpp"

#include "vitbatch/error.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <csetjmp>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include <jpeglib.h>

namespace vitbatch {

namespace {

std::string html_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

struct JpegError {
  jpeg_error_mgr mgr;
  std::jmp_buf jump;
};

// The page's script: rows from the embedded JSON, a page of cards at a time, a filter, and a
// count of thumbnails decoded (data-thumbs-ok / data-thumbs-failed on <body>, for tests).
const char* kScript = R"JS(
(function () {
  var data = JSON.parse(document.getElementById('rows').textContent);
  var labels = data.labels, rows = data.rows, perPage = 100, page = 0, onlyBad = false;
  var grid = document.getElementById('cards'), info = document.getElementById('page-info');
  var ok = 0, failed = 0;
  function name(i) { return i < labels.length ? labels[i] : String(i); }
  function bad(r) { return r.error !== '' || (r.label >= 0 && r.p.length > 0 && r.p[0][0] !== r.label); }
  function shown() { return onlyBad ? rows.filter(bad) : rows; }
  function card(r) {
    var c = document.createElement('div');
    c.className = 'card' + (r.error ? ' failed' : bad(r) ? ' wrong' : '');
    if (r.t) {
      var img = document.createElement('img');
      img.alt = r.path;
      img.onload = function () { ok++; document.body.dataset.thumbsOk = ok; };
      img.onerror = function () { failed++; document.body.dataset.thumbsFailed = failed; };
      img.src = 'data:image/jpeg;base64,' + r.t;
      c.appendChild(img);
    } else {
      var none = document.createElement('div');
      none.className = 'nothumb';
      none.textContent = r.error ? 'failed' : 'no thumbnail';
      c.appendChild(none);
    }
    var p = document.createElement('div');
    p.className = 'path';
    p.textContent = r.path;
    c.appendChild(p);
    if (r.label >= 0) {
      var l = document.createElement('div');
      l.className = 'label';
      l.textContent = 'label: ' + name(r.label);
      c.appendChild(l);
    }
    if (r.error) {
      var e = document.createElement('div');
      e.className = 'error';
      e.textContent = r.error;
      c.appendChild(e);
    }
    r.p.forEach(function (q) {
      var b = document.createElement('div');
      b.className = 'bar';
      var fill = document.createElement('span');
      fill.style.width = Math.max(0, Math.min(100, 100 * q[1])).toFixed(1) + '%';
      b.appendChild(fill);
      var t = document.createElement('em');
      t.textContent = name(q[0]) + ' ' + (100 * q[1]).toFixed(1) + '%';
      b.appendChild(t);
      c.appendChild(b);
    });
    return c;
  }
  function draw() {
    var list = shown(), pages = Math.max(1, Math.ceil(list.length / perPage));
    page = Math.min(page, pages - 1);
    grid.textContent = '';
    list.slice(page * perPage, (page + 1) * perPage).forEach(function (r) { grid.appendChild(card(r)); });
    info.textContent = 'page ' + (page + 1) + ' of ' + pages + ' (' + list.length + ' rows)';
    document.body.dataset.cards = grid.children.length;
  }
  document.getElementById('prev').onclick = function () { if (page > 0) { page--; draw(); } };
  document.getElementById('next').onclick = function () { page++; draw(); };
  document.getElementById('only-bad').onchange = function (e) { onlyBad = e.target.checked; page = 0; draw(); };
  document.body.dataset.thumbsOk = 0;
  document.body.dataset.thumbsFailed = 0;
  draw();
})();
)JS";

const char* kStyle = R"CSS(
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; }
dl.summary { display: grid; grid-template-columns: max-content auto; gap: .2em 1em; }
dl.summary dt { font-weight: 600; }
table { border-collapse: collapse; margin: 1em 0; }
td, th { border: 1px solid #ccc; padding: .2em .6em; text-align: left; }
caption { text-align: left; font-weight: 600; }
.controls { margin: 1em 0; display: flex; gap: 1em; align-items: center; }
#cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(200px, 1fr)); gap: .8em; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: .5em; overflow: hidden; }
.card.failed { border-color: #c33; background: #fff4f4; }
.card.wrong { border-color: #d90; background: #fffaf0; }
.card img, .nothumb { width: 96px; height: 96px; object-fit: contain; display: block; }
.nothumb { background: #eee; color: #888; display: flex; align-items: center; justify-content: center; }
.path { font-family: monospace; font-size: 12px; word-break: break-all; margin: .3em 0; }
.error { color: #c33; }
.bar { position: relative; background: #eef; height: 1.3em; margin: 2px 0; }
.bar span { position: absolute; left: 0; top: 0; bottom: 0; background: #9bd; }
.bar em { position: relative; font-style: normal; font-size: 12px; padding-left: .3em; }
)CSS";

}  // namespace

std::string jpeg_thumbnail(const RgbImage& crop, int side) {
  const int64_t W = crop.width, H = crop.height;
  const double scale = std::min(1.0, double(side) / double(std::max(W, H)));
  const int64_t w = std::max<int64_t>(1, static_cast<int64_t>(W * scale)), h = std::max<int64_t>(1, static_cast<int64_t>(H * scale));
  std::vector<uint8_t> small(static_cast<size_t>(w * h * 3));
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x) {
      // The source pixels this one covers, averaged.
      const int64_t y0 = y * H / h, y1 = std::max(y0 + 1, (y + 1) * H / h), x0 = x * W / w, x1 = std::max(x0 + 1, (x + 1) * W / w);
      for (int c = 0; c < 3; ++c) {
        int64_t sum = 0;
        for (int64_t sy = y0; sy < y1; ++sy)
          for (int64_t sx = x0; sx < x1; ++sx) sum += crop.pixels[static_cast<size_t>((sy * W + sx) * 3 + c)];
        small[static_cast<size_t>((y * w + x) * 3 + c)] = static_cast<uint8_t>((sum + (y1 - y0) * (x1 - x0) / 2) / ((y1 - y0) * (x1 - x0)));
      }
    }
  jpeg_compress_struct cinfo;
  JpegError err;
  cinfo.err = jpeg_std_error(&err.mgr);
  err.mgr.error_exit = [](j_common_ptr c) { std::longjmp(reinterpret_cast<JpegError*>(c->err)->jump, 1); };
  unsigned char* out = nullptr;
  unsigned long size = 0;
  if (setjmp(err.jump)) {
    jpeg_destroy_compress(&cinfo);
    std::free(out);
    throw Error("cannot encode the thumbnail");
  }
  jpeg_create_compress(&cinfo);
  jpeg_mem_dest(&cinfo, &out, &size);
  cinfo.image_width = static_cast<JDIMENSION>(w);
  cinfo.image_height = static_cast<JDIMENSION>(h);
  cinfo.input_components = 3;
  cinfo.in_color_space = JCS_RGB;
  jpeg_set_defaults(&cinfo);
  jpeg_set_quality(&cinfo, 80, TRUE);
  jpeg_start_compress(&cinfo, TRUE);
  while (cinfo.next_scanline < cinfo.image_height) {
    JSAMPROW row = &small[static_cast<size_t>(cinfo.next_scanline * w * 3)];
    jpeg_write_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_compress(&cinfo);
  std::string bytes(reinterpret_cast<char*>(out), size);
  jpeg_destroy_compress(&cinfo);
  std::free(out);
  return bytes;
}

std::string base64(const std::string& bytes) {
  static const char* table = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const uint32_t v = (uint8_t(bytes[i]) << 16) | (uint8_t(bytes[i + 1]) << 8) | uint8_t(bytes[i + 2]);
    for (int k = 18; k >= 0; k -= 6) out += table[(v >> k) & 63];
  }
  if (i < bytes.size()) {
    uint32_t v = uint8_t(bytes[i]) << 16;
    if (i + 1 < bytes.size()) v |= uint8_t(bytes[i + 1]) << 8;
    out += table[(v >> 18) & 63];
    out += table[(v >> 12) & 63];
    out += i + 1 < bytes.size() ? table[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

void HtmlReport::add(ReportRow row) {
  if (!row.thumbnail.empty()) {
    if (thumbnails_ < max_thumbnails_) ++thumbnails_;
    else row.thumbnail.clear();
  }
  rows_.push_back(std::move(row));
}

void HtmlReport::table(std::string caption, std::vector<std::string> header, std::vector<std::vector<std::string>> rows) {
  tables_.push_back({std::move(caption), std::move(header), std::move(rows)});
}

std::string HtmlReport::render() const {
  nlohmann::json rows = nlohmann::json::array();
  for (const ReportRow& r : rows_) {
    nlohmann::json p = nlohmann::json::array();
    for (const Prediction& q : r.predictions) p.push_back({q.index, q.probability});
    rows.push_back({{"path", r.path}, {"error", r.error}, {"t", r.thumbnail.empty() ? "" : base64(r.thumbnail)},
                    {"p", p}, {"label", r.label}});
  }
  nlohmann::json data = {{"labels", labels_}, {"rows", rows}};
  std::string json = data.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  // Inside <script>, "</" could close the element early: JSON allows "<\/" for it.
  for (size_t at = json.find("</"); at != std::string::npos; at = json.find("</", at + 3)) json.replace(at, 2, "<\\/");
  std::string html = "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>" + html_escape(title_) +
                     "</title>\n<style>" + kStyle + "</style></head>\n<body>\n<h1>" + html_escape(title_) +
                     "</h1>\n<dl class=\"summary\">\n";
  for (const auto& [k, v] : summary_) html += "<dt>" + html_escape(k) + "</dt><dd>" + html_escape(v) + "</dd>\n";
  html += "</dl>\n";
  for (const Table& t : tables_) {
    html += "<table><caption>" + html_escape(t.caption) + "</caption>\n<tr>";
    for (const auto& h : t.header) html += "<th>" + html_escape(h) + "</th>";
    html += "</tr>\n";
    for (const auto& row : t.rows) {
      html += "<tr>";
      for (const auto& cell : row) html += "<td>" + html_escape(cell) + "</td>";
      html += "</tr>\n";
    }
    html += "</table>\n";
  }
  html += "<div class=\"controls\"><button id=\"prev\">previous</button><span id=\"page-info\"></span>"
          "<button id=\"next\">next</button><label><input type=\"checkbox\" id=\"only-bad\"> failures and misclassified "
          "only</label></div>\n<div id=\"cards\"></div>\n<script type=\"application/json\" id=\"rows\">" +
          json + "</script>\n<script>" + kScript + "</script>\n</body></html>\n";
  return html;
}

}  // namespace vitbatch
