// Depthwise 2-D convolution (one input channel per group) without im2col: each output map is a correlation of
// one zero-padded input plane with its own small kernel (see CKilnKernels.h). The input plane is first copied
// into a padded scratch plane, so every tap reads valid memory and the loops have no bounds tests.
//
// Every path (generic, AVX2, and AVX-512 for the forward) computes every sum in the same order with fused
// multiply-adds, so they give the same bits:
// - forward: each output is a chain over the taps in (kh, kw) order, starting from 0;
// - data gradient: each padded input element receives its contributions in (map, oy, kh, kw) order;
// - weight gradient: each tap sums its products over 32 lanes (lane = ox mod 32, for the columns below the
//   row's last multiple of 8) and one chain for the other columns, in (sample, oy, ox) order.
#include "CKilnKernels.h"
#include "Dispatch.h"
#include <math.h>
#include <string.h>

long kiln_dw_scratch_floats(const kiln_dw_shape *s) {
    long taps = s->kh * s->kw;
    // The padded plane, or its two column-parity halves (one more column), and slack for 8-wide reads past a row.
    return (s->h + 2 * s->ph) * (s->w + 2 * s->pw + 1) + 32 + s->oh * s->ow + taps * 33;
}

/// Copies plane `x` into the padded plane `xp`: zeros around it and 16 zeros of slack after it, written only when
/// `fresh` (the scratch's first plane of a call: later planes of the same shape leave the zeros where they were).
static void pad_plane(const kiln_dw_shape *s, const float *x, float *xp, int fresh) {
    long pw = s->w + 2 * s->pw, ph = s->h + 2 * s->ph;
    if (fresh) memset(xp, 0, (size_t)(ph * pw + 16) * sizeof(float));
    for (long y = 0; y < s->h; y++) {
        float *row = xp + (y + s->ph) * pw + s->pw;
        const float *src = x + y * s->w;
        for (long i = 0; i < s->w; i++) row[i] = src[i];
    }
}

// MARK: - The scalar bodies (the generic path, and the edges of the vector path)

/// Output (oy, ox) of the correlation of padded plane `xp` with kernel `w`.
static inline float dw_output(const kiln_dw_shape *s, const float *xp, long pwidth, const float *w, long oy, long ox) {
    float acc = 0;
    const float *base = xp + oy * s->sh * pwidth + ox * s->sw;
    for (long kh = 0; kh < s->kh; kh++) {
        const float *row = base + kh * s->dh * pwidth;
        for (long kw = 0; kw < s->kw; kw++) acc = fmaf(w[kh * s->kw + kw], row[kw * s->dw], acc);
    }
    return acc;
}

static void forward_generic(const kiln_dw_shape *s, const float *xp, const float *w, float *out) {
    long pwidth = s->w + 2 * s->pw;
    for (long oy = 0; oy < s->oh; oy++)
        for (long ox = 0; ox < s->ow; ox++) out[oy * s->ow + ox] = dw_output(s, xp, pwidth, w, oy, ox);
}

/// Adds map `dy`'s contributions (kernel `w`) into the padded data gradient `dxp`, columns [from, ow) of every row.
static inline void scatter_columns(const kiln_dw_shape *s, const float *dy, const float *w, float *dxp, long from) {
    long pwidth = s->w + 2 * s->pw;
    for (long oy = 0; oy < s->oh; oy++)
        for (long kh = 0; kh < s->kh; kh++)
            for (long kw = 0; kw < s->kw; kw++) {
                float wv = w[kh * s->kw + kw];
                float *dst = dxp + (oy * s->sh + kh * s->dh) * pwidth + kw * s->dw;
                for (long ox = from; ox < s->ow; ox++) dst[ox * s->sw] = fmaf(wv, dy[oy * s->ow + ox], dst[ox * s->sw]);
            }
}

/// Columns of each row that go to the 32 lanes of the weight gradient (the rest go to the remainder chain).
static inline long lane_columns(const kiln_dw_shape *s) { return s->ow - s->ow % 8; }

