import Foundation
import KilnCore
import KilnKernels

/// Normalisations over contiguous groups of elements, each by its own mean and biased variance:
/// `y = (x - mean) / sqrt(var + eps) * gamma + beta`. nnabla's LayerNormalization (a group per batch index,
/// `batch_axis` a leading run of axes, gamma/beta one value per normalised element) and
/// InstanceNormalization (a group per (batch, channel), gamma/beta one value per channel). Inputs are
/// `(x, beta, gamma)` with `no_bias` / `no_scale` dropping beta / gamma, as nnabla's. Backward recomputes each
/// group's statistics from x: nothing is kept from forward.
protocol GroupNormalizationFunction: Function {
    var eps: Double { get }
    var noScale: Bool { get }
    var noBias: Bool { get }
    /// Groups, elements per group, and which gamma and beta each element uses.
    func layout(_ x: [Int]) throws -> GroupLayout
    /// The shape beta and gamma must have for an input of shape `x`.
    func parameterShape(_ x: [Int]) throws -> [Int]
}

/// Where group `g`'s element `j` finds its gamma and beta.
struct GroupLayout {
    let groups: Int
    let size: Int
    /// Per element of the group (LayerNormalization) or per group modulo the channel count (Instance).
    let perElement: Bool
    let channels: Int

    @inline(__always) func param(_ g: Int, _ j: Int) -> Int { perElement ? j : g % channels }
}

extension GroupNormalizationFunction {
    var betaIndex: Int? { noBias ? nil : 1 }
    var gammaIndex: Int? { noScale ? nil : (noBias ? 1 : 2) }

    public func outputTypes(_ inputs: [TensorType]) throws -> [TensorType] {
        let want = 1 + (noBias ? 0 : 1) + (noScale ? 0 : 1)
        try Check.count(inputs, want, Self.typeName)
        try Check.float(inputs[0], Self.typeName, "x")
        let p = try parameterShape(inputs[0].shape)
        for k in 1..<want {
            try Check.float(inputs[k], Self.typeName, k == betaIndex ? "beta" : "gamma")
            guard inputs[k].shape == p else {
                throw error("\(k == betaIndex ? "beta" : "gamma") must have shape \(p) for x \(inputs[0].shape), got \(inputs[k].shape)")
            }
        }
        _ = try layout(inputs[0].shape)
        return [inputs[0]]
    }

    public func backwardReads(inputCount: Int, outputCount: Int) -> (inputs: [Bool], outputs: [Bool]) {
        ([Bool](repeating: true, count: inputCount), [false])
    }

    /// Mean and 1/sqrt(var + eps) of one group, in Double.
    @inline(__always)
    static func statistics(_ x: UnsafeMutablePointer<Float>, _ n: Int, _ eps: Double) -> (Float, Float) {
        var s = 0.0
        for j in 0..<n { s += Double(x[j]) }
        let mean = s / Double(n)
        var v = 0.0
        for j in 0..<n { let d = Double(x[j]) - mean; v += d * d }
        return (Float(mean), Float(1 / (v / Double(n) + eps).squareRoot()))
    }

    public func makeForward(_ b: ForwardBinding) throws -> Kernel {
        let l = try layout(b.inputs[0].shape)
        let x = b.inputs[0].f, y = b.outputs[0].f, eps = eps
        let beta = betaIndex.map { b.inputs[$0].f }, gamma = gammaIndex.map { b.inputs[$0].f }
        return {
            for g in 0..<l.groups {
                let xg = x + g * l.size, yg = y + g * l.size
                let (mean, rstd) = Self.statistics(xg, l.size, eps)
                for j in 0..<l.size {
                    let p = l.param(g, j)
                    yg[j] = (xg[j] - mean) * rstd * (gamma?[p] ?? 1) + (beta?[p] ?? 0)
                }
            }
        }
    }

