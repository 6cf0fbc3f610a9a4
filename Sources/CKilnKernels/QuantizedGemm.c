// Integer matrix products of quantized plans (see CKilnKernels.h): C[m][n] = sum over p of A[m][p] * B[p][n], A signed
// 8-bit weight codes, B 8-bit activation codes (unsigned or signed), C 32-bit. Integer sums are exact in any
// order, so every path gives the same integers; only the speed differs.
//
// Two packed formats. "Pairs" (generic and AVX2): 16-bit codes two k at a time, multiplied by vpmaddwd, which
// adds the two products into one 32-bit lane without saturating (vpmaddubsw would be twice as fast on AVX2 but
// saturates 16-bit sums once activations use all 8 bits). "Quads" (AVX-VNNI, AVX512-VNNI): bytes four k at a
// time for vpdpbusd, which multiplies unsigned by signed bytes: signed activations are stored plus 128 and
// 128 * (the row's weight sum) is taken off afterwards.
#include "CKilnKernels.h"
#include <math.h>
#include <stdint.h>
#include <string.h>

// The epilogue must compute exactly what the float plan's separate steps compute: no fused multiply-adds.
#pragma clang fp contract(off)

// The last two are plain C over the VNNI paths' packed layouts: they check the packing and the signed-code
// correction of those paths on CPUs without VNNI (only the tiles' instructions then go untested).
enum { PATH_GENERIC = 0, PATH_AVX2 = 1, PATH_AVX_VNNI = 2, PATH_AVX512_VNNI = 3, PATH_AVX_VNNI_LAYOUT = 4,
       PATH_AVX512_VNNI_LAYOUT = 5, PATH_COUNT = 6 };

static long group_of(int path) { return path == PATH_GENERIC || path == PATH_AVX2 ? 2 : 4; }
static long block_of(int path) { return path == PATH_AVX512_VNNI || path == PATH_AVX512_VNNI_LAYOUT ? 32 : 16; }
static int uses_tiles(int path) { return path >= PATH_AVX2 && path <= PATH_AVX512_VNNI; }
static long words_of(int path, long k) { return (k + group_of(path) - 1) / group_of(path); }

// ---- Paths ----

#if defined(__x86_64__)
static int cpu_has(int path) {
    __builtin_cpu_init();
    switch (path) {
    case PATH_AVX2: return __builtin_cpu_supports("avx2");
    case PATH_AVX_VNNI: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("avxvnni");
    case PATH_AVX512_VNNI:
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
    default: return 1;
    }
}
#else
static int cpu_has(int path) { return path == PATH_GENERIC; }
#endif

static const char *const path_names[] = {"generic", "avx2", "avx-vnni", "avx512-vnni", "avx-vnni-layout",
                                          "avx512-vnni-layout"};
static int forced = -1, automatic = -1;

static int automatic_path(void) {
    int a = __atomic_load_n(&automatic, __ATOMIC_ACQUIRE);
    if (a >= 0) return a;
    a = PATH_GENERIC;
    for (int p = PATH_AVX512_VNNI; p > PATH_GENERIC; p--) if (cpu_has(p)) { a = p; break; }
    __atomic_store_n(&automatic, a, __ATOMIC_RELEASE);
    return a;
}

int kiln_q8_current_path(void) {
    int f = __atomic_load_n(&forced, __ATOMIC_ACQUIRE);
    return f >= 0 ? f : automatic_path();
}

const char *kiln_q8_path_name(int path) { return path >= 0 && path < PATH_COUNT ? path_names[path] : "unknown"; }

int kiln_q8_path_available(const char *name) {
    for (int p = 0; p < PATH_COUNT; p++) if (name && strcmp(name, path_names[p]) == 0) return cpu_has(p);
    return 0;
}

int kiln_q8_force_path(const char *name) {
    if (name == NULL) { __atomic_store_n(&forced, -1, __ATOMIC_RELEASE); return 1; }
    for (int p = 0; p < PATH_COUNT; p++) {
        if (strcmp(name, path_names[p]) == 0 && cpu_has(p)) { __atomic_store_n(&forced, p, __ATOMIC_RELEASE); return 1; }
    }
    return 0;
}

// ---- Packing ----

long kiln_q8_packed_a_bytes(int path, long m, long k) { return (m * words_of(path, k) + m) * 4; }

long kiln_q8_packed_b_bytes(int path, long k, long n) {
    long nb = block_of(path);
    return ((n + nb - 1) / nb) * nb * words_of(path, k) * 4;
}

long kiln_q8_packed_b_bytes_max(long k, long n) {
    long most = 0;
    for (int p = 0; p < PATH_COUNT; p++) { long b = kiln_q8_packed_b_bytes(p, k, n); if (b > most) most = b; }
    return most;
}

static long clamp_code(long v, long lo, long hi) { return v < lo ? lo : v > hi ? hi : v; }

// v >= 0 rounded half away from zero, exactly: floor(v + 0.5) without the float addition's rounding (which
// takes 0.5 - 2^-25 up to 1).
static float round_half_up(float v) {
    float t = truncf(v);
    return v - t >= 0.5f ? t + 1.0f : t;
}

// nnabla's FixedPointQuantize as a code: clip, then |v| / step rounded half away from zero (exact here: the step is
// a power of two and |v| / step <= 255). A NaN has no code: it becomes 0.
static long fixed_point_code(float v, float step, long minCode, long maxCode) {
    if (v > (float)maxCode * step) return maxCode;
    if (v < (float)minCode * step) return minCode;
    if (!(v == v)) return 0;
    long q = (long)round_half_up(fabsf(v) / step);
    return v < 0 ? -q : q;
}

// nnabla's QuantizeLinear as a code: v / step rounded (half away from zero, or half to even), plus the zero point,
// saturated. A NaN becomes the zero point (the code of 0).
static long linear_code(float v, const kiln_q8_grid *g) {
    float t = v / g->step;
    if (!(t == t)) return clamp_code(g->zeroPoint, g->minCode, g->maxCode);
    if (t <= (float)(g->minCode - g->zeroPoint)) return g->minCode;
    if (t >= (float)(g->maxCode - g->zeroPoint)) return g->maxCode;
    float r = g->halfEven ? nearbyintf(t) : (t < 0 ? -round_half_up(-t) : round_half_up(t));
    return clamp_code((long)r + g->zeroPoint, g->minCode, g->maxCode);
}

static long grid_code(float v, const kiln_q8_grid *g) {
    return g->linear ? linear_code(v, g) : fixed_point_code(v, g->step, g->minCode, g->maxCode);
}

// A code from a value on a grid of step 1/inverse and zero point zp: exact for values on the grid; anything else (a
// NaN, a value off the grid) is rounded and clamped rather than left to undefined conversions.
static long code_of(float v, float inverse, long zp, long lo, long hi) {
    float q = v * inverse;
    if (!(q == q)) return clamp_code(zp, lo, hi);
    if (q >= (float)(hi - zp)) return hi;
    if (q <= (float)(lo - zp)) return lo;
    return clamp_code((long)nearbyintf(q) + zp, lo, hi);
}