static void weight_generic(const kiln_dw_shape *s, const float *xp, const float *dy, float *acc) {
    long pwidth = s->w + 2 * s->pw, vec = lane_columns(s);
    for (long t = 0; t < s->kh * s->kw; t++) {
        long kh = t / s->kw, kw = t % s->kw;
        float *lanes = acc + t * 33;
        for (long oy = 0; oy < s->oh; oy++) {
            const float *row = xp + (oy * s->sh + kh * s->dh) * pwidth + kw * s->dw;
            const float *d = dy + oy * s->ow;
            for (long ox = 0; ox < vec; ox++) lanes[ox % 32] = fmaf(d[ox], row[ox * s->sw], lanes[ox % 32]);
            for (long ox = vec; ox < s->ow; ox++) lanes[32] = fmaf(d[ox], row[ox * s->sw], lanes[32]);
        }
    }
}

// MARK: - AVX2 + FMA

#if defined(__x86_64__)
#include <immintrin.h>

/// 8 floats at `p` (stride 1) or at p, p+2, ..., p+14 (stride 2).
__attribute__((target("avx2,fma"))) static inline __m256 load8(const float *p, long stride) {
    if (stride == 1) return _mm256_loadu_ps(p);
    __m256 a = _mm256_loadu_ps(p), b = _mm256_loadu_ps(p + 8);
    __m256 even = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));   // a0 a2 b0 b2 | a4 a6 b4 b6
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(even), _MM_SHUFFLE(3, 1, 2, 0)));
}

/// For stride 2: the padded plane split by column parity, even columns then odd ones, each plane `ph` rows of
/// `pitch = (pw + 1) / 2` floats, so that every tap reads 8 consecutive floats. Input column i lands at padded
/// column i + pw: the input's even columns go to one parity plane from half-column pw / 2, its odd columns to the
/// other from (pw + 1) / 2, 16 input columns at a time through a vector deinterleave.
__attribute__((target("avx2,fma")))
static void pad_plane_split(const kiln_dw_shape *s, const float *x, float *xs, int fresh) {
    long pwidth = s->w + 2 * s->pw, pheight = s->h + 2 * s->ph, pitch = (pwidth + 1) / 2;
    if (fresh) memset(xs, 0, (size_t)(2 * pheight * pitch + 16) * sizeof(float));
    for (long y = 0; y < s->h; y++) kiln_split_row(x + y * s->w, s->w, s->pw, xs + (y + s->ph) * pitch, pheight * pitch);
}

__attribute__((target("avx2,fma")))
void kiln_split_row(const float *src, long w, long pad, float *row, long parityStep) {
    float *evens = row + ((pad & 1) ? parityStep : 0) + (pad >> 1);
    float *odds = row + ((pad & 1) ? 0 : parityStep) + ((pad + 1) >> 1);
    long i = 0;
    for (; i + 16 <= w; i += 16) {
        __m256 a = _mm256_loadu_ps(src + i), b = _mm256_loadu_ps(src + i + 8);
        __m256 e = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0)), o = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1));
        _mm256_storeu_ps(evens + i / 2, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(e), _MM_SHUFFLE(3, 1, 2, 0))));
        _mm256_storeu_ps(odds + i / 2, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(o), _MM_SHUFFLE(3, 1, 2, 0))));
    }
    for (; i < w; i++) {
        if (i & 1) odds[i >> 1] = src[i]; else evens[i >> 1] = src[i];
    }
}

/// The vector paths' padded copy of plane `x`: stride 1 as is, stride 2 split by column parity, with the steps
/// the blocks take through it. Other strides: the generic forward runs here instead, and 0 is returned.
__attribute__((target("avx2,fma")))
static int pad_for_vectors(const kiln_dw_shape *s, const float *x, const float *w, float *out, float *scratch, int fresh,
                           long *rowStep, long *tapRow, long *parityStep) {
    long pwidth = s->w + 2 * s->pw, pheight = s->h + 2 * s->ph;
    if (s->sw == 1) {
        pad_plane(s, x, scratch, fresh);
        *rowStep = s->sh * pwidth; *tapRow = s->dh * pwidth; *parityStep = 0;
        return 1;
    }
    if (s->sw == 2) {
        long pitch = (pwidth + 1) / 2;
        pad_plane_split(s, x, scratch, fresh);
        *rowStep = s->sh * pitch; *tapRow = s->dh * pitch; *parityStep = pheight * pitch;
        return 1;
    }
    pad_plane(s, x, scratch, fresh);
    forward_generic(s, scratch, w, out);
    return 0;
}

