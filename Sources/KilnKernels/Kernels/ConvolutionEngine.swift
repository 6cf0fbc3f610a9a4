import CKilnKernels
import KilnCore

/// The three products of an N-D grouped convolution, shared by Convolution and Deconvolution.
///
/// In convolution terms: the *image* side is `[batch, channels, *image]` (convolution input), the *column*
/// side is `[batch, outmaps, *col]` (convolution output), the weight is `[outmaps, channels/group, *kernel]`.
/// - `forward`: col (+)= W * im2col(image) (+ bias per outmap)          (convolution forward)
/// - `backwardData`: image (+)= col2im(W^T * col) (+ bias per channel)  (convolution dx, deconvolution forward)
/// - `backwardWeight`: W (+)= col * im2col(image)^T summed over samples  (both weight gradients)
///
/// Deconvolution is the same engine with its output as the image side and its input as the column side
/// (its weight `(inmaps, outmaps/group, *kernel)` is exactly a convolution weight seen that way).
///
/// Samples are processed in chunks whose columns sit side by side, so each group of a chunk is one sgemm
/// wide enough to run near the BLAS ceiling (OpenBLAS threads it); im2col/col2im split rows/channels over
/// the threads. A 1x1 kernel with stride 1 and no padding skips im2col entirely; depthwise 2-D convolutions
/// run their own kernels (`DepthwiseConvolution`), and so does the forward product of 2-D convolutions whose
/// output rows suit `DirectConvolution`.
package final class ConvolutionEngine {
    package let batch: Int
    package let channels: Int
    package let outmaps: Int
    let group: Int
    let cg: Int
    let mg: Int
    let kernelCount: Int
    package let imageCount: Int
    package let colCount: Int
    /// nil for the 1x1 / stride 1 / no padding case, where the columns are the image itself.
    package let plan: Im2ColPlan?
    /// The data gradient's own kernel for 1x1 stride-2 convolutions (see `StridedPointwiseData`), or nil.
    let stridedPointwise: StridedPointwiseData?
    /// The kernels of depthwise 2-D convolutions, which replace every product here, or nil.
    let depthwise: DepthwiseConvolution?
    /// The direct kernel of the forward product, or nil.
    let direct: DirectConvolution?
    /// The direct kernel of the data-gradient product (stride 1), or nil.
    let directData: DirectConvolution?
    /// Samples whose columns sit side by side in one matrix product (small images would make each
    /// per-sample product too thin for sgemm to run at full speed).
    let chunk: Int

    /// Columns one matrix product should span at least.
    static let targetColumns = 512
    /// Threads the workspace was sized for (the thread count when the plan was built); chunks of samples are
    /// spread over at most this many threads, each with its own slice of the workspace.
    let parts: Int
    /// Floats of one thread's workspace slice.
    let slice: Int

    package init(_ g: ConvGeometry) {
        batch = g.batch
        channels = g.channels
        outmaps = g.outmaps
        group = g.group
        cg = g.channels / g.group
        mg = g.outmaps / g.group
        kernelCount = g.kernel.reduce(1, *)
        imageCount = g.image.reduce(1, *)
        colCount = g.col.reduce(1, *)
        plan = g.isPointwise ? nil
            : Im2ColPlan(channels: cg, image: g.image, col: g.col, kernel: g.kernel, pad: g.pad,
                         stride: g.stride, dilation: g.dilation)
        stridedPointwise = StridedPointwiseData(g)
        depthwise = DepthwiseConvolution(g)
        direct = DirectConvolution(g)
        directData = DirectConvolution(dataGradientOf: g)
        chunk = ConvolutionEngine.chunk(g)
        parts = ConvolutionEngine.parts(g)
        slice = ConvolutionEngine.sliceFloats(g)
    }

    /// Whether the forward product runs on the direct kernel, whose epilogue sees each output plane whole and so
    /// can pool it (`ConvEpilogue.pool`).
    package var poolsInEpilogue: Bool { depthwise == nil && direct != nil }

    static func parts(_ g: ConvGeometry) -> Int {
        let chunks = (g.batch + chunk(g) - 1) / max(chunk(g), 1)
        return max(1, min(Threads.count, chunks))
    }

    /// One thread's workspace: the chunk's columns, its product rows, and a private accumulator of the
    /// transposed weight gradient.
    static func sliceFloats(_ g: ConvGeometry) -> Int {
        let ld = chunk(g) * g.col.reduce(1, *)
        let kk = (g.channels / g.group) * g.kernel.reduce(1, *)
        return (kk + g.outmaps / g.group) * ld + g.outmaps * kk
    }

    /// Threads to use now: never more than the workspace was sized for.
    var activeParts: Int { min(parts, Threads.count) }

    /// Calls `body(slot, n0, nb)` for every chunk of samples, each chunk claimed by whichever of `p` threads is
    /// free (`slot`: that thread's workspace slice). For products whose chunks write disjoint outputs: which
    /// thread runs a chunk changes no value. `p` is read once by the caller (`activeParts`): Threads.count may
    /// change meanwhile on another thread.
    private func forEachChunk<B: ConvolutionChunk>(parts p: Int, _ body: B) {
        Threads.claims((batch + chunk - 1) / chunk, threads: p, ClaimedChunk(body: body, batch: batch, chunk: chunk))
    }

    private struct ClaimedChunk<B: ConvolutionChunk>: ParallelSlotPart {
        let body: B, batch: Int, chunk: Int
        @inline(__always) func callAsFunction(_ c: Int, slot: Int) {
            let n0 = c * chunk
            body(slot, n0, min(chunk, batch - n0))
        }
    }

    /// Calls `body(part, n0, nb)` for every chunk, part `part` taking chunks `part, part + p, ...` in order:
    /// for the weight gradient, which each part sums into its own accumulator, so that the sums (and their
    /// rounding) are the same on every run whichever thread runs a part.
    private func forEachChunkInParts<B: ConvolutionChunk>(parts p: Int, _ body: B) {
        Threads.parts(p, RoundRobinChunks(body: body, batch: batch, chunk: chunk, parts: p))
    }

    /// Part `part` takes chunks `part, part + parts, ...`.
    private struct RoundRobinChunks<B: ConvolutionChunk>: ParallelPart {
        let body: B, batch: Int, chunk: Int, parts: Int
        @inline(__always) func callAsFunction(_ part: Int) {
            let chunks = (batch + chunk - 1) / chunk
            var c = part
            while c < chunks {
                let n0 = c * chunk
                body(part, n0, min(chunk, batch - n0))
                c += parts
            }
        }
    }

    /// One chunk of samples of `forward`: im2col, one product per group, scatter into the output.
    private struct ForwardChunk: ConvolutionChunk {
        let engine: ConvolutionEngine, plan: Im2ColPlan
        let image: UnsafePointer<Float>, weight: UnsafePointer<Float>, col: UnsafeMutablePointer<Float>
        let bias: UnsafePointer<Float>?, accumulate: Bool, workspace: UnsafeMutablePointer<Float>
        let epilogue: ConvEpilogue?, single: Bool

        @inline(__always) func callAsFunction(_ part: Int, _ n0: Int, _ nb: Int) {
            let e = engine, kk = e.cg * e.kernelCount
            let ld = nb * e.colCount
            let cols = workspace + part * e.slice, out = cols + kk * ld
            for g in 0..<e.group {
                plan.im2col(samples: nb, image + n0 * e.channels * e.imageCount + g * e.cg * e.imageCount,
                            imageStride: e.channels * e.imageCount, cols, ld: ld, parallel: single)
                if !accumulate && (nb == 1 || e.mg * ld * kk <= Gemm.smallProduct) {
                    direct(g: g, n0: n0, nb: nb, cols: cols, ld: ld, out: out)
                    continue
                }
                Gemm.sgemm(m: e.mg, n: ld, k: kk, a: weight + g * e.mg * kk, b: cols, ldb: ld, beta: 0, c: out, ldc: ld)
                // Scatter [m][sample][pos] into [sample][m][pos], adding the bias on the way.
                for i in 0..<(nb * e.mg) {
                    let s = i / e.mg, m = i - s * e.mg
                    let src = out + m * ld + s * e.colCount
                    let offset = (n0 + s) * e.outmaps * e.colCount + (g * e.mg + m) * e.colCount
                    let dst = col + offset
                    let b = bias.map { $0[g * e.mg + m] } ?? 0
                    if let epilogue {
                        epilogue.apply(map: g * e.mg + m, src, dst, plus: b, e.colCount, offset: offset)
                    } else if accumulate {
                        ShortRows.add(dst, src, plus: b, e.colCount)
                    } else {
                        ShortRows.copy(dst, src, plus: b, e.colCount)
                    }
                }
            }
        }

        /// Without the scatter: one product per sample straight into the output (the samples' output rows are
        /// not adjacent), then bias and epilogue in place. Worth it when the chunk is one sample (its columns
        /// are the output's layout already) or when the product runs in Gemm's Swift kernel anyway, which has
        /// no per-call cost to amortise over a wide chunk. The values are those of the scatter path: the product,
        /// then `+ b` and the epilogue. With a residual the product goes to the workspace first (the output may
        /// be the residual's own buffer, which it would overwrite before the epilogue reads it), keeping the
        /// per-sample product so that fused and separate steps still agree bit for bit.
        @inline(__always) func direct(g: Int, n0: Int, nb: Int, cols: UnsafeMutablePointer<Float>, ld: Int,
                                      out: UnsafeMutablePointer<Float>) {
            let e = engine, kk = e.cg * e.kernelCount, count = e.colCount
            let staged = epilogue?.residual != nil
            for s in 0..<nb {
                let base = (n0 + s) * e.outmaps * count + g * e.mg * count
                let target = staged ? out : col + base
                Gemm.sgemm(m: e.mg, n: count, k: kk, a: weight + g * e.mg * kk, b: cols + s * count, ldb: ld, beta: 0,
                           c: target, ldc: count)
                guard bias != nil || epilogue != nil else { continue }
                for m in 0..<e.mg {
                    let dst = col + base + m * count
                    let b = bias.map { $0[g * e.mg + m] } ?? 0
                    if let epilogue {
                        epilogue.apply(map: g * e.mg + m, target + m * count, dst, plus: b, count, offset: base + m * count)
                    } else {
                        ShortRows.add(dst, plus: b, count)
                    }
                }
            }
        }
    }

    /// One chunk of samples of `backwardData`: gather dY, one product per group, col2im.
    private struct BackwardDataChunk: ConvolutionChunk {
        let engine: ConvolutionEngine, plan: Im2ColPlan
        let col: UnsafePointer<Float>, weight: UnsafePointer<Float>, image: UnsafeMutablePointer<Float>
        let workspace: UnsafeMutablePointer<Float>, single: Bool, overwrite: Bool

        @inline(__always) func callAsFunction(_ part: Int, _ n0: Int, _ nb: Int) {
            let e = engine, kk = e.cg * e.kernelCount
            let ld = nb * e.colCount
            let cols = workspace + part * e.slice, dys = cols + kk * ld
            for g in 0..<e.group {
                let rows = e.rows(col, n0: n0, nb: nb, g: g, scratch: dys, ld: ld)
                Gemm.sgemm(transA: true, m: kk, n: ld, k: e.mg, a: weight + g * e.mg * kk, b: rows, ldb: ld, beta: 0,
                           c: cols, ldc: ld)
                plan.col2im(samples: nb, cols, ld: ld, image + n0 * e.channels * e.imageCount + g * e.cg * e.imageCount,
                            imageStride: e.channels * e.imageCount, parallel: single, overwrite: overwrite)
            }
        }
    }

    /// One chunk of samples of `backwardWeight`: im2col and gather dY, then the transposed weight gradient
    /// product into the part's private accumulator.
    private struct BackwardWeightChunk: ConvolutionChunk {
        let engine: ConvolutionEngine, plan: Im2ColPlan
        let image: UnsafePointer<Float>, col: UnsafePointer<Float>, workspace: UnsafeMutablePointer<Float>, single: Bool

        @inline(__always) func callAsFunction(_ part: Int, _ n0: Int, _ nb: Int) {
            let e = engine, kk = e.cg * e.kernelCount
            let ld = nb * e.colCount
            let cols = workspace + part * e.slice, dys = cols + kk * ld
            let target = cols + (kk + e.mg) * e.chunk * e.colCount
            let beta: Float = n0 == part * e.chunk ? 0 : 1
            for g in 0..<e.group {
                plan.im2col(samples: nb, image + n0 * e.channels * e.imageCount + g * e.cg * e.imageCount,
                            imageStride: e.channels * e.imageCount, cols, ld: ld, parallel: single)
                if nb > 1 && e.colCount % 8 == 0 && kk * e.mg * ld <= Gemm.smallDotProduct {
                    // The product runs in Swift's dot-product tiles, which can read each sample's dY rows in
                    // place: the same sums as over gathered rows, without the copy.
                    Gemm.segmentedNT(m: kk, n: e.mg, segments: nb, length: e.colCount, a: cols, lda: ld,
                                     aSegment: e.colCount, b: col + n0 * e.outmaps * e.colCount + g * e.mg * e.colCount,
                                     ldb: e.colCount, bSegment: e.outmaps * e.colCount, beta: beta,
                                     c: target + g * kk * e.mg, ldc: e.mg)
                    continue
                }
                let rows = e.rows(col, n0: n0, nb: nb, g: g, scratch: dys, ld: ld)
                Gemm.sgemm(transB: true, m: kk, n: e.mg, k: ld, a: cols, lda: ld, b: rows, ldb: ld,
                           beta: beta, c: target + g * kk * e.mg, ldc: e.mg)
            }
        }
    }

    /// Samples of a chunk: enough for `targetColumns`, but never more than half the batch, so that two threads
    /// always have a chunk each (ResNet-18's 2x2 planes at batch 64 had made one chunk of the whole batch, which
    /// ran on one thread: its last stage took the same time on 2 threads as on 1). The rule does not read the
    /// thread count, so the chunks are the same for any; the weight gradient's sums still round by how many
    /// threads share the chunks (`backwardWeight`).
    static func chunk(_ g: ConvGeometry) -> Int {
        let cols = max(g.col.reduce(1, *), 1)
        return max(1, min((g.batch + 1) / 2, (targetColumns + cols - 1) / cols))
    }

    /// Workspace: the columns of one chunk of samples and one group, plus one group's output rows for the
    /// chunk (the product's result before it is scattered into the sample-major output).
    package static func workspaceBytes(_ g: ConvGeometry) -> Int {
        if let depthwise = DepthwiseConvolution(g) { return depthwise.workspaceFloats * 4 }
        let columns = g.isPointwise ? 0 : sliceFloats(g) * parts(g) * 4
        // Products without a direct kernel still take the im2col route.
        let forward = DirectConvolution(g)
        let weight = forward.map { $0.takesWeightGradient ? $0.weightGradientFloats : 0 } ?? 0
        let direct = max(forward?.workspaceFloats ?? 0, weight,
                         DirectConvolution(dataGradientOf: g)?.workspaceFloats ?? 0)
        return max(columns, direct * 4)
    }

    /// The padded planes the direct kernel reads `g`'s input from, when it runs `g`'s forward product and could
    /// take that input already padded (stride 1, where it reads planes as they are, and some padding); nil otherwise.
    package static func paddedInputPlanes(_ g: ConvGeometry) -> PaddedPlanes? {
        guard DepthwiseConvolution(g) == nil, let d = DirectConvolution(g), g.stride.allSatisfy({ $0 == 1 }),
              g.pad.contains(where: { $0 > 0 }) else { return nil }
        return d.inputPlanes
    }

    /// Whether the direct kernel runs `g`'s forward product, whose epilogue can write padded planes.
    package static func runsDirectForward(_ g: ConvGeometry) -> Bool {
        DepthwiseConvolution(g) == nil && DirectConvolution(g) != nil
    }

    /// Bytes of the forward workspace when the input comes in padded planes (`paddedInputPlanes`).
    package static func paddedInputWorkspaceBytes(_ g: ConvGeometry) -> Int {
        (DirectConvolution(g)?.paddedInputWorkspaceFloats ?? 0) * 4
    }

    /// `col = W * im2col(image) + bias` (or `+=` when accumulating), then the epilogue if one is given.
    /// `paddedInput` and `outputPlanes` (only where `runsDirectForward`): the image is in the direct kernel's
    /// padded planes, and the epilogue writes padded planes.
    package func forward(image: UnsafePointer<Float>, weight: UnsafePointer<Float>, col: UnsafeMutablePointer<Float>,
                 bias: UnsafePointer<Float>?, accumulate: Bool, workspace: UnsafeMutablePointer<Float>?,
                 epilogue: ConvEpilogue? = nil, paddedInput: Bool = false, outputPlanes: PaddedPlanes? = nil) {
        if let depthwise, let workspace {
            depthwise.forward(image: image, weight: weight, col: col, bias: bias, accumulate: accumulate,
                              workspace: workspace, epilogue: epilogue)
            return
        }
        if let direct, let workspace {
            direct.forward(image: image, weight: weight, col: col, bias: bias, accumulate: accumulate,
                           workspace: workspace, epilogue: epilogue, paddedInput: paddedInput, outputPlanes: outputPlanes)
            return
        }
        guard let plan, let workspace else {
            pointwiseForward(image: image, weight: weight, col: col, bias: bias, accumulate: accumulate, epilogue: epilogue)
            return
        }
        let p = activeParts
        let single = p == 1
        forEachChunk(parts: p, ForwardChunk(engine: self, plan: plan, image: image, weight: weight, col: col, bias: bias,
                                            accumulate: accumulate, workspace: workspace, epilogue: epilogue, single: single))
    }

    /// Columns of one product of the pointwise forward: its output block (every map of that many columns) stays
    /// in cache while the bias and epilogue pass over it, instead of a second and third pass over memory.
    static func pointwiseBlock(outmaps: Int) -> Int { max(256, (65536 / max(outmaps, 1)) / 64 * 64) }

    /// The 1x1 / stride 1 / unpadded forward: per sample and block of columns, the product straight into the
    /// output, then `+ b` and the epilogue (or, accumulating, the product added with `+ b`) while the block is hot.
    /// The (sample, block) tasks are shared between the threads; each makes the same calls on any thread, so the
    /// values are the same for any number of threads.
    private func pointwiseForward(image: UnsafePointer<Float>, weight: UnsafePointer<Float>, col: UnsafeMutablePointer<Float>,
                                  bias: UnsafePointer<Float>?, accumulate: Bool, epilogue: ConvEpilogue?) {
        let block = ConvolutionEngine.pointwiseBlock(outmaps: outmaps)
        let blocks = (colCount + block - 1) / block
        Threads.items(batch * blocks, workPerItem: outmaps * min(block, colCount) * max(cg, 1),
                      PointwiseTask(engine: self, block: block, blocks: blocks, image: image, weight: weight, col: col,
                                    bias: bias, accumulate: accumulate, epilogue: epilogue))
    }

    /// One sample's block of columns of `pointwiseForward`.
    private struct PointwiseTask: ParallelItem {
        let engine: ConvolutionEngine, block: Int, blocks: Int
        let image: UnsafePointer<Float>, weight: UnsafePointer<Float>, col: UnsafeMutablePointer<Float>
        let bias: UnsafePointer<Float>?, accumulate: Bool, epilogue: ConvEpilogue?

        func callAsFunction(_ item: Int) {
            let e = engine, n = item / blocks, j0 = (item % blocks) * block
            let nb = min(block, e.colCount - j0)
            let xn = image + n * e.channels * e.imageCount
            let yn = col + n * e.outmaps * e.colCount
            for g in 0..<e.group {
                Gemm.sgemm(m: e.mg, n: nb, k: e.cg, a: weight + g * e.mg * e.cg, lda: e.cg, b: xn + g * e.cg * e.imageCount + j0,
                           ldb: e.imageCount, beta: accumulate ? 1 : 0, c: yn + g * e.mg * e.colCount + j0, ldc: e.colCount)
            }
            guard bias != nil || epilogue != nil else { return }
            for m in 0..<e.outmaps {
                let offset = (n * e.outmaps + m) * e.colCount + j0
                let b = bias.map { $0[m] } ?? 0
                if let epilogue {
                    epilogue.apply(map: m, col + offset, col + offset, plus: b, nb, offset: offset)
                } else {
                    ShortRows.add(col + offset, plus: b, nb)
                }
            }
        }
    }

    /// One group's rows of `nb` samples of a sample-major `[batch, outmaps, colCount]` tensor as an
    /// `[mg, nb*colCount]` matrix with leading dimension `ld`: read in place for one sample (already that
    /// layout), else gathered into `scratch`.
    private func rows(_ t: UnsafePointer<Float>, n0: Int, nb: Int, g: Int, scratch dst: UnsafeMutablePointer<Float>,
                      ld: Int) -> UnsafePointer<Float> {
        if nb == 1 { return t + n0 * outmaps * colCount + g * mg * colCount }
        for i in 0..<(nb * mg) {
            let s = i / mg, m = i - s * mg
            let src = t + (n0 + s) * outmaps * colCount + (g * mg + m) * colCount, d = dst + m * ld + s * colCount
            ShortRows.copy(d, src, colCount)
        }
        return UnsafePointer(dst)
    }

    /// `image = col2im(W^T * col) + bias` (or `+=` when accumulating).
    package func backwardData(col: UnsafePointer<Float>, weight: UnsafePointer<Float>, image: UnsafeMutablePointer<Float>,
                      bias: UnsafePointer<Float>?, accumulate: Bool, workspace: UnsafeMutablePointer<Float>?) {
        let kk = cg * kernelCount
        if let depthwise, let workspace {
            depthwise.backwardData(col: col, weight: weight, image: image, bias: bias, accumulate: accumulate, workspace: workspace)
            return
        }
        if let directData, let workspace {
            directData.forward(image: col, weight: weight, col: image, bias: bias, accumulate: accumulate, workspace: workspace,
                               epilogue: nil)
            return
        }
        if let stridedPointwise, bias == nil {
            stridedPointwise.run(dy: col, weight: weight, image: image, accumulate: accumulate)
            return
        }
        guard let plan, let workspace else {
            for n in 0..<batch {
                let dyn = col + n * outmaps * colCount, dxn = image + n * channels * imageCount
                if let bias { fillChannels(dxn, bias, accumulate: accumulate) }
                let beta: Float = (accumulate || bias != nil) ? 1 : 0
                for g in 0..<group {
                    Gemm.sgemm(transA: true, m: cg, n: colCount, k: mg, a: weight + g * mg * kk, b: dyn + g * mg * colCount,
                               beta: beta, c: dxn + g * cg * imageCount)
                }
            }
            return
        }
        // Without a bias or an accumulation, col2im by phases sets every pixel itself: no zero pass first.
        let overwrite = bias == nil && !accumulate && plan.col2imByPhases
        for n in 0..<batch where !overwrite {
            let dxn = image + n * channels * imageCount
            if let bias { fillChannels(dxn, bias, accumulate: accumulate) }
            else if !accumulate { dxn.update(repeating: 0, count: channels * imageCount) }
        }
        let p = activeParts
        let single = p == 1
        forEachChunk(parts: p, BackwardDataChunk(engine: self, plan: plan, col: col, weight: weight, image: image, workspace: workspace,
                                                 single: single, overwrite: overwrite))
    }

    private func fillChannels(_ dxn: UnsafeMutablePointer<Float>, _ bias: UnsafePointer<Float>, accumulate: Bool) {
        for c in 0..<channels {
            let row = dxn + c * imageCount
            let v = bias[c]
            if accumulate { for i in 0..<imageCount { row[i] += v } } else { row.update(repeating: v, count: imageCount) }
        }
    }

    /// `dW (+)= sum_n col_n * im2col(image_n)^T`.
    package func backwardWeight(image: UnsafePointer<Float>, col: UnsafePointer<Float>, weightGrad: UnsafeMutablePointer<Float>,
                        accumulate: Bool, workspace: UnsafeMutablePointer<Float>?) {
        let kk = cg * kernelCount
        if batch == 0 {
            if !accumulate { weightGrad.update(repeating: 0, count: outmaps * kk) }
            return
        }
        if let depthwise, let workspace {
            depthwise.backwardWeight(image: image, col: col, weightGrad: weightGrad, accumulate: accumulate, workspace: workspace)
            return
        }
        if let direct, direct.takesWeightGradient, let workspace {
            direct.backwardWeight(image: image, col: col, weightGrad: weightGrad, accumulate: accumulate, workspace: workspace)
            return
        }
        guard let plan, let workspace else {
            for n in 0..<batch {
                let xn = image + n * channels * imageCount, dyn = col + n * outmaps * colCount
                let beta: Float = (n > 0 || accumulate) ? 1 : 0
                for g in 0..<group {
                    Gemm.sgemm(transB: true, m: mg, n: kk, k: colCount, a: dyn + g * mg * colCount, b: xn + g * cg * imageCount,
                               beta: beta, c: weightGrad + g * mg * kk)
                }
            }
            return
        }
        // Each thread accumulates dW^T = cols * dY^T (kk x mg per group) privately; the sum over threads is
        // transposed into dW at the end. The transposed product is the faster one: with few output maps,
        // sgemm runs dY * cols^T (M = mg) at half the speed of cols * dY^T (M = kk) on the zoo's shapes.
        let p = activeParts
        let single = p == 1
        forEachChunkInParts(parts: p, BackwardWeightChunk(engine: self, plan: plan, image: image, col: col, workspace: workspace, single: single))
        let ran = min(p, (batch + chunk - 1) / chunk)
        let blocks = (mg + TransposedSum.rows - 1) / TransposedSum.rows
        Threads.items(group * blocks, workPerItem: TransposedSum.rows * kk * ran,
                      TransposedSum(weightGrad: weightGrad, sums: workspace + (kk + mg) * chunk * colCount, slice: slice,
                                    parts: ran, kk: kk, mg: mg, blocks: blocks, accumulate: accumulate))
    }

    /// The parts' transposed sums (`kk x mg` per group, part by part) added into dW (`mg x kk`), `rows` maps at a
    /// time and 64 taps a tile, so that reads and writes both run along cache lines (a loop over whole rows had
    /// read each element from its own line: about 10 ms a layer for ResNet-18's 512 x 4608 weights, on one thread).
    /// Each element's sum keeps its order: dW's old value or 0, then part 0, part 1, ...
    private struct TransposedSum: ParallelItem {
        static let rows = 16
        let weightGrad: UnsafeMutablePointer<Float>, sums: UnsafeMutablePointer<Float>
        let slice: Int, parts: Int, kk: Int, mg: Int, blocks: Int, accumulate: Bool

        func callAsFunction(_ item: Int) {
            let g = item / blocks, m0 = (item % blocks) * Self.rows, m1 = min(mg, m0 + Self.rows)
            var r0 = 0
            while r0 < kk {
                let r1 = min(kk, r0 + 64)
                for m in m0..<m1 {
                    let row = weightGrad + (g * mg + m) * kk
                    for r in r0..<r1 {
                        var v: Float = accumulate ? row[r] : 0
                        for part in 0..<parts { v += sums[part * slice + (g * kk + r) * mg + m] }
                        row[r] = v
                    }
                }
                r0 = r1
            }
        }
    }

    /// `forward` (no bias) and `backwardWeight` over the same image (deconvolution's backward: dx from
    /// W * im2col(dy), dW from x * im2col(dy)^T). The two outputs must be different buffers.
    package func forwardAndWeightGrad(image: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                              col: UnsafeMutablePointer<Float>, accumulate: Bool,
                              colValues: UnsafePointer<Float>, weightGrad: UnsafeMutablePointer<Float>,
                              accumulateWeight: Bool, workspace: UnsafeMutablePointer<Float>?) {
        forward(image: image, weight: weight, col: col, bias: nil, accumulate: accumulate, workspace: workspace)
        backwardWeight(image: image, col: colValues, weightGrad: weightGrad, accumulate: accumulateWeight, workspace: workspace)
    }

    /// `db[c] (+)= sum over samples and positions of t[n, c, :]` for `t` of shape `[batch, channels, count]`.
    /// Each row is summed in 8 lanes (position i in lane i mod 8, the rest after the last multiple of 8 in a ninth
    /// sum), the lanes then in order: a sum whose order does not depend on the machine, and vectorised (one scalar
    /// chain per row ran at a quarter of the speed).
    package static func channelSums(_ t: UnsafePointer<Float>, batch: Int, channels: Int, count: Int,
                            into db: UnsafeMutablePointer<Float>, accumulate: Bool) {
        typealias V = SIMD8<Float>
        if !accumulate { db.update(repeating: 0, count: channels) }
        let whole = count - count % 8
        for n in 0..<batch {
            for c in 0..<channels {
                let row = UnsafeRawPointer(t + (n * channels + c) * count)
                var lanes = V()
                var i = 0
                while i < whole {
                    lanes += row.loadUnaligned(fromByteOffset: i * 4, as: V.self)
                    i += 8
                }
                var rest: Float = 0
                while i < count {
                    rest += row.load(fromByteOffset: i * 4, as: Float.self)
                    i += 1
                }
                var s: Float = 0
                for l in 0..<8 { s += lanes[l] }
                db[c] += s + rest
            }
        }
    }
}