void kiln_q8_pack_a(int path, long m, long k, const float *a, long mStride, long kStride, float step, long minCode,
                    long maxCode, void *packed) {
    long words = words_of(path, k), g = group_of(path);
    int32_t *out = (int32_t *)packed, *sums = out + m * words;
    for (long r = 0; r < m; r++) {
        int32_t sum = 0;
        for (long w = 0; w < words; w++) {
            uint32_t word = 0;
            for (long e = 0; e < g; e++) {
                long p = w * g + e;
                long c = p < k ? fixed_point_code(a[r * mStride + p * kStride], step, minCode, maxCode) : 0;
                sum += (int32_t)c;
                word |= g == 2 ? ((uint32_t)(uint16_t)(int16_t)c) << (16 * e) : ((uint32_t)(uint8_t)(int8_t)c) << (8 * e);
            }
            out[r * words + w] = (int32_t)word;
        }
        sums[r] = sum;
    }
}

// Rows of codes (row p at `b + p*ld`) into the pairs layout: 16-bit codes, two rows interleaved per block column.
static void pack_code_rows_pairs(long k, long n, const uint8_t *b, long ld, int isSigned, int16_t *out) {
    long words = (k + 1) / 2, nb = 16;
    for (long jb = 0; jb * nb < n; jb++) {
        long cols = n - jb * nb < nb ? n - jb * nb : nb;
        int16_t *block = out + jb * words * nb * 2;
        for (long w = 0; w < words; w++) {
            int16_t *o = block + w * nb * 2;
            const uint8_t *r0 = b + 2 * w * ld + jb * nb, *r1 = 2 * w + 1 < k ? r0 + ld : NULL;
            long j = 0;
            if (isSigned) {
                for (; j < cols; j++) { o[2 * j] = (int8_t)r0[j]; o[2 * j + 1] = r1 ? (int8_t)r1[j] : 0; }
            } else {
                for (; j < cols; j++) { o[2 * j] = r0[j]; o[2 * j + 1] = r1 ? r1[j] : 0; }
            }
            for (; j < nb; j++) o[2 * j] = o[2 * j + 1] = 0;
        }
    }
}

// Rows of codes into the quads layout: bytes, four rows interleaved per block column, signed codes plus 128.
static void pack_code_rows_quads(long k, long n, long nb, const uint8_t *b, long ld, int isSigned, uint8_t *out) {
    long words = (k + 3) / 4;
    uint8_t flip = isSigned ? 0x80 : 0;  // int8 c as uint8, xor 0x80, is c + 128
    for (long jb = 0; jb * nb < n; jb++) {
        long cols = n - jb * nb < nb ? n - jb * nb : nb;
        uint8_t *block = out + jb * words * nb * 4;
        for (long w = 0; w < words; w++) {
            uint8_t *o = block + w * nb * 4;
            for (long e = 0; e < 4; e++) {
                long p = 4 * w + e;
                if (p >= k) {
                    for (long j = 0; j < nb; j++) o[4 * j + e] = flip;
                    continue;
                }
                const uint8_t *r = b + p * ld + jb * nb;
                long j = 0;
                for (; j < cols; j++) o[4 * j + e] = r[j] ^ flip;
                for (; j < nb; j++) o[4 * j + e] = flip;
            }
        }
    }
}

void kiln_q8_row_offsets(int path, long m, long k, const void *packedA, long zeroPoint, int32_t *offsets) {
    const int32_t *sums = (const int32_t *)packedA + m * words_of(path, k);
    for (long r = 0; r < m; r++) offsets[r] = (int32_t)((uint32_t)zeroPoint * (uint32_t)sums[r]);
}

#if defined(__x86_64__)
#include <immintrin.h>

// Two k rows of 16 codes widened to 16 bits and interleaved: the pairs layout's 16 columns of one word.
__attribute__((target("avx2"), always_inline)) static inline void store_pairs(__m128i r0, __m128i r1, int isSigned,
                                                                              int16_t *o) {
    __m256i a = isSigned ? _mm256_cvtepi8_epi16(r0) : _mm256_cvtepu8_epi16(r0);
    __m256i b = isSigned ? _mm256_cvtepi8_epi16(r1) : _mm256_cvtepu8_epi16(r1);
    __m256i lo = _mm256_unpacklo_epi16(a, b), hi = _mm256_unpackhi_epi16(a, b);
    _mm256_storeu_si256((__m256i *)o, _mm256_permute2x128_si256(lo, hi, 0x20));
    _mm256_storeu_si256((__m256i *)o + 1, _mm256_permute2x128_si256(lo, hi, 0x31));
}

// pack_code_rows_pairs with AVX2: a full block of 16 columns of two rows widened and interleaved in registers.
__attribute__((target("avx2"))) static void pack_code_rows_pairs_avx2(long k, long n, const uint8_t *b, long ld,
                                                                      int isSigned, int16_t *out) {
    long words = (k + 1) / 2, nb = 16, full = n / nb;
    const __m128i zero = _mm_setzero_si128();
    for (long jb = 0; jb < full; jb++) {
        int16_t *block = out + jb * words * nb * 2;
        for (long w = 0; w < words; w++) {
            const uint8_t *r0 = b + 2 * w * ld + jb * nb;
            __m128i x0 = _mm_loadu_si128((const __m128i *)r0);
            __m128i x1 = 2 * w + 1 < k ? _mm_loadu_si128((const __m128i *)(r0 + ld)) : zero;
            store_pairs(x0, x1, isSigned, block + w * nb * 2);
        }
    }
    if (full * nb < n) {
        // The partial last block: the plain loop on the columns left.
        long done = full * nb;
        pack_code_rows_pairs(k, n - done, b + done, ld, isSigned, out + full * words * nb * 2);
    }
}

// 16 pixels at stride 2 in one row: bytes 0, 2, ..., 30 (the even bytes of [0, 16) and of [15, 31) moved by one).
__attribute__((target("avx2"))) static inline __m128i load_stride2(const uint8_t *p) {
    const __m128i even = _mm_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, -1, -1, -1, -1, -1, -1, -1, -1);
    const __m128i odd = _mm_setr_epi8(-1, -1, -1, -1, -1, -1, -1, -1, 1, 3, 5, 7, 9, 11, 13, 15);
    return _mm_or_si128(_mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)p), even),
                        _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 15)), odd));
}

// Two runs of 8 pixels (stride 1) at p and q.
__attribute__((target("avx2"))) static inline __m128i load_halves(const uint8_t *p, const uint8_t *q) {
    uint64_t u0, u1;
    __builtin_memcpy(&u0, p, 8);
    __builtin_memcpy(&u1, q, 8);
    return _mm_set_epi64x((long long)u1, (long long)u0);
}

// A run of 16 output pixels (columns) of a padded sample and how to load one k row's 16 codes of it: 16
// consecutive bytes (stride 1, one output row), 16 at stride 2 in one row, two runs of 8 (rows of 8 pixels), or a
// byte gather (any other run, and the last partial run, whose missing pixels read as code 0).
enum { RUN_ROW, RUN_STRIDE2, RUN_HALVES, RUN_GATHER };
typedef struct {
    int kind;
    const uint8_t *base, *base2;
    long at[16], cols;
} pixel_run;

