import CKilnKernels
import KilnCore

/// The forward product of 2-D convolutions with one group, computed directly from a padded copy of each sample
/// (`CKilnKernels/DirectConvolution.c`) instead of im2col and a matrix product that packs the columns again.
///
/// The data gradient of a stride-1 convolution is itself such a product: dy convolved with the weight transposed
/// and turned half way round, padded by `dilation * (kernel - 1) - pad` (`init(dataGradientOf:)`).
///
/// Taken where output rows fill the kernel's 8-wide segments well (ResNets' 3x3 layers on 32x32 to 8x8 maps):
/// rows a multiple of 8, or at least 24 wide; column strides 1 and 2. Each thread takes whole samples (or, with
/// fewer samples than threads, a share of one sample's output maps). The weights are packed once per run, before
/// the threads start; a single sample's shares each pack their own blocks instead.
struct DirectConvolution {
    let shape: kiln_conv_shape
    let batch: Int
    let maps: Int
    let sampleIn: Int
    let planeOut: Int
    let blocks: Int
    let packedFloats: Int
    /// Floats of one thread's scratch.
    let slice: Int
    /// Threads the workspace was sized for.
    let parts: Int
    /// Whether the weight is packed transposed and turned (the data gradient's product).
    let flipped: Bool

    init?(_ g: ConvGeometry) {
        guard g.image.count == 2, g.group == 1, !g.isPointwise, g.stride[1] == 1 || g.stride[1] == 2,
              DirectConvolution.suits(row: g.col[1]) else { return nil }
        self.init(kiln_conv_shape(channels: g.channels, maps: g.outmaps, h: g.image[0], w: g.image[1], oh: g.col[0],
                                  ow: g.col[1], kh: g.kernel[0], kw: g.kernel[1], sh: g.stride[0], sw: g.stride[1],
                                  ph: g.pad[0], pw: g.pad[1], dh: g.dilation[0], dw: g.dilation[1], path: -1), batch: g.batch,
                  flipped: false)
    }

    /// The data gradient of `g` (dy to dx) as a direct product, for stride-1 convolutions of one group.
    init?(dataGradientOf g: ConvGeometry) {
        guard g.image.count == 2, g.group == 1, !g.isPointwise, g.stride.allSatisfy({ $0 == 1 }),
              DirectConvolution.suits(row: g.image[1]) else { return nil }
        var pad = [0, 0]
        for a in 0..<2 {
            let reach: Int = g.dilation[a] * (g.kernel[a] - 1)
            pad[a] = reach - g.pad[a]
            // dy padded this much, convolved at stride 1, gives x's size back.
            guard pad[a] >= 0, g.col[a] + 2 * pad[a] - reach == g.image[a] else { return nil }
        }
        self.init(kiln_conv_shape(channels: g.outmaps, maps: g.channels, h: g.col[0], w: g.col[1], oh: g.image[0],
                                  ow: g.image[1], kh: g.kernel[0], kw: g.kernel[1], sh: 1, sw: 1, ph: pad[0], pw: pad[1],
                                  dh: g.dilation[0], dw: g.dilation[1], path: -1), batch: g.batch, flipped: true)
    }

    /// Output rows the 8-wide segments fill well: a multiple of 8, or at least 24 wide. (Allowing rows three quarters
    /// full was measured: LeNet's 12-wide data gradient then ran slower, 3.1 against 2.4 ms at batch 64.)
    static func suits(row: Int) -> Bool { row >= 8 && (row % 8 == 0 || row >= 24) }

    private init(_ shape: kiln_conv_shape, batch: Int, flipped: Bool) {
        self.shape = shape
        self.flipped = flipped
        self.batch = batch
        maps = shape.maps
        sampleIn = shape.channels * shape.h * shape.w
        planeOut = shape.oh * shape.ow
        var s = shape
        blocks = kiln_conv_blocks(&s)
        packedFloats = kiln_conv_packed_floats(&s)
        slice = kiln_conv_scratch_floats(&s)
        parts = max(1, min(Threads.count, batch * blocks))
    }

    var workspaceFloats: Int { packedFloats + slice * parts }

    /// Whether the weight gradient runs here: on output planes of 256 pixels or more. On smaller planes (ResNet-20's
    /// 8x8 stage, 64 channels) the per-sample work of a tile is short and the matrix product over im2col columns
    /// measured faster (4.2 against 4.8 ms a layer at batch 32); on 32x32 planes this kernel is (4.5 against 5.3).
    var takesWeightGradient: Bool { planeOut >= 256 }

    /// Samples the weight gradient pads at once, so that each tile's accumulators stay in registers through all of
    /// them: up to 64 KiB of padded samples, which keeps this workspace within the im2col route's on the zoo's
    /// layers (planes of 256 outputs or more give each tile enough work per sample anyway).
    var weightGradientSamples: Int {
        var s = shape
        return max(1, min(batch, 16384 / max(kiln_conv_sample_floats(&s), 1)))
    }