/// What a fused step does to each convolution output value on its way out (see `Fusion`): batch
/// normalisation with fixed statistics, `(v - mean) * scale + shift` per output map, then optionally the
/// value at the same place in `residual` (a tensor shaped like the output) is added, then optionally ReLU
/// or ReLU6. The arithmetic is exactly that of the separate BatchNormalization, Add2 and activation kernels,
/// so fusing changes no bit of the result.
package struct ConvEpilogue {
    /// The activation applied last, as its own kernel computes it.
    package enum Activation: Sendable {
        case none
        /// `max(v, 0)`.
        case relu
        /// `min(max(v, 0), 6)` (MobileNets').
        case relu6
    }

    let mean: UnsafePointer<Float>
    let scale: UnsafePointer<Float>
    let shift: UnsafePointer<Float>
    let residual: UnsafePointer<Float>?
    let activation: Activation
    /// Each finished output plane pooled into the output, which then has the pooled shape (only on the direct
    /// path: `ConvolutionEngine.poolsInEpilogue`), and the activation applied after the pooling.
    let pool: PlanePooling?
    let pooledActivation: Activation
    /// The residual is stored in padded planes (`PaddedPlanes`); nil: densely, shaped like the output.
    let residualPlanes: PaddedPlanes?

    /// The memberwise initializer, spelled out to be `package` (KilnGraph's fused convolution makes one).
    package init(mean: UnsafePointer<Float>, scale: UnsafePointer<Float>, shift: UnsafePointer<Float>,
                 residual: UnsafePointer<Float>?, activation: Activation, pool: PlanePooling? = nil,
                 pooledActivation: Activation = .none, residualPlanes: PaddedPlanes? = nil) {
        self.mean = mean
        self.scale = scale
        self.shift = shift
        self.residual = residual
        self.activation = activation
        self.pool = pool
        self.pooledActivation = pooledActivation
        self.residualPlanes = residual == nil ? nil : residualPlanes
    }

    /// The epilogue of output plane `plane` (sample-major: `n * maps + m`), a dense `rows x width` plane in `src`,
    /// into `col`, where the output or the residual is in padded planes: into padded planes with their border of
    /// zeros when `outputPlanes` is given (written whole: the arena's memory holds whatever it held), else densely;
    /// the residual read in its own layout. Row by row in C (a Swift loop per row measured 2.3 times the dense
    /// epilogue's time), on the AVX2 path or the generic one as the register tiles run: the same values as `apply`.
    @inline(__always)
    func applyPlane(map m: Int, plane: Int, _ src: UnsafePointer<Float>, plus b: Float, rows: Int, width: Int,
                    col: UnsafeMutablePointer<Float>, outputPlanes: PaddedPlanes?) {
        let dense = rows * width
        let r = residual.map { residual in
            residualPlanes.map { residual + plane * $0.planeFloats + $0.origin } ?? residual + plane * dense
        }
        let out = outputPlanes.map { col + plane * $0.planeFloats } ?? col + plane * dense
        kiln_conv_epilogue(src, rows, width, b, mean[m], scale[m], shift[m], r,
                           residualPlanes?.pitch ?? width, activation.code, out + (outputPlanes?.origin ?? 0),
                           outputPlanes?.pitch ?? width, outputPlanes.map { 2 * $0.left } ?? 0)
        if let o = outputPlanes { kiln_padded_border(out, o.height, o.width, o.top, o.left) }
    }

    /// `dst[j] = epilogue(src[j] + b)` for one output map's row; `offset` is the row's place in the output.
    /// Explicit 8-wide steps: `dst` may be `src` or the residual itself (each element is read before it is
    /// written), which makes the compiler's vectoriser fall back to scalar code.
    @inline(__always)
    func apply(map m: Int, _ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>, plus b: Float, _ n: Int,
               offset: Int) {
        typealias V = SIMD8<Float>
        let mu = mean[m], s = scale[m], t = shift[m]
        let bv = V(repeating: b), muv = V(repeating: mu), sv = V(repeating: s), tv = V(repeating: t)
        let r = residual.map { UnsafeRawPointer($0 + offset) }
        let from = UnsafeRawPointer(src), to = UnsafeMutableRawPointer(dst)
        var j = 0
        while j + 8 <= n {
            var v = (from.loadUnaligned(fromByteOffset: j * 4, as: V.self) + bv - muv) * sv + tv
            if let r { v = v + r.loadUnaligned(fromByteOffset: j * 4, as: V.self) }
            to.storeBytes(of: activation.clamp(v), toByteOffset: j * 4, as: V.self)
            j += 8
        }
        while j < n {
            var v = (src[j] + b - mu) * s + t
            if let residual { v = v + residual[offset + j] }
            dst[j] = activation.clamp(v)
            j += 1
        }
    }
}