    public func makeBackward(_ b: BackwardBinding) throws -> Kernel {
        let l = try layout(b.inputTypes[0].shape)
        guard let x = b.inputs[0]?.f else { throw error("backward needs x") }
        let gamma = try gammaIndex.map { k -> UnsafeMutablePointer<Float> in
            guard let g = b.inputs[k]?.f else { throw error("backward needs gamma") }
            return g
        }
        let dx = b.inputGrads[0]?.f, dbeta = betaIndex.flatMap { b.inputGrads[$0]?.f }
        let dgamma = gammaIndex.flatMap { b.inputGrads[$0]?.f }
        let accX = b.accumulate[0], accB = betaIndex.map { b.accumulate[$0] } ?? false
        let accG = gammaIndex.map { b.accumulate[$0] } ?? false
        let pCount = gammaIndex.map { b.inputTypes[$0].count } ?? betaIndex.map { b.inputTypes[$0].count } ?? 0
        let dy = b.outputGrads[0].f, eps = eps
        return {
            if let dbeta, !accB { dbeta.update(repeating: 0, count: pCount) }
            if let dgamma, !accG { dgamma.update(repeating: 0, count: pCount) }
            for g in 0..<l.groups {
                let xg = x + g * l.size, dyg = dy + g * l.size
                let (mean, rstd) = Self.statistics(xg, l.size, eps)
                // Means over the group of dxhat = dy * gamma and of dxhat * xhat.
                var m1 = 0.0, m2 = 0.0
                for j in 0..<l.size {
                    let p = l.param(g, j)
                    let xhat = (xg[j] - mean) * rstd
                    let d = dyg[j] * (gamma?[p] ?? 1)
                    m1 += Double(d)
                    m2 += Double(d * xhat)
                    dbeta?[p] += dyg[j]
                    dgamma?[p] += dyg[j] * xhat
                }
                guard let dx else { continue }
                let a = Float(m1 / Double(l.size)), c = Float(m2 / Double(l.size))
                let dxg = dx + g * l.size
                for j in 0..<l.size {
                    let p = l.param(g, j)
                    let xhat = (xg[j] - mean) * rstd
                    let v = rstd * (dyg[j] * (gamma?[p] ?? 1) - a - xhat * c)
                    dxg[j] = accX ? dxg[j] + v : v
                }
            }
        }
    }
}

/// nnabla's LayerNormalization: each batch index (the axes in `batch_axis`, which must be the leading
/// axes here) normalised over all its other elements; beta and gamma have x's shape with 1 at the batch
/// axes.
public struct LayerNormalization: GroupNormalizationFunction {
    public static let typeName = "LayerNormalization"
    public var batchAxis: [Int]
    public var eps: Double
    public var noScale: Bool
    public var noBias: Bool

    public init(batchAxis: [Int] = [0], eps: Double = 1e-5, noScale: Bool = false, noBias: Bool = false) {
        self.batchAxis = batchAxis
        self.eps = eps
        self.noScale = noScale
        self.noBias = noBias
    }

    public init(arguments a: inout ArgReader) throws {
        let axes: [Int]
        if let list = try a.intsOrNil("batch_axis") { axes = list } else { axes = [try a.int("batch_axis", default: 0)] }
        self.init(batchAxis: axes, eps: try a.double("eps", default: 1e-5), noScale: try a.bool("no_scale", default: false),
                  noBias: try a.bool("no_bias", default: false))
    }

    public var arguments: [(String, ArgValue)] {
        [("batch_axis", .ints(batchAxis)), ("eps", .double(eps)), ("no_scale", .bool(noScale)), ("no_bias", .bool(noBias))]
    }

    func leading(_ rank: Int) throws -> Int {
        let sorted = batchAxis.map { $0 < 0 ? $0 + rank : $0 }.sorted()
        guard sorted == Array(0..<sorted.count), sorted.count < rank || rank == 0 else {
            throw error("batch_axis \(batchAxis) must be the leading axes of x (rank \(rank)), each once")
        }
        return sorted.count
    }

