// The 4x16 tile of Kiln's Swift matrix kernels (see CKilnKernels.h). Swift's `addProduct` on SIMD values is a
// fused multiply-add; built without FMA enabled (a plain `swift build -c release`, as for any package that
// depends on Kiln) it becomes a call to libm's fmaf per lane, 20-30 times slower. Here the AVX2+FMA path is
// compiled for those instructions whatever the build flags, and chosen when the CPU has them.
#include "CKilnKernels.h"
#include <math.h>
#include <string.h>

typedef void (*tile_fn)(long, long, const float *, long, long, const float *, long, float *);

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

#if defined(__x86_64__)
#include <immintrin.h>

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
#else
static int has_avx2_fma(void) { return 0; }
#endif

// The chosen path: set once (every thread that races here stores the same pointer).
static tile_fn chosen;

static tile_fn automatic(void) {
#if defined(__x86_64__)
    if (has_avx2_fma()) return tile_avx2;
#endif
    return tile_generic;
}

void kiln_tile4x16(long rows, long k, const float *a, long rowStep, long kStep, const float *b, long ldb,
                   float *out) {
    tile_fn f = __atomic_load_n(&chosen, __ATOMIC_ACQUIRE);
    if (!f) {
        f = automatic();
        __atomic_store_n(&chosen, f, __ATOMIC_RELEASE);
    }
    f(rows, k, a, rowStep, kStep, b, ldb, out);
}

const char *kiln_tile_path(void) {
    tile_fn f = __atomic_load_n(&chosen, __ATOMIC_ACQUIRE);
    if (!f) f = automatic();
#if defined(__x86_64__)
    if (f == tile_avx2) return "avx2+fma";
#endif
    return "generic";
}

void kiln_tile_force_path(const char *path) {
    tile_fn f = path == NULL ? automatic() : tile_generic;
#if defined(__x86_64__)
    if (path != NULL && strcmp(path, "avx2+fma") == 0 && has_avx2_fma()) f = tile_avx2;
#endif
    __atomic_store_n(&chosen, f, __ATOMIC_RELEASE);
}
