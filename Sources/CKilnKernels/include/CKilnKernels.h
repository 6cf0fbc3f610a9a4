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

/// The code path `kiln_tile4x16` runs on this CPU: "avx2+fma" or "generic".
const char *kiln_tile_path(void);

/// Forces a path for tests ("avx2+fma" is ignored where the CPU lacks it); NULL restores the automatic choice.
void kiln_tile_force_path(const char *path);

#endif
