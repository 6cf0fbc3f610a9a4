// Direct 2-D convolution (one group) without im2col: register tiles of 6 output maps x 2 segments of 8 output
// pixels, each accumulating over (input channel, kh, kw) from a zero-padded copy of the sample's channels, with
// the weights packed 6 maps wide so that each step broadcasts 6 consecutive floats. im2col copies the input
// kernel-size times and the matrix product then packs that copy again; here the input is read in place.
//
// Every output is one chain of fused multiply-adds over (channel, kh, kw) in that order, starting from 0, on
// every path: the AVX-512, AVX2 and generic paths give the same bits. The AVX-512 path widens the tiles to
// segments of 16 pixels (4 of them, with 32 registers) and keeps the AVX2 path's padded layout.
#include "CKilnKernels.h"
#include "Dispatch.h"
#include <math.h>
#include <string.h>

static inline long taps_of(const kiln_conv_shape *s) { return s->kh * s->kw; }
/// Output maps per register tile and per packed weight block: 6, and 4 for the last blocks where the maps are not a
/// multiple of 6 (16 = 6 + 6 + 4, 32 = 4 x 6 + 2 x 4), so that no tile computes maps that do not exist.
#define MAPS 6

/// Blocks of 6 and of 4 maps covering the maps rounded up to even.
static void block_counts(const kiln_conv_shape *s, long *six, long *four) {
    long even = s->maps + (s->maps & 1), q = even / 6, r = even % 6;
    if (r == 0) { *six = q; *four = 0; }
    else if (r == 4) { *six = q; *four = 1; }
    else if (q >= 1) { *six = q - 1; *four = 2; }   // r == 2: one 6 becomes two 4s
    else { *six = 0; *four = 1; }                   // 2 maps: one block of 4
}

static inline long blocks_of(const kiln_conv_shape *s) {
    long six, four;
    block_counts(s, &six, &four);
    return six + four;
}

/// Block b's first map and size (6 or 4; maps past the last have zero weights).
static inline void block_span(const kiln_conv_shape *s, long b, long *first, long *size) {
    long six, four;
    block_counts(s, &six, &four);
    if (b < six) { *first = 6 * b; *size = 6; } else { *first = 6 * six + 4 * (b - six); *size = 4; }
}

long kiln_conv_blocks(const kiln_conv_shape *s) { return blocks_of(s); }

void kiln_conv_block_span(const kiln_conv_shape *s, long b, long *first, long *count) {
    long size;
    block_span(s, b, first, &size);
    *count = *first + size <= s->maps ? size : s->maps - *first;
}

/// The weight gradient's tiles keep blocks of 6 maps.
static inline long wblocks_of(const kiln_conv_shape *s) { return (s->maps + MAPS - 1) / MAPS; }
static inline long padded_width(const kiln_conv_shape *s) { return s->w + 2 * s->pw; }
static inline long padded_height(const kiln_conv_shape *s) { return s->h + 2 * s->ph; }

/// The path calls with this shape run (`kiln_conv_shape.path`): 0 generic, 1 AVX2, 2 AVX-512.
static inline int path_of(const kiln_conv_shape *s) { return s->path >= 0 ? (int)s->path : kiln_tiles_level(); }
/// Whether they run AVX2 or AVX-512, which share the padded layout.
static inline int use_avx2(const kiln_conv_shape *s) { return path_of(s) >= 1; }

/// Whether this call's padded layout splits columns by parity (the AVX2 path with column stride 2).
static int split_layout(const kiln_conv_shape *s) { return s->sw == 2 && use_avx2(s); }

/// Floats of one padded channel: the plane, or its two column-parity halves of `(pw + 1) / 2` columns.
static long channel_floats(const kiln_conv_shape *s) { return padded_height(s) * (padded_width(s) + 1); }

/// The padded layout's row pitch and parity-plane step for this path.
static void layout_steps(const kiln_conv_shape *s, long *rowPitch, long *parityStep) {
    long pw = padded_width(s);
    if (split_layout(s)) { *rowPitch = (pw + 1) / 2; *parityStep = padded_height(s) * *rowPitch; }
    else { *rowPitch = pw; *parityStep = 0; }
}

/// Block b's packed weights, and its maps (6 or 4) in `maps`.
static const float *block_weights(const kiln_conv_shape *s, const float *packed, long b, long *maps) {
    long first;
    block_span(s, b, &first, maps);
    return packed + first * s->channels * taps_of(s);
}