static void pixel_run_at(const kiln_conv_shape *s, const uint8_t *padded, long oy, long ox, long cols, pixel_run *r) {
    const long wp = s->w + 2 * s->pw, ow = s->ow;
    long y2 = ox + 8 < ow ? oy : oy + 1, x2 = ox + 8 < ow ? ox + 8 : ox + 8 - ow;
    r->cols = cols;
    r->base = padded + oy * s->sh * wp + ox * s->sw;
    r->base2 = padded + y2 * s->sh * wp + x2;
    if (cols == 16 && ox + 16 <= ow && s->sw == 1) r->kind = RUN_ROW;
    else if (cols == 16 && ox + 16 <= ow && s->sw == 2) r->kind = RUN_STRIDE2;
    else if (cols == 16 && s->sw == 1 && ox + 8 <= ow && x2 + 8 <= ow) r->kind = RUN_HALVES;
    else {
        r->kind = RUN_GATHER;
        long y = oy, x = ox;
        for (long j = 0; j < cols; j++) {
            r->at[j] = y * s->sh * wp + x * s->sw;
            if (++x == ow) { x = 0; y++; }
        }
    }
}

__attribute__((target("avx2"), always_inline)) static inline __m128i run_load(const int kind, const pixel_run *r,
                                                                              const uint8_t *padded, long offset) {
    switch (kind) {
    case RUN_ROW: return _mm_loadu_si128((const __m128i *)(r->base + offset));
    case RUN_STRIDE2: return load_stride2(r->base + offset);
    case RUN_HALVES: return load_halves(r->base + offset, r->base2 + offset);
    default: {
        uint8_t g[16] = {0};
        const uint8_t *src = padded + offset;
        for (long j = 0; j < r->cols; j++) g[j] = src[r->at[j]];
        return _mm_loadu_si128((const __m128i *)g);
    }
    }
}


// Four k rows of a run as the quads layout's 16 columns of one word: each column's four bytes together, signed
// codes moved to unsigned by 128 (vpdpbusd's operand).
__attribute__((target("avx2"), always_inline)) static inline void store_quads(__m128i r0, __m128i r1, __m128i r2,
                                                                              __m128i r3, int isSigned, uint8_t *o) {
    const __m128i flip = _mm_set1_epi8(isSigned ? (char)0x80 : 0);
    r0 = _mm_xor_si128(r0, flip); r1 = _mm_xor_si128(r1, flip); r2 = _mm_xor_si128(r2, flip); r3 = _mm_xor_si128(r3, flip);
    __m128i a = _mm_unpacklo_epi8(r0, r1), b = _mm_unpackhi_epi8(r0, r1);
    __m128i c = _mm_unpacklo_epi8(r2, r3), d = _mm_unpackhi_epi8(r2, r3);
    _mm_storeu_si128((__m128i *)o, _mm_unpacklo_epi16(a, c));
    _mm_storeu_si128((__m128i *)(o + 16), _mm_unpackhi_epi16(a, c));
    _mm_storeu_si128((__m128i *)(o + 32), _mm_unpacklo_epi16(b, d));
    _mm_storeu_si128((__m128i *)(o + 48), _mm_unpackhi_epi16(b, d));
}

// One run's words: its k rows loaded as the run's kind says (a constant in each instance, so the loop has no
// branch on it), stored in the pairs (G 2) or quads (G 4) layout.
__attribute__((target("avx2"), always_inline)) static inline void pack_run_words(
    const int G, const int KIND, const pixel_run *run, const uint8_t *padded, const long *offsets, long k, long words,
    long nb, int isSigned, uint8_t *block) {
    const __m128i zero = _mm_setzero_si128();
    const long full = k / G;
    for (long w = 0; w < full; w++) {
        const long *o = offsets + G * w;
        uint8_t *to = block + w * nb * 4;
        if (G == 2) {
            store_pairs(run_load(KIND, run, padded, o[0]), run_load(KIND, run, padded, o[1]), isSigned, (int16_t *)to);
        } else {
            store_quads(run_load(KIND, run, padded, o[0]), run_load(KIND, run, padded, o[1]), run_load(KIND, run, padded, o[2]),
                        run_load(KIND, run, padded, o[3]), isSigned, to);
        }
    }
    if (full < words) {
        // The last word's rows past k read as code 0.
        __m128i r[4] = {zero, zero, zero, zero};
        for (long e = 0; G * full + e < k; e++) r[e] = run_load(KIND, run, padded, offsets[G * full + e]);
        uint8_t *to = block + full * nb * 4;
        if (G == 2) store_pairs(r[0], r[1], isSigned, (int16_t *)to);
        else store_quads(r[0], r[1], r[2], r[3], isSigned, to);
    }
}

#define PACK_RUN_KIND(G)                                                                                            \
    switch (run.kind) {                                                                                            \
    case RUN_ROW: pack_run_words(G, RUN_ROW, &run, padded, offsets, k, words, nb, isSigned, block); break;         \
    case RUN_STRIDE2: pack_run_words(G, RUN_STRIDE2, &run, padded, offsets, k, words, nb, isSigned, block); break; \
    case RUN_HALVES: pack_run_words(G, RUN_HALVES, &run, padded, offsets, k, words, nb, isSigned, block); break;   \
    default: pack_run_words(G, RUN_GATHER, &run, padded, offsets, k, words, nb, isSigned, block); break;           \
    }

// The columns of a padded sample packed straight into a path's layout (im2col and pack_b in one pass, with no
// column matrix in between): run by run of 16 output pixels, word by word through the k rows' offsets in the
// padded sample (`offsets`, k entries of scratch).
__attribute__((target("avx2"))) static void pack_conv_avx2(int path, const kiln_conv_shape *s, const uint8_t *padded,
                                                           int isSigned, long *offsets, uint8_t *out) {
    const long hp = s->h + 2 * s->ph, wp = s->w + 2 * s->pw, n = s->oh * s->ow, ow = s->ow;
    const long k = s->channels * s->kh * s->kw, nb = block_of(path), words = words_of(path, k);
    long p = 0;
    for (long c = 0; c < s->channels; c++)
        for (long i = 0; i < s->kh; i++)
            for (long j = 0; j < s->kw; j++) offsets[p++] = c * hp * wp + i * s->dh * wp + j * s->dw;
    long oy = 0, ox = 0;
    for (long first = 0; first < n; first += 16) {
        pixel_run run;
        pixel_run_at(s, padded, oy, ox, n - first < 16 ? n - first : 16, &run);
        // This run's place in its block of nb columns (a 32-column block holds two runs).
        uint8_t *block = out + (first / nb) * nb * words * 4 + (first % nb) * 4;
        if (group_of(path) == 2) { PACK_RUN_KIND(2) } else { PACK_RUN_KIND(4) }
        ox += 16;
        while (ox >= ow) { ox -= ow; oy++; }
    }
}
#endif

int kiln_q8_pack_conv(int path, const kiln_conv_shape *s, const uint8_t *padded, int isSigned, long *offsets,
                      void *packed) {
#if defined(__x86_64__)
    // Every path but the plain generic one runs on a CPU with AVX2 (the layout paths are tests of the VNNI ones).
    if (path != PATH_GENERIC && cpu_has(PATH_AVX2)) {
        pack_conv_avx2(path, s, padded, isSigned, offsets, (uint8_t *)packed);
        return 1;
    }
#endif
    (void)s; (void)padded; (void)isSigned; (void)offsets; (void)packed;
    return 0;
}