/// Output rows [oy, oy + rows) (rows <= 4), columns [ox, ox + count) (count <= 8), of the correlation with kernel
/// `w`, in four independent chains of fused multiply-adds in tap order. `rowStep` is the padded layout's step
/// between output rows; a tap (kh, kw) is `kh * tapRow + tap(kw)` floats past the output row's first input.
/// Lanes past `count` read the padded plane's slack and are not stored.
__attribute__((target("avx2,fma")))
static inline void forward_block(const kiln_dw_shape *s, const float *first, long rowStep, long tapRow, long parityStep,
                                 const float *w, float *out, long oy, long rows, long count) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    const float *r0 = first, *r1 = r0 + (rows > 1 ? rowStep : 0), *r2 = r0 + (rows > 2 ? 2 * rowStep : 0);
    const float *r3 = r0 + (rows > 3 ? 3 * rowStep : 0);
    const float *wt = w;
    for (long kh = 0; kh < s->kh; kh++) {
        long rowOff = kh * tapRow;
        for (long kw = 0; kw < s->kw; kw++) {
            long c = kw * s->dw;
            // Stride 1: the column itself; stride 2 (split layout): the parity's plane, then the column's half.
            long off = rowOff + (parityStep ? (c & 1) * parityStep + (c >> 1) : c);
            __m256 wv = _mm256_set1_ps(*wt++);
            a0 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(r0 + off), a0);
            a1 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(r1 + off), a1);
            a2 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(r2 + off), a2);
            a3 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(r3 + off), a3);
        }
    }
    __m256 acc[4] = {a0, a1, a2, a3};
    if (count == 8) {
        for (long r = 0; r < rows; r++) _mm256_storeu_ps(out + (oy + r) * s->ow, acc[r]);
    } else {
        __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)count), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        for (long r = 0; r < rows; r++) _mm256_maskstore_ps(out + (oy + r) * s->ow, mask, acc[r]);
    }
}

__attribute__((target("avx2,fma")))
static void forward_avx2(const kiln_dw_shape *s, const float *x, const float *w, float *out, float *scratch, int fresh) {
    long rowStep, tapRow, parityStep;
    if (!pad_for_vectors(s, x, w, out, scratch, fresh, &rowStep, &tapRow, &parityStep)) return;
    for (long oy = 0; oy < s->oh; oy += 4) {
        long rows = s->oh - oy < 4 ? s->oh - oy : 4;
        for (long ox = 0; ox < s->ow; ox += 8) {
            long count = s->ow - ox < 8 ? s->ow - ox : 8;
            forward_block(s, scratch + oy * rowStep + ox, rowStep, tapRow, parityStep, w, out + ox, oy, rows, count);
        }
    }
}

/// The AVX-512 forward: the AVX2 path's padded layouts and blocks, 16 columns wide. Each output is the same chain
/// of multiply-adds, so both paths give the same bits. Lanes past `count` read the padded plane's slack (at most
/// 15 floats past a row's last tap, within the 16 floats after the plane) and are not stored.
__attribute__((target("avx512f,avx512dq,avx512vl,fma")))
static inline void forward_block512(const kiln_dw_shape *s, const float *first, long rowStep, long tapRow,
                                    long parityStep, const float *w, float *out, long oy, long rows, long count) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    const float *r0 = first, *r1 = r0 + (rows > 1 ? rowStep : 0), *r2 = r0 + (rows > 2 ? 2 * rowStep : 0);
    const float *r3 = r0 + (rows > 3 ? 3 * rowStep : 0);
    const float *wt = w;
    for (long kh = 0; kh < s->kh; kh++) {
        long rowOff = kh * tapRow;
        for (long kw = 0; kw < s->kw; kw++) {
            long c = kw * s->dw;
            long off = rowOff + (parityStep ? (c & 1) * parityStep + (c >> 1) : c);
            __m512 wv = _mm512_set1_ps(*wt++);
            a0 = _mm512_fmadd_ps(wv, _mm512_loadu_ps(r0 + off), a0);
            a1 = _mm512_fmadd_ps(wv, _mm512_loadu_ps(r1 + off), a1);
            a2 = _mm512_fmadd_ps(wv, _mm512_loadu_ps(r2 + off), a2);
            a3 = _mm512_fmadd_ps(wv, _mm512_loadu_ps(r3 + off), a3);
        }
    }
    __mmask16 mask = (__mmask16)((1u << count) - 1u);
    _mm512_mask_storeu_ps(out + oy * s->ow, mask, a0);
    if (rows > 1) _mm512_mask_storeu_ps(out + (oy + 1) * s->ow, mask, a1);
    if (rows > 2) _mm512_mask_storeu_ps(out + (oy + 2) * s->ow, mask, a2);
    if (rows > 3) _mm512_mask_storeu_ps(out + (oy + 3) * s->ow, mask, a3);
}