long kiln_conv_packed_floats(const kiln_conv_shape *s) {
    long six, four;
    block_counts(s, &six, &four);
    return (6 * six + 4 * four) * s->channels * taps_of(s);
}

long kiln_conv_scratch_floats(const kiln_conv_shape *s) {
    return s->channels * channel_floats(s) + 32 + MAPS * s->oh * s->ow;
}

float *kiln_conv_stage(const kiln_conv_shape *s, float *scratch) { return scratch + s->channels * channel_floats(s) + 32; }

/// The weights of each block side by side, in (channel, tap) order; maps past the last are zeros. `flipped`: `w` is
/// `[channels][maps][kh][kw]` in this shape's terms and each tap turns half way round (the data gradient's weight).
/// Runs on every forward call (the parameters may change between runs), so it reads each map's weights in order and
/// steps its writes, with no division per element.
void kiln_conv_pack_blocks(const kiln_conv_shape *s, const float *w, float *packed, int flipped, long firstBlock,
                           long lastBlock) {
    long taps = taps_of(s), per = s->channels * taps;
    for (long b = firstBlock; b < lastBlock; b++) {
        long first, size;
        block_span(s, b, &first, &size);
        float *block = packed + first * per;
        for (long j = 0; j < size; j++) {
            long m = first + j;
            float *dst = block + j;
            if (m >= s->maps) {
                for (long i = 0; i < per; i++) dst[i * size] = 0.0f;
            } else if (!flipped) {
                const float *src = w + m * per;
                for (long i = 0; i < per; i++) dst[i * size] = src[i];
            } else {
                for (long c = 0; c < s->channels; c++) {
                    const float *src = w + (c * s->maps + m) * taps;
                    float *d = dst + c * taps * size;
                    for (long t = 0; t < taps; t++) d[t * size] = src[taps - 1 - t];
                }
            }
        }
    }
}


void kiln_conv_pad(const kiln_conv_shape *s, const float *x, float *scratch, int fresh) {
    long pw = padded_width(s), ph = padded_height(s), cf = channel_floats(s);
    if (fresh) memset(scratch, 0, (size_t)(s->channels * cf + 32) * sizeof(float));
    int split = split_layout(s);
    long pitch = (pw + 1) / 2;
    for (long c = 0; c < s->channels; c++) {
        float *plane = scratch + c * cf;
        const float *src = x + c * s->h * s->w;
        for (long y = 0; y < s->h; y++) {
            const float *row = src + y * s->w;
            if (!split) {
                float *dst = plane + (y + s->ph) * pw + s->pw;
                for (long i = 0; i < s->w; i++) dst[i] = row[i];
            } else {
#if defined(__x86_64__)
                kiln_split_row(row, s->w, s->pw, plane + (y + s->ph) * pitch, ph * pitch);
#endif
            }
        }
    }
}

/// Generic path: the outputs of map block `b` (those past `maps` from zero weights) into `stage`.
static void block_generic(const kiln_conv_shape *s, const float *packed, long b, const float *padded, float *stage) {
    long pw = padded_width(s), cf = channel_floats(s), taps = taps_of(s), plane = s->oh * s->ow;
    long first, size;
    block_span(s, b, &first, &size);
    const float *wb = packed + first * s->channels * taps;
    for (long j = 0; j < size; j++)
        for (long oy = 0; oy < s->oh; oy++)
            for (long ox = 0; ox < s->ow; ox++) {
                float acc = 0;
                const float *wt = wb + j;
                for (long c = 0; c < s->channels; c++) {
                    const float *base = padded + c * cf + oy * s->sh * pw + ox * s->sw;
                    for (long kh = 0; kh < s->kh; kh++)
                        for (long kw = 0; kw < s->kw; kw++, wt += size)
                            acc = fmaf(*wt, base[kh * s->dh * pw + kw * s->dw], acc);
                }
                stage[j * plane + oy * s->ow + ox] = acc;
            }
}

#if defined(__x86_64__)
#include <immintrin.h>

