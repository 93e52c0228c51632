// usage_errors.hpp: CLI11's parse errors rewritten the way git words them: one line that
// starts with "vitbatch: error:", names the flag or command, gives the allowed range, and
// suggests the closest name for a typo ("did you mean '--model'?").
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace vitbatch_cli {

// The candidate closest to `typed` by edit distance, or "" when none is close enough to be
// what was meant (at most a third of the name's letters differ).
std::string closest_name(const std::string& typed, const std::vector<std::string>& candidates);

// A CLI11 check for an integer in [lo, hi], whose message names the range in words.
CLI::Validator int_range(int64_t lo, int64_t hi);

// The subcommand named by argv[1] is not one of app's: the error line, else "".
std::string unknown_command_error(const CLI::App& app, int argc, char** argv);

// The one-line message for a parse error (help and version are not errors).
std::string usage_error_message(const CLI::App& app, const CLI::ParseError& e, int argc, char** argv);

}  // namespace vitbatch_cli
