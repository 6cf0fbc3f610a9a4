// The register tiles of Kiln's Swift matrix kernels (see CKilnKernels.h). Swift's `addProduct` on SIMD values is a
// fused multiply-add; built without FMA enabled (a plain `swift build -c release`, as for any package that
// depends on Kiln) it becomes a call to libm's fmaf per lane, 20-30 times slower. Here the AVX2+FMA path is
// compiled for those instructions whatever the build flags, and chosen when the CPU has them. This file also keeps
// the level every float kernel of this target follows (generic, AVX2, AVX-512), so one choice covers them all.
#include "CKilnKernels.h"
#include "Dispatch.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

static void tile_generic(long rows, long k, const float *a, long rowStep, long kStep, const float *b, long ldb,
                         float *out) {
    for (long r = 0; r < 4; r++) {
        const float *ar = a + (r < rows ? r : rows - 1) * rowStep;
        for (long j = 0; j < 16; j++) {
            float acc = 0;
            for (long p = 0; p < k; p++) acc = fmaf(ar[p * kStep], b[p * ldb + j], acc);
            out[r * 16 + j] = acc;
        }
    }
}

static void dot_generic(float *acc, const float *a0, const float *a1, const float *b0, const float *b1,
                        const float *b2, const float *b3, long count) {
    const float *as[2] = {a0, a1}, *bs[4] = {b0, b1, b2, b3};
    for (long e = 0; e < 8; e++) {
        const float *x = as[e / 4], *y = bs[e % 4];
        for (long l = 0; l < 8; l++) {
            float s = acc[e * 8 + l];
            for (long off = l; off < count; off += 8) s = fmaf(x[off], y[off], s);
            acc[e * 8 + l] = s;
        }
    }
}

#if defined(__x86_64__)
#include <immintrin.h>

__attribute__((target("avx2,fma")))
static void dot_avx2(float *acc, const float *a0, const float *a1, const float *b0, const float *b1,
                     const float *b2, const float *b3, long count) {
    __m256 s00 = _mm256_loadu_ps(acc), s01 = _mm256_loadu_ps(acc + 8), s02 = _mm256_loadu_ps(acc + 16);
    __m256 s03 = _mm256_loadu_ps(acc + 24), s10 = _mm256_loadu_ps(acc + 32), s11 = _mm256_loadu_ps(acc + 40);
    __m256 s12 = _mm256_loadu_ps(acc + 48), s13 = _mm256_loadu_ps(acc + 56);
    for (long off = 0; off < count; off += 8) {
        __m256 x0 = _mm256_loadu_ps(a0 + off), x1 = _mm256_loadu_ps(a1 + off);
        __m256 y0 = _mm256_loadu_ps(b0 + off), y1 = _mm256_loadu_ps(b1 + off);
        __m256 y2 = _mm256_loadu_ps(b2 + off), y3 = _mm256_loadu_ps(b3 + off);
        s00 = _mm256_fmadd_ps(x0, y0, s00); s01 = _mm256_fmadd_ps(x0, y1, s01);
        s02 = _mm256_fmadd_ps(x0, y2, s02); s03 = _mm256_fmadd_ps(x0, y3, s03);
        s10 = _mm256_fmadd_ps(x1, y0, s10); s11 = _mm256_fmadd_ps(x1, y1, s11);
        s12 = _mm256_fmadd_ps(x1, y2, s12); s13 = _mm256_fmadd_ps(x1, y3, s13);
    }
    _mm256_storeu_ps(acc, s00); _mm256_storeu_ps(acc + 8, s01); _mm256_storeu_ps(acc + 16, s02);
    _mm256_storeu_ps(acc + 24, s03); _mm256_storeu_ps(acc + 32, s10); _mm256_storeu_ps(acc + 40, s11);
    _mm256_storeu_ps(acc + 48, s12); _mm256_storeu_ps(acc + 56, s13);
}