/// One tile: `maps` (6 or 4) maps x up to 2 segments of up to 8 pixels. `first[k]` is segment k's first input (channel 0,
/// tap 0) in the padded layout, `out[k]` its first output in map 0's stage plane, `count[k]` its pixels.
/// 12 accumulators (independent chains enough to keep both FMA units busy), 2 inputs and one weight: 15
/// registers, so nothing spills (a 4 x 3 tile needs all 16, and clang then spills an accumulator).
/// Always inlined, so that the callers' constant `split` and `kw3` (a 3-wide kernel row, undilated) specialise
/// the tap loop: the column offset without the parity arithmetic, and three taps unrolled.
__attribute__((target("avx2,fma"), always_inline))
static inline void tile_avx2(const kiln_conv_shape *s, const float *wb, const float **first, float **out,
                             const long *count, long segments, long tapRow, long parityStep, long cf, long plane,
                             const int split, const int kw3, const int maps) {
    __m256 a00 = _mm256_setzero_ps(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00, a30 = a00, a31 = a00;
    __m256 a40 = a00, a41 = a00, a50 = a00, a51 = a00;
    const float *f0 = first[0], *f1 = first[segments > 1 ? 1 : 0];
    const float *wt = wb;
    for (long c = 0; c < s->channels; c++) {
        long chan = c * cf;
        for (long kh = 0; kh < s->kh; kh++) {
            long rowOff = chan + kh * tapRow;
            long kws = kw3 ? 3 : s->kw;
            for (long kw = 0; kw < kws; kw++, wt += maps) {
                long col = kw3 ? kw : kw * s->dw;
                long off = rowOff + (split ? (col & 1) * parityStep + (col >> 1) : col);
                __m256 x0 = _mm256_loadu_ps(f0 + off), x1 = _mm256_loadu_ps(f1 + off);
                __m256 wv = _mm256_broadcast_ss(wt);
                a00 = _mm256_fmadd_ps(wv, x0, a00); a01 = _mm256_fmadd_ps(wv, x1, a01);
                wv = _mm256_broadcast_ss(wt + 1);
                a10 = _mm256_fmadd_ps(wv, x0, a10); a11 = _mm256_fmadd_ps(wv, x1, a11);
                wv = _mm256_broadcast_ss(wt + 2);
                a20 = _mm256_fmadd_ps(wv, x0, a20); a21 = _mm256_fmadd_ps(wv, x1, a21);
                wv = _mm256_broadcast_ss(wt + 3);
                a30 = _mm256_fmadd_ps(wv, x0, a30); a31 = _mm256_fmadd_ps(wv, x1, a31);
                if (maps == 6) {
                    wv = _mm256_broadcast_ss(wt + 4);
                    a40 = _mm256_fmadd_ps(wv, x0, a40); a41 = _mm256_fmadd_ps(wv, x1, a41);
                    wv = _mm256_broadcast_ss(wt + 5);
                    a50 = _mm256_fmadd_ps(wv, x0, a50); a51 = _mm256_fmadd_ps(wv, x1, a51);
                }
            }
        }
    }
    __m256 acc[MAPS][2] = {{a00, a01}, {a10, a11}, {a20, a21}, {a30, a31}, {a40, a41}, {a50, a51}};
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (long k = 0; k < segments; k++) {
        if (count[k] == 8) {
            for (long j = 0; j < maps; j++) _mm256_storeu_ps(out[k] + j * plane, acc[j][k]);
        } else {
            __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)count[k]), lanes);
            for (long j = 0; j < maps; j++) _mm256_maskstore_ps(out[k] + j * plane, mask, acc[j][k]);
        }
    }
}

/// The tile specialised for this layout, kernel width and block size.
__attribute__((target("avx2,fma")))
static void tile_dispatch(const kiln_conv_shape *s, const float *wb, const float **first, float **out, const long *count,
                          long segments, long tapRow, long parityStep, long cf, long plane, long maps) {
    int kw3 = s->kw == 3 && s->dw == 1;
#define TILE(split, k3, m) tile_avx2(s, wb, first, out, count, segments, tapRow, split ? parityStep : 0, cf, plane, split, k3, m)
    if (maps == 6) {
        if (parityStep == 0 && kw3) TILE(0, 1, 6); else if (parityStep == 0) TILE(0, 0, 6);
        else if (kw3) TILE(1, 1, 6); else TILE(1, 0, 6);
    } else {
        if (parityStep == 0 && kw3) TILE(0, 1, 4); else if (parityStep == 0) TILE(0, 0, 4);
        else if (kw3) TILE(1, 1, 4); else TILE(1, 0, 4);
    }
#undef TILE
}