void kiln_q8_pack_b(int path, long k, long n, const void *b, int source, int isSigned, long kStride, long nStride,
                    float inverseStep, long zeroPoint, void *packed) {
    long words = words_of(path, k), g = group_of(path), nb = block_of(path), blocks = (n + nb - 1) / nb;
    if (source != KILN_Q8_FLOAT && nStride == 1) {
#if defined(__x86_64__)
        if (path == PATH_AVX2) {
            pack_code_rows_pairs_avx2(k, n, (const uint8_t *)b, kStride, isSigned, (int16_t *)packed);
            return;
        }
#endif
        if (g == 2) pack_code_rows_pairs(k, n, (const uint8_t *)b, kStride, isSigned, (int16_t *)packed);
        else pack_code_rows_quads(k, n, nb, (const uint8_t *)b, kStride, isSigned, (uint8_t *)packed);
        return;
    }
    long lo = isSigned ? -128 : 0, hi = isSigned ? 127 : 255;
    const uint8_t *u = (const uint8_t *)b;
    const int8_t *s = (const int8_t *)b;
    const float *f = (const float *)b;
    for (long jb = 0; jb < blocks; jb++) {
        uint8_t *block = (uint8_t *)packed + jb * nb * words * 4;
        for (long w = 0; w < words; w++) {
            for (long j = 0; j < nb; j++) {
                long col = jb * nb + j;
                uint8_t *word = block + (w * nb + j) * 4;
                for (long e = 0; e < g; e++) {
                    long p = w * g + e, c = 0;
                    if (p < k && col < n) {
                        long at = p * kStride + col * nStride;
                        c = source == KILN_Q8_U8 ? (long)u[at] : source == KILN_Q8_S8 ? (long)s[at]
                                                                : code_of(f[at], inverseStep, zeroPoint, lo, hi);
                    }
                    if (g == 2) {
                        int16_t h = (int16_t)c;
                        memcpy(word + 2 * e, &h, 2);
                    } else {
                        // vpdpbusd reads unsigned bytes: signed codes are shifted by 128 (undone with the row sums).
                        word[e] = (uint8_t)(isSigned ? c + 128 : c);
                    }
                }
            }
        }
    }
}

// ---- Products ----

// Rows of A per tile; a tile's rows past `rows` repeat the last real row and are not stored.
enum { TILE_ROWS = 6 };

static void store_tile(const int32_t *tile, long rows, long cols, long nb, int32_t *c, long ldc) {
    for (long r = 0; r < rows; r++) memcpy(c + r * ldc, tile + r * nb, (size_t)cols * 4);
}

// Plain C over either layout: pairs of 16-bit codes, or quads of bytes (unsigned activations, signed weights).
static void gemm_generic(int path, long m, long n, long k, const int32_t *a, const uint8_t *b, int32_t *c, long ldc) {
    long words = words_of(path, k), nb = block_of(path), g = group_of(path);
    for (long r = 0; r < m; r++) {
        for (long col = 0; col < n; col++) {
            const uint8_t *block = b + (col / nb) * nb * words * 4;
            int32_t acc = 0;
            for (long w = 0; w < words; w++) {
                uint32_t aw = (uint32_t)a[r * words + w];
                const uint8_t *bw = block + (w * nb + col % nb) * 4;
                for (long e = 0; e < g; e++) {
                    if (g == 2) {
                        int16_t be;
                        memcpy(&be, bw + 2 * e, 2);
                        acc += (int32_t)(int16_t)(aw >> (16 * e)) * be;
                    } else {
                        acc += (int32_t)(int8_t)(aw >> (8 * e)) * (int32_t)bw[e];
                    }
                }
            }
            c[r * ldc + col] = acc;
        }
    }
}

#if defined(__x86_64__)

// One tile: ROWS (at most 6) rows x 16 columns (two vectors of 8 lanes), accumulated over every word of k, then
// stored to C (`cols` of its columns). ROWS is a constant in each instance, so the loops over rows unroll into
// registers and a short last tile computes only its own rows.
#define TILE_256(NAME, TARGET, STEP)                                                                                 \
    __attribute__((target(TARGET), always_inline)) static inline void NAME##_rows(                                  \
        const long ROWS, long words, const int32_t *a, const uint8_t *b, int32_t *c, long ldc, long cols) {          \
        __m256i acc[TILE_ROWS][2];                                                                                 \
        for (long r = 0; r < ROWS; r++) acc[r][0] = acc[r][1] = _mm256_setzero_si256();                            \
        for (long w = 0; w < words; w++) {                                                                         \
            __m256i b0 = _mm256_loadu_si256((const __m256i *)(b + w * 64));                                        \
            __m256i b1 = _mm256_loadu_si256((const __m256i *)(b + w * 64 + 32));                                   \
            for (long r = 0; r < ROWS; r++) {                                                                      \
                __m256i x = _mm256_set1_epi32(a[r * words + w]);                                                   \
                acc[r][0] = STEP(acc[r][0], b0, x);                                                                \
                acc[r][1] = STEP(acc[r][1], b1, x);                                                                \
            }                                                                                                      \
        }                                                                                                          \
        if (cols == 16) {                                                                                          \
            for (long r = 0; r < ROWS; r++) {                                                                      \
                _mm256_storeu_si256((__m256i *)(c + r * ldc), acc[r][0]);                                          \
                _mm256_storeu_si256((__m256i *)(c + r * ldc + 8), acc[r][1]);                                      \
            }                                                                                                      \
        } else {                                                                                                   \
            int32_t tile[TILE_ROWS * 16];                                                                          \
            for (long r = 0; r < ROWS; r++) {                                                                      \
                _mm256_storeu_si256((__m256i *)(tile + r * 16), acc[r][0]);                                        \
                _mm256_storeu_si256((__m256i *)(tile + r * 16 + 8), acc[r][1]);                                    \
            }                                                                                                      \
            store_tile(tile, ROWS, cols, 16, c, ldc);                                                              \
        }                                                                                                          \
    }                                                                                                              \
    __attribute__((target(TARGET))) static void NAME(long rows, long words, const int32_t *a, const uint8_t *b,    \
                                                     int32_t *c, long ldc, long cols) {                            \
        switch (rows) {                                                                                            \
        case 1: NAME##_rows(1, words, a, b, c, ldc, cols); break;                                                  \
        case 2: NAME##_rows(2, words, a, b, c, ldc, cols); break;                                                  \
        case 3: NAME##_rows(3, words, a, b, c, ldc, cols); break;                                                  \
        case 4: NAME##_rows(4, words, a, b, c, ldc, cols); break;                                                  \
        case 5: NAME##_rows(5, words, a, b, c, ldc, cols); break;                                                  \
        default: NAME##_rows(6, words, a, b, c, ldc, cols); break;                                                 \
        }                                                                                                          \
    }

#define MADD_STEP(acc, bv, av) _mm256_add_epi32(acc, _mm256_madd_epi16(av, bv))
#define AVX_VNNI_STEP(acc, bv, av) _mm256_dpbusd_avx_epi32(acc, bv, av)
TILE_256(tile_avx2, "avx2", MADD_STEP)
TILE_256(tile_avx_vnni, "avx2,avxvnni", AVX_VNNI_STEP)

