public extension Module {
    /// nnabla's parametric function class `Convolution` (aliases `Conv1d`, `Conv2d`, `Conv3d`, `ConvNd`): N-D
    /// convolution, channels first, with an optional bias.
    ///
    /// W is `(outMaps, inMaps / group, *kernel)` and b `(outMaps,)`, as `PF.convolution`. W ~ U(-d, d) with
    /// `d = sqrt(6 / (prod(kernel) * (inMaps + outMaps)))` (inMaps not divided by group) is drawn first, then b
    /// (zeros), from `rng` or the global generator: the same numbers as `PF.convolution` from the same state.
    final class Convolution: ConvolutionLayer {
        public init(inMaps: Int, outMaps: Int, kernel: [Int], pad: [Int]? = nil, stride: [Int]? = nil,
                    dilation: [Int]? = nil, group: Int = 1, wInit: Initializer? = nil, bInit: Initializer? = nil,
                    baseAxis: Int = 1, fixParameters: Bool = false, rng: NumpyRandom? = nil, withBias: Bool = true) throws {
            try super.init("Convolution", inMaps: inMaps, outMaps: outMaps, kernel: kernel, pad: pad, stride: stride,
                           dilation: dilation, group: group, wInit: wInit, bInit: bInit, baseAxis: baseAxis,
                           fixParameters: fixParameters, rng: rng, withBias: withBias, transposed: false)
        }

        public override func call(_ x: Variable) throws -> Variable {
            try checkInput("Convolution", x)
            return try F.convolution(x, W, b, baseAxis: baseAxis, pad: pad, stride: stride, dilation: dilation, group: group)
        }
    }

    typealias Conv1d = Convolution
    typealias Conv2d = Convolution
    typealias Conv3d = Convolution
    typealias ConvNd = Convolution
}