/// The output plane in segments of 8 pixels along rows (the last of a row may be shorter), 2 segments a tile.
/// `ahead`: `aheadBytes` asked into the second-level cache a few lines a tile, spread over the block's tiles.
__attribute__((target("avx2,fma")))
static void block_avx2(const kiln_conv_shape *s, const float *packed, long b, const float *padded, float *stage,
                       const char *ahead, long aheadBytes) {
    long cf = channel_floats(s), plane = s->oh * s->ow, rowPitch, parityStep, maps;
    layout_steps(s, &rowPitch, &parityStep);
    long tapRow = s->dh * rowPitch;
    const float *wb = block_weights(s, packed, b, &maps);
    const float *first[2];
    float *out[2];
    long count[2], n = 0;
    long tiles = (s->oh * ((s->ow + 7) / 8) + 1) / 2, lines = ahead ? (aheadBytes + 63) / 64 : 0;
    long perTile = (lines + tiles - 1) / (tiles > 0 ? tiles : 1), line = 0;
    for (long oy = 0; oy < s->oh; oy++) {
        for (long ox = 0; ox < s->ow; ox += 8) {
            // Stride 1: pixel ox reads padded column ox (+ tap); stride 2 (split layout): half-column ox.
            first[n] = padded + oy * s->sh * rowPitch + ox;
            out[n] = stage + oy * s->ow + ox;
            count[n] = s->ow - ox < 8 ? s->ow - ox : 8;
            if (++n == 2) {
                tile_dispatch(s, wb, first, out, count, 2, tapRow, parityStep, cf, plane, maps);
                n = 0;
                for (long k = 0; k < perTile && line < lines; k++, line++) _mm_prefetch(ahead + line * 64, _MM_HINT_T1);
            }
        }
    }
    if (n) tile_dispatch(s, wb, first, out, count, n, tapRow, parityStep, cf, plane, maps);
}

/// AVX-512 path: tiles of `maps` (6 or 4) maps x 4 segments of up to 16 pixels, 24 accumulators and 4 inputs of the
/// 32 registers, each weight broadcast from memory inside its multiply-add. A segment is 16 pixels of one row or,
/// on rows 8 wide (`pair`), 8 pixels of two consecutive rows, loaded as two halves `hi[k]` floats apart: so an 8x8
/// plane is one tile of full vectors. Each output is the same chain of multiply-adds as on the other paths.
__attribute__((target("avx512f,avx512dq,avx512vl,fma"), always_inline))
static inline void tile_avx512(const kiln_conv_shape *s, const float *wb, const float *const *first, const long *hi,
                               float *const *out, const long *count, long segments, long tapRow, long parityStep,
                               long cf, long plane, const int split, const int kw3, const int maps, const int pair) {
    __m512 acc[MAPS][4];
    for (int j = 0; j < MAPS; j++)
        for (int k = 0; k < 4; k++) acc[j][k] = _mm512_setzero_ps();
    const float *f[4];
    long h[4];
    for (int k = 0; k < 4; k++) { f[k] = first[k < segments ? k : 0]; h[k] = hi[k < segments ? k : 0]; }
    const float *wt = wb;
    for (long c = 0; c < s->channels; c++) {
        long chan = c * cf;
        for (long kh = 0; kh < s->kh; kh++) {
            long rowOff = chan + kh * tapRow;
            long kws = kw3 ? 3 : s->kw;
            for (long kw = 0; kw < kws; kw++, wt += maps) {
                long col = kw3 ? kw : kw * s->dw;
                long off = rowOff + (split ? (col & 1) * parityStep + (col >> 1) : col);
                __m512 x[4];
                for (int k = 0; k < 4; k++) {
                    const float *p = f[k] + off;
                    x[k] = pair ? _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_loadu_ps(p)), _mm256_loadu_ps(p + h[k]), 1)
                                : _mm512_loadu_ps(p);
                }
                for (int j = 0; j < maps; j++) {
                    __m512 wv = _mm512_set1_ps(wt[j]);
                    for (int k = 0; k < 4; k++) acc[j][k] = _mm512_fmadd_ps(wv, x[k], acc[j][k]);
                }
            }
        }
    }
    // Constant indices only (k runs to 4, not to `segments`), so that the accumulators stay in registers.
    for (int k = 0; k < 4; k++) {
        if (k >= segments) break;
        __mmask16 mask = (__mmask16)((1u << count[k]) - 1u);
        for (int j = 0; j < maps; j++) _mm512_mask_storeu_ps(out[k] + j * plane, mask, acc[j][k]);
    }
}

