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

/// Sizes of one depthwise plane product: an input plane `h` x `w`, an output plane `oh` x `ow`, a kernel
/// `kh` x `kw`, strides, symmetric zero padding and dilations, as nnabla's Convolution defines them.
typedef struct {
    long h, w, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw;
} kiln_dw_shape;

/// Floats of scratch one thread needs for the depthwise kernels: the padded input plane with 16 floats of slack,
/// then room for one output plane (for callers that stage it), then the weight gradient's accumulators
/// (33 floats per tap).
long kiln_dw_scratch_floats(const kiln_dw_shape *s);

/// `out` (an `oh` x `ow` plane) = the correlation of plane `x` with kernel `w` (`kh` x `kw`). Uses the start of
/// `scratch` for the padded plane; `fresh` (nonzero) writes its zero border, which later calls with the same shape
/// and scratch may skip.
void kiln_dw_forward(const kiln_dw_shape *s, const float *x, const float *w, float *out, float *scratch, int fresh);

/// The data gradient of one input plane: `dx` (+)= the sum over `maps` output maps (dy planes `dyStride` floats
/// apart, kernels `kh * kw` floats apart) of each dy plane scattered through its kernel, plus `bias`.
void kiln_dw_backward_data(const kiln_dw_shape *s, const float *dy, long dyStride, const float *w, long maps,
                           float *dx, float bias, int accumulate, float *scratch);

/// The weight gradient of one output map over samples: `begin` zeroes the accumulators `acc` (33 floats per tap),
/// `add` adds one sample's products of input plane `x` and output gradient plane `dy` (using `scratch` for the
/// padded plane, its border written when `fresh`), `finish` writes (or adds) each tap's sum into `dw`.
void kiln_dw_weight_begin(const kiln_dw_shape *s, float *acc);
void kiln_dw_weight_add(const kiln_dw_shape *s, const float *x, const float *dy, float *acc, float *scratch, int fresh);
void kiln_dw_weight_finish(const kiln_dw_shape *s, const float *acc, float *dw, int accumulate);

/// Sizes of one direct 2-D convolution of one group: `channels` input planes `h` x `w`, `maps` output planes
/// `oh` x `ow`, a kernel `kh` x `kw`, strides, symmetric zero padding and dilations, as nnabla's Convolution.
typedef struct {
    long channels, maps, h, w, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw;
} kiln_conv_shape;

/// Blocks of output maps, and block b's first map and number of real maps.
long kiln_conv_blocks(const kiln_conv_shape *s);
void kiln_conv_block_span(const kiln_conv_shape *s, long b, long *first, long *count);
/// Floats of the packed weights (a block's maps side by side).
long kiln_conv_packed_floats(const kiln_conv_shape *s);
/// Floats of one thread's scratch: one sample's padded channels and the stage of one block of output maps.
long kiln_conv_scratch_floats(const kiln_conv_shape *s);
/// The stage (a block's output planes of `oh * ow` floats) inside a thread's scratch.
float *kiln_conv_stage(const kiln_conv_shape *s, float *scratch);
/// Packs weights `[maps, channels, kh, kw]` for `kiln_conv_block` (maps past the last are zeros).
void kiln_conv_pack(const kiln_conv_shape *s, const float *w, float *packed);
/// Packs a convolution weight `[channels, maps, kh, kw]` (`s` being the transposed convolution: the data gradient
/// of a stride-1 convolution is the convolution of dy with its weight transposed and turned half way round).
void kiln_conv_pack_flipped(const kiln_conv_shape *s, const float *w, float *packed);
/// Copies one sample's channels into the scratch with their zero padding, the zeros written when `fresh`.
void kiln_conv_pad(const kiln_conv_shape *s, const float *x, float *scratch, int fresh);
/// Output maps of block b (`kiln_conv_block_span`) of the padded sample into `stage` (plane j at `j * oh * ow`).
void kiln_conv_block(const kiln_conv_shape *s, const float *packed, long b, const float *padded, float *stage);

/// The weight gradient of a direct convolution: accumulators (`kiln_conv_wgrad_acc_floats`, zeroed by the caller)
/// of `kiln_conv_wgrad_tiles` tiles (blocks of maps x pairs of taps, block-major); `add` adds tiles
/// `first ..< last` of `samples` consecutive samples, each padded by `kiln_conv_pad` at `padded` +
/// i * `kiln_conv_sample_floats`, their output gradients `dy` (`[samples, maps, oh, ow]`) and a plane of `zeros`
/// (`oh * ow`); `finish` writes (or adds) each weight's sum into `dw` (`[maps, channels, kh, kw]`).
long kiln_conv_wgrad_tiles(const kiln_conv_shape *s);
long kiln_conv_wgrad_acc_floats(const kiln_conv_shape *s);
long kiln_conv_sample_floats(const kiln_conv_shape *s);
void kiln_conv_wgrad_add(const kiln_conv_shape *s, const float *padded, long samples, const float *dy, const float *zeros,
                         float *acc, long first, long last);
void kiln_conv_wgrad_finish(const kiln_conv_shape *s, const float *acc, float *dw, int accumulate);

/// The code path the tiles run on this CPU: "avx2+fma" or "generic".
const char *kiln_tile_path(void);

/// Forces a path for tests, for the tiles and every other kernel here ("avx2+fma" is ignored where the CPU lacks
/// it); NULL restores the automatic choice.
void kiln_tile_force_path(const char *path);

#endif
