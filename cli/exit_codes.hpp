// exit_codes.hpp: what vitbatch's exit status means (documented in the README).
#pragma once

namespace vitbatch_cli {

constexpr int kExitOk = 0;            // every input classified
constexpr int kExitSomeFailed = 1;    // ran to the end; some inputs could not be read/decoded
constexpr int kExitUsage = 2;         // bad flags, config, model, labels or backend choice
constexpr int kExitRuntime = 3;       // a backend failed mid-run; rows written so far are kept
constexpr int kExitOutputClosed = 141;  // the output pipe closed (| head): stopped quietly, as SIGPIPE would
// Stopped by SIGINT / SIGTERM: 128 + the signal (130, 143), after flushing every finished row.

}  // namespace vitbatch_cli
