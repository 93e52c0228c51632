#include "vitbatch/prediction_format.hpp"

#include "vitbatch/error.hpp"
#include "vitbatch/labels.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <numeric>

namespace vitbatch {

ScoreActivation parse_activation(const std::string& name) {
  if (name == "softmax") return ScoreActivation::Softmax;
  if (name == "sigmoid") return ScoreActivation::Sigmoid;
  if (name == "none") return ScoreActivation::None;
  throw Error("unknown activation '" + name + "' (softmax, sigmoid or none)");
}

const char* activation_name(ScoreActivation a) {
  return a == ScoreActivation::Softmax ? "softmax" : a == ScoreActivation::Sigmoid ? "sigmoid" : "none";
}

std::vector<Prediction> top_k(const float* logits, int64_t classes, int k, ScoreActivation activation) {
  double mx = *std::max_element(logits, logits + classes), sum = 0.0;
  if (activation == ScoreActivation::Softmax)
    for (int64_t i = 0; i < classes; ++i) sum += std::exp(double(logits[i]) - mx);
  std::vector<int> order(static_cast<size_t>(classes));
  std::iota(order.begin(), order.end(), 0);
  int kk = static_cast<int>(std::min<int64_t>(k, classes));
  std::partial_sort(order.begin(), order.begin() + kk, order.end(),
                    [&](int a, int b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); });
  std::vector<Prediction> out;
  for (int i = 0; i < kk; ++i) {
    const double x = logits[order[i]];
    const double score = activation == ScoreActivation::Softmax ? std::exp(x - mx) / sum
                         : activation == ScoreActivation::Sigmoid ? 1.0 / (1.0 + std::exp(-x))
                                                             : x;
    out.push_back({order[i], score});
  }
  return out;
}

size_t split_csv_record(const std::string& text, size_t pos, std::vector<std::string>& fields) {
  fields.assign(1, std::string());
  bool quoted = false;
  for (size_t i = pos; i < text.size(); ++i) {
    char c = text[i];
    if (quoted) {
      if (c == '"' && i + 1 < text.size() && text[i + 1] == '"') fields.back() += '"', ++i;
      else if (c == '"') quoted = false;
      else fields.back() += c;
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      fields.emplace_back();
    } else if (c == '\n') {
      return i + 1;
    } else if (c != '\r') {
      fields.back() += c;
    }
  }
  return std::string::npos;
}

