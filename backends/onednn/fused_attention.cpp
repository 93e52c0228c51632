// fused_attention.cpp: see fused_attention.hpp. Written on GCC's vector extensions (a 16-float
// vector) and compiled three times, for AVX-512, AVX2+FMA and plain x86-64, picked once at
// run time: the build itself targets plain x86-64.
#include "fused_attention.hpp"
#include "simd_lanes.hpp"

#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <limits>

// A 64-byte vector passed between inlined helpers: no ABI crosses a call here.
#pragma GCC diagnostic ignored "-Wpsabi"
// GCC 12's AVX-512 intrinsics start from _mm512_undefined_*() (`__m512 __Y = __Y;`), which it
// then reports as maybe uninitialised wherever they are inlined: noise from its own headers.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace onednn_backend {

namespace {

typedef float v16 __attribute__((vector_size(64)));
typedef int32_t v16i __attribute__((vector_size(64)));

#define VB_INLINE inline __attribute__((always_inline))

VB_INLINE v16 splat(float x) { return v16{} + x; }

VB_INLINE v16 vmax(v16 a, v16 b) { return a > b ? a : b; }

// e^x, Cephes' expf: x = n ln2 + r, |r| <= ln2 / 2, e^r by its degree-6 polynomial, 2^n put into
// the exponent bits; about 1 ulp. x is clamped to [-87.3, 88.7] first, so -inf (a masked score)
// gives ~1e-38 rather than a NaN, and the softmax's sum (>= 1, its maximum's e^0) absorbs it.
VB_INLINE v16 vexp(v16 x) {
  x = x < -87.3f ? splat(-87.3f) : x;
  x = x > 88.7f ? splat(88.7f) : x;
  // round(x / ln2) by the 1.5 * 2^23 trick: exact for |x / ln2| < 2^22.
  const v16 magic = splat(12582912.0f);
  v16 t = x * 1.44269504088896341f + magic;
  v16 n = t - magic;
  v16i ni = (v16i)t - (v16i)magic;  // a vector cast keeps the bits
  v16 r = x - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  v16 p = splat(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  return (v16)((v16i)p + (ni << 23));
}

// st[j] = e^(st[j] - max_j st[j]) per lane; returns their sums. Two chains each for the
// maximum and the sum, so that neither waits on every step.
VB_INLINE v16 softmax_numerators(v16* st, int64_t T) {
  v16 top0 = st[0], top1 = st[T - 1];
  for (int64_t jj = 1; jj + 1 < T; jj += 2) {
    top0 = vmax(top0, st[jj]);
    top1 = vmax(top1, st[jj + 1]);
  }
  const v16 top = vmax(top0, top1);
  v16 sum0{}, sum1{};
  int64_t jj = 0;
  for (; jj + 2 <= T; jj += 2) {
    v16 e0 = vexp(st[jj] - top), e1 = vexp(st[jj + 1] - top);
    st[jj] = e0;
    st[jj + 1] = e1;
    sum0 += e0;
    sum1 += e1;
  }
  if (jj < T) {
    st[jj] = vexp(st[jj] - top);
    sum0 += st[jj];
  }
  return sum0 + sum1;
}

// Adds the score bias [heads, T, T] of head h to the block of queries [q0, q0 + rows).
VB_INLINE void add_bias(const float* bias, int64_t T, int64_t h, int64_t q0, int64_t rows, v16* st) {
  const float* b = bias + h * T * T;
  for (int64_t j = 0; j < T; ++j)
    for (int64_t i = 0; i < rows; ++i) st[j][i] += b[(q0 + i) * T + j];
}

// qt[e][i] = scale * q[q0 + i, e] for the block's rows (the rest 0): q transposed, so that one
// vector holds an entry of all 16 queries.
VB_INLINE void transpose_queries(const AttentionShape& s, const float* qkv, int64_t h, int64_t q0, int64_t rows,
                                 float* qt) {
  const int64_t hd = s.D / s.heads, stride = 3 * s.D;
  std::memset(qt, 0, static_cast<size_t>(hd * kQueryBlock) * sizeof(float));
  for (int64_t i = 0; i < rows; ++i) {
    const float* q = qkv + (q0 + i) * stride + h * hd;
    for (int64_t e = 0; e < hd; ++e) qt[e * kQueryBlock + i] = q[e] * s.scale;
  }
}

// out[q0 + i, h*hd + e] = ot[e][i] / sum[i]: the block's rows back in the [T, D] layout.
VB_INLINE void store_rows(const AttentionShape& s, v16* ot, v16 sum, int64_t h, int64_t q0, int64_t rows, float* out) {
  const int64_t hd = s.D / s.heads;
  v16 inverse = 1.0f / sum;
  for (int64_t e = 0; e < hd; ++e) ot[e] *= inverse;
  for (int64_t i = 0; i < rows; ++i) {
    float* o = out + (q0 + i) * s.D + h * hd;
    for (int64_t e = 0; e < hd; ++e) o[e] = ot[e][i];
  }
}

// Scores of the block's 16 queries (qt: [hd][16], scaled) against keys [j0, j0 + N):
// st[j] = sum_e qt[e] * k[j, e], k's rows `stride` floats apart.
template <int N>
VB_INLINE void score_keys(const float* qt, const float* k, int64_t stride, int64_t hd, v16* st) {
  v16 acc[N];
  for (int u = 0; u < N; ++u) acc[u] = v16{};
  for (int64_t e = 0; e < hd; ++e) {
    v16 q = *reinterpret_cast<const v16*>(qt + e * kQueryBlock);
#pragma GCC unroll 16
    for (int u = 0; u < N; ++u) acc[u] += q * k[u * stride + e];
  }
  for (int u = 0; u < N; ++u) st[u] = acc[u];
}

// ot[e] = sum_j st[j] * v[j, e] for head entries [e0, e0 + N), v's rows `stride` floats apart.
template <int N>
VB_INLINE void mix_values(const v16* st, int64_t T, const float* v, int64_t stride, v16* ot) {
  v16 acc[N];
  for (int u = 0; u < N; ++u) acc[u] = v16{};
  for (int64_t j = 0; j < T; ++j) {
    v16 p = st[j];
    const float* row = v + j * stride;
#pragma GCC unroll 16
    for (int u = 0; u < N; ++u) acc[u] += p * row[u];
  }
  for (int u = 0; u < N; ++u) ot[u] = acc[u];
}

// 16 x 16 32-bit words (or floats) transposed in registers: r[i] word w -> r[w] word i.
__attribute__((target("avx512f"))) VB_INLINE void transpose16(__m512i* r) {
  __m512i a[16], b[16];
  for (int k = 0; k < 8; ++k) {
    a[2 * k] = _mm512_unpacklo_epi32(r[2 * k], r[2 * k + 1]);
    a[2 * k + 1] = _mm512_unpackhi_epi32(r[2 * k], r[2 * k + 1]);
  }
  // b[4k + m], 128-bit lane L: column 4L + m of rows 4k .. 4k + 3.
  for (int k = 0; k < 4; ++k) {
    b[4 * k] = _mm512_unpacklo_epi64(a[4 * k], a[4 * k + 2]);
    b[4 * k + 1] = _mm512_unpackhi_epi64(a[4 * k], a[4 * k + 2]);
    b[4 * k + 2] = _mm512_unpacklo_epi64(a[4 * k + 1], a[4 * k + 3]);
    b[4 * k + 3] = _mm512_unpackhi_epi64(a[4 * k + 1], a[4 * k + 3]);
  }
  // Column 4L + m, lane k = b[4k + m] lane L: a 4 x 4 transpose of 128-bit lanes.
  for (int m = 0; m < 4; ++m) {
    __m512i x0 = _mm512_shuffle_i32x4(b[m], b[4 + m], _MM_SHUFFLE(1, 0, 1, 0));
    __m512i x1 = _mm512_shuffle_i32x4(b[m], b[4 + m], _MM_SHUFFLE(3, 2, 3, 2));
    __m512i y0 = _mm512_shuffle_i32x4(b[8 + m], b[12 + m], _MM_SHUFFLE(1, 0, 1, 0));
    __m512i y1 = _mm512_shuffle_i32x4(b[8 + m], b[12 + m], _MM_SHUFFLE(3, 2, 3, 2));
    r[m] = _mm512_shuffle_i32x4(x0, y0, _MM_SHUFFLE(2, 0, 2, 0));
    r[4 + m] = _mm512_shuffle_i32x4(x0, y0, _MM_SHUFFLE(3, 1, 3, 1));
    r[8 + m] = _mm512_shuffle_i32x4(x1, y1, _MM_SHUFFLE(2, 0, 2, 0));
    r[12 + m] = _mm512_shuffle_i32x4(x1, y1, _MM_SHUFFLE(3, 1, 3, 1));
  }
}

// transpose_queries and store_rows for AVX-512 where the head size is a multiple of 16: 16 x 16
// tiles transposed in registers instead of a scalar store per float (perf: the two took about a
// fifth of the fp32 kernel's time).
// Called, not inlined, from block_impl (whose AVX-512 instance only becomes AVX-512 code once
// inlined into block_avx512): once a block, the call costs nothing measurable.
__attribute__((target("avx512f"), noinline)) void transpose_queries16(const AttentionShape& s, const float* qkv,
                                                                     int64_t h, int64_t q0, int64_t rows, float* qt) {
  const int64_t hd = s.D / s.heads, stride = 3 * s.D;
  const __m512 scale = _mm512_set1_ps(s.scale);
  for (int64_t c = 0; c < hd / 16; ++c) {
    __m512i r[16];
    for (int64_t i = 0; i < 16; ++i)
      r[i] = i < rows ? (__m512i)_mm512_mul_ps(_mm512_loadu_ps(qkv + (q0 + i) * stride + h * hd + c * 16), scale)
                      : _mm512_setzero_si512();
    transpose16(r);
    for (int w = 0; w < 16; ++w) _mm512_store_si512(qt + (c * 16 + w) * kQueryBlock, r[w]);
  }
}

__attribute__((target("avx512f"), noinline)) void store_rows16(const AttentionShape& s, v16* ot, const v16& sum,
                                                              int64_t h, int64_t q0, int64_t rows, float* out) {
  const int64_t hd = s.D / s.heads;
  const v16 inverse = 1.0f / sum;
  for (int64_t c = 0; c < hd / 16; ++c) {
    __m512i r[16];
    for (int w = 0; w < 16; ++w) r[w] = (__m512i)(ot[c * 16 + w] * inverse);
    transpose16(r);
    for (int64_t i = 0; i < rows; ++i) _mm512_storeu_si512(out + (q0 + i) * s.D + h * hd + c * 16, r[i]);
  }
}

template <bool kAvx512>
VB_INLINE void block_impl(const AttentionShape& s, const float* qkv, const float* bias, int64_t h, int64_t q0,
                          float* out, float* work) {
  const int64_t T = s.T, D = s.D, hd = D / s.heads, stride = 3 * D;
  const int64_t rows = std::min(kQueryBlock, T - q0);
  // work: qt [hd][16] (q transposed and scaled; lanes past T are 0), st [T][16] (scores, then
  // their exponentials), ot [hd][16] (the mix before the division by the sums).
  float* qt = work;
  v16* st = reinterpret_cast<v16*>(work + hd * kQueryBlock);
  v16* ot = st + T;
  if constexpr (kAvx512) {
    if (hd % 16 == 0) transpose_queries16(s, qkv, h, q0, rows, qt);
    else transpose_queries(s, qkv, h, q0, rows, qt);
  } else {
    transpose_queries(s, qkv, h, q0, rows, qt);
  }

  const float* k = qkv + D + h * hd;
  int64_t j = 0;
  for (; j + 8 <= T; j += 8) score_keys<8>(qt, k + j * stride, stride, hd, st + j);
  // The last keys in one pass too: one at a time, each would wait on its own FMA chain.
  switch (T - j) {
    case 7: score_keys<7>(qt, k + j * stride, stride, hd, st + j); break;
    case 6: score_keys<6>(qt, k + j * stride, stride, hd, st + j); break;
    case 5: score_keys<5>(qt, k + j * stride, stride, hd, st + j); break;
    case 4: score_keys<4>(qt, k + j * stride, stride, hd, st + j); break;
    case 3: score_keys<3>(qt, k + j * stride, stride, hd, st + j); break;
    case 2: score_keys<2>(qt, k + j * stride, stride, hd, st + j); break;
    case 1: score_keys<1>(qt, k + j * stride, stride, hd, st + j); break;
    default: break;
  }
  if (bias) add_bias(bias, T, h, q0, rows, st);
  const v16 sum = softmax_numerators(st, T);

  const float* v = qkv + 2 * D + h * hd;
  int64_t e0 = 0;
  for (; e0 + 8 <= hd; e0 += 8) mix_values<8>(st, T, v + e0, stride, ot + e0);
  for (; e0 + 4 <= hd; e0 += 4) mix_values<4>(st, T, v + e0, stride, ot + e0);
  for (; e0 < hd; ++e0) mix_values<1>(st, T, v + e0, stride, ot + e0);

  if constexpr (kAvx512) {
    if (hd % 16 == 0) return store_rows16(s, ot, sum, h, q0, rows, out);
  }
  store_rows(s, ot, sum, h, q0, rows, out);
}

__attribute__((target("avx512f,fma"))) void block_avx512(const AttentionShape& s, const float* qkv, const float* bias,
                                                         int64_t h, int64_t q0, float* out, float* work) {
  block_impl<true>(s, qkv, bias, h, q0, out, work);
}

__attribute__((target("avx2,fma"))) void block_avx2(const AttentionShape& s, const float* qkv, const float* bias,
                                                    int64_t h, int64_t q0, float* out, float* work) {
  block_impl<false>(s, qkv, bias, h, q0, out, work);
}

void block_plain(const AttentionShape& s, const float* qkv, const float* bias, int64_t h, int64_t q0, float* out,
                 float* work) {
  block_impl<false>(s, qkv, bias, h, q0, out, work);
}

using BlockFn = void (*)(const AttentionShape&, const float*, const float*, int64_t, int64_t, float*, float*);

BlockFn pick_block() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return block_avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return block_avx2;
  return block_plain;
}

// ---- bf16 pairs on vdpbf16ps ----------------------------------------------------------
// vdpbf16ps adds a.lo * b.lo + a.hi * b.hi per 32-bit lane, so each operand holds two bf16 of
// the same sum side by side: a pair of head entries (e, e+1) for q . k, a pair of keys (j, j+1)
// for p @ v. For q . k a lane of the loaded operand is a key and the query pair is broadcast;
// for p @ v a lane is a head entry and the probability pair is broadcast. So the queries and
// the output stay in their rows, and only K is transposed, once per head (the fp32 kernel above
// has the queries in the lanes, transposed per block: perf showed that transpose and the
// output's at about a quarter of the bf16 kernel's time).
#define VB_BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,fma")))

// e^x for the bf16 kernel's softmax, in 11 vector operations where vexp takes 18: x = n ln2 +
// r, |r| <= ln2 / 2, e^r by its degree-5 Taylor polynomial (relative error below 2.5e-6, a
// thousandth of the bf16 rounding its result goes through next), 2^n by vscalefps. x is
// clamped below at -87.3 as in vexp: a masked score (-inf) gives ~1e-38, not NaN.
VB_BF16 VB_INLINE __m512 exp_bf16(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-87.3f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.0f / 120.0f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

// 32-bit lanes (lo, hi) = (bf16(a[i]), bf16(b[i])), rounded to nearest even.
VB_BF16 VB_INLINE __m512i interleave_bf16(__m512 a, __m512 b) {
  const __m512i order = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6,
                                         21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  // cvtne2ps puts b's words above a's: words 0-15 = a, 16-31 = b.
  return _mm512_permutexvar_epi16(order, (__m512i)_mm512_cvtne2ps_pbh(b, a));
}

// 32 floats from x (the first n of them, the rest 0), times `scale`, as 16 words of bf16 pairs
// in order: word w = (x[2w], x[2w+1]).
VB_BF16 VB_INLINE __m512i pairs_bf16(const float* x, int64_t n, float scale) {
  const __mmask16 lo = first_lanes(n), hi = first_lanes(n - 16);
  const __m512 s = _mm512_set1_ps(scale);
  __m512 a = _mm512_mul_ps(_mm512_maskz_loadu_ps(lo, x), s), b = _mm512_mul_ps(_mm512_maskz_loadu_ps(hi, x + 16), s);
  return (__m512i)_mm512_cvtne2ps_pbh(b, a);  // b's bf16 above a's: x[0..31] in order
}

// Scores of R queries against key vectors [jv0, jv0 + C) (16 keys each, in the lanes):
// st[r][key] = sum over pairs e of q2[r][e] . kt2[e][key]. One broadcast query pair per row
// and step, C loaded key vectors shared by the R rows.
template <int R, int C>
VB_BF16 VB_INLINE void score_tile(const uint32_t* q2, int64_t q_stride, const __m512i* kt2, int64_t kv, int64_t pairs,
                                  int64_t jv0, float* st, int64_t st_stride) {
  __m512 acc[R][C];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) acc[r][c] = _mm512_setzero_ps();
  for (int64_t e = 0; e < pairs; ++e) {
    __m512bh k[C];
    for (int c = 0; c < C; ++c) k[c] = (__m512bh)kt2[e * kv + jv0 + c];
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      __m512bh q = (__m512bh)_mm512_set1_epi32(static_cast<int>(q2[r * q_stride + e]));
#pragma GCC unroll 8
      for (int c = 0; c < C; ++c) acc[r][c] = _mm512_dpbf16_ps(acc[r][c], k[c], q);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) _mm512_store_ps(st + r * st_stride + (jv0 + c) * 16, acc[r][c]);
}

template <int R>
VB_BF16 VB_INLINE void score_rows(const uint32_t* q2, int64_t q_stride, const __m512i* kt2, int64_t kv, int64_t pairs,
                                  float* st, int64_t st_stride) {
  // Key vectors in passes of at most 6, evened out (13 = 5 + 4 + 4): a pass of one or two
  // vectors would wait on its few FMA chains.
  const int64_t passes = (kv + 5) / 6;
  for (int64_t p = 0, jv0 = 0; p < passes; ++p) {
    const int64_t c = (kv - jv0) / (passes - p);
    switch (c) {
      case 6: score_tile<R, 6>(q2, q_stride, kt2, kv, pairs, jv0, st, st_stride); break;
      case 5: score_tile<R, 5>(q2, q_stride, kt2, kv, pairs, jv0, st, st_stride); break;
      case 4: score_tile<R, 4>(q2, q_stride, kt2, kv, pairs, jv0, st, st_stride); break;
      case 3: score_tile<R, 3>(q2, q_stride, kt2, kv, pairs, jv0, st, st_stride); break;
      case 2: score_tile<R, 2>(q2, q_stride, kt2, kv, pairs, jv0, st, st_stride); break;
      default: score_tile<R, 1>(q2, q_stride, kt2, kv, pairs, jv0, st, st_stride); break;
    }
    jv0 += c;
  }
}

// out rows of R queries, head entries [ev0 * 16, ev0 * 16 + 16 E): sum over key pairs jp of
// p2[r][jp] . v2[jp][entry], times inverse[r]; entries past hd masked off.
template <int R, int E>
VB_BF16 VB_INLINE void mix_tile(const uint32_t* p2, int64_t p_stride, int64_t pairs_t, const uint32_t* v2, int64_t v_stride,
                                int64_t ev0, const float* inverse, int64_t hd, float* out, int64_t out_stride) {
  __m512 acc[R][E];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < E; ++c) acc[r][c] = _mm512_setzero_ps();
  for (int64_t jp = 0; jp < pairs_t; ++jp) {
    __m512bh v[E];
    for (int c = 0; c < E; ++c) v[c] = (__m512bh)_mm512_load_si512(v2 + jp * v_stride + (ev0 + c) * 16);
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      __m512bh p = (__m512bh)_mm512_set1_epi32(static_cast<int>(p2[r * p_stride + jp]));
#pragma GCC unroll 4
      for (int c = 0; c < E; ++c) acc[r][c] = _mm512_dpbf16_ps(acc[r][c], v[c], p);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < E; ++c) {
      const __mmask16 mask = first_lanes(hd - (ev0 + c) * 16);
      _mm512_mask_storeu_ps(out + r * out_stride + (ev0 + c) * 16, mask, _mm512_mul_ps(acc[r][c], _mm512_set1_ps(inverse[r])));
    }
}