/// The tile specialised for this layout, kernel width, block size and segment shape.
__attribute__((target("avx512f,avx512dq,avx512vl,fma")))
static void tile512_dispatch(const kiln_conv_shape *s, const float *wb, const float *const *first, const long *hi,
                             float *const *out, const long *count, long segments, long tapRow, long parityStep, long cf,
                             long plane, long maps, int pair) {
    int kw3 = s->kw == 3 && s->dw == 1, split = parityStep != 0;
#define TILE(sp, k3, m, pr) tile_avx512(s, wb, first, hi, out, count, segments, tapRow, parityStep, cf, plane, sp, k3, m, pr)
#define TILES(m, pr) if (!split && kw3) TILE(0, 1, m, pr); else if (!split) TILE(0, 0, m, pr); \
                     else if (kw3) TILE(1, 1, m, pr); else TILE(1, 0, m, pr);
    if (maps == 6) { if (pair) { TILES(6, 1) } else { TILES(6, 0) } }
    else { if (pair) { TILES(4, 1) } else { TILES(4, 0) } }
#undef TILES
#undef TILE
}

/// The output plane in segments of 16 pixels along rows (the last of a row may be shorter) or, on rows 8 wide, of
/// two rows' 8 pixels; 4 segments a tile. `ahead` as in `block_avx2`.
__attribute__((target("avx512f,avx512dq,avx512vl,fma")))
static void block_avx512(const kiln_conv_shape *s, const float *packed, long b, const float *padded, float *stage,
                         const char *ahead, long aheadBytes) {
    long cf = channel_floats(s), plane = s->oh * s->ow, rowPitch, parityStep, maps;
    layout_steps(s, &rowPitch, &parityStep);
    long tapRow = s->dh * rowPitch, rowStep = s->sh * rowPitch;
    const float *wb = block_weights(s, packed, b, &maps);
    int pair = s->ow == 8;
    const float *first[4];
    float *out[4];
    long count[4], hi[4], n = 0;
    long segments = pair ? (s->oh + 1) / 2 : s->oh * ((s->ow + 15) / 16);
    long tiles = (segments + 3) / 4, lines = ahead ? (aheadBytes + 63) / 64 : 0;
    long perTile = (lines + tiles - 1) / (tiles > 0 ? tiles : 1), line = 0;
    for (long oy = 0; oy < s->oh; oy += pair ? 2 : 1) {
        for (long ox = 0; ox < s->ow; ox += 16) {
            first[n] = padded + oy * rowStep + ox;
            out[n] = stage + oy * s->ow + ox;
            if (pair) {
                // The second half is the next row's, or (an odd last row) the first half again, masked off.
                int two = oy + 1 < s->oh;
                hi[n] = two ? rowStep : 0;
                count[n] = two ? 2 * s->ow : s->ow;
            } else {
                hi[n] = 0;
                count[n] = s->ow - ox < 16 ? s->ow - ox : 16;
            }
            if (++n == 4) {
                tile512_dispatch(s, wb, first, hi, out, count, 4, tapRow, parityStep, cf, plane, maps, pair);
                n = 0;
                for (long k = 0; k < perTile && line < lines; k++, line++) _mm_prefetch(ahead + line * 64, _MM_HINT_T1);
            }
        }
    }
    if (n) tile512_dispatch(s, wb, first, hi, out, count, n, tapRow, parityStep, cf, plane, maps, pair);
}
#endif

void kiln_conv_block(const kiln_conv_shape *s, const float *packed, long b, const float *padded, float *stage,
                     const void *ahead, long aheadBytes) {
#if defined(__x86_64__)
    int path = path_of(s);
    if (path >= 1 && (s->sw == 1 || s->sw == 2)) {
        if (path == 2) block_avx512(s, packed, b, padded, stage, (const char *)ahead, aheadBytes);
        else block_avx2(s, packed, b, padded, stage, (const char *)ahead, aheadBytes);
        return;
    }
#endif
    block_generic(s, packed, b, padded, stage);
}

// MARK: - Weight gradient
//
// dW[m][c][kh][kw] = sum over samples and output pixels of dy[m][pixel] * x[c][the pixel's tap (kh, kw)]. Register
// tiles of 6 maps x 2 taps (taps numbered over (channel, kh, kw)), each accumulating 8 lanes, lane l taking the
// pixels at offset l of every 8-pixel segment of the rows, in (sample, oy, ox) order; the lanes are summed in lane
// order at the end. Lanes of a row's partial last segment add 0 x 0 on every path.

static inline long pairs_of(const kiln_conv_shape *s) { return (s->channels * taps_of(s) + 1) / 2; }

long kiln_conv_wgrad_tiles(const kiln_conv_shape *s) { return wblocks_of(s) * pairs_of(s); }