std::string csv_field(const std::string& text) {
  if (text.find_first_of(",\"\r\n") == std::string::npos) return text;
  std::string out = "\"";
  for (char c : text) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

namespace {

// Length of the valid UTF-8 sequence starting at s[i], or 0 if there is none.
size_t utf8_sequence(const std::string& s, size_t i) {
  auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = b(i);
  size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
  if (n == 0 || i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k)
    if ((b(i + k) & 0xC0) != 0x80) return 0;
  uint32_t cp = n == 1 ? c : n == 2 ? c & 0x1F : n == 3 ? c & 0x0F : c & 0x07;
  for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (b(i + k) & 0x3F);
  static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < min_cp[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;  // overlong, surrogate
  return n;
}

}  // namespace

std::string json_string(const std::string& s) {
  std::string out = "\"";
  char buf[8];
  for (size_t i = 0; i < s.size();) {
    size_t n = utf8_sequence(s, i);
    if (n == 0) {
      std::snprintf(buf, sizeof buf, "\\udc%02x", static_cast<unsigned char>(s[i]));
      out += buf;
      ++i;
      continue;
    }
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out.append(s, i, n);
    }
    i += n;
  }
  return out + "\"";
}

namespace {

std::string label_of(const std::vector<std::string>& labels, int index) {
  return index < static_cast<int>(labels.size()) ? labels[index] : "";
}

// Six decimals; below 1e-6 that would print 0 (or 0.000001 for 5e-7), so small
// probabilities keep their magnitude in exponent form: 3.141593e-09.
std::string format_probability(double p) {
  char buf[32];
  std::snprintf(buf, sizeof buf, p < 1e-6 ? "%.6e" : "%.6f", p);
  return buf;
}

// Logits have a sign and a scale of their own: six significant digits.
std::string format_score(double s, bool logit) {
  if (!logit) return format_probability(s);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", s);
  return buf;
}

class CsvFormat : public PredictionFormat {
 public:
  CsvFormat(int top_k, const std::vector<std::string>& labels, bool logit)
      : top_k_(top_k), labels_(labels), logit_(logit) {}

  std::string header() const override {
    std::string h = "path";
    for (int k = 1; k <= top_k_; ++k) {
      std::string t = "top" + std::to_string(k);
      h += "," + t + "_index," + t + "_label," + t + (logit_ ? "_logit" : "_prob");
    }
    return h + ",error\n";
  }

  std::string row(const std::string& path, const std::vector<Prediction>& predictions,
                  const std::string& error) const override {
    std::string line = csv_field(path);
    for (int k = 0; k < top_k_; ++k) {
      if (k < static_cast<int>(predictions.size())) {
        const Prediction& p = predictions[k];
        line += "," + std::to_string(p.index) + "," + csv_field(label_of(labels_, p.index)) + "," +
                format_score(p.probability, logit_);
      } else {
        line += ",,,";
      }
    }
    return line + "," + csv_field(error) + "\n";
  }

  std::vector<std::pair<std::string, RecordedRow>> parse(const std::string& text, size_t* complete) const override {
    std::vector<std::pair<std::string, RecordedRow>> rows;
    const size_t fields_per_row = 2 + 3 * static_cast<size_t>(top_k_);
    size_t pos = 0;
    *complete = 0;
    bool first = true;
    while (pos < text.size()) {
      std::vector<std::string> fields;
      const size_t next = split_csv_record(text, pos, fields);
      if (next == std::string::npos) break;  // cut short by a kill: not a record
      std::string raw = text.substr(pos, next - pos);
      if (first) {
        if (raw != header())
          throw Error("its header is not this run's CSV header (was it written with another --top-k or --format?)");
        first = false;
      } else {
        if (fields.size() != fields_per_row) break;  // a torn record
        rows.push_back({raw, RecordedRow{fields[0], fields.back().empty()}});
      }
      pos = next;
      *complete = pos;
    }
    return rows;
  }

 private:
  int top_k_;
  const std::vector<std::string>& labels_;
  bool logit_;
};

class JsonlFormat : public PredictionFormat {
 public:
  // JSON Lines rows carry as many predictions as they have: the top-k needs no header.
  JsonlFormat(const std::vector<std::string>& labels, bool logit) : labels_(labels), logit_(logit) {}

  std::string header() const override { return ""; }

  std::string row(const std::string& path, const std::vector<Prediction>& predictions,
                  const std::string& error) const override {
    std::string line = "{\"path\":" + json_string(path) + ",\"predictions\":[";
    for (size_t k = 0; k < predictions.size(); ++k) {
      const Prediction& p = predictions[k];
      line += std::string(k ? "," : "") + "{\"index\":" + std::to_string(p.index) + ",\"label\":" +
              json_string(label_of(labels_, p.index)) + (logit_ ? ",\"logit\":" : ",\"prob\":") +
              format_score(p.probability, logit_) + "}";
    }
    return line + "],\"error\":" + (error.empty() ? "null" : json_string(error)) + "}\n";
  }

  std::vector<std::pair<std::string, RecordedRow>> parse(const std::string& text, size_t* complete) const override {
    std::vector<std::pair<std::string, RecordedRow>> rows;
    size_t pos = 0;
    *complete = 0;
    while (pos < text.size()) {
      size_t nl = text.find('\n', pos);
      if (nl == std::string::npos) break;
      std::string raw = text.substr(pos, nl + 1 - pos);
      nlohmann::json j = nlohmann::json::parse(protect_byte_escapes(raw), nullptr, false);
      // Found by fuzz_resume_reader: a "path" that is not a string threw out of get<>().
      if (j.is_discarded() || !j.is_object() || !j.contains("path") || !j["path"].is_string() || !j.contains("error")) {
        if (rows.empty() && pos == 0) throw Error("it is not a vitbatch JSON Lines file");
        break;
      }
      rows.push_back({raw, RecordedRow{decode_path(j["path"].get<std::string>()), j["error"].is_null()}});
      pos = nl + 1;
      *complete = pos;
    }
    return rows;
  }

 private:
  // nlohmann's parser (rightly) refuses lone surrogates, so before parsing, each \udcXX
  // escape becomes \u0000\u00XX: a NUL can never be part of a path, which makes the pair
  // unambiguous. Escaped backslashes are skipped whole so that "\\udc80" stays text.
  static std::string protect_byte_escapes(const std::string& raw) {
    std::string out;
    for (size_t i = 0; i < raw.size(); ++i) {
      if (raw[i] != '\\' || i + 1 >= raw.size()) {
        out += raw[i];
        continue;
      }
      if (raw[i + 1] == 'u' && i + 5 < raw.size() && raw.compare(i + 2, 2, "dc") == 0 &&
          std::isxdigit(static_cast<unsigned char>(raw[i + 4])) && std::isxdigit(static_cast<unsigned char>(raw[i + 5])) &&
          raw[i + 4] >= '8') {
        out += "\\u0000\\u00" + raw.substr(i + 4, 2);
        i += 5;
      } else {
        out += raw.substr(i, 2);
        ++i;
      }
    }
    return out;
  }

  // Inverse of protect_byte_escapes after parsing: NUL + U+00XX (UTF-8 C2/C3 xx) is byte XX.
  static std::string decode_path(const std::string& s) {
    std::string out;
    for (size_t i = 0; i < s.size(); ++i) {
      if (s[i] == '\0' && i + 2 < s.size()) {
        auto lead = static_cast<unsigned char>(s[i + 1]), cont = static_cast<unsigned char>(s[i + 2]);
        out += static_cast<char>(((lead & 0x03) << 6) | (cont & 0x3F));
        i += 2;
      } else {
        out += s[i];
      }
    }
    return out;
  }

  const std::vector<std::string>& labels_;
  bool logit_;
};

}  // namespace

std::unique_ptr<PredictionFormat> PredictionFormat::make(const std::string& name, int top_k,
                                                         const std::vector<std::string>& labels, ScoreActivation activation) {
  const bool logit = activation == ScoreActivation::None;
  if (name == "csv") return std::make_unique<CsvFormat>(top_k, labels, logit);
  if (name == "jsonl") return std::make_unique<JsonlFormat>(labels, logit);
  throw Error("unknown output format '" + name + "' (csv, jsonl)");
}

}  // namespace vitbatch
