#include "vnni_gemm.hpp"

#include "panel_split.hpp"
#include "simd_lanes.hpp"

#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>

// The kernels are compiled for AVX512_VNNI alone (the build targets plain x86-64) and only
// called where vnni_gemm_available() says the CPU has it.
#define VB_VNNI __attribute__((target("avx512f,avx512bw,avx512vnni")))
#define VB_VNNI_INLINE __attribute__((target("avx512f,avx512bw,avx512vnni"), always_inline)) inline

namespace onednn_backend {

bool vnni_gemm_available() {
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vnni");
}

VnniWeights::VnniWeights(const int8_t* w, int64_t n, int64_t k) : N(n), K(k), panels((n + 63) / 64) {
  if (K % 4 != 0) throw std::logic_error("vnni_gemm: K must be a multiple of 4");
  const size_t bytes = static_cast<size_t>(panels * K * 64);
  storage.reset(new int8_t[bytes + 64]());
  data = storage.get() + (64 - reinterpret_cast<uintptr_t>(storage.get()) % 64) % 64;
  // A column's four consecutive k go together (one 32-bit copy): byte by byte this was a tenth
  // of ViT-B's first batch.
  for (int64_t p = 0; p < panels; ++p)
    for (int64_t c = 0; c < 64 && p * 64 + c < N; ++c) {
      const int8_t* row = w + (p * 64 + c) * K;
      int8_t* out = data + p * K * 64 + c * 4;
      for (int64_t kk = 0; kk < K; kk += 4) std::memcpy(out + kk * 64, row + kk, 4);
    }
}

namespace {

// The epilogue's terms are template flags (ROW: row_scale, row_offset and col_weight; RES: the
// residual), so a tile's stores carry no test of a null pointer and no accumulator goes
// through the stack: at K = 192 (ViT-Ti's qkv, proj, fc1) the store is a tenth of a tile's
// work, and with a run-time test per term it cost 5%-20% of the shape's speed.
typedef int32_t i32x16 __attribute__((vector_size(64)));
typedef float f32x16 __attribute__((vector_size(64)));
template <bool ROW, bool RES>
VB_VNNI_INLINE void store_vector(const VnniEpilogue& e, int64_t m, int64_t n, int64_t N, __mmask16 k, __m512i acc,
                                 __m512 row_scale, __m512 row_offset, float* y) {
  // (GCC's own conversion: _mm512_cvtepi32_ps trips GCC 12's -Wuninitialized in its header)
  const __m512 sum = reinterpret_cast<__m512>(__builtin_convertvector(reinterpret_cast<i32x16>(acc), f32x16));
  __m512 v = _mm512_mul_ps(sum, _mm512_maskz_loadu_ps(k, e.col_scale + n));
  if constexpr (ROW) v = _mm512_mul_ps(row_scale, v);
  __m512 add = _mm512_maskz_loadu_ps(k, e.col_add + n);
  if constexpr (ROW) add = _mm512_fmadd_ps(row_offset, _mm512_maskz_loadu_ps(k, e.col_weight + n), add);
  v = _mm512_add_ps(v, add);
  if constexpr (RES) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(k, e.residual + m * N + n));
  _mm512_mask_storeu_ps(y + n, k, v);
}

// One row of a tile's 64 columns through the epilogue into y (columns from n0, up to N).
template <bool ROW, bool RES>
VB_VNNI_INLINE void store_row(const VnniEpilogue& e, int64_t m, int64_t n0, int64_t N, float* y, __m512i a0, __m512i a1,
                              __m512i a2, __m512i a3) {
  const __m512 row_scale = ROW ? _mm512_set1_ps(e.row_scale[m]) : _mm512_setzero_ps();
  const __m512 row_offset = ROW ? _mm512_set1_ps(e.row_offset[m]) : _mm512_setzero_ps();
  if (n0 + 64 <= N) {  // every panel but the last of an N that 64 does not divide: no masks
    store_vector<ROW, RES>(e, m, n0, N, 0xFFFF, a0, row_scale, row_offset, y);
    store_vector<ROW, RES>(e, m, n0 + 16, N, 0xFFFF, a1, row_scale, row_offset, y);
    store_vector<ROW, RES>(e, m, n0 + 32, N, 0xFFFF, a2, row_scale, row_offset, y);
    store_vector<ROW, RES>(e, m, n0 + 48, N, 0xFFFF, a3, row_scale, row_offset, y);
    return;
  }
  const __m512i acc[4] = {a0, a1, a2, a3};
  for (int j = 0; j < 4; ++j) {
    const int64_t n = n0 + 16 * j;
    if (n >= N) break;
    store_vector<ROW, RES>(e, m, n, N, first_lanes(N - n), acc[j], row_scale, row_offset, y);
  }
}

VB_VNNI_INLINE __m512i broadcast4(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, sizeof v);
  return _mm512_set1_epi32(v);
}