// 6 rows x 32 columns: two vectors of 16 lanes.
__attribute__((target("avx512f,avx512bw,avx512vnni"))) static void tile_avx512_vnni(long rows, long words,
                                                                                    const int32_t *a, const uint8_t *b,
                                                                                    int32_t *c, long ldc, long cols) {
    const int32_t *rp[TILE_ROWS];
    for (long r = 0; r < TILE_ROWS; r++) rp[r] = a + (r < rows ? r : rows - 1) * words;
    __m512i acc[TILE_ROWS][2];
    for (long r = 0; r < TILE_ROWS; r++) acc[r][0] = acc[r][1] = _mm512_setzero_si512();
    for (long w = 0; w < words; w++) {
        __m512i b0 = _mm512_loadu_si512((const void *)(b + w * 128)), b1 = _mm512_loadu_si512((const void *)(b + w * 128 + 64));
        for (long r = 0; r < TILE_ROWS; r++) {
            __m512i x = _mm512_set1_epi32(rp[r][w]);
            acc[r][0] = _mm512_dpbusd_epi32(acc[r][0], b0, x);
            acc[r][1] = _mm512_dpbusd_epi32(acc[r][1], b1, x);
        }
    }
    // Straight to C through masks (a copy through a stack tile, a library call a row, had cost a fifth of the
    // tile's time on ResNet-20's first stage, whose k is 144).
    const __mmask16 m0 = cols >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << cols) - 1u);
    const __mmask16 m1 = cols >= 32 ? (__mmask16)0xffff : cols > 16 ? (__mmask16)((1u << (cols - 16)) - 1u) : 0;
    for (long r = 0; r < TILE_ROWS; r++) {
        if (r >= rows) break;
        _mm512_mask_storeu_epi32(c + r * ldc, m0, acc[r][0]);
        _mm512_mask_storeu_epi32(c + r * ldc + 16, m1, acc[r][1]);
    }
}
#endif

void kiln_q8_gemm(int path, long m, long n, long k, const void *packedA, const void *packedB, int bSigned, int32_t *c,
                  long ldc) {
    const int32_t *a = (const int32_t *)packedA;
    const uint8_t *b = (const uint8_t *)packedB;
    long words = words_of(path, k), nb = block_of(path);
#if defined(__x86_64__)
    if (uses_tiles(path)) {
        for (long jb = 0; jb * nb < n; jb++) {
            long cols = n - jb * nb < nb ? n - jb * nb : nb;
            const uint8_t *block = b + jb * nb * words * 4;
            for (long r0 = 0; r0 < m; r0 += TILE_ROWS) {
                long rows = m - r0 < TILE_ROWS ? m - r0 : TILE_ROWS;
                int32_t *to = c + r0 * ldc + jb * nb;
                if (path == PATH_AVX2) tile_avx2(rows, words, a + r0 * words, block, to, ldc, cols);
                else if (path == PATH_AVX_VNNI) tile_avx_vnni(rows, words, a + r0 * words, block, to, ldc, cols);
                else tile_avx512_vnni(rows, words, a + r0 * words, block, to, ldc, cols);
            }
        }
    } else
#endif
    gemm_generic(path, m, n, k, a, b, c, ldc);
    if (bSigned && group_of(path) == 4) {
        const int32_t *sums = a + m * words;
        for (long r = 0; r < m; r++) {
            int32_t off = 128 * sums[r];
            for (long col = 0; col < n; col++) c[r * ldc + col] -= off;
        }
    }
}

// ---- Epilogue ----

// An accumulator less its row's offset, in wrapping 32-bit arithmetic (exact whenever the true difference fits).
static inline int32_t corrected(int32_t acc, int32_t offset) { return (int32_t)((uint32_t)acc - (uint32_t)offset); }

#if defined(__x86_64__)
// round_half_up on 8 lanes of non-negative values.
__attribute__((target("avx2"))) static inline __m256 round_half_up_avx2(__m256 v) {
    __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    __m256 up = _mm256_cmp_ps(_mm256_sub_ps(v, t), _mm256_set1_ps(0.5f), _CMP_GE_OQ);
    return _mm256_add_ps(t, _mm256_and_ps(up, _mm256_set1_ps(1.0f)));
}

// fixed_point_code on 8 lanes: the same comparisons and rounding.
__attribute__((target("avx2"))) static inline __m256i fixed_point_codes_avx2(__m256 v, float step, long minCode,
                                                                               long maxCode) {
    const __m256 zero = _mm256_setzero_ps();
    const __m256 top = _mm256_set1_ps((float)maxCode * step), bottom = _mm256_set1_ps((float)minCode * step);
    const __m256 absMask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    // |v| / step is |v| * (1 / step) exactly (a power of two).
    __m256i q = _mm256_cvttps_epi32(round_half_up_avx2(_mm256_mul_ps(_mm256_and_ps(v, absMask), _mm256_set1_ps(1.0f / step))));
    __m256 negative = _mm256_cmp_ps(v, zero, _CMP_LT_OQ);
    __m256i code = _mm256_blendv_epi8(q, _mm256_sub_epi32(_mm256_setzero_si256(), q), _mm256_castps_si256(negative));
    code = _mm256_blendv_epi8(code, _mm256_set1_epi32((int)maxCode), _mm256_castps_si256(_mm256_cmp_ps(v, top, _CMP_GT_OQ)));
    code = _mm256_blendv_epi8(code, _mm256_set1_epi32((int)minCode), _mm256_castps_si256(_mm256_cmp_ps(v, bottom, _CMP_LT_OQ)));
    return _mm256_andnot_si256(_mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q)), code);
}

