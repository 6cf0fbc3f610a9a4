import Foundation
import KilnCore

/// nnabla's initialisers and the fan-in/fan-out formulas that choose their ranges.
public enum Initializer {
    case uniform(low: Double, high: Double)
    case normal(mean: Double, std: Double)
    case constant(Double)
    /// Explicit values (nnabla accepts a numpy array as an initialiser).
    case values([Float])

    /// Draws `count` values (row-major) from `rng`.
    public func generate(count: Int, rng: NumpyRandom) throws -> [Float] {
        switch self {
        case let .uniform(lo, hi): return rng.uniform(lo, hi, count: count)
        case let .normal(m, s): return rng.normal(m, s, count: count)
        case let .constant(c): return [Float](repeating: Float(c), count: count)
        case let .values(v):
            guard v.count == count else {
                throw KilnError.invalidParameters("initial values have \(v.count) elements, the parameter needs \(count)")
            }
            return v
        }
    }

    /// `calc_uniform_lim_glorot`: +-sqrt(6 / (prod(kernel) * (inmaps + outmaps))).
    public static func uniformLimGlorot(inmaps: Int, outmaps: Int, kernel: [Int] = [1, 1]) -> (Double, Double) {
        let d = (6.0 / (Double(kernel.reduce(1, *)) * Double(inmaps + outmaps))).squareRoot()
        return (-d, d)
    }

    public static func normalStdGlorot(inmaps: Int, outmaps: Int, kernel: [Int] = [1, 1]) -> Double {
        (2.0 / (Double(kernel.reduce(1, *)) * Double(inmaps + outmaps))).squareRoot()
    }

    public static func normalStdHeForward(inmaps: Int, outmaps: Int, kernel: [Int] = [1, 1]) -> Double {
        (2.0 / (Double(kernel.reduce(1, *)) * Double(inmaps))).squareRoot()
    }

    public static func normalStdHeBackward(inmaps: Int, outmaps: Int, kernel: [Int] = [1, 1]) -> Double {
        (2.0 / (Double(kernel.reduce(1, *)) * Double(outmaps))).squareRoot()
    }

    public static func glorotUniform(inmaps: Int, outmaps: Int, kernel: [Int] = [1, 1]) -> Initializer {
        let (lo, hi) = uniformLimGlorot(inmaps: inmaps, outmaps: outmaps, kernel: kernel)
        return .uniform(low: lo, high: hi)
    }
}

/// Default initial values for parameters that a graph file declares without data, chosen from the function
/// that consumes them, as nnabla's parametric functions would have created them.
enum ParameterInitializer {
    static func initializeDefaults(_ params: [Variable], consumers nodes: [FunctionNode]) {
        guard !params.isEmpty else { return }
        let wanted = Set(params.map { ObjectIdentifier($0) })
        var done = Set<ObjectIdentifier>()
        for n in nodes {
            for (slot, v) in n.inputs.enumerated() where wanted.contains(ObjectIdentifier(v)) {
                guard done.insert(ObjectIdentifier(v)).inserted else { continue }
                let initializer = defaultInitializer(n, slot: slot, shape: v.shape)
                if let values = try? initializer.generate(count: v.size, rng: GlobalRandom.prng) { try? v.setData(values) }
            }
        }
    }

    static func defaultInitializer(_ n: FunctionNode, slot: Int, shape: [Int]) -> Initializer {
        switch (n.typeName, slot) {
        case ("Affine", 1):
            return .glorotUniform(inmaps: shape.first ?? 1, outmaps: shape.dropFirst().reduce(1, *))
        case ("Convolution", 1), ("Deconvolution", 1):
            // One rule for both layouts: the Glorot range is symmetric in its two fans.
            let group = n.function.arguments.first { $0.0 == "group" }.flatMap { if case .int(let g) = $0.1 { return g }; return nil } ?? 1
            return .glorotUniform(inmaps: (shape.count > 1 ? shape[1] : 1) * group, outmaps: shape.first ?? 1,
                                  kernel: Array(shape.dropFirst(2)))
        case ("Embed", 1): return .uniform(low: -3.0.squareRoot(), high: 3.0.squareRoot())
        case ("BatchNormalization", _):
            // Input order (x, beta, gamma, mean, variance); with no_bias/no_scale some are absent.
            let count = n.inputs.count
            let names: [String] = count == 5 ? ["x", "beta", "gamma", "mean", "var"]
                : count == 3 ? ["x", "mean", "var"] : ["x", hasArg(n, "no_bias") ? "gamma" : "beta", "mean", "var"]
            let name = slot < names.count ? names[slot] : "beta"
            return .constant(name == "gamma" || name == "var" ? 1 : 0)
        default: return .constant(0)
        }
    }

    static func hasArg(_ n: FunctionNode, _ name: String) -> Bool {
        n.function.arguments.contains { $0.0 == name && $0.1 == .bool(true) }
    }
}
