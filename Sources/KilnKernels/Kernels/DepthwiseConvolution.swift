import CKilnKernels

/// Depthwise 2-D convolutions (one input channel per group: MobileNets' 3x3 layers) without im2col.
///
/// im2col would copy each input plane kernel-size times and then run one tiny matrix product per channel;
/// here each output map is computed straight from its zero-padded input plane by the C kernels of
/// `CKilnKernels/Depthwise.c`, planes spread over the threads. Every sum has a fixed order (see that file), so
/// the results are the same on every kernel path and for any number of threads.
///
/// In convolution terms (see `ConvolutionEngine`): `channels` input planes, `maps = channels * multiplier`
/// output maps, map `m` reading input channel `m / multiplier`.
struct DepthwiseConvolution {
    let shape: kiln_dw_shape
    let batch: Int
    let channels: Int
    let multiplier: Int
    let planeIn: Int
    let planeOut: Int
    /// Floats of one thread's scratch.
    let slice: Int
    /// Threads the workspace was sized for.
    let parts: Int

    /// The depthwise form of `g`, or nil when `g` is not a 2-D convolution with one input channel per group
    /// (and more than one group: a single-channel image is an ordinary convolution, left to the matrix
    /// products).
    init?(_ g: ConvGeometry) {
        guard g.image.count == 2, g.group == g.channels, g.group > 1, g.outmaps % g.group == 0, !g.isPointwise else {
            return nil
        }
        shape = kiln_dw_shape(h: g.image[0], w: g.image[1], oh: g.col[0], ow: g.col[1], kh: g.kernel[0], kw: g.kernel[1],
                              sh: g.stride[0], sw: g.stride[1], ph: g.pad[0], pw: g.pad[1], dh: g.dilation[0],
                              dw: g.dilation[1], path: -1)
        batch = g.batch
        channels = g.channels
        multiplier = g.outmaps / g.group
        planeIn = g.image[0] * g.image[1]
        planeOut = g.col[0] * g.col[1]
        var s = shape
        slice = kiln_dw_scratch_floats(&s)
        parts = max(1, min(Threads.count, g.batch * g.outmaps))
    }

    var workspaceFloats: Int { slice * parts }

    /// The shape with the kernel path read once, for every C call of one product: a path forced meanwhile (tests)
    /// cannot give planes that share a scratch two layouts of its zero border.
    var callShape: kiln_dw_shape {
        var s = shape
        s.path = Int(kiln_tiles_level())
        return s
    }
    var taps: Int { shape.kh * shape.kw }
    var maps: Int { channels * multiplier }

    /// `col = conv(image) + bias` (or `+=` when accumulating), then the epilogue if one is given.
    func forward(image: UnsafePointer<Float>, weight: UnsafePointer<Float>, col: UnsafeMutablePointer<Float>,
                 bias: UnsafePointer<Float>?, accumulate: Bool, workspace: UnsafeMutablePointer<Float>,
                 epilogue: ConvEpilogue?) {
        let planes = batch * maps, p = min(parts, Threads.count)
        // Planes go to the threads in runs, each run writing its scratch's zero border once.
        let run = max(1, planes / (p * 8))
        Threads.claims((planes + run - 1) / run, threads: p,
                       Forward(d: self, shape: callShape, image: image, weight: weight, col: col, bias: bias,
                               accumulate: accumulate, workspace: workspace, epilogue: epilogue, run: run, planes: planes))
    }

    private struct Forward: ParallelSlotPart {
        let d: DepthwiseConvolution
        /// `d.shape` with this product's path (`callShape`).
        let shape: kiln_dw_shape
        let image: UnsafePointer<Float>, weight: UnsafePointer<Float>, col: UnsafeMutablePointer<Float>
        let bias: UnsafePointer<Float>?, accumulate: Bool, workspace: UnsafeMutablePointer<Float>
        let epilogue: ConvEpilogue?
        let run: Int, planes: Int

        func callAsFunction(_ part: Int, slot: Int) {
            for plane in (part * run)..<min(planes, (part + 1) * run) { compute(plane, slot: slot, fresh: plane == part * run) }
        }