extension ConvEpilogue.Activation {
    /// The C kernels' number for it.
    var code: Int32 {
        switch self {
        case .none: return 0
        case .relu: return 1
        case .relu6: return 2
        }
    }

    /// The activation of eight values: ReLU as Swift.max(v, 0), 0 where 0 >= v (so -0 and NaN behave the same);
    /// ReLU6 then as Swift.min(v, 6), 6 where 6 < v.
    @inline(__always)
    func clamp(_ v: SIMD8<Float>) -> SIMD8<Float> {
        guard self != .none else { return v }
        let zero = SIMD8<Float>(), six = SIMD8<Float>(repeating: 6)
        let low = v.replacing(with: zero, where: zero .>= v)
        return self == .relu6 ? low.replacing(with: six, where: six .< low) : low
    }

    /// The activation of one value, as `clamp` of eight.
    @inline(__always)
    func clamp(_ v: Float) -> Float {
        switch self {
        case .none: return v
        case .relu: return max(v, 0)
        case .relu6: return min(max(v, 0), 6)
        }
    }

    /// `p[j] = activation(p[j])` in place.
    @inline(__always)
    func apply(_ p: UnsafeMutablePointer<Float>, _ n: Int) {
        guard self != .none else { return }
        let raw = UnsafeMutableRawPointer(p)
        var j = 0
        while j + 8 <= n {
            raw.storeBytes(of: clamp(raw.loadUnaligned(fromByteOffset: j * 4, as: SIMD8<Float>.self)), toByteOffset: j * 4,
                           as: SIMD8<Float>.self)
            j += 8
        }
        while j < n {
            p[j] = clamp(p[j])
            j += 1
        }
    }
}

