// A fused convolution's epilogue over one output plane: v = (x + bias - mean) * scale + shift, plus the residual,
// then ReLU or ReLU6, row by row from a dense stage into rows of any pitch (a dense output, or padded planes).
// Each step is its own multiply or add, never contracted into a fused multiply-add, so that the values are
// those of the separate BatchNormalization, Add2 and activation kernels on every path.
#include "CKilnKernels.h"
#include "Dispatch.h"
#include <string.h>

#pragma STDC FP_CONTRACT OFF

static inline float activate(float v, int activation) {
    if (activation == 0) return v;
    float low = 0.0f >= v ? 0.0f : v;   // NaN stays NaN, -0 becomes 0
    return activation == 2 && 6.0f < low ? 6.0f : low;
}

/// One value through the epilogue, each step on its own.
static inline float epilogue_one(float x, float bias, float mean, float scale, float shift, const float *r, int activation) {
    float v = x + bias;
    v = v - mean;
    v = v * scale;
    v = v + shift;
    if (r) v = v + *r;
    return activate(v, activation);
}

static void rows_generic(const float *src, long rows, long width, float bias, float mean, float scale, float shift,
                         const float *residual, long resPitch, int activation, float *dst, long dstPitch, long gap) {
    for (long y = 0; y < rows; y++) {
        const float *s = src + y * width, *r = residual ? residual + y * resPitch : 0;
        float *d = dst + y * dstPitch;
        for (long j = 0; j < width; j++) d[j] = epilogue_one(s[j], bias, mean, scale, shift, r ? r + j : 0, activation);
        for (long k = 0; k < gap; k++) d[width + k] = 0.0f;
    }
}

#if defined(__x86_64__)
#include <immintrin.h>

__attribute__((target("avx2")))
static void rows_avx2(const float *src, long rows, long width, float bias, float mean, float scale, float shift,
                      const float *residual, long resPitch, int activation, float *dst, long dstPitch, long gap) {
    const __m256 b = _mm256_set1_ps(bias), mu = _mm256_set1_ps(mean), sc = _mm256_set1_ps(scale);
    const __m256 sh = _mm256_set1_ps(shift), zero = _mm256_setzero_ps(), six = _mm256_set1_ps(6.0f);
    for (long y = 0; y < rows; y++) {
        const float *s = src + y * width, *r = residual ? residual + y * resPitch : 0;
        float *d = dst + y * dstPitch;
        long j = 0;
        for (; j + 8 <= width; j += 8) {
            __m256 v = _mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(_mm256_add_ps(_mm256_loadu_ps(s + j), b), mu), sc), sh);
            if (r) v = _mm256_add_ps(v, _mm256_loadu_ps(r + j));
            if (activation) {
                v = _mm256_blendv_ps(v, zero, _mm256_cmp_ps(zero, v, _CMP_GE_OQ));
                if (activation == 2) v = _mm256_blendv_ps(v, six, _mm256_cmp_ps(six, v, _CMP_LT_OQ));
            }
            _mm256_storeu_ps(d + j, v);
        }
        for (; j < width; j++) d[j] = epilogue_one(s[j], bias, mean, scale, shift, r ? r + j : 0, activation);
        for (long k = 0; k < gap; k++) d[width + k] = 0.0f;
    }
}
#endif

void kiln_conv_epilogue(const float *src, long rows, long width, float bias, float mean, float scale, float shift,
                        const float *residual, long resPitch, int activation, float *dst, long dstPitch, long gap) {
#if defined(__x86_64__)
    if (kiln_tiles_use_avx2()) {
        rows_avx2(src, rows, width, bias, mean, scale, shift, residual, resPitch, activation, dst, dstPitch, gap);
        return;
    }
#endif
    rows_generic(src, rows, width, bias, mean, scale, shift, residual, resPitch, activation, dst, dstPitch, gap);
}

/// Zeros in a few floats: a call of memset costs more than these stores.
__attribute__((no_builtin("memset")))
static void zero_floats(float *p, long n) {
    for (long i = 0; i < n; i++) p[i] = 0.0f;
}

void kiln_padded_border(float *plane, long height, long width, long top, long left) {
    long pitch = width + 2 * left, origin = top * pitch + left, last = (top + height) * pitch;
    long planeFloats = (height + 2 * top) * (pitch + 1);
    zero_floats(plane, origin);
    zero_floats(plane + last, planeFloats - last);
}
