import KilnCore
import KilnKernels

/// BatchNormalization, LayerNormalization, InstanceNormalization (GroupNormalizations.swift), LRN.
public enum NormalizationFunctions {
    public static let all: [any Function.Type] = [
        BatchNormalization.self, LayerNormalization.self, InstanceNormalization.self, LRN.self,
    ]
}

/// nnabla's BatchNormalization over one channel axis (default 1).
///
/// Inputs `(x, beta, gamma, mean, variance)`; `no_bias` / `no_scale` drop beta / gamma (3 to 5 inputs). The
/// parameters have x's rank with C at the channel axis and 1 elsewhere. Training (`batch_stat`) normalises
/// with the biased batch variance and updates the running mean/variance IN PLACE during forward (the
/// variance with the unbiased `M/(M-1)` estimate). `output_stat` (training only) adds the outputs
/// `(batch_mean, batch_var)` whose gradients flow to x. mean/variance never receive a gradient. Backward
/// recomputes the batch statistics from x, so nothing is kept from forward.
public struct BatchNormalization: Function {
    public static let typeName = "BatchNormalization"
    public var axes: [Int]
    public var decayRate: Double
    public var eps: Double
    public var batchStat: Bool
    public var noScale: Bool
    public var noBias: Bool
    public var outputStat: Bool

    public init(axes: [Int] = [1], decayRate: Double = 0.9, eps: Double = 1e-5, batchStat: Bool = true,
                noScale: Bool = false, noBias: Bool = false, outputStat: Bool = false) {
        self.axes = axes
        self.decayRate = decayRate
        self.eps = eps
        self.batchStat = batchStat
        self.noScale = noScale
        self.noBias = noBias
        self.outputStat = outputStat
    }

    public init(arguments a: inout ArgReader) throws {
        self.init(axes: try a.ints("axes", default: [1]), decayRate: try a.double("decay_rate", default: 0.9),
                  eps: try a.double("eps", default: 1e-5), batchStat: try a.bool("batch_stat", default: true),
                  noScale: try a.bool("no_scale", default: false), noBias: try a.bool("no_bias", default: false),
                  outputStat: try a.bool("output_stat", default: false))
    }

    public var arguments: [(String, ArgValue)] {
        [("axes", .ints(axes)), ("decay_rate", .double(decayRate)), ("eps", .double(eps)),
         ("batch_stat", .bool(batchStat)), ("no_scale", .bool(noScale)), ("no_bias", .bool(noBias)),
         ("output_stat", .bool(outputStat))]
    }

    /// Input positions; nil where the input is absent.
    package var betaIndex: Int? { noBias ? nil : 1 }
    package var gammaIndex: Int? { noScale ? nil : (noBias ? 1 : 2) }
    package var meanIndex: Int { 1 + (noBias ? 0 : 1) + (noScale ? 0 : 1) }
    package var varianceIndex: Int { meanIndex + 1 }
    package var inputCount: Int { meanIndex + 2 }

    package func channelAxis(rank: Int) throws -> Int {
        guard axes.count == 1 else {
            throw error("axes \(axes) is not supported: exactly one channel axis is (nnabla's default [1])")
        }
        return try Shapes.axis(axes[0], rank: rank, function: Self.typeName)
    }

    public func outputTypes(_ inputs: [TensorType]) throws -> [TensorType] {
        let names = ["x"] + (noBias ? [] : ["beta"]) + (noScale ? [] : ["gamma"]) + ["mean", "variance"]
        guard inputs.count == inputCount else {
            throw error("takes \(inputCount) inputs (\(names.joined(separator: ", "))) with no_bias=\(noBias), no_scale=\(noScale), got \(inputs.count)")
        }
        let x = inputs[0]
        for (t, name) in zip(inputs, names) { try Check.float(t, Self.typeName, name) }
        guard x.rank >= 2 else { throw error("x \(x) must have at least 2 dims") }
        let axis = try channelAxis(rank: x.rank)
        var param = [Int](repeating: 1, count: x.rank)
        param[axis] = x.shape[axis]
        for (t, name) in zip(inputs, names).dropFirst() where t.shape != param {
            throw error("\(name) has shape \(t.shape); for x \(x.shape) and axes \(axes) it must be \(param)")
        }
        guard decayRate.isFinite, eps.isFinite, eps >= 0 else {
            throw error("decay_rate \(decayRate) and eps \(eps) must be finite, eps >= 0")
        }
        if outputStat && !batchStat {
            throw error("output_stat=true needs batch_stat=true (batch statistics exist only in training mode)")
        }
        if batchStat {
            let m = x.count / max(x.shape[axis], 1)
            guard m >= 2 || x.shape[axis] == 0 else {
                throw error("training mode (batch_stat=true) needs more than one value per channel, x is \(x.shape)")
            }
        }
        let y = TensorType(x.shape)
        return outputStat ? [y, TensorType(param), TensorType(param)] : [y]
    }

    public func propagatesGradient(toInput index: Int, inputCount: Int) -> Bool {
        index != meanIndex && index != varianceIndex
    }

    public func backwardReads(inputCount: Int, outputCount: Int) -> (inputs: [Bool], outputs: [Bool]) {
        var r = [Bool](repeating: false, count: inputCount)
        if inputCount > 0 { r[0] = true }
        if let g = gammaIndex, g < inputCount { r[g] = true }
        if !batchStat {
            if meanIndex < inputCount { r[meanIndex] = true }
            if varianceIndex < inputCount { r[varianceIndex] = true }
        }
        return (r, [Bool](repeating: false, count: outputCount))
    }

    public func mutatesInput(_ index: Int) -> Bool {
        batchStat && (index == meanIndex || index == varianceIndex)
    }