template <int R>
VB_BF16 VB_INLINE void mix_rows(const uint32_t* p2, int64_t p_stride, int64_t pairs_t, const uint32_t* v2, int64_t v_stride,
                                const float* inverse, int64_t hd, float* out, int64_t out_stride) {
  const int64_t ev = (hd + 15) / 16;
  for (int64_t ev0 = 0; ev0 < ev; ev0 += 4) {
    switch (std::min<int64_t>(4, ev - ev0)) {
      case 4: mix_tile<R, 4>(p2, p_stride, pairs_t, v2, v_stride, ev0, inverse, hd, out, out_stride); break;
      case 3: mix_tile<R, 3>(p2, p_stride, pairs_t, v2, v_stride, ev0, inverse, hd, out, out_stride); break;
      case 2: mix_tile<R, 2>(p2, p_stride, pairs_t, v2, v_stride, ev0, inverse, hd, out, out_stride); break;
      default: mix_tile<R, 1>(p2, p_stride, pairs_t, v2, v_stride, ev0, inverse, hd, out, out_stride); break;
    }
  }
}

// The layout of one head's work, keys in the lanes (so neither the queries nor the output are
// ever transposed; K is, once per head): kv = T / 16 rounded up key vectors, pairs_e = hd / 2
// (head entries in bf16 pairs), pairs_t = T / 2 rounded up (keys in pairs).
//   kt2 [pairs_e rounded up to 16][kv] vectors: word (e, key j) = K's bf16 pair (k[j, 2e], k[j, 2e+1])
//   v2  [pairs_t][hd rounded up to 16] words: word (jp, e) = (v[2jp, e], v[2jp+1, e]), pads 0
//   q2  [16][pairs_e rounded up to 16] words: the block's queries, scaled, in bf16 pairs
//   st  [16][kv * 16] floats: scores, then their exponentials
//   p2  [16][kv * 8] words: the exponentials in bf16 pairs of keys
// each part 64-byte aligned.
struct Bf16Shape {
  int64_t kv, pairs_e, pairs_e16, pairs_t, hd16;
};

