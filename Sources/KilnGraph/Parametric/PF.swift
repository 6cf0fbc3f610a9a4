import KilnCore

/// nnabla's parametric functions (`nnabla.parametric_functions`): each creates or reuses its parameters in
/// the current scope (under `name`, then its default scope such as "conv") and applies the function.
public enum PF {
    static func scoped<T>(_ name: String?, _ defaultScope: String, _ body: () throws -> T) rethrows -> T {
        if let name { return try Parameters.scope(name) { try Parameters.scope(defaultScope, body) } }
        return try Parameters.scope(defaultScope, body)
    }

    static func make(_ type: String, _ args: [String: ArgValue]) throws -> any Function {
        try FunctionRegistry.make(type: type, arguments: args)
    }

    /// W (inmaps, *outMaps) and b (*outMaps) of an affine layer in the current scope.
    static func affineParameters(inmaps: Int, outMaps: [Int], wInit: Initializer?, bInit: Initializer?,
                                 fixParameters: Bool, rng: NumpyRandom?, withBias: Bool) throws -> (Variable, Variable?) {
        let w = try Parameters.getOrCreate("W", shape: [inmaps] + outMaps,
                                           initializer: wInit ?? .glorotUniform(inmaps: inmaps, outmaps: outMaps.reduce(1, *)),
                                           needGrad: !fixParameters, rng: rng)
        let b = withBias ? try Parameters.getOrCreate("b", shape: outMaps, initializer: bInit ?? .constant(0),
                                                      needGrad: !fixParameters, rng: rng) : nil
        return (w, b)
    }

    /// W and b of a convolution (`deconvolution` false: (outMaps, inmaps/group, *k)) or a deconvolution
    /// ((inmaps, outMaps/group, *k)) in the current scope; the Glorot range is symmetric in in/out maps.
    static func convolutionParameters(inmaps: Int, outMaps: Int, kernel: [Int], group: Int, deconvolution: Bool,
                                      wInit: Initializer?, bInit: Initializer?, fixParameters: Bool, rng: NumpyRandom?,
                                      withBias: Bool) throws -> (Variable, Variable?) {
        let shape = deconvolution ? [inmaps, outMaps / group] + kernel : [outMaps, inmaps / group] + kernel
        let w = try Parameters.getOrCreate("W", shape: shape,
                                           initializer: wInit ?? .glorotUniform(inmaps: inmaps, outmaps: outMaps, kernel: kernel),
                                           needGrad: !fixParameters, rng: rng)
        let b = withBias ? try Parameters.getOrCreate("b", shape: [outMaps], initializer: bInit ?? .constant(0),
                                                      needGrad: !fixParameters, rng: rng) : nil
        return (w, b)
    }

    /// `PF.affine`: W (prod(inp.shape[baseAxis:]), *nOutmaps), b (*nOutmaps).
    public static func affine(_ x: Variable, outMaps: [Int], baseAxis: Int = 1, wInit: Initializer? = nil,
                              bInit: Initializer? = nil, fixParameters: Bool = false, rng: NumpyRandom? = nil,
                              withBias: Bool = true, name: String? = nil) throws -> Variable {
        guard baseAxis >= 0 && baseAxis <= x.ndim else {
            throw KilnError.invalidFunction(function: "PF.affine", reason: "base_axis \(baseAxis) is out of range for input \(x.shape)")
        }
        let inmaps = Shapes.product(x.shape, baseAxis..<x.ndim)
        return try scoped(name, "affine") {
            let (w, b) = try affineParameters(inmaps: inmaps, outMaps: outMaps, wInit: wInit, bInit: bInit,
                                              fixParameters: fixParameters, rng: rng, withBias: withBias)
            return try apply1(make("Affine", ["base_axis": .int(baseAxis)]), [x, w] + (b.map { [$0] } ?? []))
        }
    }

    public static func affine(_ x: Variable, outMaps: Int, baseAxis: Int = 1, wInit: Initializer? = nil,
                              bInit: Initializer? = nil, fixParameters: Bool = false, rng: NumpyRandom? = nil,
                              withBias: Bool = true, name: String? = nil) throws -> Variable {
        try affine(x, outMaps: [outMaps], baseAxis: baseAxis, wInit: wInit, bInit: bInit,
                   fixParameters: fixParameters, rng: rng, withBias: withBias, name: name)
    }

