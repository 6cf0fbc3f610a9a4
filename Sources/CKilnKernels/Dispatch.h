#ifndef CKILNKERNELS_DISPATCH_H
#define CKILNKERNELS_DISPATCH_H

/// Whether Kiln's C kernels run their AVX2+FMA path: the register tiles' choice (automatic or forced), so that
/// one choice and one forced path cover every kernel of this target.
int kiln_tiles_use_avx2(void);

#endif