    /// Floats of one thread's scratch for the weight gradient: its padded samples, slack, and a plane of zeros.
    var weightGradientSlice: Int {
        var s = shape
        return weightGradientSamples * kiln_conv_sample_floats(&s) + 32 + planeOut
    }

    /// Floats `backwardWeight` needs: the tiles' accumulators and the threads' scratch.
    var weightGradientFloats: Int {
        var s = shape
        return kiln_conv_wgrad_acc_floats(&s) + weightGradientSlice * parts
    }

    /// `col = conv(image) + bias` (or `+=` when accumulating), then the epilogue if one is given.
    ///
    /// `paddedInput`: the image is already stored in this shape's padded planes (`PaddedPlanes`, the Layout pass),
    /// so no sample is copied; the workspace then needs only `paddedInputWorkspaceFloats`. `outputPlanes`: the
    /// epilogue writes into padded planes, border included (only with an epilogue and no pooling).
    func forward(image: UnsafePointer<Float>, weight: UnsafePointer<Float>, col: UnsafeMutablePointer<Float>,
                 bias: UnsafePointer<Float>?, accumulate: Bool, workspace: UnsafeMutablePointer<Float>,
                 epilogue: ConvEpilogue?, paddedInput: Bool = false, outputPlanes: PaddedPlanes? = nil) {
        var s = callShape
        let p = min(parts, Threads.count)
        // With fewer samples than threads, each sample's blocks of maps are shared out.
        let shares = batch >= p ? 1 : min(blocks, (p + batch - 1) / max(batch, 1))
        // One sample shared out: each share packs the blocks it computes (no other reads them). Otherwise the
        // weights are packed once, before the threads start.
        let packInShares = batch == 1 && shares > 1
        if !packInShares {
            kiln_conv_pack_blocks(&s, weight, workspace, flipped ? 1 : 0, 0, blocks)
        }
        // Tasks go to the threads in runs, each run writing its scratch's zero padding once.
        let tasks = batch * shares, run = max(1, tasks / (p * 4))
        Threads.claims((tasks + run - 1) / run, threads: p,
                       Forward(d: self, shape: s, image: image, col: col, bias: bias, accumulate: accumulate,
                               packed: workspace, scratch: workspace + packedFloats, epilogue: epilogue, shares: shares,
                               run: run, tasks: tasks, weight: packInShares ? weight : nil, paddedInput: paddedInput,
                               outputPlanes: outputPlanes))
    }

    /// The planes this shape's padded copy of a sample has, as a layout of the arena (`PaddedPlanes`).
    var inputPlanes: PaddedPlanes { PaddedPlanes(height: shape.h, width: shape.w, top: shape.ph, left: shape.pw) }

    /// Floats of the forward workspace when the input is already padded: the packed weights and each thread's
    /// stage of output planes.
    var paddedInputWorkspaceFloats: Int { packedFloats + stageFloats * parts }

    /// Floats of one thread's stage: a block's output planes (blocks of at most 6 maps, the C kernel's `MAPS`).
    var stageFloats: Int { 6 * planeOut }

    /// The shape with the kernel path read once, for every C call of one product: a path forced meanwhile (tests)
    /// cannot give its padded copies one layout and its tiles another.
    var callShape: kiln_conv_shape {
        var s = shape
        s.path = Int(kiln_tiles_level())
        return s
    }

    private struct Forward: ParallelSlotPart {
        let d: DirectConvolution
        /// `d.shape` with this product's path (`callShape`).
        let shape: kiln_conv_shape
        let image: UnsafePointer<Float>, col: UnsafeMutablePointer<Float>, bias: UnsafePointer<Float>?
        let accumulate: Bool, packed: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>
        let epilogue: ConvEpilogue?, shares: Int, run: Int, tasks: Int
        /// The weight, when each share packs its own blocks.
        let weight: UnsafePointer<Float>?
        let paddedInput: Bool
        let outputPlanes: PaddedPlanes?

        func callAsFunction(_ part: Int, slot: Int) {
            for task in (part * run)..<min(tasks, (part + 1) * run) { compute(task, slot: slot, fresh: task == part * run) }
        }