    /// Convolution-like layers need a channel axis inside the input, and their grouped maps (the input
    /// channels of a convolution, the `outMaps` of a deconvolution) divisible into `group` groups.
    static func checkGroups(_ x: Variable, baseAxis: Int, group: Int, outMaps: Int? = nil, _ function: String) throws {
        let inside = baseAxis >= 0 && baseAxis < x.ndim
        let split = outMaps ?? (inside ? x.shape[baseAxis] : 0)
        guard inside, group > 0, split % group == 0 else {
            throw KilnError.invalidFunction(function: function,
                                            reason: "input \(x.shape) with base_axis \(baseAxis): \(split) maps cannot be split into \(group) group(s)")
        }
    }

    static func convArgs(_ kernel: [Int], baseAxis: Int, pad: [Int]?, stride: [Int]?, dilation: [Int]?, group: Int)
        -> [String: ArgValue] {
        let k = kernel.count
        return ["base_axis": .int(baseAxis), "pad": .ints(pad ?? [Int](repeating: 0, count: k)),
                "stride": .ints(stride ?? [Int](repeating: 1, count: k)),
                "dilation": .ints(dilation ?? [Int](repeating: 1, count: k)), "group": .int(group)]
    }

    /// `PF.convolution`: W (outMaps, inmaps/group, *kernel), b (outMaps).
    public static func convolution(_ x: Variable, outMaps: Int, kernel: [Int], pad: [Int]? = nil,
                                   stride: [Int]? = nil, dilation: [Int]? = nil, group: Int = 1,
                                   wInit: Initializer? = nil, bInit: Initializer? = nil, baseAxis: Int = 1,
                                   fixParameters: Bool = false, rng: NumpyRandom? = nil, withBias: Bool = true,
                                   name: String? = nil) throws -> Variable {
        try checkGroups(x, baseAxis: baseAxis, group: group, "PF.convolution")
        return try scoped(name, "conv") {
            let (w, b) = try convolutionParameters(inmaps: x.shape[baseAxis], outMaps: outMaps, kernel: kernel, group: group,
                                                   deconvolution: false, wInit: wInit, bInit: bInit,
                                                   fixParameters: fixParameters, rng: rng, withBias: withBias)
            return try apply1(make("Convolution", convArgs(kernel, baseAxis: baseAxis, pad: pad, stride: stride,
                                                           dilation: dilation, group: group)), [x, w] + (b.map { [$0] } ?? []))
        }
    }

    /// `PF.deconvolution`: W (inmaps, outMaps/group, *kernel), b (outMaps).
    public static func deconvolution(_ x: Variable, outMaps: Int, kernel: [Int], pad: [Int]? = nil,
                                     stride: [Int]? = nil, dilation: [Int]? = nil, group: Int = 1,
                                     outputPadding: [Int]? = nil, wInit: Initializer? = nil,
                                     bInit: Initializer? = nil, baseAxis: Int = 1, fixParameters: Bool = false,
                                     rng: NumpyRandom? = nil, withBias: Bool = true,
                                     name: String? = nil) throws -> Variable {
        try checkGroups(x, baseAxis: baseAxis, group: group, outMaps: outMaps, "PF.deconvolution")
        return try scoped(name, "deconv") {
            let (w, b) = try convolutionParameters(inmaps: x.shape[baseAxis], outMaps: outMaps, kernel: kernel, group: group,
                                                   deconvolution: true, wInit: wInit, bInit: bInit,
                                                   fixParameters: fixParameters, rng: rng, withBias: withBias)
            let inputs = [x, w] + (b.map { [$0] } ?? [])
            var args = convArgs(kernel, baseAxis: baseAxis, pad: pad, stride: stride, dilation: dilation, group: group)
            args["output_padding"] = .ints(outputPadding ?? [Int](repeating: 0, count: kernel.count))
            return try apply1(make("Deconvolution", args), inputs)
        }
    }

    /// `PF.batch_normalization`: beta 0, gamma 1, mean 0, var 1, each shaped like the input with 1 outside
    /// `axes`; mean and var never need a gradient. `noScale` / `noBias` leave gamma / beta out (a constant 1
    /// and 0, as nnabla's `None`). This is the form without `outputStat`: one output.
    public static func batchNormalization(_ x: Variable, axes: [Int] = [1], decayRate: Double = 0.9,
                                          eps: Double = 1e-5, batchStat: Bool = true,
                                          fixParameters: Bool = false, paramInit: [String: Initializer] = [:],
                                          noScale: Bool = false, noBias: Bool = false,
                                          name: String? = nil) throws -> Variable {
        try batchNormalization(x, axes: axes, decayRate: decayRate, eps: eps, batchStat: batchStat, outputStat: false,
                               fixParameters: fixParameters, paramInit: paramInit, noScale: noScale, noBias: noBias,
                               name: name)[0]
    }

