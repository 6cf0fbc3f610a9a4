#ifndef CKILNKERNELS_H
#define CKILNKERNELS_H

#include <stdint.h>

/// A hint that the caller is spinning on a value another core will change (x86's `pause`): it keeps the spin
/// from flooding the memory pipeline and lets a sibling hyperthread run.
static inline void kiln_cpu_relax(void) {
#if defined(__x86_64__)
    __builtin_ia32_pause();
#endif
}

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
/// `kh` x `kw`, strides, symmetric zero padding and dilations, as nnabla's Convolution defines them. `path`: the
/// path of every call (`kiln_tiles_level`: 2 AVX-512, 1 AVX2, 0 generic), read once for a whole product, whose
/// planes may share a scratch whose zero border only the first wrote (the AVX2 and AVX-512 paths split stride-2
/// planes by column parity); -1 asks on each call.
typedef struct {
    long h, w, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw;
    long path;
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
/// `path`: the path every call with this shape takes (`kiln_tiles_level`: 2 AVX-512, 1 AVX2, 0 generic), read once
/// by the caller for a whole product so that its padded copies and its tiles agree on the layout even if the path
/// is forced meanwhile; -1 asks `kiln_tiles_level` on every call.
typedef struct {
    long channels, maps, h, w, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw;
    long path;
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
/// Packs blocks `[firstBlock, lastBlock)` of weights `[maps, channels, kh, kw]` for `kiln_conv_block` (maps past the
/// last are zeros; a thread that computes only some blocks packs only those). `flipped`: the weight is
/// `[channels, maps, kh, kw]`, `s` being the transposed convolution (the data gradient of a stride-1 convolution is
/// the convolution of dy with its weight transposed and turned half way round).
void kiln_conv_pack_blocks(const kiln_conv_shape *s, const float *w, float *packed, int flipped, long firstBlock,
                           long lastBlock);
/// Copies one sample's channels into the scratch with their zero padding, the zeros written when `fresh`.
void kiln_conv_pad(const kiln_conv_shape *s, const float *x, float *scratch, int fresh);
/// Output maps of block b (`kiln_conv_block_span`) of the padded sample into `stage` (plane j at `j * oh * ow`).
/// `ahead` (NULL for none): `aheadBytes` the AVX2 path asks into the second-level cache while it computes, a few
/// lines a tile (the caller's next sample), so that they are there when wanted without a pause.
void kiln_conv_block(const kiln_conv_shape *s, const float *packed, long b, const float *padded, float *stage,
                     const void *ahead, long aheadBytes);

/// The weight gradient of a direct convolution: accumulators (`kiln_conv_wgrad_acc_floats`, zeroed by the caller)
/// of `kiln_conv_wgrad_tiles` tiles (blocks of maps x pairs of taps, block-major); `add` adds tiles
/// `first ..< last` of `samples` consecutive samples, each padded by `kiln_conv_pad` at `padded` +
/// i * `kiln_conv_sample_floats`, their output gradients `dy` (`[samples, maps, oh, ow]`) and a plane of `zeros`
/// (`oh * ow`); `finish` writes (or adds) each weight's sum into `dw` (`[maps, channels, kh, kw]`).
/// A fused convolution's epilogue over `rows` rows of `width` values of a dense stage: `(x + bias - mean) * scale +
/// shift`, plus the residual's row (`resPitch` floats apart; none when NULL), then ReLU (`activation` 1) or ReLU6
/// (2), into rows `dstPitch` floats apart, each followed by `gap` zeros (a padded plane's right border and the next
/// row's left one). No multiply-add is contracted: the separate kernels' values exactly.
void kiln_conv_epilogue(const float *src, long rows, long width, float bias, float mean, float scale, float shift,
                        const float *residual, long resPitch, int activation, float *dst, long dstPitch, long gap);
/// Zeros in the rest of one padded plane's border and slack (`PaddedPlanes`): the rows above its values with the
/// first row's left border, and everything after its last row. The rows' own borders are the epilogue's `gap`.
void kiln_padded_border(float *plane, long height, long width, long top, long left);

long kiln_conv_wgrad_tiles(const kiln_conv_shape *s);
long kiln_conv_wgrad_acc_floats(const kiln_conv_shape *s);
long kiln_conv_sample_floats(const kiln_conv_shape *s);
void kiln_conv_wgrad_add(const kiln_conv_shape *s, const float *padded, long samples, const float *dy, const float *zeros,
                         float *acc, long first, long last);
void kiln_conv_wgrad_finish(const kiln_conv_shape *s, const float *acc, float *dw, int accumulate);

/// Integer products of quantized plans (QuantizedGemm.c). Paths: 0 "generic", 1 "avx2" (16-bit pairs through
/// vpmaddwd), 2 "avx-vnni", 3 "avx512-vnni" (bytes through vpdpbusd), and for tests 4 "avx-vnni-layout" and
/// 5 "avx512-vnni-layout" (plain C over the VNNI paths' packed layouts). Every path gives the same integers; packed
/// operands are in the format of the path they were packed for, so one run packs and multiplies on one path.
int kiln_q8_current_path(void);
const char *kiln_q8_path_name(int path);
/// Whether the CPU can run the named path.
int kiln_q8_path_available(const char *name);
/// Forces the named path for tests (0 when the CPU lacks it; nothing changes then); NULL restores the automatic choice.
int kiln_q8_force_path(const char *name);

/// How values are stored: plain floats, 8-bit codes, or (as an output) floats rounded to the quantizer's grid.
enum { KILN_Q8_NONE = 0, KILN_Q8_FLOAT = 1, KILN_Q8_U8 = 2, KILN_Q8_S8 = 3, KILN_Q8_FLOAT_GRID = 4 };

/// Bytes of A (`m` x `k` weight codes) and B (`k` x `n` activation codes) packed for `path`; the most any path needs.
long kiln_q8_packed_a_bytes(int path, long m, long k);
long kiln_q8_packed_b_bytes(int path, long k, long n);
long kiln_q8_packed_b_bytes_max(long k, long n);
/// Packs weights (element (r, p) at `a + r*mStride + p*kStride`) as the codes nnabla's FixedPointQuantize with step
/// `step` and codes in [`minCode`, `maxCode`] (within [-127, 127]) gives them, with each row's code sum: the
/// weights' quantizer runs here (a weight already on that grid keeps its code).
void kiln_q8_pack_a(int path, long m, long k, const float *a, long mStride, long kStride, float step, long minCode,
                    long maxCode, void *packed);
/// Packs activations (element (p, j) at index `p*kStride + j*nStride` of `b`): `source` KILN_Q8_U8 or KILN_Q8_S8
/// codes, or KILN_Q8_FLOAT values on a grid of step 1 / `inverseStep` and zero point `zeroPoint`; `isSigned` says
/// which codes they are.
void kiln_q8_pack_b(int path, long k, long n, const void *b, int source, int isSigned, long kStride, long nStride,
                    float inverseStep, long zeroPoint, void *packed);
/// `offsets[r] = zeroPoint * (row r's weight-code sum)` from A packed for `path`: what an input zero point adds
/// to each sum (wrapping 32-bit arithmetic, exact whenever the corrected sum fits).
void kiln_q8_row_offsets(int path, long m, long k, const void *packedA, long zeroPoint, int32_t *offsets);
/// `c[r*ldc + j] = sum over p of A[r][p] * B[p][j]` for packed A and B (`bSigned`: B holds signed codes).
void kiln_q8_gemm(int path, long m, long n, long k, const void *packedA, const void *packedB, int bSigned, int32_t *c,
                  long ldc);

/// A grid of 8-bit codes: a code stands for `(code - zeroPoint) * step`, codes lie in [`minCode`, `maxCode`].
/// Floats are put on it as nnabla's FixedPointQuantize does (`linear` 0: clip to the grid, then |v| / step rounded
/// half away from zero; zeroPoint 0), or as its QuantizeLinear does (`linear` 1: v / step rounded half away from
/// zero, or half to even with `halfEven`, plus zeroPoint, saturated to the codes).
typedef struct {
    float step;
    long zeroPoint, minCode, maxCode;
    int linear, halfEven;
} kiln_q8_grid;

/// What a quantized step does with one accumulator on its way out, in the float plan's order and arithmetic:
/// `v = (acc - rowOffset[row]) * (rowScale ? rowScale[row] : scale)` (the offset takes off an input zero point's
/// share, `zeroPoint * the row's weight-code sum`), `+ bias[row]`, batch normalisation
/// `(v - mean) * normScale + shift`, with `snap` put on the grid `mid` and back to the float it stands for (a
/// quantizer between the product and the residual sum), `+` the residual (floats, or codes on `residualGrid`),
/// ReLU (1) or ReLU6 (2), then stored as floats (KILN_Q8_FLOAT) or put on the grid `out` and stored as codes
/// (KILN_Q8_U8 / KILN_Q8_S8) or as the floats they stand for (KILN_Q8_FLOAT_GRID).
typedef struct {
    float scale;
    const float *rowScale;
    const int32_t *rowOffset;
    const float *bias;
    const float *mean, *normScale, *shift;
    int snap;
    kiln_q8_grid mid;
    const void *residual;
    int residualKind;
    kiln_q8_grid residualGrid;
    int activation;
    int output;
    kiln_q8_grid out;
} kiln_q8_epilogue;
/// One row of accumulators: element j goes to (and its residual comes from) index `offset + j*stride`.
void kiln_q8_finish_row(const kiln_q8_epilogue *e, long row, const int32_t *acc, long count, void *out, long offset,
                        long stride);
/// `out[i] = quantize(activation(value(a[i]) + value(b[i])))` for `count` elements, in the float plan's arithmetic:
/// each operand floats (`aKind` KILN_Q8_FLOAT) or codes (KILN_Q8_U8 / KILN_Q8_S8) standing for
/// `(code - zeroPoint) * step` on its grid, ReLU when `relu`, the sum put on `outGrid` as codes (`outKind`
/// KILN_Q8_U8 / KILN_Q8_S8) or as the floats they stand for (KILN_Q8_FLOAT_GRID).
void kiln_q8_add(long count, const void *a, int aKind, const kiln_q8_grid *aGrid, const void *b, int bKind,
                 const kiln_q8_grid *bGrid, int relu, const kiln_q8_grid *outGrid, int outKind, void *out);
/// The columns of one padded group (as `kiln_q8_im2col_padded` makes them) packed for `path` as `kiln_q8_pack_b`
/// packs them, in one pass, with `channels * kh * kw` longs of scratch in `offsets`; returns 0 (doing nothing) where
/// the path has no such packing.
int kiln_q8_pack_conv(int path, const kiln_conv_shape *s, const uint8_t *padded, int isSigned, long *offsets,
                      void *packed);
/// One group of one sample of 8-bit codes (`channels` planes of `h` x `w`) copied with its zero padding (`padCode`,
/// the code of 0: the grid's zero point), `kiln_q8_padded_bytes` bytes; and the columns of that padded sample,
/// `[channels * kh * kw][oh * ow]` bytes (rows of output pixels copied whole, no bounds checks).
long kiln_q8_padded_bytes(const kiln_conv_shape *s);
void kiln_q8_pad(const kiln_conv_shape *s, const uint8_t *x, uint8_t padCode, uint8_t *padded);
void kiln_q8_im2col_padded(const kiln_conv_shape *s, const uint8_t *padded, uint8_t *cols);
/// `count` floats put on `grid` as codes (`output` KILN_Q8_U8 or KILN_Q8_S8), and codes back to floats.
void kiln_q8_quantize(const float *x, long count, const kiln_q8_grid *grid, int output, void *out);
void kiln_q8_dequantize(const void *codes, int source, long count, const kiln_q8_grid *grid, float *out);

/// The code path Kiln's float kernels run on this CPU: "avx512" (the direct convolution's tiles in AVX-512, the
/// other kernels in AVX2), "avx2+fma" or "generic". The automatic choice is the widest the CPU has, capped by the
/// environment variable KILN_KERNEL_PATH ("generic", "avx2" or "avx512") when it names a path.
const char *kiln_tile_path(void);
/// The same as a level: 2 "avx512", 1 "avx2+fma", 0 "generic".
int kiln_tiles_level(void);
/// Whether the path is at least AVX2+FMA (the AVX2 kernels run on both the AVX2 and the AVX-512 path).
int kiln_tiles_use_avx2(void);
/// The level a path name stands for ("avx512", "avx2+fma" or "avx2", "generic"), or -1 for any other name.
int kiln_tile_level_named(const char *path);

/// Forces a path for tests, for the tiles and every other kernel here (capped at the widest the CPU has, so
/// "avx512" runs AVX2 on a CPU without AVX-512); NULL restores the automatic choice.
void kiln_tile_force_path(const char *path);

#endif
