// file_io.hpp: reading the small files vitbatch is given (config.json, YAML configs, labels,
// run records, outputs to resume) without ever blocking or exploding: opened non-blocking
// (a FIFO named config.json must not wait for a writer forever), required to be a regular
// file, and refused past a size no such file needs.
#pragma once

#include <cstdint>
#include <string>

namespace vitbatch {

// The whole file. Throws Error "PATH: <reason>" for a missing or unreadable file, a directory,
// a FIFO/device/socket ("not a regular file"), or one larger than max_bytes.
std::string read_regular_file(const std::string& path, uint64_t max_bytes = uint64_t{64} << 20);

// Writes all `size` bytes (retrying after EINTR and short writes). 0 on success, else the
// errno of the failure (ENOSPC when a write makes no progress).
int write_fully(int fd, const char* data, size_t size);

// Writes `bytes` to PATH.tmp.<pid>, syncs it, and renames it over `path`: a reader never sees
// half a file. Throws Error "PATH: cannot ...: <reason>".
void write_file_atomically(const std::string& path, const std::string& bytes);

}  // namespace vitbatch
