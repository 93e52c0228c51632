#include "usage_errors.hpp"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>

namespace vitbatch_cli {
namespace {

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = up;
    }
  }
  return row[b.size()];
}

std::vector<std::string> command_names(const CLI::App& app) {
  std::vector<std::string> names;
  for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; })) names.push_back(sub->get_name());
  return names;
}

const CLI::App* subcommand_named(const CLI::App& app, const std::string& name) {
  for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; }))
    if (sub->get_name() == name) return sub;
  return nullptr;
}

std::string join(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

// The first "-x" / "--name" token of the command line that `command` does not know.
std::string first_unknown_flag(const CLI::App& command, int argc, char** argv, std::vector<std::string>* known) {
  for (const CLI::Option* o : command.get_options()) {
    for (const auto& l : o->get_lnames()) known->push_back("--" + l);
    for (const auto& s : o->get_snames()) known->push_back("-" + s);
  }
  for (int i = 2; i < argc; ++i) {
    std::string t = argv[i];
    if (t == "--") break;
    if (t.size() < 2 || t[0] != '-' || std::isdigit(static_cast<unsigned char>(t[1]))) continue;
    std::string name = t.rfind("--", 0) == 0 ? t.substr(0, t.find('=')) : t.substr(0, 2);
    if (std::find(known->begin(), known->end(), name) == known->end()) return name;
  }
  return "";
}

}  // namespace

std::string closest_name(const std::string& typed, const std::vector<std::string>& candidates) {
  std::string best;
  size_t best_distance = std::max<size_t>(1, typed.size() / 3) + 1;  // farther is not a typo
  for (const auto& c : candidates) {
    size_t d = edit_distance(typed, c);
    if (d < best_distance) best = c, best_distance = d;
  }
  return best;
}

CLI::Validator int_range(int64_t lo, int64_t hi) {
  std::string range = "an integer from " + std::to_string(lo) + " to " + std::to_string(hi);
  return CLI::Validator(
      [lo, hi, range](std::string& text) -> std::string {
        errno = 0;
        char* end = nullptr;
        long long v = std::strtoll(text.c_str(), &end, 10);
        if (text.empty() || *end != '\0' || errno == ERANGE || v < lo || v > hi)
          return "expected " + range + ", got '" + text + "'";
        return "";
      },
      std::to_string(lo) + ".." + std::to_string(hi));
}

std::string unknown_command_error(const CLI::App& app, int argc, char** argv) {
  if (argc < 2 || argv[1][0] == '-') return "";
  std::string typed = argv[1];
  std::vector<std::string> names = command_names(app);
  if (std::find(names.begin(), names.end(), typed) != names.end()) return "";
  std::string guess = closest_name(typed, names);
  return "vitbatch: error: unknown command '" + typed + "'" + (guess.empty() ? "" : " (did you mean '" + guess + "'?)") +
         "; commands: " + join(names);
}

std::string usage_error_message(const CLI::App& app, const CLI::ParseError& e, int argc, char** argv) {
  const std::string prefix = "vitbatch: error: ";
  const CLI::App* command = argc >= 2 ? subcommand_named(app, argv[1]) : nullptr;
  std::string where = command ? "vitbatch " + command->get_name() : "vitbatch";
  if (!command && argc < 2)
    return prefix + "no command given; commands: " + join(command_names(app)) + " (vitbatch COMMAND --help)";
  if (dynamic_cast<const CLI::ExtrasError*>(&e) && command) {
    std::vector<std::string> known;
    std::string flag = first_unknown_flag(*command, argc, argv, &known);
    if (!flag.empty()) {
      std::string guess = closest_name(flag, known);
      return prefix + "unknown option '" + flag + "' for '" + where + "'" +
             (guess.empty() ? "" : " (did you mean '" + guess + "'?)") + "; see '" + where + " --help'";
    }
    return prefix + e.what() + " (" + where + ")";
  }
  std::string text = e.what();
  if (dynamic_cast<const CLI::RequiredError*>(&e) && text.find("inputs") != std::string::npos)
    return prefix + where + " needs at least one input: image files, directories, or - for paths on stdin";
  if (dynamic_cast<const CLI::ArgumentMismatch*>(&e) || dynamic_cast<const CLI::ConversionError*>(&e))
    return prefix + text + " (" + where + " --help lists each option's values)";
  return prefix + text;
}

}  // namespace vitbatch_cli