long kiln_conv_wgrad_acc_floats(const kiln_conv_shape *s) { return kiln_conv_wgrad_tiles(s) * MAPS * 2 * 8; }

/// Where tap q (over (channel, kh, kw)) of an output pixel reads, relative to the pixel's first input.
static long tap_offset(const kiln_conv_shape *s, long q, long rowPitch, long parityStep, long cf) {
    long taps = taps_of(s), c = q / taps, t = q % taps, kh = t / s->kw, kw = t % s->kw;
    long col = kw * s->dw;
    return c * cf + kh * s->dh * rowPitch + (parityStep ? (col & 1) * parityStep + (col >> 1) : col);
}

static void wgrad_generic(const kiln_conv_shape *s, const float *padded, long sampleStride, long samples, const float *dy,
                          const float *zeros, float *acc, long first, long last) {
    long rowPitch, parityStep, cf = channel_floats(s), plane = s->oh * s->ow, taps = s->channels * taps_of(s);
    layout_steps(s, &rowPitch, &parityStep);
    for (long tile = first; tile < last; tile++) {
        long b = tile / pairs_of(s), p = tile % pairs_of(s);
        float *a = acc + tile * MAPS * 2 * 8;
        for (long k = 0; k < 2; k++) {
            long q = 2 * p + k < taps ? 2 * p + k : 2 * p;
            long off = tap_offset(s, q, rowPitch, parityStep, cf);
            for (long j = 0; j < MAPS; j++) {
                long m = b * MAPS + j;
                float *lanes = a + (j * 2 + k) * 8;
                for (long n = 0; n < samples; n++) {
                    const float *d = m < s->maps ? dy + (n * s->maps + m) * plane : zeros;
                    const float *x = padded + n * sampleStride + off;
                    for (long oy = 0; oy < s->oh; oy++)
                        for (long ox = 0; ox < s->ow; ox += 8)
                            for (long l = 0; l < 8; l++) {
                                int on = ox + l < s->ow;
                                float dv = on ? d[oy * s->ow + ox + l] : 0.0f;
                                // Generic layout: pixel ox + l reads padded column (ox + l) * sw.
                                float xv = on ? x[oy * s->sh * rowPitch + (ox + l) * s->sw] : 0.0f;
                                lanes[l] = fmaf(dv, xv, lanes[l]);
                            }
                }
            }
        }
    }
}