Bf16Shape bf16_shape(const AttentionShape& s) {
  const int64_t hd = s.D / s.heads;
  return {(s.T + 15) / 16, hd / 2, (hd / 2 + 15) / 16 * 16, (s.T + 1) / 2, (hd + 15) / 16 * 16};
}

size_t round64(size_t floats) { return (floats + 15) / 16 * 16; }

// Where each part of a thread's work area starts (in floats), and the floats it takes in all
// (16 more, for aligning its start).
struct Bf16Layout {
  size_t kt2, v2, q2, st, p2, floats;
};

Bf16Layout bf16_layout(const Bf16Shape& b) {
  Bf16Layout l;
  l.kt2 = 0;                                                                // K^T, word pairs
  l.v2 = l.kt2 + round64(static_cast<size_t>(b.pairs_e16 * b.kv * 16));    // V, row pairs
  l.q2 = l.v2 + round64(static_cast<size_t>(b.pairs_t * b.hd16));          // a block's queries
  l.st = l.q2 + round64(static_cast<size_t>(16 * b.pairs_e16));            // its scores
  l.p2 = l.st + round64(static_cast<size_t>(16 * b.kv * 16));              // its probabilities
  l.floats = l.p2 + round64(static_cast<size_t>(16 * b.kv * 8)) + 16;
  return l;
}