        func compute(_ task: Int, slot: Int, fresh: Bool) {
            let n = task / shares, share = task % shares
            let first = d.blocks * share / shares, last = d.blocks * (share + 1) / shares
            var s = shape
            if let weight { kiln_conv_pack_blocks(&s, weight, packed, d.flipped ? 1 : 0, first, last) }
            let padded: UnsafePointer<Float>, stage: UnsafeMutablePointer<Float>
            // Padded input: the next sample's planes are asked into the caches while this one is computed (none
            // with shares: the next task is the same sample's). Otherwise the padded copy brings each sample in.
            let sampleFloats = paddedInput ? s.channels * d.inputPlanes.planeFloats : d.sampleIn
            let next = paddedInput && shares == 1 && n + 1 < d.batch ? image + (n + 1) * sampleFloats : nil
            if paddedInput {
                padded = image + n * sampleFloats
                stage = scratch + slot * d.stageFloats
            } else {
                let mine = scratch + slot * d.slice
                kiln_conv_pad(&s, image + n * d.sampleIn, mine, fresh ? 1 : 0)
                padded = UnsafePointer(mine)
                stage = kiln_conv_stage(&s, mine)!
            }
            for b in first..<last {
                var firstMap = 0, count = 0
                kiln_conv_block_span(&s, b, &firstMap, &count)
                // Each block asks for its share of the next sample's input while it computes. (Asking for the
                // output planes and the residual the epilogue then touches as well measured slower: 1.03-1.07.)
                let from = sampleFloats * (b - first) / (last - first), to = sampleFloats * (b - first + 1) / (last - first)
                kiln_conv_block(&s, packed, b, padded, stage, next.map { UnsafeRawPointer($0 + from) }, (to - from) * 4)
                // The epilogue unwrapped once a block: unwrapping it for each map copied it through the stack (4.7%
                // of ResNet-20 inference in this function, by perf).
                if let epilogue {
                    for j in 0..<count {
                        let m = firstMap + j
                        let offset = (n * d.maps + m) * d.planeOut
                        let src = stage + j * d.planeOut, dst = col + offset
                        let v = bias.map { $0[m] } ?? 0
                        if let pool = epilogue.pool {
                            // The plane is finished: its epilogue in place, then pooled into the output.
                            epilogue.apply(map: m, src, src, plus: v, d.planeOut, offset: offset)
                            let pooled = col + (n * d.maps + m) * pool.outPlane
                            pool(src, pooled)
                            epilogue.pooledActivation.apply(pooled, pool.outPlane)
                        } else if outputPlanes != nil || epilogue.residualPlanes != nil {
                            epilogue.applyPlane(map: m, plane: n * d.maps + m, src, plus: v, rows: s.oh, width: s.ow,
                                                col: col, outputPlanes: outputPlanes)
                        } else {
                            epilogue.apply(map: m, src, dst, plus: v, d.planeOut, offset: offset)
                        }
                    }
                } else {
                    for j in 0..<count {
                        let m = firstMap + j
                        let dst = col + (n * d.maps + m) * d.planeOut, src = stage + j * d.planeOut
                        let v = bias.map { $0[m] } ?? 0
                        if accumulate { ShortRows.add(dst, src, plus: v, d.planeOut) } else { ShortRows.copy(dst, src, plus: v, d.planeOut) }
                    }
                }
            }
        }
    }

    /// `dW (+)= the weight gradient summed over samples`. Each thread takes a fixed range of tiles (blocks of maps x
    /// pairs of taps) through every sample in order, a group of samples at a time, so the sums are the same for any
    /// number of threads.
    func backwardWeight(image: UnsafePointer<Float>, col: UnsafePointer<Float>, weightGrad: UnsafeMutablePointer<Float>,
                        accumulate: Bool, workspace: UnsafeMutablePointer<Float>) {
        var s = callShape
        let accFloats = kiln_conv_wgrad_acc_floats(&s), tiles = kiln_conv_wgrad_tiles(&s)
        workspace.update(repeating: 0, count: accFloats)
        let p = max(1, min(parts, Threads.count, tiles))
        Threads.parts(p, WeightGradient(d: self, shape: s, image: image, dy: col, acc: workspace,
                                        scratch: workspace + accFloats, tiles: tiles, parts: p))
        kiln_conv_wgrad_finish(&s, workspace, weightGrad, accumulate ? 1 : 0)
    }

    private struct WeightGradient: ParallelPart {
        let d: DirectConvolution
        /// `d.shape` with this product's path (`callShape`).
        let shape: kiln_conv_shape
        let image: UnsafePointer<Float>, dy: UnsafePointer<Float>, acc: UnsafeMutablePointer<Float>
        let scratch: UnsafeMutablePointer<Float>, tiles: Int, parts: Int

        func callAsFunction(_ part: Int) {
            let first = tiles * part / parts, last = tiles * (part + 1) / parts
            guard first < last else { return }
            var s = shape
            let group = d.weightGradientSamples, sample = kiln_conv_sample_floats(&s)
            let mine = scratch + part * d.weightGradientSlice, zeros = mine + group * sample + 32
            zeros.update(repeating: 0, count: d.planeOut)
            var n0 = 0
            while n0 < d.batch {
                let count = min(group, d.batch - n0)
                for i in 0..<count {
                    kiln_conv_pad(&s, image + (n0 + i) * d.sampleIn, mine + i * sample, n0 == 0 ? 1 : 0)
                }
                kiln_conv_wgrad_add(&s, mine, count, dy + n0 * d.maps * d.planeOut, zeros, acc, first, last)
                n0 += count
            }
        }
    }
}