#if defined(__x86_64__)
__attribute__((target("avx2,fma")))
static void wgrad_avx2(const kiln_conv_shape *s, const float *padded, long sampleStride, long samples, const float *dy,
                       const float *zeros, float *acc, long first, long last) {
    long rowPitch, parityStep, cf = channel_floats(s), plane = s->oh * s->ow, taps = s->channels * taps_of(s);
    layout_steps(s, &rowPitch, &parityStep);
    // The generic layout only for strides the split layout does not cover (then segments read column-strided).
    if (s->sw != 1 && !parityStep) { wgrad_generic(s, padded, sampleStride, samples, dy, zeros, acc, first, last); return; }
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (long tile = first; tile < last; tile++) {
        // Block-major: a block's tiles go through the taps in order, its output gradients staying in cache.
        long b = tile / pairs_of(s), p = tile % pairs_of(s);
        long o0 = tap_offset(s, 2 * p, rowPitch, parityStep, cf);
        long o1 = tap_offset(s, 2 * p + 1 < taps ? 2 * p + 1 : 2 * p, rowPitch, parityStep, cf);
        float *a = acc + tile * MAPS * 2 * 8;
        __m256 a00 = _mm256_loadu_ps(a), a01 = _mm256_loadu_ps(a + 8), a10 = _mm256_loadu_ps(a + 16);
        __m256 a11 = _mm256_loadu_ps(a + 24), a20 = _mm256_loadu_ps(a + 32), a21 = _mm256_loadu_ps(a + 40);
        __m256 a30 = _mm256_loadu_ps(a + 48), a31 = _mm256_loadu_ps(a + 56), a40 = _mm256_loadu_ps(a + 64);
        __m256 a41 = _mm256_loadu_ps(a + 72), a50 = _mm256_loadu_ps(a + 80), a51 = _mm256_loadu_ps(a + 88);
        for (long n = 0; n < samples; n++) {
            const float *d[MAPS];
            for (long j = 0; j < MAPS; j++) d[j] = b * MAPS + j < s->maps ? dy + (n * s->maps + b * MAPS + j) * plane : zeros;
            const float *sample = padded + n * sampleStride;
            for (long oy = 0; oy < s->oh; oy++) {
                const float *row = sample + oy * s->sh * rowPitch;
                long at = oy * s->ow;
                for (long ox = 0; ox < s->ow; ox += 8) {
                    __m256 x0, x1, dv;
                    if (s->ow - ox >= 8) {
                        x0 = _mm256_loadu_ps(row + ox + o0); x1 = _mm256_loadu_ps(row + ox + o1);
#define WGRAD_MAP(j, A0, A1) dv = _mm256_loadu_ps(d[j] + at + ox); \
                        A0 = _mm256_fmadd_ps(dv, x0, A0); A1 = _mm256_fmadd_ps(dv, x1, A1);
                        WGRAD_MAP(0, a00, a01) WGRAD_MAP(1, a10, a11) WGRAD_MAP(2, a20, a21)
                        WGRAD_MAP(3, a30, a31) WGRAD_MAP(4, a40, a41) WGRAD_MAP(5, a50, a51)
#undef WGRAD_MAP
                    } else {
                        __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(s->ow - ox)), lanes);
                        x0 = _mm256_maskload_ps(row + ox + o0, mask); x1 = _mm256_maskload_ps(row + ox + o1, mask);
#define WGRAD_MAP(j, A0, A1) dv = _mm256_maskload_ps(d[j] + at + ox, mask); \
                        A0 = _mm256_fmadd_ps(dv, x0, A0); A1 = _mm256_fmadd_ps(dv, x1, A1);
                        WGRAD_MAP(0, a00, a01) WGRAD_MAP(1, a10, a11) WGRAD_MAP(2, a20, a21)
                        WGRAD_MAP(3, a30, a31) WGRAD_MAP(4, a40, a41) WGRAD_MAP(5, a50, a51)
#undef WGRAD_MAP
                    }
                }
            }
        }
        _mm256_storeu_ps(a, a00); _mm256_storeu_ps(a + 8, a01); _mm256_storeu_ps(a + 16, a10);
        _mm256_storeu_ps(a + 24, a11); _mm256_storeu_ps(a + 32, a20); _mm256_storeu_ps(a + 40, a21);
        _mm256_storeu_ps(a + 48, a30); _mm256_storeu_ps(a + 56, a31); _mm256_storeu_ps(a + 64, a40);
        _mm256_storeu_ps(a + 72, a41); _mm256_storeu_ps(a + 80, a50); _mm256_storeu_ps(a + 88, a51);
    }
}
/// AVX-512 path of the weight gradient: up to 4 of a block's tiles at once. Each register holds one map's two taps
/// of a tile, 8 lanes each, exactly as the tile's accumulators lie in `acc` (tap 2p's lanes, then tap 2p + 1's),
/// and each output gradient segment is broadcast to both halves: every lane takes the same chain of multiply-adds
/// as on the AVX2 path, so both give the same bits. 24 accumulators, 4 inputs and the broadcast: 29 registers.
__attribute__((target("avx512f,avx512dq,avx512vl,fma"), always_inline))
static inline void wgrad_group_avx512(const kiln_conv_shape *s, const float *padded, long sampleStride, long samples,
                                      const float *dy, const float *zeros, float *acc, long tile, const int G,
                                      long rowPitch, long parityStep, long cf) {
    long pairs = pairs_of(s), taps = s->channels * taps_of(s), plane = s->oh * s->ow;
    long b = tile / pairs, p0 = tile % pairs;
    long off[4][2];
    for (int g = 0; g < 4; g++)
        for (int k = 0; k < 2; k++) {
            long q = 2 * (p0 + (g < G ? g : 0)) + k;
            off[g][k] = tap_offset(s, q < taps ? q : q - k, rowPitch, parityStep, cf);
        }
    __m512 a[MAPS][4];
    for (int j = 0; j < MAPS; j++)
        for (int g = 0; g < G; g++) a[j][g] = _mm512_loadu_ps(acc + (tile + g) * MAPS * 2 * 8 + j * 16);
    for (long n = 0; n < samples; n++) {
        const float *d[MAPS];
        for (long j = 0; j < MAPS; j++) d[j] = b * MAPS + j < s->maps ? dy + (n * s->maps + b * MAPS + j) * plane : zeros;
        const float *sample = padded + n * sampleStride;
        for (long oy = 0; oy < s->oh; oy++) {
            const float *row = sample + oy * s->sh * rowPitch;
            long at = oy * s->ow;
            for (long ox = 0; ox < s->ow; ox += 8) {
                __m512 x[4];
                if (s->ow - ox >= 8) {
                    // Unmasked, so that each broadcast is a load alone (the masked form adds a shuffle).
                    for (int g = 0; g < G; g++)
                        x[g] = _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_loadu_ps(row + ox + off[g][0])),
                                                  _mm256_loadu_ps(row + ox + off[g][1]), 1);
                    for (int j = 0; j < MAPS; j++) {
                        __m512 dv = _mm512_broadcast_f32x8(_mm256_loadu_ps(d[j] + at + ox));
                        for (int g = 0; g < G; g++) a[j][g] = _mm512_fmadd_ps(dv, x[g], a[j][g]);
                    }
                } else {
                    __mmask8 mask = (__mmask8)((1u << (s->ow - ox)) - 1u);
                    for (int g = 0; g < G; g++)
                        x[g] = _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_maskz_loadu_ps(mask, row + ox + off[g][0])),
                                                  _mm256_maskz_loadu_ps(mask, row + ox + off[g][1]), 1);
                    for (int j = 0; j < MAPS; j++) {
                        __m512 dv = _mm512_broadcast_f32x8(_mm256_maskz_loadu_ps(mask, d[j] + at + ox));
                        for (int g = 0; g < G; g++) a[j][g] = _mm512_fmadd_ps(dv, x[g], a[j][g]);
                    }
                }
            }
        }
    }
    for (int j = 0; j < MAPS; j++)
        for (int g = 0; g < G; g++) _mm512_storeu_ps(acc + (tile + g) * MAPS * 2 * 8 + j * 16, a[j][g]);
}

