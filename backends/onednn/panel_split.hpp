// panel_split.hpp: how the onednn backend's own matmuls (vnni_gemm.cpp, bf16_gemm.cpp) split
// one call's M rows x panels of 64 columns over the calling thread's OpenMP team.
#pragma once

#include <omp.h>

#include <algorithm>
#include <cstdint>

namespace onednn_backend {

// Calls rows(p, m0, m1) for row ranges [m0, m1) (multiples of 6 rows, the tiles' height,
// but for the last) against panel p, every (range, panel) once. Blocks of rows whose x (at
// most 256 KiB of row_bytes each) stays in L2 while every panel passes under it: the weights,
// larger than L2 at ViT-B, then come from L3 or memory once a block (all 197 rows of an image
// where a row is at most 1330 bytes). Enough blocks that each thread gets two items or more.
// Each thread takes a contiguous run of (block, panel) items: mostly one block's panels in turn.
template <class Rows>
void split_rows_panels(int64_t M, int64_t row_bytes, int64_t panels, const Rows& rows) {
  const int64_t team = omp_get_max_threads(), max_rows = std::max<int64_t>(6, (256 * 1024) / row_bytes);
  const int64_t blocks = std::min((M + 5) / 6, std::max((M + max_rows - 1) / max_rows, (2 * team + panels - 1) / panels));
  const int64_t block_rows = ((M + blocks - 1) / blocks + 5) / 6 * 6;
  const int64_t items = blocks * panels;
#pragma omp parallel
  {
    const int64_t threads = omp_get_num_threads(), id = omp_get_thread_num();
    const int64_t chunk = (items + threads - 1) / threads;
    const int64_t begin = std::min(items, id * chunk), end = std::min(items, (id + 1) * chunk);
    for (int64_t i = begin; i < end; ++i) {
      const int64_t b = i / panels, p = i % panels;
      rows(p, b * block_rows, std::min(M, (b + 1) * block_rows));
    }
  }
}

}  // namespace onednn_backend
