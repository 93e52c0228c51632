// system_memory.hpp: how much memory a run may still take, to refuse a batch size whose
// buffers could not fit before allocating them.
#pragma once

#include <cstdint>

namespace vitbatch {

// MemAvailable from /proc/meminfo, lowered to the cgroup's remaining limit (memory.max -
// memory.current) and to what RLIMIT_AS (ulimit -v) leaves of the address space, where
// those apply; 0 when none can be read.
uint64_t available_memory_bytes();

}  // namespace vitbatch