__attribute__((target("avx512f,avx512dq,avx512vl,fma")))
static void forward_avx512(const kiln_dw_shape *s, const float *x, const float *w, float *out, float *scratch, int fresh) {
    long rowStep, tapRow, parityStep;
    if (!pad_for_vectors(s, x, w, out, scratch, fresh, &rowStep, &tapRow, &parityStep)) return;
    for (long oy = 0; oy < s->oh; oy += 4) {
        long rows = s->oh - oy < 4 ? s->oh - oy : 4;
        for (long ox = 0; ox < s->ow; ox += 16) {
            long count = s->ow - ox < 16 ? s->ow - ox : 16;
            forward_block512(s, scratch + oy * rowStep + ox, rowStep, tapRow, parityStep, w, out + ox, oy, rows, count);
        }
    }
}

/// Stride 1 only: a pass per (oy, kh, kw) adds one dy row times the tap into a padded row, 8 columns at a time.
__attribute__((target("avx2,fma")))
static void scatter_avx2(const kiln_dw_shape *s, const float *dy, const float *w, float *dxp) {
    if (s->sw != 1) { scatter_columns(s, dy, w, dxp, 0); return; }
    long pwidth = s->w + 2 * s->pw, vec = s->ow - s->ow % 8;
    for (long oy = 0; oy < s->oh; oy++)
        for (long kh = 0; kh < s->kh; kh++)
            for (long kw = 0; kw < s->kw; kw++) {
                float wv = w[kh * s->kw + kw];
                __m256 wvv = _mm256_set1_ps(wv);
                float *dst = dxp + (oy * s->sh + kh * s->dh) * pwidth + kw * s->dw;
                const float *d = dy + oy * s->ow;
                long ox = 0;
                for (; ox < vec; ox += 8)
                    _mm256_storeu_ps(dst + ox, _mm256_fmadd_ps(wvv, _mm256_loadu_ps(d + ox), _mm256_loadu_ps(dst + ox)));
                for (; ox < s->ow; ox++) dst[ox] = fmaf(wv, d[ox], dst[ox]);
            }
}

