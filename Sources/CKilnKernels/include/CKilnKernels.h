#ifndef CKILNKERNELS_H
#define CKILNKERNELS_H

/// Kiln's kernels that need machine instructions Swift cannot ask for per function: each has code paths
/// compiled for specific instruction sets (with `target` attributes, so the package needs no compiler flags
/// and runs on any x86-64) and picks one at run time from the CPU's features.

/// The accumulators of a 4x16 register tile: `out[r*16 + j] = sum over p < k of A[r, p] * B[p, j]`, each sum
/// a chain of fused multiply-adds in order of p (the same bits on every path). Element (r, p) of A is at
/// `a + r*rowStep + p*kStep` for r < rows (rows past `rows`, up to 4, repeat the last one); row p of B is at
/// `b + p*ldb` (16 floats).
void kiln_tile4x16(long rows, long k, const float *a, long rowStep, long kStep, const float *b, long ldb,
                   float *out);

/// The dot-product tile: adds to `acc` (8 entries of 8 lanes, entry `r*4 + c` for rows a0, a1 and b0..b3)
/// the lane-wise products of the first `count` floats (a multiple of 8) of A's rows `a0`, `a1` and B's rows
/// `b0`-`b3`: lane j of an entry takes the positions congruent to j modulo 8, in order, each a fused
/// multiply-add.
void kiln_tile2x4_add(float *acc, const float *a0, const float *a1, const float *b0, const float *b1,
                      const float *b2, const float *b3, long count);

/// The code path the tiles run on this CPU: "avx2+fma" or "generic".
const char *kiln_tile_path(void);

/// Forces a path for tests ("avx2+fma" is ignored where the CPU lacks it); NULL restores the automatic choice.
void kiln_tile_force_path(const char *path);

#endif