// Rows [m, m + R) against one panel (columns n0 .. n0 + 63) over all of K. Each accumulator
// is a named variable: as an array GCC spilled them to the stack every step.
#define VB_ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5)
template <int R, bool ROW, bool RES>
VB_VNNI void tile(const uint8_t* x, int64_t ldx, const int8_t* panel, int64_t K, const VnniEpilogue& e, int64_t m,
                  int64_t n0, int64_t N, float* y) {
#define VB_DECLARE(r) __m512i c##r##0 = _mm512_setzero_si512(), c##r##1 = c##r##0, c##r##2 = c##r##0, c##r##3 = c##r##0;
  VB_ROWS(VB_DECLARE)
#undef VB_DECLARE
  const int8_t* b = panel;
  for (int64_t k = 0; k < K; k += 4, b += 256) {
    const __m512i b0 = _mm512_load_si512(b), b1 = _mm512_load_si512(b + 64), b2 = _mm512_load_si512(b + 128),
                  b3 = _mm512_load_si512(b + 192);
#define VB_STEP(r)                                   \
  if constexpr (R > r) {                             \
    const __m512i a = broadcast4(x + r * ldx + k);   \
    c##r##0 = _mm512_dpbusd_epi32(c##r##0, a, b0);   \
    c##r##1 = _mm512_dpbusd_epi32(c##r##1, a, b1);   \
    c##r##2 = _mm512_dpbusd_epi32(c##r##2, a, b2);   \
    c##r##3 = _mm512_dpbusd_epi32(c##r##3, a, b3);   \
  }
    VB_ROWS(VB_STEP)
#undef VB_STEP
  }
#define VB_STORE(r) \
  if constexpr (R > r) store_row<ROW, RES>(e, m + r, n0, N, y + (m + r) * N, c##r##0, c##r##1, c##r##2, c##r##3);
  VB_ROWS(VB_STORE)
#undef VB_STORE
}
#undef VB_ROWS

// Rows [m0, m1) against one panel: tiles of 6 rows, then one of the rest.
template <bool ROW, bool RES>
VB_VNNI void rows_panel(const uint8_t* x, int64_t ldx, const VnniWeights& w, int64_t p, const VnniEpilogue& e,
                        int64_t m0, int64_t m1, float* y) {
  const int8_t* panel = w.data + p * w.K * 64;
  const int64_t n0 = p * 64;
  int64_t m = m0;
  for (; m + 6 <= m1; m += 6) tile<6, ROW, RES>(x + m * ldx, ldx, panel, w.K, e, m, n0, w.N, y);
  const uint8_t* xr = x + m * ldx;
  switch (m1 - m) {
    case 5: tile<5, ROW, RES>(xr, ldx, panel, w.K, e, m, n0, w.N, y); break;
    case 4: tile<4, ROW, RES>(xr, ldx, panel, w.K, e, m, n0, w.N, y); break;
    case 3: tile<3, ROW, RES>(xr, ldx, panel, w.K, e, m, n0, w.N, y); break;
    case 2: tile<2, ROW, RES>(xr, ldx, panel, w.K, e, m, n0, w.N, y); break;
    case 1: tile<1, ROW, RES>(xr, ldx, panel, w.K, e, m, n0, w.N, y); break;
    default: break;
  }
}

}  // namespace

void vnni_gemm(const uint8_t* x, int64_t M, int64_t ldx, const VnniWeights& w, const VnniEpilogue& e, float* y) {
  if (M <= 0) return;
  if (!e.row_scale != !e.row_offset || (e.row_offset && !e.col_weight))
    throw std::logic_error("vnni_gemm: row_scale, row_offset and col_weight come together");
  // The epilogue's terms pick the instantiation, once for the call.
  const auto rows = e.row_scale ? (e.residual ? rows_panel<true, true> : rows_panel<true, false>)
                                : (e.residual ? rows_panel<false, true> : rows_panel<false, false>);
  split_rows_panels(M, w.K, w.panels, [&](int64_t p, int64_t m0, int64_t m1) { rows(x, ldx, w, p, e, m0, m1, y); });
}

}  // namespace onednn_backend