    /// `PF.batch_normalization` with nnabla's `output_stat`: `[y]`, or with `outputStat: true` `[y, mean, var]`
    /// of the batch. Naming `outputStat` is what selects this form, so `PF.batchNormalization(x)` is never
    /// ambiguous.
    public static func batchNormalization(_ x: Variable, axes: [Int] = [1], decayRate: Double = 0.9,
                                          eps: Double = 1e-5, batchStat: Bool = true, outputStat: Bool,
                                          fixParameters: Bool = false, paramInit: [String: Initializer] = [:],
                                          noScale: Bool = false, noBias: Bool = false,
                                          name: String? = nil) throws -> [Variable] {
        for a in axes where a < 0 || a >= x.ndim {
            throw KilnError.invalidFunction(function: "PF.batch_normalization", reason: "axis \(a) is out of range for input \(x.shape)")
        }
        let shape = x.shape.indices.map { axes.contains($0) ? x.shape[$0] : 1 }
        return try scoped(name, "bn") {
            var inputs = [x]
            if !noBias {
                inputs.append(try Parameters.getOrCreate("beta", shape: shape, initializer: paramInit["beta"] ?? .constant(0),
                                                         needGrad: !fixParameters))
            }
            if !noScale {
                inputs.append(try Parameters.getOrCreate("gamma", shape: shape, initializer: paramInit["gamma"] ?? .constant(1),
                                                         needGrad: !fixParameters))
            }
            inputs.append(try Parameters.getOrCreate("mean", shape: shape, initializer: paramInit["mean"] ?? .constant(0), needGrad: false))
            inputs.append(try Parameters.getOrCreate("var", shape: shape, initializer: paramInit["var"] ?? .constant(1), needGrad: false))
            var args: [String: ArgValue] = ["axes": .ints(axes), "decay_rate": .double(decayRate), "eps": .double(eps),
                                            "batch_stat": .bool(batchStat), "no_scale": .bool(noScale), "no_bias": .bool(noBias)]
            if outputStat { args["output_stat"] = .bool(true) }
            return try apply(make("BatchNormalization", args), inputs)
        }
    }

    /// `PF.embed`: W (nInputs, nFeatures) ~ U(-sqrt(3), sqrt(3)).
    public static func embed(_ x: Variable, nInputs: Int, nFeatures: Int, wInit: Initializer? = nil,
                             fixParameters: Bool = false, name: String? = nil) throws -> Variable {
        try scoped(name, "embed") {
            let w = try Parameters.getOrCreate("W", shape: [nInputs, nFeatures],
                                               initializer: wInit ?? .uniform(low: -3.0.squareRoot(), high: 3.0.squareRoot()),
                                               needGrad: !fixParameters)
            return try apply1(make("Embed", [:]), [x, w])
        }
    }

    /// Fixed-point quantisation settings of a weight or bias (nnabla's `*_w` / `*_b` arguments).
    public struct FixedPoint {
        public var quantize: Bool, sign: Bool, n: Int, delta: Double, steFineGrained: Bool
        public init(quantize: Bool = true, sign: Bool = true, n: Int = 8, delta: Double = 0.0625, steFineGrained: Bool = true) {
            self.quantize = quantize; self.sign = sign; self.n = n; self.delta = delta; self.steFineGrained = steFineGrained
        }
    }

    /// Quantises a parameter in the graph and registers the result as `<name>_q` (persistent, no gradient).
    static func quantized(_ p: Variable, _ name: String, _ q: FixedPoint) throws -> Variable {
        guard q.quantize else { return p }
        let y = try apply1(make("FixedPointQuantize", ["sign": .bool(q.sign), "n": .int(q.n), "delta": .double(q.delta),
                                                       "ste_fine_grained": .bool(q.steFineGrained)]), [p])
        y.persistent = true
        Parameters.set(name + "_q", y)
        return y
    }