    func parameterShape(_ x: [Int]) throws -> [Int] {
        let k = try leading(x.count)
        return [Int](repeating: 1, count: k) + Array(x[k...])
    }

    func layout(_ x: [Int]) throws -> GroupLayout {
        let k = try leading(x.count)
        return GroupLayout(groups: x[..<k].reduce(1, *), size: x[k...].reduce(1, *), perElement: true, channels: 1)
    }
}

/// nnabla's InstanceNormalization: each (batch, channel) pair normalised over the remaining axes; beta and
/// gamma have one value per channel (x's rank, C at the channel axis). Here the batch axis is 0 and the
/// channel axis 1.
public struct InstanceNormalization: GroupNormalizationFunction {
    public static let typeName = "InstanceNormalization"
    public var channelAxis: Int
    public var batchAxis: [Int]
    public var eps: Double
    public var noScale: Bool
    public var noBias: Bool

    public init(channelAxis: Int = 1, batchAxis: [Int] = [0], eps: Double = 1e-5, noScale: Bool = false, noBias: Bool = false) {
        self.channelAxis = channelAxis
        self.batchAxis = batchAxis
        self.eps = eps
        self.noScale = noScale
        self.noBias = noBias
    }

    public init(arguments a: inout ArgReader) throws {
        let axes: [Int]
        if let list = try a.intsOrNil("batch_axis") { axes = list } else { axes = [try a.int("batch_axis", default: 0)] }
        self.init(channelAxis: try a.int("channel_axis", default: 1), batchAxis: axes, eps: try a.double("eps", default: 1e-5),
                  noScale: try a.bool("no_scale", default: false), noBias: try a.bool("no_bias", default: false))
    }

    public var arguments: [(String, ArgValue)] {
        [("channel_axis", .int(channelAxis)), ("batch_axis", .ints(batchAxis)), ("eps", .double(eps)),
         ("no_scale", .bool(noScale)), ("no_bias", .bool(noBias))]
    }

    func check(_ x: [Int]) throws {
        guard channelAxis == 1, batchAxis == [0], x.count >= 3 else {
            throw error("only channel_axis 1 and batch_axis [0] with spatial axes are supported (x \(x))")
        }
    }

    func parameterShape(_ x: [Int]) throws -> [Int] {
        try check(x)
        return [1, x[1]] + [Int](repeating: 1, count: x.count - 2)
    }

    func layout(_ x: [Int]) throws -> GroupLayout {
        try check(x)
        return GroupLayout(groups: x[0] * x[1], size: x[2...].reduce(1, *), perElement: false, channels: x[1])
    }
}

public extension F {
    /// nnabla's `F.layer_normalization(x, beta, gamma, batch_axis, eps)`; a nil beta / gamma means no bias /
    /// no scale.
    static func layerNormalization(_ x: Variable, _ beta: Variable?, _ gamma: Variable?, batchAxis: [Int] = [0],
                                   eps: Double = 1e-5) throws -> Variable {
        let f = LayerNormalization(batchAxis: batchAxis, eps: eps, noScale: gamma == nil, noBias: beta == nil)
        return try apply1(f, [x] + [beta, gamma].compactMap { $0 })
    }

    /// nnabla's `F.instance_normalization(x, beta, gamma, channel_axis, batch_axis, eps)`; a nil beta / gamma
    /// means no bias / no scale.
    static func instanceNormalization(_ x: Variable, _ beta: Variable?, _ gamma: Variable?, channelAxis: Int = 1,
                                      batchAxis: [Int] = [0], eps: Double = 1e-5) throws -> Variable {
        let f = InstanceNormalization(channelAxis: channelAxis, batchAxis: batchAxis, eps: eps, noScale: gamma == nil,
                                      noBias: beta == nil)
        return try apply1(f, [x] + [beta, gamma].compactMap { $0 })
    }
}