// linear_code on 8 lanes: the same division, rounding and saturation.
__attribute__((target("avx2"))) static inline __m256i linear_codes_avx2(__m256 v, const kiln_q8_grid *g) {
    __m256 t = _mm256_div_ps(v, _mm256_set1_ps(g->step));
    const __m256 lo = _mm256_set1_ps((float)(g->minCode - g->zeroPoint)), hi = _mm256_set1_ps((float)(g->maxCode - g->zeroPoint));
    __m256 nan = _mm256_cmp_ps(t, t, _CMP_UNORD_Q);
    // Saturated first (a NaN to 0), so the conversion below is always in range.
    __m256 c = _mm256_min_ps(_mm256_max_ps(_mm256_andnot_ps(nan, t), lo), hi);
    __m256 r;
    if (g->halfEven) {
        r = _mm256_round_ps(c, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    } else {
        const __m256 signMask = _mm256_castsi256_ps(_mm256_set1_epi32((int)0x80000000));
        __m256 sign = _mm256_and_ps(c, signMask);
        r = _mm256_or_ps(round_half_up_avx2(_mm256_andnot_ps(signMask, c)), sign);
    }
    return _mm256_add_epi32(_mm256_cvtps_epi32(r), _mm256_set1_epi32((int)g->zeroPoint));
}

__attribute__((target("avx2"))) static inline __m256i grid_codes_avx2(__m256 v, const kiln_q8_grid *g) {
    return g->linear ? linear_codes_avx2(v, g) : fixed_point_codes_avx2(v, g->step, g->minCode, g->maxCode);
}

// Eight codes (in int32 lanes, within int8 or uint8 range) stored as bytes.
__attribute__((target("avx2"))) static inline void store_codes_avx2(__m256i code, int isUnsigned, uint8_t *out) {
    __m128i c16 = _mm_packs_epi32(_mm256_castsi256_si128(code), _mm256_extracti128_si256(code, 1));
    _mm_storel_epi64((__m128i *)out, isUnsigned ? _mm_packus_epi16(c16, c16) : _mm_packs_epi16(c16, c16));
}

// kiln_q8_finish_row on a contiguous row, 8 values at a time with the scalar code's operations and comparisons
// (the same results bit for bit); returns how many it did.
__attribute__((target("avx2"))) static long finish_row_avx2(const kiln_q8_epilogue *e, long row, const int32_t *acc,
                                                            long count, void *out, long offset) {
    const int hasBias = e->bias != NULL, normalise = e->mean != NULL;
    const __m256 scale = _mm256_set1_ps(e->rowScale ? e->rowScale[row] : e->scale);
    const __m256i rowOffset = _mm256_set1_epi32(e->rowOffset ? e->rowOffset[row] : 0);
    const __m256 bias = _mm256_set1_ps(hasBias ? e->bias[row] : 0.0f);
    const __m256 mu = _mm256_set1_ps(normalise ? e->mean[row] : 0.0f);
    const __m256 norm = _mm256_set1_ps(normalise ? e->normScale[row] : 1.0f);
    const __m256 shift = _mm256_set1_ps(normalise ? e->shift[row] : 0.0f);
    const int residualKind = e->residualKind, activation = e->activation, output = e->output;
    const __m256 residualStep = _mm256_set1_ps(e->residualGrid.step), zero = _mm256_setzero_ps(), six = _mm256_set1_ps(6.0f);
    const __m256i residualZero = _mm256_set1_epi32((int)e->residualGrid.zeroPoint);
    const __m256 outStep = _mm256_set1_ps(e->out.step);
    const __m256i outZero = _mm256_set1_epi32((int)e->out.zeroPoint);
    const int snap = e->snap;
    const __m256 midStep = _mm256_set1_ps(e->mid.step);
    const __m256i midZero = _mm256_set1_epi32((int)e->mid.zeroPoint);
    // Local copies: stores of bytes may alias anything, so reading the grids through `e` would reload (and
    // recompute) their constants on every iteration.
    const kiln_q8_grid outGrid = e->out, midGrid = e->mid;
    const void *residual = e->residual;
    long j = 0;
    for (; j + 8 <= count; j += 8) {
        long at = offset + j;
        __m256i a = _mm256_sub_epi32(_mm256_loadu_si256((const __m256i *)(acc + j)), rowOffset);
        __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(a), scale);
        if (hasBias) v = _mm256_add_ps(v, bias);
        if (normalise) v = _mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(v, mu), norm), shift);
        if (snap) v = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(grid_codes_avx2(v, &midGrid), midZero)), midStep);
        if (residualKind == KILN_Q8_FLOAT) {
            v = _mm256_add_ps(v, _mm256_loadu_ps((const float *)residual + at));
        } else if (residualKind == KILN_Q8_U8 || residualKind == KILN_Q8_S8) {
            __m128i r = _mm_loadl_epi64((const __m128i *)((const uint8_t *)residual + at));
            __m256i r32 = residualKind == KILN_Q8_U8 ? _mm256_cvtepu8_epi32(r) : _mm256_cvtepi8_epi32(r);
            v = _mm256_add_ps(v, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(r32, residualZero)), residualStep));
        }
        // 0 where 0 >= v, 6 where 6 < v: the scalar comparisons (NaN stays NaN).
        if (activation >= 1) v = _mm256_blendv_ps(v, zero, _mm256_cmp_ps(zero, v, _CMP_GE_OQ));
        if (activation == 2) v = _mm256_blendv_ps(v, six, _mm256_cmp_ps(six, v, _CMP_LT_OQ));
        if (output == KILN_Q8_FLOAT) { _mm256_storeu_ps((float *)out + at, v); continue; }
        __m256i code = grid_codes_avx2(v, &outGrid);
        if (output == KILN_Q8_FLOAT_GRID) {
            _mm256_storeu_ps((float *)out + at, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(code, outZero)), outStep));
            continue;
        }
        store_codes_avx2(code, output == KILN_Q8_U8, (uint8_t *)out + at);
    }
    return j;
}

// The same on 16 lanes (AVX512-VNNI machines): the same operations and comparisons, so the same results.
#define AVX512_TARGET "avx512f,avx512bw,avx512dq,avx512vl"
__attribute__((target(AVX512_TARGET))) static inline __m512 round_half_up_avx512(__m512 v) {
    __m512 t = _mm512_roundscale_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    __mmask16 up = _mm512_cmp_ps_mask(_mm512_sub_ps(v, t), _mm512_set1_ps(0.5f), _CMP_GE_OQ);
    return _mm512_mask_add_ps(t, up, t, _mm512_set1_ps(1.0f));
}

__attribute__((target(AVX512_TARGET))) static inline __m512i fixed_point_codes_avx512(__m512 v, float step, long minCode,
                                                                                       long maxCode) {
    const __m512 top = _mm512_set1_ps((float)maxCode * step), bottom = _mm512_set1_ps((float)minCode * step);
    __m512i q = _mm512_cvttps_epi32(round_half_up_avx512(_mm512_mul_ps(_mm512_abs_ps(v), _mm512_set1_ps(1.0f / step))));
    __m512i code = _mm512_mask_sub_epi32(q, _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_LT_OQ), _mm512_setzero_si512(), q);
    code = _mm512_mask_mov_epi32(code, _mm512_cmp_ps_mask(v, top, _CMP_GT_OQ), _mm512_set1_epi32((int)maxCode));
    code = _mm512_mask_mov_epi32(code, _mm512_cmp_ps_mask(v, bottom, _CMP_LT_OQ), _mm512_set1_epi32((int)minCode));
    return _mm512_maskz_mov_epi32(_mm512_cmp_ps_mask(v, v, _CMP_ORD_Q), code);
}

__attribute__((target(AVX512_TARGET))) static inline __m512i linear_codes_avx512(__m512 v, const kiln_q8_grid *g) {
    __m512 t = _mm512_div_ps(v, _mm512_set1_ps(g->step));
    const __m512 lo = _mm512_set1_ps((float)(g->minCode - g->zeroPoint)), hi = _mm512_set1_ps((float)(g->maxCode - g->zeroPoint));
    __m512 c = _mm512_min_ps(_mm512_max_ps(_mm512_maskz_mov_ps(_mm512_cmp_ps_mask(t, t, _CMP_ORD_Q), t), lo), hi);
    __m512 r;
    if (g->halfEven) {
        r = _mm512_roundscale_ps(c, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    } else {
        const __m512i signMask = _mm512_set1_epi32((int)0x80000000);
        __m512i sign = _mm512_and_si512(_mm512_castps_si512(c), signMask);
        r = _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(round_half_up_avx512(_mm512_abs_ps(c))), sign));
    }
    return _mm512_add_epi32(_mm512_cvtps_epi32(r), _mm512_set1_epi32((int)g->zeroPoint));
}

__attribute__((target(AVX512_TARGET))) static inline __m512i grid_codes_avx512(__m512 v, const kiln_q8_grid *g) {
    return g->linear ? linear_codes_avx512(v, g) : fixed_point_codes_avx512(v, g->step, g->minCode, g->maxCode);
}