    /// Training mode recomputes the batch statistics from x (the same sums in the same order, so the same
    /// output) and leaves the running ones alone; `output_stat`'s extra outputs are not recomputed.
    public var isCheapToRecompute: Bool { !outputStat }

    public func backwardWorkspace(_ b: TypeBinding) -> Int {
        guard let x = b.inputs.first, let axis = try? channelAxis(rank: x.rank) else { return 0 }
        return 2 * x.shape[axis] * MemoryLayout<Float>.size
    }

    public func makeForward(_ b: ForwardBinding) throws -> Kernel {
        let xt = b.inputs[0]
        let l = BatchNormKernels.Layout(shape: xt.shape, axis: try channelAxis(rank: xt.type.rank))
        let x = xt.f, y = b.outputs[0].f
        let beta = betaIndex.map { UnsafePointer(b.inputs[$0].f) }
        let gamma = gammaIndex.map { UnsafePointer(b.inputs[$0].f) }
        let mean = b.inputs[meanIndex].f, variance = b.inputs[varianceIndex].f
        let eps = eps
        if !batchStat {
            return { BatchNormKernels.testForward(l, x: x, beta: beta, gamma: gamma, mean: mean, variance: variance, y: y, eps: eps) }
        }
        let bm = outputStat ? b.outputs[1].f : nil, bv = outputStat ? b.outputs[2].f : nil
        let decay = Float(decayRate)
        let running: (mean: UnsafeMutablePointer<Float>, variance: UnsafeMutablePointer<Float>)? =
            b.recomputing ? nil : (mean, variance)
        return {
            BatchNormKernels.trainingForward(l, x: x, beta: beta, gamma: gamma, running: running,
                                             y: y, batchMean: bm, batchVar: bv, decay: decay, eps: eps)
        }
    }

    public func makeBackward(_ b: BackwardBinding) throws -> Kernel {
        let dx = b.inputGrads[0]?.f
        let dBeta = betaIndex.flatMap { b.inputGrads[$0]?.f }
        let dGamma = gammaIndex.flatMap { b.inputGrads[$0]?.f }
        if dx == nil && dBeta == nil && dGamma == nil { return {} }
        guard let x = b.inputs[0]?.f else { throw error("backward needs the input x") }
        let l = BatchNormKernels.Layout(shape: b.inputTypes[0].shape, axis: try channelAxis(rank: b.inputTypes[0].rank))
        var gamma: UnsafePointer<Float>? = nil
        if let gi = gammaIndex {
            guard let g = b.inputs[gi]?.f else { throw error("backward needs gamma") }
            gamma = UnsafePointer(g)
        }
        guard let ws = b.workspace?.assumingMemoryBound(to: Float.self) else {
            throw error("backward needs a workspace of \(2 * l.channels) floats")
        }
        let dy = b.outputGrads[0].f
        let accX = b.accumulate[0]
        let accB = betaIndex.map { b.accumulate[$0] } ?? false
        let accG = gammaIndex.map { b.accumulate[$0] } ?? false
        let eps = eps
        if batchStat {
            let dm = outputStat ? UnsafePointer(b.outputGrads[1].f) : nil
            let dv = outputStat ? UnsafePointer(b.outputGrads[2].f) : nil
            return {
                BatchNormKernels.trainingBackward(l, x: x, gamma: gamma, dy: dy, dMean: dm, dVar: dv,
                                                  dx: dx, accumulateX: accX, dBeta: dBeta, accumulateBeta: accB,
                                                  dGamma: dGamma, accumulateGamma: accG, eps: eps, sums: ws)
            }
        }
        guard let mean = b.inputs[meanIndex]?.f, let variance = b.inputs[varianceIndex]?.f else {
            throw error("test-mode backward needs mean and variance")
        }
        return {
            BatchNormKernels.testBackward(l, x: x, gamma: gamma, mean: mean, variance: variance, dy: dy,
                                          dx: dx, accumulateX: accX, dBeta: dBeta, accumulateBeta: accB,
                                          dGamma: dGamma, accumulateGamma: accG, eps: eps, sums: ws)
        }
    }
}

public extension F {
    /// nnabla's `F.batch_normalization`; a nil beta / gamma means no bias / no scale. With `outputStat` only
    /// the normalised output is returned (see `batchNormalizationWithStats`).
    static func batchNormalization(_ x: Variable, _ beta: Variable?, _ gamma: Variable?, _ mean: Variable,
                                   _ variance: Variable, axes: [Int] = [1], decayRate: Double = 0.9,
                                   eps: Double = 1e-5, batchStat: Bool = true, outputStat: Bool = false) throws -> Variable {
        let f = BatchNormalization(axes: axes, decayRate: decayRate, eps: eps, batchStat: batchStat,
                                   noScale: gamma == nil, noBias: beta == nil, outputStat: outputStat)
        return try apply1(f, [x] + [beta, gamma].compactMap { $0 } + [mean, variance])
    }

    /// `F.batch_normalization(..., output_stat=True)`: `[y, batch_mean, batch_var]` (biased variance).
    static func batchNormalizationWithStats(_ x: Variable, _ beta: Variable?, _ gamma: Variable?, _ mean: Variable,
                                            _ variance: Variable, axes: [Int] = [1], decayRate: Double = 0.9,
                                            eps: Double = 1e-5) throws -> [Variable] {
        let f = BatchNormalization(axes: axes, decayRate: decayRate, eps: eps, batchStat: true,
                                   noScale: gamma == nil, noBias: beta == nil, outputStat: true)
        return try apply(f, [x] + [beta, gamma].compactMap { $0 } + [mean, variance])
    }
}
