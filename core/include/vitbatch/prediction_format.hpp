// prediction_format.hpp: how a prediction row is written (CSV or JSON Lines) and read back
// (for --resume).
//
// Paths are written byte for byte. CSV: the bytes as they are (RFC 4180 quoting), so a
// non-UTF-8 name reads back with Python's csv module opened with errors="surrogateescape".
// JSONL: JSON needs Unicode, so each byte that is not part of valid UTF-8 is written as the
// escape \udcXX (XX = the byte), Python's surrogateescape convention: json.loads gives a
// str that os.fsencode() turns back into the original bytes.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace vitbatch {

struct Prediction {
  int index = 0;
  double probability = 0.0;  // the score: a probability, or the logit with ScoreActivation::None
};

// What turns logits into the scores written: softmax over the classes (single-label heads),
// a sigmoid of each logit (multi-label heads), or none (the logits themselves).
enum class ScoreActivation { Softmax, Sigmoid, None };
ScoreActivation parse_activation(const std::string& name);  // throws Error for another name
const char* activation_name(ScoreActivation a);

// The k classes with the largest logits (ties to the lower index), scored by `activation`
// (in double).
std::vector<Prediction> top_k(const float* logits, int64_t classes, int k, ScoreActivation activation = ScoreActivation::Softmax);

// Quotes a CSV field when it holds a comma, quote, CR or LF, doubling inner quotes.
std::string csv_field(const std::string& text);
// A JSON string literal; invalid UTF-8 bytes become \udcXX (see above).
std::string json_string(const std::string& bytes);

// One complete record read back from an output file.
struct RecordedRow {
  std::string path;
  bool has_prediction = false;  // false: the row carries an error
  int64_t position = -1;        // embed's index: the feature row it names, counted over all shards
};

// Splits one CSV record (RFC 4180: quoted fields, doubled quotes, CR before LF dropped)
// starting at text[pos] into `fields`. Returns the position after its newline, or npos when
// the record is cut short (no newline: a kill mid-row).
size_t split_csv_record(const std::string& text, size_t pos, std::vector<std::string>& fields);

// A file of rows with a header, read back for --resume.
class RecordFormat {
 public:
  virtual ~RecordFormat() = default;
  virtual std::string header() const = 0;  // written once at the top ("" for none)
  // Splits `text` (a whole output file, header included) into its complete records. A last
  // record cut short (no final newline, open quote, wrong field count) is not returned and
  // `*complete_bytes` stops before it. Throws Error if the header is not this format's.
  virtual std::vector<std::pair<std::string, RecordedRow>> parse(const std::string& text,
                                                                 size_t* complete_bytes) const = 0;
};

class PredictionFormat : public RecordFormat {
 public:
  // "csv" or "jsonl"; `labels` must outlive the format. Throws Error for another name.
  // Scores are "prob" (topK_prob, "prob"), or "logit" with ScoreActivation::None.
  static std::unique_ptr<PredictionFormat> make(const std::string& name, int top_k,
                                                const std::vector<std::string>& labels,
                                                ScoreActivation activation = ScoreActivation::Softmax);
  // An empty `predictions` with a non-empty `error` is a failed row. Ends with '\n'.
  virtual std::string row(const std::string& path, const std::vector<Prediction>& predictions,
                          const std::string& error) const = 0;
};

}  // namespace vitbatch