        func compute(_ plane: Int, slot: Int, fresh: Bool) {
            let n = plane / d.maps, m = plane % d.maps, c = m / d.multiplier
            let scratch = workspace + slot * d.slice
            let offset = plane * d.planeOut
            let dst = col + offset
            // The product goes to the scratch's output plane first where the output must be read after it is
            // computed: when accumulating, or when the epilogue reads a residual that may share the output's memory.
            let staged = accumulate || epilogue?.residual != nil
            let target = staged ? scratch + (d.slice - d.taps * 33 - d.planeOut) : dst
            var s = shape
            kiln_dw_forward(&s, image + (n * d.channels + c) * d.planeIn, weight + m * d.taps, target, scratch, fresh ? 1 : 0)
            let b = bias.map { $0[m] } ?? 0
            if let epilogue {
                epilogue.apply(map: m, target, dst, plus: b, d.planeOut, offset: offset)
            } else if accumulate {
                ShortRows.add(dst, target, plus: b, d.planeOut)
            } else if bias != nil {
                ShortRows.add(dst, plus: b, d.planeOut)
            }
        }
    }

    /// `image (+)= the data gradient of col (+ bias per channel)`.
    func backwardData(col: UnsafePointer<Float>, weight: UnsafePointer<Float>, image: UnsafeMutablePointer<Float>,
                      bias: UnsafePointer<Float>?, accumulate: Bool, workspace: UnsafeMutablePointer<Float>) {
        Threads.claims(batch * channels, threads: min(parts, Threads.count),
                       BackwardData(d: self, col: col, weight: weight, image: image, bias: bias, accumulate: accumulate,
                                    workspace: workspace))
    }

    private struct BackwardData: ParallelSlotPart {
        let d: DepthwiseConvolution
        let col: UnsafePointer<Float>, weight: UnsafePointer<Float>, image: UnsafeMutablePointer<Float>
        let bias: UnsafePointer<Float>?, accumulate: Bool, workspace: UnsafeMutablePointer<Float>

        func callAsFunction(_ plane: Int, slot: Int) {
            let n = plane / d.channels, c = plane % d.channels
            var s = d.shape
            let firstMap = c * d.multiplier
            kiln_dw_backward_data(&s, col + (n * d.maps + firstMap) * d.planeOut, d.planeOut, weight + firstMap * d.taps,
                                  d.multiplier, image + plane * d.planeIn, bias.map { $0[c] } ?? 0, accumulate ? 1 : 0,
                                  workspace + slot * d.slice)
        }
    }

    /// `dW (+)= the weight gradient summed over samples`; each output map's sums are one thread's, in sample order.
    func backwardWeight(image: UnsafePointer<Float>, col: UnsafePointer<Float>, weightGrad: UnsafeMutablePointer<Float>,
                        accumulate: Bool, workspace: UnsafeMutablePointer<Float>) {
        Threads.claims(maps, threads: min(parts, Threads.count),
                       BackwardWeight(d: self, image: image, col: col, weightGrad: weightGrad, accumulate: accumulate,
                                      workspace: workspace))
    }

    private struct BackwardWeight: ParallelSlotPart {
        let d: DepthwiseConvolution
        let image: UnsafePointer<Float>, col: UnsafePointer<Float>, weightGrad: UnsafeMutablePointer<Float>
        let accumulate: Bool, workspace: UnsafeMutablePointer<Float>

        func callAsFunction(_ m: Int, slot: Int) {
            var s = d.shape
            let scratch = workspace + slot * d.slice
            let acc = scratch + (d.slice - d.taps * 33)
            let c = m / d.multiplier
            kiln_dw_weight_begin(&s, acc)
            for n in 0..<d.batch {
                kiln_dw_weight_add(&s, image + (n * d.channels + c) * d.planeIn, col + (n * d.maps + m) * d.planeOut, acc,
                                   scratch, n == 0 ? 1 : 0)
            }
            kiln_dw_weight_finish(&s, acc, weightGrad + m * d.taps, accumulate ? 1 : 0)
        }
    }
}
