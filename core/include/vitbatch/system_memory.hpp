// system_memory.hpp: how much memory a run may still take, to refuse a batch size whose
// buffers could not fit before allocating them.
#pragma once

#include <cstdint>

namespace vitbatch {

// MemAvailable from /proc/meminfo, lowered to the cgroup's remaining limit (memory.max -
// memory.current) when one applies; 0 when neither can be read.
uint64_t available_memory_bytes();

}  // namespace vitbatch