__attribute__((target("avx2,fma")))
static void tile_avx2(long rows, long k, const float *a, long rowStep, long kStep, const float *b, long ldb,
                      float *out) {
    const float *a0 = a, *a1 = a + (rows > 1 ? 1 : rows - 1) * rowStep;
    const float *a2 = a + (rows > 2 ? 2 : rows - 1) * rowStep, *a3 = a + (rows > 3 ? 3 : rows - 1) * rowStep;
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00;
    for (long p = 0; p < k; p++) {
        __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
        __m256 x0 = _mm256_set1_ps(a0[p * kStep]), x1 = _mm256_set1_ps(a1[p * kStep]);
        __m256 x2 = _mm256_set1_ps(a2[p * kStep]), x3 = _mm256_set1_ps(a3[p * kStep]);
        c00 = _mm256_fmadd_ps(x0, b0, c00); c01 = _mm256_fmadd_ps(x0, b1, c01);
        c10 = _mm256_fmadd_ps(x1, b0, c10); c11 = _mm256_fmadd_ps(x1, b1, c11);
        c20 = _mm256_fmadd_ps(x2, b0, c20); c21 = _mm256_fmadd_ps(x2, b1, c21);
        c30 = _mm256_fmadd_ps(x3, b0, c30); c31 = _mm256_fmadd_ps(x3, b1, c31);
        b += ldb;
    }
    _mm256_storeu_ps(out, c00); _mm256_storeu_ps(out + 8, c01);
    _mm256_storeu_ps(out + 16, c10); _mm256_storeu_ps(out + 24, c11);
    _mm256_storeu_ps(out + 32, c20); _mm256_storeu_ps(out + 40, c21);
    _mm256_storeu_ps(out + 48, c30); _mm256_storeu_ps(out + 56, c31);
}

static int has_avx2_fma(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

/// The AVX-512 subsets the direct convolution's wide tiles use (F, DQ, VL; BW with them, as every such CPU has).
static int has_avx512(void) {
    return has_avx2_fma() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
}
#else
static int has_avx2_fma(void) { return 0; }
static int has_avx512(void) { return 0; }
#endif

/// The widest level this CPU runs.
static int widest(void) { return has_avx512() ? 2 : has_avx2_fma() ? 1 : 0; }

int kiln_tile_level_named(const char *path) {
    if (path == NULL) return -1;
    if (strcmp(path, "avx512") == 0) return 2;
    if (strcmp(path, "avx2+fma") == 0 || strcmp(path, "avx2") == 0) return 1;
    if (strcmp(path, "generic") == 0) return 0;
    return -1;
}

/// The widest level, capped by KILN_KERNEL_PATH where it names a level (read when the level is first asked).
static int automatic(void) {
    int level = widest(), cap = kiln_tile_level_named(getenv("KILN_KERNEL_PATH"));
    return cap >= 0 && cap < level ? cap : level;
}

// The chosen level, -1 until first asked (every thread that races here stores the same value).
static int chosen = -1;

int kiln_tiles_level(void) {
    int level = __atomic_load_n(&chosen, __ATOMIC_ACQUIRE);
    if (level < 0) {
        level = automatic();
        __atomic_store_n(&chosen, level, __ATOMIC_RELEASE);
    }
    return level;
}

void kiln_tile4x16(long rows, long k, const float *a, long rowStep, long kStep, const float *b, long ldb,
                   float *out) {
#if defined(__x86_64__)
    if (kiln_tiles_level() >= 1) { tile_avx2(rows, k, a, rowStep, kStep, b, ldb, out); return; }
#endif
    tile_generic(rows, k, a, rowStep, kStep, b, ldb, out);
}

void kiln_tile2x4_add(float *acc, const float *a0, const float *a1, const float *b0, const float *b1,
                      const float *b2, const float *b3, long count) {
#if defined(__x86_64__)
    // The dot-product tile follows the 4x16 tile's path, so one choice (and one forced path) covers both.
    if (kiln_tiles_level() >= 1) { dot_avx2(acc, a0, a1, b0, b1, b2, b3, count); return; }
#endif
    dot_generic(acc, a0, a1, b0, b1, b2, b3, count);
}

int kiln_tiles_use_avx2(void) { return kiln_tiles_level() >= 1; }

const char *kiln_tile_path(void) {
    static const char *const names[] = {"generic", "avx2+fma", "avx512"};
    return names[kiln_tiles_level()];
}

void kiln_tile_force_path(const char *path) {
    int level = path == NULL ? automatic() : kiln_tile_level_named(path);
    if (level < 0) level = 0;
    if (level > widest()) level = widest();
    __atomic_store_n(&chosen, level, __ATOMIC_RELEASE);
}
