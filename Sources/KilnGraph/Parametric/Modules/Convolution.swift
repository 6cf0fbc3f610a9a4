public extension Module {
    /// nnabla's parametric function class `Convolution` (aliases `Conv1d`, `Conv2d`, `Conv3d`, `ConvNd`): N-D
    /// convolution, channels first, with an optional bias.
    ///
    /// W is `(outMaps, inMaps / group, *kernel)` and b `(outMaps,)`, as `PF.convolution`. W ~ U(-d, d) with
    /// `d = sqrt(6 / (prod(kernel) * (inMaps + outMaps)))` (inMaps not divided by group) is drawn first, then b
    /// (zeros), from `rng` or the global generator: the same numbers as `PF.convolution` from the same state.
    final class Convolution: Module {
        public var W: Variable
        public var b: Variable?
        public let inMaps: Int
        public let outMaps: Int
        public let kernel: [Int]
        public var pad: [Int]?
        public var stride: [Int]?
        public var dilation: [Int]?
        public var group: Int
        public var baseAxis: Int

        public init(inMaps: Int, outMaps: Int, kernel: [Int], pad: [Int]? = nil, stride: [Int]? = nil,
                    dilation: [Int]? = nil, group: Int = 1, wInit: Initializer? = nil, bInit: Initializer? = nil,
                    baseAxis: Int = 1, fixParameters: Bool = false, rng: NumpyRandom? = nil, withBias: Bool = true) throws {
            try ConvolutionArguments.validate("Convolution", inMaps: inMaps, outMaps: outMaps, kernel: kernel, pad: pad,
                                              stride: stride, dilation: dilation, group: group, baseAxis: baseAxis)
            W = try Module.parameter("W", shape: [outMaps, inMaps / group] + kernel,
                                     initializer: wInit ?? .glorotUniform(inmaps: inMaps, outmaps: outMaps, kernel: kernel),
                                     needGrad: !fixParameters, rng: rng)
            b = withBias ? try Module.parameter("b", shape: [outMaps], initializer: bInit ?? .constant(0),
                                                needGrad: !fixParameters, rng: rng) : nil
            self.inMaps = inMaps
            self.outMaps = outMaps
            self.kernel = kernel
            self.pad = pad
            self.stride = stride
            self.dilation = dilation
            self.group = group
            self.baseAxis = baseAxis
            try super.init()
        }

        public override func call(_ x: Variable) throws -> Variable {
            try ConvolutionArguments.checkInput("Convolution", x, inMaps: inMaps, spatial: kernel.count, baseAxis: baseAxis)
            return try F.convolution(x, W, b, baseAxis: baseAxis, pad: pad, stride: stride, dilation: dilation, group: group)
        }
    }

    typealias Conv1d = Convolution
    typealias Conv2d = Convolution
    typealias Conv3d = Convolution
    typealias ConvNd = Convolution
}

/// Argument checks shared by `Convolution` and `Deconvolution`.
enum ConvolutionArguments {
    static func validate(_ module: String, inMaps: Int, outMaps: Int, kernel: [Int], pad: [Int]?, stride: [Int]?,
                         dilation: [Int]?, group: Int, baseAxis: Int) throws {
        try Module.require(inMaps > 0, module, "inmaps must be positive, got \(inMaps)")
        try Module.require(outMaps > 0, module, "outmaps must be positive, got \(outMaps)")
        try Module.require(!kernel.isEmpty && kernel.allSatisfy { $0 > 0 }, module,
                           "kernel must be a non-empty list of positive sizes, got \(kernel)")
        try Module.require(group > 0, module, "group must be positive, got \(group)")
        try Module.require(inMaps % group == 0, module, "group \(group) does not divide inmaps \(inMaps)")
        try Module.require(outMaps % group == 0, module, "group \(group) does not divide outmaps \(outMaps)")
        try Module.require(baseAxis >= 0, module, "base_axis must be >= 0, got \(baseAxis)")
        let checks: [(String, [Int]?, (Int) -> Bool)] = [("pad", pad, { $0 >= 0 }), ("stride", stride, { $0 > 0 }),
                                                          ("dilation", dilation, { $0 > 0 })]
        for (name, values, ok) in checks {
            guard let values else { continue }
            try Module.require(values.count == kernel.count, module,
                               "\(name) \(values) must have one entry per kernel dimension (kernel \(kernel))")
            try Module.require(values.allSatisfy(ok), module, "\(name) \(values) has an invalid entry")
        }
    }

    static func checkInput(_ module: String, _ x: Variable, inMaps: Int, spatial: Int, baseAxis: Int) throws {
        try Module.require(x.ndim == baseAxis + 1 + spatial, module,
                           "input \(x.shape) must have rank base_axis + 1 + \(spatial) = \(baseAxis + 1 + spatial) for a \(spatial)-D kernel")
        try Module.require(x.shape[baseAxis] == inMaps, module,
                           "input \(x.shape) has \(x.shape[baseAxis]) channels at base_axis \(baseAxis), the module was built for \(inMaps)")
    }
}