__attribute__((target(AVX512_TARGET))) static long finish_row_avx512(const kiln_q8_epilogue *e, long row, const int32_t *acc,
                                                                   long count, void *out, long offset) {
    const int hasBias = e->bias != NULL, normalise = e->mean != NULL;
    const __m512 scale = _mm512_set1_ps(e->rowScale ? e->rowScale[row] : e->scale);
    const __m512i rowOffset = _mm512_set1_epi32(e->rowOffset ? e->rowOffset[row] : 0);
    const __m512 bias = _mm512_set1_ps(hasBias ? e->bias[row] : 0.0f);
    const __m512 mu = _mm512_set1_ps(normalise ? e->mean[row] : 0.0f);
    const __m512 norm = _mm512_set1_ps(normalise ? e->normScale[row] : 1.0f);
    const __m512 shift = _mm512_set1_ps(normalise ? e->shift[row] : 0.0f);
    const int residualKind = e->residualKind, activation = e->activation, output = e->output;
    const __m512 residualStep = _mm512_set1_ps(e->residualGrid.step), zero = _mm512_setzero_ps(), six = _mm512_set1_ps(6.0f);
    const __m512i residualZero = _mm512_set1_epi32((int)e->residualGrid.zeroPoint);
    const __m512 outStep = _mm512_set1_ps(e->out.step);
    const __m512i outZero = _mm512_set1_epi32((int)e->out.zeroPoint);
    const int snap = e->snap;
    const __m512 midStep = _mm512_set1_ps(e->mid.step);
    const __m512i midZero = _mm512_set1_epi32((int)e->mid.zeroPoint);
    const kiln_q8_grid outGrid = e->out, midGrid = e->mid;   // local copies, as in finish_row_avx2
    const void *residual = e->residual;
    long j = 0;
    for (; j + 16 <= count; j += 16) {
        long at = offset + j;
        __m512i a = _mm512_sub_epi32(_mm512_loadu_si512((const void *)(acc + j)), rowOffset);
        __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(a), scale);
        if (hasBias) v = _mm512_add_ps(v, bias);
        if (normalise) v = _mm512_add_ps(_mm512_mul_ps(_mm512_sub_ps(v, mu), norm), shift);
        if (snap) v = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(grid_codes_avx512(v, &midGrid), midZero)), midStep);
        if (residualKind == KILN_Q8_FLOAT) {
            v = _mm512_add_ps(v, _mm512_loadu_ps((const float *)residual + at));
        } else if (residualKind == KILN_Q8_U8 || residualKind == KILN_Q8_S8) {
            __m128i r = _mm_loadu_si128((const __m128i *)((const uint8_t *)residual + at));
            __m512i r32 = residualKind == KILN_Q8_U8 ? _mm512_cvtepu8_epi32(r) : _mm512_cvtepi8_epi32(r);
            v = _mm512_add_ps(v, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(r32, residualZero)), residualStep));
        }
        if (activation >= 1) v = _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(zero, v, _CMP_GE_OQ), zero);
        if (activation == 2) v = _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(six, v, _CMP_LT_OQ), six);
        if (output == KILN_Q8_FLOAT) { _mm512_storeu_ps((float *)out + at, v); continue; }
        __m512i code = grid_codes_avx512(v, &outGrid);
        if (output == KILN_Q8_FLOAT_GRID) {
            _mm512_storeu_ps((float *)out + at, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(code, outZero)), outStep));
            continue;
        }
        // Codes are within their byte range: either saturating conversion keeps them.
        __m128i bytes = output == KILN_Q8_U8 ? _mm512_cvtusepi32_epi8(code) : _mm512_cvtsepi32_epi8(code);
        _mm_storeu_si128((__m128i *)((uint8_t *)out + at), bytes);
    }
    return j;
}

__attribute__((target("avx2"))) static long quantize_avx2(const float *x, long count, const kiln_q8_grid *grid, int output,
                                                          uint8_t *out) {
    const kiln_q8_grid g = *grid;  // a local copy: the byte stores could alias it
    long j = 0;
    for (; j + 8 <= count; j += 8) store_codes_avx2(grid_codes_avx2(_mm256_loadu_ps(x + j), &g), output == KILN_Q8_U8, out + j);
    return j;
}
#endif

void kiln_q8_finish_row(const kiln_q8_epilogue *e, long row, const int32_t *acc, long count, void *out, long offset,
                        long stride) {
#if defined(__x86_64__)
    int path = kiln_q8_current_path();
    if (stride == 1 && path == PATH_AVX512_VNNI) {
        long done = finish_row_avx512(e, row, acc, count, out, offset);
        acc += done;
        count -= done;
        offset += done;
    }
    if (stride == 1 && path >= PATH_AVX2 && path <= PATH_AVX512_VNNI) {
        long done = finish_row_avx2(e, row, acc, count, out, offset);
        acc += done;
        count -= done;
        offset += done;
    }
#endif
    // Everything the loop reads, in locals: loop-invariant, so the compiler can take each case's branches out.
    const float scale = e->rowScale ? e->rowScale[row] : e->scale, bias = e->bias ? e->bias[row] : 0.0f;
    const int32_t rowOffset = e->rowOffset ? e->rowOffset[row] : 0;
    const int hasBias = e->bias != NULL, normalise = e->mean != NULL;
    const float mu = normalise ? e->mean[row] : 0.0f, norm = normalise ? e->normScale[row] : 1.0f;
    const float shift = normalise ? e->shift[row] : 0.0f;
    const int residualKind = e->residualKind, activation = e->activation, output = e->output;
    const float residualStep = e->residualGrid.step;
    const long residualZero = e->residualGrid.zeroPoint;
    const kiln_q8_grid g = e->out, mid = e->mid;
    const int snap = e->snap;
    const float *rf = (const float *)e->residual;
    const uint8_t *ru = (const uint8_t *)e->residual;
    const int8_t *rs = (const int8_t *)e->residual;
    for (long j = 0; j < count; j++) {
        long at = offset + j * stride;
        float v = (float)corrected(acc[j], rowOffset) * scale;
        if (hasBias) v = v + bias;
        if (normalise) {
            v = v - mu;
            v = v * norm;
            v = v + shift;
        }
        if (snap) v = (float)(grid_code(v, &mid) - mid.zeroPoint) * mid.step;
        if (residualKind == KILN_Q8_FLOAT) v = v + rf[at];
        else if (residualKind == KILN_Q8_U8) v = v + (float)((long)ru[at] - residualZero) * residualStep;
        else if (residualKind == KILN_Q8_S8) v = v + (float)((long)rs[at] - residualZero) * residualStep;
        if (activation >= 1 && 0.0f >= v) v = 0.0f;
        if (activation == 2 && 6.0f < v) v = 6.0f;
        if (output == KILN_Q8_FLOAT) { ((float *)out)[at] = v; continue; }
        long code = grid_code(v, &g);
        if (output == KILN_Q8_U8) ((uint8_t *)out)[at] = (uint8_t)code;
        else if (output == KILN_Q8_S8) ((int8_t *)out)[at] = (int8_t)code;
        else ((float *)out)[at] = (float)(code - g.zeroPoint) * g.step; // KILN_Q8_FLOAT_GRID
    }
}

