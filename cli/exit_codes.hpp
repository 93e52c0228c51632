// exit_codes.hpp: what vitbatch's exit status means (documented in the README and --help).
#pragma once

namespace vitbatch_cli {

constexpr int kExitOk = 0;            // every input classified
constexpr int kExitSomeFailed = 1;    // ran to the end; some inputs failed, or there was nothing to classify
constexpr int kExitUsage = 2;         // bad flags, config, model, labels or backend choice
constexpr int kExitRuntime = 3;       // a backend failed mid-run; rows written so far are kept
constexpr int kExitOutputFailed = 4;  // writing the output failed (disk full, ...); complete rows are kept
constexpr int kExitOutputClosed = 141;  // the output pipe closed (| head): stopped quietly, as SIGPIPE would
// Stopped by SIGINT / SIGTERM: 128 + the signal (130, 143), after flushing every finished row.

inline const char* const kExitStatusHelp =
    "Exit status: 0 every input classified; 1 some inputs failed (their rows say why) or there\n"
    "was nothing to classify; 2 usage error (flags, config, model, labels, backend); 3 a backend\n"
    "failed mid-run (rows written so far are kept); 4 the output could not be written (disk\n"
    "full, ...: complete rows are kept, --resume finishes the file); 130/143 stopped by\n"
    "SIGINT/SIGTERM after flushing the rows in flight; 141 the output pipe closed.";

}  // namespace vitbatch_cli
