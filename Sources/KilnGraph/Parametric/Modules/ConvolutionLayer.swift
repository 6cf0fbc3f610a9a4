import KilnCore
import KilnKernels

public extension Module {
    /// The shared core of the `Convolution` and `Deconvolution` modules: the same arguments, the same checks
    /// and the same parameters, W drawn first and then b. They differ only in W's layout and Glorot fan
    /// (`transposed`: a deconvolution's W is `(inMaps, outMaps / group, *kernel)`), in Deconvolution's output
    /// padding and in the function they call.
    class ConvolutionLayer: Module {
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

        /// Checks the arguments (`moreChecks` after the shared ones, before any parameter is drawn), then
        /// draws W and b as `PF.convolution` or `PF.deconvolution` does.
        init(_ module: String, inMaps: Int, outMaps: Int, kernel: [Int], pad: [Int]?, stride: [Int]?, dilation: [Int]?,
             group: Int, wInit: Initializer?, bInit: Initializer?, baseAxis: Int, fixParameters: Bool,
             rng: NumpyRandom?, withBias: Bool, transposed: Bool, moreChecks: () throws -> Void = {}) throws {
            try ConvolutionLayer.validate(module, inMaps: inMaps, outMaps: outMaps, kernel: kernel, pad: pad,
                                          stride: stride, dilation: dilation, group: group, baseAxis: baseAxis)
            try moreChecks()
            let shape = transposed ? [inMaps, outMaps / group] + kernel : [outMaps, inMaps / group] + kernel
            let (fanIn, fanOut) = transposed ? (outMaps, inMaps) : (inMaps, outMaps)
            W = try Module.parameter("W", shape: shape,
                                     initializer: wInit ?? .glorotUniform(inmaps: fanIn, outmaps: fanOut, kernel: kernel),
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

        /// Checks that `x` has the rank and channels this layer was built for (errors name `module`).
        func checkInput(_ module: String, _ x: Variable) throws {
            let spatial = kernel.count
            try Module.require(x.ndim == baseAxis + 1 + spatial, module,
                               "input \(x.shape) must have rank base_axis + 1 + \(spatial) = \(baseAxis + 1 + spatial) for a \(spatial)-D kernel")
            try Module.require(x.shape[baseAxis] == inMaps, module,
                               "input \(x.shape) has \(x.shape[baseAxis]) channels at base_axis \(baseAxis), the module was built for \(inMaps)")
        }
    }
}
