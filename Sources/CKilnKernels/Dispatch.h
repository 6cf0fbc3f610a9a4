#ifndef CKILNKERNELS_DISPATCH_H
#define CKILNKERNELS_DISPATCH_H

/// The level Kiln's C kernels run (0 generic, 1 AVX2+FMA, 2 AVX-512) and whether it is at least AVX2: one choice
/// (automatic, capped by KILN_KERNEL_PATH, or forced by tests) covers every kernel of this target.
int kiln_tiles_level(void);
int kiln_tiles_use_avx2(void);

#if defined(__x86_64__)
/// One input row of `w` floats into a row of the column-parity layout (AVX2 path, stride 2): padded column
/// i + pad goes to half-column (i + pad) / 2 of the even plane (at `row`) or of the odd plane (`parityStep`
/// floats after it).
void kiln_split_row(const float *src, long w, long pad, float *row, long parityStep);
#endif

#endif