__attribute__((target("avx2,fma")))
static void weight_avx2(const kiln_dw_shape *s, const float *xp, const float *dy, float *acc) {
    long pwidth = s->w + 2 * s->pw, sw = s->sw, vec = lane_columns(s);
    if (sw != 1 && sw != 2) { weight_generic(s, xp, dy, acc); return; }
    for (long t = 0; t < s->kh * s->kw; t++) {
        long kh = t / s->kw, kw = t % s->kw;
        float *lanes = acc + t * 33;
        __m256 l[4] = {_mm256_loadu_ps(lanes), _mm256_loadu_ps(lanes + 8), _mm256_loadu_ps(lanes + 16),
                       _mm256_loadu_ps(lanes + 24)};
        float rest = lanes[32];
        for (long oy = 0; oy < s->oh; oy++) {
            const float *row = xp + (oy * s->sh + kh * s->dh) * pwidth + kw * s->dw;
            const float *d = dy + oy * s->ow;
            long ox = 0;
            for (; ox + 32 <= vec; ox += 32) {
                l[0] = _mm256_fmadd_ps(_mm256_loadu_ps(d + ox), load8(row + ox * sw, sw), l[0]);
                l[1] = _mm256_fmadd_ps(_mm256_loadu_ps(d + ox + 8), load8(row + (ox + 8) * sw, sw), l[1]);
                l[2] = _mm256_fmadd_ps(_mm256_loadu_ps(d + ox + 16), load8(row + (ox + 16) * sw, sw), l[2]);
                l[3] = _mm256_fmadd_ps(_mm256_loadu_ps(d + ox + 24), load8(row + (ox + 24) * sw, sw), l[3]);
            }
            for (; ox < vec; ox += 8) {
                long k = (ox % 32) / 8;
                l[k] = _mm256_fmadd_ps(_mm256_loadu_ps(d + ox), load8(row + ox * sw, sw), l[k]);
            }
            for (; ox < s->ow; ox++) rest = fmaf(d[ox], row[ox * sw], rest);
        }
        _mm256_storeu_ps(lanes, l[0]); _mm256_storeu_ps(lanes + 8, l[1]);
        _mm256_storeu_ps(lanes + 16, l[2]); _mm256_storeu_ps(lanes + 24, l[3]);
        lanes[32] = rest;
    }
}
#endif

// MARK: - Entry points

/// The path calls with this shape run (`kiln_dw_shape.path`): 0 generic, 1 AVX2, 2 AVX-512.
static inline int path_of(const kiln_dw_shape *s) { return s->path >= 0 ? (int)s->path : kiln_tiles_level(); }
/// Whether they run AVX2 or AVX-512 (the AVX-512 level keeps the AVX2 data and weight gradients).
static inline int use_avx2(const kiln_dw_shape *s) { return path_of(s) >= 1; }

void kiln_dw_forward(const kiln_dw_shape *s, const float *x, const float *w, float *out, float *scratch, int fresh) {
#if defined(__x86_64__)
    int path = path_of(s);
    if (path == 2) { forward_avx512(s, x, w, out, scratch, fresh); return; }
    if (path == 1) { forward_avx2(s, x, w, out, scratch, fresh); return; }
#endif
    pad_plane(s, x, scratch, fresh);
    forward_generic(s, scratch, w, out);
}

void kiln_dw_backward_data(const kiln_dw_shape *s, const float *dy, long dyStride, const float *w, long maps,
                           float *dx, float bias, int accumulate, float *scratch) {
    long pwidth = s->w + 2 * s->pw, pheight = s->h + 2 * s->ph;
    memset(scratch, 0, (size_t)(pwidth * pheight + 16) * sizeof(float));
    long taps = s->kh * s->kw;
    for (long j = 0; j < maps; j++) {
#if defined(__x86_64__)
        if (use_avx2(s)) { scatter_avx2(s, dy + j * dyStride, w + j * taps, scratch); continue; }
#endif
        scatter_columns(s, dy + j * dyStride, w + j * taps, scratch, 0);
    }
    for (long y = 0; y < s->h; y++) {
        const float *src = scratch + (y + s->ph) * pwidth + s->pw;
        float *dst = dx + y * s->w;
        if (accumulate) for (long i = 0; i < s->w; i++) dst[i] += src[i] + bias;
        else for (long i = 0; i < s->w; i++) dst[i] = src[i] + bias;
    }
}

void kiln_dw_weight_begin(const kiln_dw_shape *s, float *acc) {
    memset(acc, 0, (size_t)(s->kh * s->kw * 33) * sizeof(float));
}

void kiln_dw_weight_add(const kiln_dw_shape *s, const float *x, const float *dy, float *acc, float *scratch,
                        int fresh) {
    pad_plane(s, x, scratch, fresh);
#if defined(__x86_64__)
    if (use_avx2(s)) { weight_avx2(s, scratch, dy, acc); return; }
#endif
    weight_generic(s, scratch, dy, acc);
}

void kiln_dw_weight_finish(const kiln_dw_shape *s, const float *acc, float *dw, int accumulate) {
    for (long t = 0; t < s->kh * s->kw; t++) {
        float sum = 0;
        for (long l = 0; l < 33; l++) sum += acc[t * 33 + l];
        dw[t] = accumulate ? dw[t] + sum : sum;
    }
}