/// Sizes of one grouped N-D convolution in convolution terms (see `ConvolutionEngine`).
package struct ConvGeometry {
    var batch: Int
    var channels: Int
    var outmaps: Int
    var group: Int
    var image: [Int]
    var col: [Int]
    var kernel: [Int]
    var pad: [Int]
    var stride: [Int]
    var dilation: [Int]

    /// The memberwise initializer, spelled out to be `package` (KilnGraph's convolutions make one).
    package init(batch: Int, channels: Int, outmaps: Int, group: Int, image: [Int], col: [Int], kernel: [Int],
                 pad: [Int], stride: [Int], dilation: [Int]) {
        self.batch = batch
        self.channels = channels
        self.outmaps = outmaps
        self.group = group
        self.image = image
        self.col = col
        self.kernel = kernel
        self.pad = pad
        self.stride = stride
        self.dilation = dilation
    }

    package var isPointwise: Bool {
        kernel.allSatisfy { $0 == 1 } && stride.allSatisfy { $0 == 1 } && pad.allSatisfy { $0 == 0 }
    }
}

/// One chunk of samples of a convolution product: `(part, first sample, samples)`, `part` naming the
/// workspace slice to use.
protocol ConvolutionChunk {
    func callAsFunction(_ part: Int, _ n0: Int, _ nb: Int)
}