__attribute__((target("avx512f,avx512dq,avx512vl,fma")))
static void wgrad_avx512(const kiln_conv_shape *s, const float *padded, long sampleStride, long samples, const float *dy,
                         const float *zeros, float *acc, long first, long last) {
    long rowPitch, parityStep, cf = channel_floats(s), pairs = pairs_of(s);
    layout_steps(s, &rowPitch, &parityStep);
    if (s->sw != 1 && !parityStep) { wgrad_generic(s, padded, sampleStride, samples, dy, zeros, acc, first, last); return; }
    for (long tile = first; tile < last;) {
        // Tiles of one block only, so that the group shares its output gradients.
        long left = last - tile, inBlock = pairs - tile % pairs, room = left < inBlock ? left : inBlock;
        if (room >= 4) { wgrad_group_avx512(s, padded, sampleStride, samples, dy, zeros, acc, tile, 4, rowPitch, parityStep, cf); tile += 4; }
        else if (room >= 2) { wgrad_group_avx512(s, padded, sampleStride, samples, dy, zeros, acc, tile, 2, rowPitch, parityStep, cf); tile += 2; }
        else { wgrad_group_avx512(s, padded, sampleStride, samples, dy, zeros, acc, tile, 1, rowPitch, parityStep, cf); tile += 1; }
    }
}
#endif

long kiln_conv_sample_floats(const kiln_conv_shape *s) { return s->channels * channel_floats(s); }

void kiln_conv_wgrad_add(const kiln_conv_shape *s, const float *padded, long samples, const float *dy, const float *zeros,
                         float *acc, long first, long last) {
    long stride = kiln_conv_sample_floats(s);
#if defined(__x86_64__)
    int path = path_of(s);
    if (path == 2) { wgrad_avx512(s, padded, stride, samples, dy, zeros, acc, first, last); return; }
    if (path == 1) { wgrad_avx2(s, padded, stride, samples, dy, zeros, acc, first, last); return; }
#endif
    wgrad_generic(s, padded, stride, samples, dy, zeros, acc, first, last);
}

void kiln_conv_wgrad_finish(const kiln_conv_shape *s, const float *acc, float *dw, int accumulate) {
    long taps = s->channels * taps_of(s);
    for (long m = 0; m < s->maps; m++)
        for (long q = 0; q < taps; q++) {
            long b = m / MAPS, j = m % MAPS, p = q / 2, k = q % 2;
            const float *lanes = acc + (b * pairs_of(s) + p) * MAPS * 2 * 8 + (j * 2 + k) * 8;
            float sum = 0;
            for (long l = 0; l < 8; l++) sum += lanes[l];
            dw[m * taps + q] = accumulate ? dw[m * taps + q] + sum : sum;
        }
}
