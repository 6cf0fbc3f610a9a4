public extension Module {
    /// nnabla's parametric function class `Deconvolution` (aliases `Deconv1d`, `Deconv2d`, `Deconv3d`,
    /// `DeconvNd`): N-D transposed convolution, channels first, with an optional bias.
    ///
    /// W is `(inMaps, outMaps / group, *kernel)` and b `(outMaps,)`, as `PF.deconvolution` and as
    /// `F.deconvolution` requires. (nnabla 1.39's class creates W as `(outmaps, inmaps // group, *kernel)`, which
    /// `F.deconvolution` rejects unless inmaps == outmaps and group == 1; Kiln follows PF.) W ~ U(-d, d) with
    /// `d = sqrt(6 / (prod(kernel) * (inMaps + outMaps)))` is drawn first, then b (zeros), from `rng` or the
    /// global generator: the same numbers as `PF.deconvolution` from the same state.
    final class Deconvolution: ConvolutionLayer {
        /// Extra size added at the end of each spatial output dimension (nnabla's `output_padding`).
        public var outputPadding: [Int]?

        public init(inMaps: Int, outMaps: Int, kernel: [Int], pad: [Int]? = nil, stride: [Int]? = nil,
                    dilation: [Int]? = nil, group: Int = 1, wInit: Initializer? = nil, bInit: Initializer? = nil,
                    baseAxis: Int = 1, fixParameters: Bool = false, rng: NumpyRandom? = nil, withBias: Bool = true,
                    outputPadding: [Int]? = nil) throws {
            self.outputPadding = outputPadding
            try super.init("Deconvolution", inMaps: inMaps, outMaps: outMaps, kernel: kernel, pad: pad, stride: stride,
                           dilation: dilation, group: group, wInit: wInit, bInit: bInit, baseAxis: baseAxis,
                           fixParameters: fixParameters, rng: rng, withBias: withBias, transposed: true) {
                guard let outputPadding else { return }
                let s = stride ?? [Int](repeating: 1, count: kernel.count)
                try Module.require(outputPadding.count == kernel.count, "Deconvolution",
                                   "output_padding \(outputPadding) must have one entry per kernel dimension (kernel \(kernel))")
                try Module.require(zip(outputPadding, s).allSatisfy { $0 >= 0 && $0 < $1 }, "Deconvolution",
                                   "output_padding \(outputPadding) must be >= 0 and smaller than stride \(s)")
            }
        }

        public override func call(_ x: Variable) throws -> Variable {
            try checkInput("Deconvolution", x)
            return try F.deconvolution(x, W, b, baseAxis: baseAxis, pad: pad, stride: stride, dilation: dilation,
                                       group: group, outputPadding: outputPadding)
        }
    }

    typealias Deconv1d = Deconvolution
    typealias Deconv2d = Deconvolution
    typealias Deconv3d = Deconvolution
    typealias DeconvNd = Deconvolution
}
