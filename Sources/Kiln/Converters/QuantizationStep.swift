import Foundation

/// The step (`delta`) of a fixed-point weight quantizer: a given value, or nnabla's power of two derived from
/// the parameter's largest magnitude, which nnabla chose when `delta_w` / `delta_b` was absent from
/// `args_fpq`. A float literal is a fixed step (`deltaW: 0.0625`).
public enum QuantizationStep: Equatable, Sendable, ExpressibleByFloatLiteral, CustomStringConvertible {
    case fixed(Double)
    /// `2^ceil(log2(max|p| / (2^m - 1)))`, or with `floor` `2^floor(...)`, where `m` is the number of
    /// magnitude bits (`n - 1` when signed): the smallest power of two that represents `max|p|` without
    /// clipping, or the next finer one.
    case powerOfTwo

    public init(floatLiteral value: Double) { self = .fixed(value) }

    public var description: String {
        switch self {
        case .fixed(let d): return String(d)
        case .powerOfTwo: return "pow2"
        }
    }

    /// The step for `values`; nil when it cannot be derived (power of two of an all-zero parameter).
    func resolve(for values: () throws -> [Float], sign: Bool, n: Int, floor: Bool) rethrows -> Double? {
        switch self {
        case .fixed(let d): return d
        case .powerOfTwo:
            let absMax = try values().reduce(Float(0)) { max($0, abs($1)) }
            guard absMax > 0 else { return nil }
            let m = sign ? n - 1 : n
            let e = log2(Double(absMax) / (pow(2.0, Double(m)) - 1))
            return pow(2.0, floor ? e.rounded(.down) : e.rounded(.up))
        }
    }
}
