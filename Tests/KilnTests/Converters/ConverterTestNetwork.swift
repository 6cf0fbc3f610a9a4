import Foundation
@testable import Kiln

/// Builds small random networks for converter tests whose expectations come from the unconverted network
/// itself (shapes the golden file lacks: deconvolution, groups, branches, N-D affine outputs).
struct ConverterTestNetwork {
    var rng: SplitMix64

    init(seed: UInt64) { rng = SplitMix64(seed: seed) }

    mutating func values(_ count: Int, _ range: ClosedRange<Float>) -> [Float] {
        (0..<count).map { _ in Float.random(in: range, using: &rng) }
    }

    /// A parameter as graph files and PF make them.
    mutating func parameter(_ name: String, _ shape: [Int], _ range: ClosedRange<Float> = -1...1,
                            needGrad: Bool = true) throws -> Variable {
        let v = try Variable(shape: shape, needGrad: needGrad, name: name)
        try v.setData(values(shape.reduce(1, *), range))
        v.isParameter = true
        return v
    }

    mutating func input(_ shape: [Int]) throws -> Variable {
        let x = try Variable(shape: shape, name: "x")
        try x.setData(values(shape.reduce(1, *), -2...2))
        return x
    }

    /// A BatchNormalization over `axis` with random statistics: gamma of both signs, variances from 0.05 to 2.
    mutating func bn(_ h: Variable, _ name: String, axis: Int = 1, batchStat: Bool = false,
                     noScale: Bool = false, noBias: Bool = false) throws -> Variable {
        var shape = [Int](repeating: 1, count: h.shape.count)
        shape[axis] = h.shape[axis]
        let beta = noBias ? nil : try parameter("\(name)/beta", shape)
        let gamma = noScale ? nil : try parameter("\(name)/gamma", shape, -2...2)
        let mean = try parameter("\(name)/mean", shape, -1...1, needGrad: false)
        let variance = try parameter("\(name)/var", shape, 0.05...2, needGrad: false)
        return try F.batchNormalization(h, beta, gamma, mean, variance, axes: [axis], batchStat: batchStat)
    }

    /// The roots' values after an inference run.
    static func evaluate(_ roots: [Variable]) throws -> [[Float]] {
        try Compiler.compile(roots, .inference, options: CompileOptions()).run()
        return roots.map { $0.d }
    }

    static func types(_ roots: [Variable]) -> [String] { GraphCollector.nodes(from: roots).map { $0.typeName } }

    static func variable(_ name: String, in roots: [Variable]) -> Variable? {
        for n in GraphCollector.nodes(from: roots) {
            if let v = n.inputs.first(where: { $0.name == name }) { return v }
            for case let o? in n.outputs where o.name == name { return o }
        }
        return nil
    }
}