size_t bf16_work_floats(const Bf16Shape& b) { return bf16_layout(b).floats; }

// Asks for rows [from, to) of a head's slice of qkv (hd floats at `base` in each row) ahead of
// their use. The rows lie 3D floats apart, which the hardware prefetcher does not follow: perf
// put about a fifth of head_bf16's time on the first loads of Q, K and V rows without this.
VB_INLINE void prefetch_rows(const float* base, int64_t from, int64_t to, int64_t stride, int64_t hd) {
  for (int64_t j = from; j < to; ++j) {
    const char* row = reinterpret_cast<const char*>(base + j * stride);
    for (int64_t byte = 0; byte < hd * 4; byte += 64) _mm_prefetch(row + byte, _MM_HINT_T0);
    _mm_prefetch(row + hd * 4 - 1, _MM_HINT_T0);
  }
}

VB_BF16 void head_bf16(const AttentionShape& s, const float* qkv, const float* bias, int64_t h, int64_t block0,
                       int64_t block1, float* out, float* work) {
  const int64_t T = s.T, D = s.D, hd = D / s.heads, stride = 3 * D;
  const Bf16Shape b = bf16_shape(s);
  const Bf16Layout l = bf16_layout(b);
  auto* kt2 = reinterpret_cast<__m512i*>(work + l.kt2);
  auto* v2 = reinterpret_cast<uint32_t*>(work + l.v2);
  auto* q2 = reinterpret_cast<uint32_t*>(work + l.q2);
  float* st = work + l.st;
  auto* p2 = reinterpret_cast<uint32_t*>(work + l.p2);
  const int64_t st_stride = b.kv * 16, p_stride = b.kv * 8;

  const float *q_at = qkv + h * hd, *k_at = qkv + D + h * hd, *v_at = qkv + 2 * D + h * hd;
  // K: 16 keys x 16 pairs at a time, converted row by row and transposed in registers; the
  // next 16 keys' rows (then V's first) on their way meanwhile.
  prefetch_rows(k_at, 0, std::min<int64_t>(16, T), stride, hd);
  for (int64_t jv = 0; jv < b.kv; ++jv) {
    if (jv + 1 < b.kv) prefetch_rows(k_at, (jv + 1) * 16, std::min(T, (jv + 2) * 16), stride, hd);
    else prefetch_rows(v_at, 0, std::min<int64_t>(8, T), stride, hd);
    for (int64_t e0 = 0; e0 < b.pairs_e; e0 += 16) {
      __m512i r[16];
      for (int l = 0; l < 16; ++l) {
        const int64_t j = jv * 16 + l;
        r[l] = j < T ? pairs_bf16(k_at + j * stride + 2 * e0, hd - 2 * e0, 1.0f) : _mm512_setzero_si512();
      }
      transpose16(r);
      for (int w = 0; w < 16; ++w) kt2[(e0 + w) * b.kv + jv] = r[w];
    }
  }
  // V: rows 2jp and 2jp + 1 interleaved entry by entry (the missing row past an odd T is 0),
  // V's rows four pairs ahead and the first block's queries on their way meanwhile.
  prefetch_rows(q_at, block0 * kQueryBlock, std::min(T, (block0 + 1) * kQueryBlock), stride, hd);
  for (int64_t jp = 0; jp < b.pairs_t; ++jp) {
    prefetch_rows(v_at, std::min(T, 2 * jp + 8), std::min(T, 2 * jp + 10), stride, hd);
    const float* v0 = v_at + 2 * jp * stride;
    const bool second = 2 * jp + 1 < T;
    for (int64_t c = 0; c < b.hd16 / 16; ++c) {
      const __mmask16 mask = first_lanes(hd - c * 16);
      __m512 x = _mm512_maskz_loadu_ps(mask, v0 + c * 16);
      __m512 y = second ? _mm512_maskz_loadu_ps(mask, v0 + stride + c * 16) : _mm512_setzero_ps();
      _mm512_store_si512(v2 + jp * b.hd16 + c * 16, interleave_bf16(x, y));
    }
  }
  // Keys past T: -inf before the maximum, 0 after the exponential.
  const __mmask16 real = first_lanes(T - (b.kv - 1) * 16);

  for (int64_t block = block0; block < block1; ++block) {
    const int64_t q0 = block * kQueryBlock, rows = std::min(kQueryBlock, T - q0);
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t e0 = 0; e0 < b.pairs_e; e0 += 16)
        _mm512_store_si512(q2 + i * b.pairs_e16 + e0, pairs_bf16(q_at + (q0 + i) * stride + 2 * e0, hd - 2 * e0, s.scale));
    if (block + 1 < block1) prefetch_rows(q_at, q0 + kQueryBlock, std::min(T, q0 + 2 * kQueryBlock), stride, hd);
    int64_t i = 0;
    for (; i + 4 <= rows; i += 4) score_rows<4>(q2 + i * b.pairs_e16, b.pairs_e16, kt2, b.kv, b.pairs_e, st + i * st_stride, st_stride);
    switch (rows - i) {
      case 3: score_rows<3>(q2 + i * b.pairs_e16, b.pairs_e16, kt2, b.kv, b.pairs_e, st + i * st_stride, st_stride); break;
      case 2: score_rows<2>(q2 + i * b.pairs_e16, b.pairs_e16, kt2, b.kv, b.pairs_e, st + i * st_stride, st_stride); break;
      case 1: score_rows<1>(q2 + i * b.pairs_e16, b.pairs_e16, kt2, b.kv, b.pairs_e, st + i * st_stride, st_stride); break;
      default: break;
    }
    // The softmax of each query's row, its exponentials into bf16 pairs.
    float inverse[kQueryBlock];
    for (int64_t r = 0; r < rows; ++r) {
      float* row = st + r * st_stride;
      if (bias) {
        const float* brow = bias + (h * T + q0 + r) * T;
        for (int64_t v = 0; v < b.kv; ++v) {
          const __mmask16 mask = v + 1 < b.kv ? __mmask16(0xFFFF) : real;
          _mm512_store_ps(row + v * 16, _mm512_add_ps(_mm512_load_ps(row + v * 16), _mm512_maskz_loadu_ps(mask, brow + v * 16)));
        }
      }
      float* last = row + (b.kv - 1) * 16;
      _mm512_store_ps(last, _mm512_mask_blend_ps(real, _mm512_set1_ps(-std::numeric_limits<float>::infinity()), _mm512_load_ps(last)));
      // Two chains each for the maximum and the sum, two exponentials in flight.
      __m512 top0 = _mm512_load_ps(last), top1 = top0;
      int64_t v = 0;
      for (; v + 2 < b.kv; v += 2) {
        top0 = _mm512_max_ps(top0, _mm512_load_ps(row + v * 16));
        top1 = _mm512_max_ps(top1, _mm512_load_ps(row + v * 16 + 16));
      }
      if (v + 1 < b.kv) top0 = _mm512_max_ps(top0, _mm512_load_ps(row + v * 16));
      const __m512 m = _mm512_set1_ps(_mm512_reduce_max_ps(_mm512_max_ps(top0, top1)));
      auto* p_row = reinterpret_cast<__m256i*>(p2 + r * p_stride);
      __m512 sum0 = _mm512_setzero_ps(), sum1 = _mm512_setzero_ps();
      for (v = 0; v + 2 < b.kv; v += 2) {
        const __m512 x0 = exp_bf16(_mm512_sub_ps(_mm512_load_ps(row + v * 16), m));
        const __m512 x1 = exp_bf16(_mm512_sub_ps(_mm512_load_ps(row + v * 16 + 16), m));
        sum0 = _mm512_add_ps(sum0, x0);
        sum1 = _mm512_add_ps(sum1, x1);
        _mm256_storeu_si256(p_row + v, (__m256i)_mm512_cvtneps_pbh(x0));
        _mm256_storeu_si256(p_row + v + 1, (__m256i)_mm512_cvtneps_pbh(x1));
      }
      if (v + 1 < b.kv) {
        const __m512 x0 = exp_bf16(_mm512_sub_ps(_mm512_load_ps(row + v * 16), m));
        sum0 = _mm512_add_ps(sum0, x0);
        _mm256_storeu_si256(p_row + v, (__m256i)_mm512_cvtneps_pbh(x0));
      }
      const __m512 x = _mm512_maskz_mov_ps(real, exp_bf16(_mm512_sub_ps(_mm512_load_ps(last), m)));
      sum1 = _mm512_add_ps(sum1, x);
      _mm256_storeu_si256(p_row + b.kv - 1, (__m256i)_mm512_cvtneps_pbh(x));
      inverse[r] = 1.0f / _mm512_reduce_add_ps(_mm512_add_ps(sum0, sum1));
    }
    float* o = out + q0 * D + h * hd;
    i = 0;
    for (; i + 4 <= rows; i += 4) mix_rows<4>(p2 + i * p_stride, p_stride, b.pairs_t, v2, b.hd16, inverse + i, hd, o + i * D, D);
    switch (rows - i) {
      case 3: mix_rows<3>(p2 + i * p_stride, p_stride, b.pairs_t, v2, b.hd16, inverse + i, hd, o + i * D, D); break;
      case 2: mix_rows<2>(p2 + i * p_stride, p_stride, b.pairs_t, v2, b.hd16, inverse + i, hd, o + i * D, D); break;
      case 1: mix_rows<1>(p2 + i * p_stride, p_stride, b.pairs_t, v2, b.hd16, inverse + i, hd, o + i * D, D); break;
      default: break;
    }
  }
}

}  // namespace

size_t attention_block_floats(const AttentionShape& s) {
  const int64_t hd = s.D / s.heads;
  // + 16: room to align the vectors to 64 bytes.
  return static_cast<size_t>((2 * hd + s.T) * kQueryBlock + 16);
}

void attention_block(const AttentionShape& s, const float* qkv, const float* bias, int64_t h, int64_t q0, float* out,
                     float* work) {
  static const BlockFn block = pick_block();
  auto aligned = reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(work) + 63) & ~uintptr_t{63});
  block(s, qkv, bias, h, q0, out, aligned);
}

bool has_bf16_attention() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
}

size_t attention_head_bf16_floats(const AttentionShape& s) { return bf16_work_floats(bf16_shape(s)); }

void attention_head_bf16(const AttentionShape& s, const float* qkv, const float* bias, int64_t h, int64_t block0,
                         int64_t block1, float* out, float* work) {
  auto aligned = reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(work) + 63) & ~uintptr_t{63});
  head_bf16(s, qkv, bias, h, block0, block1, out, aligned);
}

}  // namespace onednn_backend