void kiln_q8_quantize(const float *x, long count, const kiln_q8_grid *grid, int output, void *out) {
    long j = 0;
#if defined(__x86_64__)
    int path = kiln_q8_current_path();
    if (path >= PATH_AVX2 && path <= PATH_AVX512_VNNI) j = quantize_avx2(x, count, grid, output, (uint8_t *)out);
#endif
    for (; j < count; j++) {
        long code = grid_code(x[j], grid);
        if (output == KILN_Q8_U8) ((uint8_t *)out)[j] = (uint8_t)code;
        else ((int8_t *)out)[j] = (int8_t)code;
    }
}

void kiln_q8_dequantize(const void *codes, int source, long count, const kiln_q8_grid *grid, float *out) {
    const float step = grid->step;
    const long zp = grid->zeroPoint;
    for (long j = 0; j < count; j++) {
        long c = source == KILN_Q8_U8 ? (long)((const uint8_t *)codes)[j] : (long)((const int8_t *)codes)[j];
        out[j] = (float)(c - zp) * step;
    }
}

// ---- Elementwise sums of grid values ----

static inline float operand_value(const void *p, int kind, const kiln_q8_grid *g, long i) {
    if (kind == KILN_Q8_U8) return (float)((long)((const uint8_t *)p)[i] - g->zeroPoint) * g->step;
    if (kind == KILN_Q8_S8) return (float)((long)((const int8_t *)p)[i] - g->zeroPoint) * g->step;
    return ((const float *)p)[i];
}

#if defined(__x86_64__)
__attribute__((target("avx2"))) static inline __m256 operand_values_avx2(const void *p, int kind, const kiln_q8_grid *g,
                                                                          long i) {
    if (kind == KILN_Q8_FLOAT) return _mm256_loadu_ps((const float *)p + i);
    __m128i c = _mm_loadl_epi64((const __m128i *)((const uint8_t *)p + i));
    __m256i c32 = kind == KILN_Q8_U8 ? _mm256_cvtepu8_epi32(c) : _mm256_cvtepi8_epi32(c);
    c32 = _mm256_sub_epi32(c32, _mm256_set1_epi32((int)g->zeroPoint));
    return _mm256_mul_ps(_mm256_cvtepi32_ps(c32), _mm256_set1_ps(g->step));
}

__attribute__((target("avx2"))) static long add_avx2(long count, const void *a, int aKind, const kiln_q8_grid *aGrid,
                                                     const void *b, int bKind, const kiln_q8_grid *bGrid, int relu,
                                                     const kiln_q8_grid *outGrid, int outKind, void *out) {
    const __m256 zero = _mm256_setzero_ps(), step = _mm256_set1_ps(outGrid->step);
    const __m256i zp = _mm256_set1_epi32((int)outGrid->zeroPoint);
    // Local copies: the byte stores could alias the grids.
    const kiln_q8_grid ga = *aGrid, gb = *bGrid, go = *outGrid;
    long j = 0;
    for (; j + 8 <= count; j += 8) {
        __m256 v = _mm256_add_ps(operand_values_avx2(a, aKind, &ga, j), operand_values_avx2(b, bKind, &gb, j));
        if (relu) v = _mm256_blendv_ps(v, zero, _mm256_cmp_ps(zero, v, _CMP_GE_OQ));
        __m256i code = grid_codes_avx2(v, &go);
        if (outKind == KILN_Q8_FLOAT_GRID) {
            _mm256_storeu_ps((float *)out + j, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(code, zp)), step));
        } else {
            store_codes_avx2(code, outKind == KILN_Q8_U8, (uint8_t *)out + j);
        }
    }
    return j;
}
#endif

void kiln_q8_add(long count, const void *a, int aKind, const kiln_q8_grid *aGrid, const void *b, int bKind,
                 const kiln_q8_grid *bGrid, int relu, const kiln_q8_grid *outGrid, int outKind, void *out) {
    long j = 0;
#if defined(__x86_64__)
    int path = kiln_q8_current_path();
    if (path >= PATH_AVX2 && path <= PATH_AVX512_VNNI) j = add_avx2(count, a, aKind, aGrid, b, bKind, bGrid, relu, outGrid, outKind, out);
#endif
    for (; j < count; j++) {
        float v = operand_value(a, aKind, aGrid, j) + operand_value(b, bKind, bGrid, j);
        if (relu && 0.0f >= v) v = 0.0f;
        long code = grid_code(v, outGrid);
        if (outKind == KILN_Q8_U8) ((uint8_t *)out)[j] = (uint8_t)code;
        else if (outKind == KILN_Q8_S8) ((int8_t *)out)[j] = (int8_t)code;
        else ((float *)out)[j] = (float)(code - outGrid->zeroPoint) * outGrid->step;
    }
}

long kiln_q8_padded_bytes(const kiln_conv_shape *s) { return s->channels * (s->h + 2 * s->ph) * (s->w + 2 * s->pw); }

// Copies `count` bytes with 8-byte moves (the last one overlapping), for rows too short for memcpy to pay.
static inline void copy_short(uint8_t *dst, const uint8_t *src, long count) {
    if (count < 8) { for (long b = 0; b < count; b++) dst[b] = src[b]; return; }
    uint64_t v;
    for (long b = 0; b + 8 <= count; b += 8) { __builtin_memcpy(&v, src + b, 8); __builtin_memcpy(dst + b, &v, 8); }
    __builtin_memcpy(&v, src + count - 8, 8);
    __builtin_memcpy(dst + count - 8, &v, 8);
}

void kiln_q8_pad(const kiln_conv_shape *s, const uint8_t *x, uint8_t padCode, uint8_t *padded) {
    long hp = s->h + 2 * s->ph, wp = s->w + 2 * s->pw;
    // Rows are short (tens of bytes): copied inline, borders set byte by byte, rather than through library calls.
    for (long c = 0; c < s->channels; c++) {
        uint8_t *plane = padded + c * hp * wp;
        for (long b = 0; b < s->ph * wp; b++) plane[b] = padCode;
        for (long y = 0; y < s->h; y++) {
            uint8_t *row = plane + (y + s->ph) * wp;
            for (long b = 0; b < s->pw; b++) row[b] = row[s->pw + s->w + b] = padCode;
            copy_short(row + s->pw, x + (c * s->h + y) * s->w, s->w);
        }
        uint8_t *bottom = plane + (s->h + s->ph) * wp;
        for (long b = 0; b < s->ph * wp; b++) bottom[b] = padCode;
    }
}

void kiln_q8_im2col_padded(const kiln_conv_shape *s, const uint8_t *padded, uint8_t *cols) {
    long hp = s->h + 2 * s->ph, wp = s->w + 2 * s->pw, n = s->oh * s->ow, ow = s->ow;
    for (long c = 0; c < s->channels; c++) {
        for (long i = 0; i < s->kh; i++) {
            for (long j = 0; j < s->kw; j++) {
                uint8_t *row = cols + ((c * s->kh + i) * s->kw + j) * n;
                const uint8_t *src = padded + c * hp * wp + i * s->dh * wp + j * s->dw;
                for (long oy = 0; oy < s->oh; oy++) {
                    const uint8_t *from = src + oy * s->sh * wp;
                    uint8_t *to = row + oy * ow;
                    if (s->sw == 1) copy_short(to, from, ow);
                    else for (long ox = 0; ox < ow; ox++) to[ox] = from[ox * s->sw];
                }
            }
        }
    }
}