    /// `PF.fixed_point_quantized_affine`.
    public static func fixedPointQuantizedAffine(_ x: Variable, outMaps: Int, baseAxis: Int = 1,
                                                 wInit: Initializer? = nil, bInit: Initializer? = nil,
                                                 fixParameters: Bool = false, rng: NumpyRandom? = nil,
                                                 withBias: Bool = true, weight: FixedPoint = FixedPoint(),
                                                 bias: FixedPoint = FixedPoint(), name: String? = nil) throws -> Variable {
        guard baseAxis >= 0 && baseAxis <= x.ndim else {
            throw KilnError.invalidFunction(function: "PF.fixed_point_quantized_affine", reason: "base_axis \(baseAxis) is out of range for \(x.shape)")
        }
        let inmaps = Shapes.product(x.shape, baseAxis..<x.ndim)
        return try scoped(name, "fp_quantized_affine") {
            let (w, b) = try affineParameters(inmaps: inmaps, outMaps: [outMaps], wInit: wInit, bInit: bInit,
                                              fixParameters: fixParameters, rng: rng, withBias: withBias)
            let inputs = [x, try quantized(w, "W", weight)] + (try b.map { [try quantized($0, "b", bias)] } ?? [])
            return try apply1(make("Affine", ["base_axis": .int(baseAxis)]), inputs)
        }
    }

    /// `PF.fixed_point_quantized_convolution`.
    public static func fixedPointQuantizedConvolution(_ x: Variable, outMaps: Int, kernel: [Int], pad: [Int]? = nil,
                                                      stride: [Int]? = nil, dilation: [Int]? = nil, group: Int = 1,
                                                      wInit: Initializer? = nil, bInit: Initializer? = nil,
                                                      baseAxis: Int = 1, fixParameters: Bool = false,
                                                      rng: NumpyRandom? = nil, withBias: Bool = true,
                                                      weight: FixedPoint = FixedPoint(), bias: FixedPoint = FixedPoint(),
                                                      name: String? = nil) throws -> Variable {
        try checkGroups(x, baseAxis: baseAxis, group: group, "PF.fixed_point_quantized_convolution")
        return try scoped(name, "fp_quantized_conv") {
            let (w, b) = try convolutionParameters(inmaps: x.shape[baseAxis], outMaps: outMaps, kernel: kernel, group: group,
                                                   deconvolution: false, wInit: wInit, bInit: bInit,
                                                   fixParameters: fixParameters, rng: rng, withBias: withBias)
            let inputs = [x, try quantized(w, "W", weight)] + (try b.map { [try quantized($0, "b", bias)] } ?? [])
            return try apply1(make("Convolution", convArgs(kernel, baseAxis: baseAxis, pad: pad, stride: stride,
                                                           dilation: dilation, group: group)), inputs)
        }
    }

    /// `PF.fixed_point_quantized_deconvolution`.
    public static func fixedPointQuantizedDeconvolution(_ x: Variable, outMaps: Int, kernel: [Int], pad: [Int]? = nil,
                                                        stride: [Int]? = nil, dilation: [Int]? = nil, group: Int = 1,
                                                        wInit: Initializer? = nil, bInit: Initializer? = nil,
                                                        baseAxis: Int = 1, fixParameters: Bool = false,
                                                        rng: NumpyRandom? = nil, withBias: Bool = true,
                                                        weight: FixedPoint = FixedPoint(), bias: FixedPoint = FixedPoint(),
                                                        name: String? = nil) throws -> Variable {
        try checkGroups(x, baseAxis: baseAxis, group: group, outMaps: outMaps, "PF.fixed_point_quantized_deconvolution")
        return try scoped(name, "fp_quantized_deconv") {
            let (w, b) = try convolutionParameters(inmaps: x.shape[baseAxis], outMaps: outMaps, kernel: kernel, group: group,
                                                   deconvolution: true, wInit: wInit, bInit: bInit,
                                                   fixParameters: fixParameters, rng: rng, withBias: withBias)
            let inputs = [x, try quantized(w, "W", weight)] + (try b.map { [try quantized($0, "b", bias)] } ?? [])
            var args = convArgs(kernel, baseAxis: baseAxis, pad: pad, stride: stride, dilation: dilation, group: group)
            args["output_padding"] = .ints([Int](repeating: 0, count: kernel.count))
            return try apply1(make("Deconvolution", args), inputs)
        }
    }
}
