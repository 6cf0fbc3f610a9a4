import Foundation
import KilnGraph

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

    /// The step for `values`. Throws `ConversionSkip` when no power of two can be derived: an all-zero
    /// parameter, or a step that float32 (the quantizer's arithmetic) cannot hold, e.g. for subnormal weights.
    func resolve(for values: () throws -> [Float], sign: Bool, n: Int, floor: Bool) throws -> Double {
        switch self {
        case .fixed(let d): return d
        case .powerOfTwo:
            let absMax = try values().reduce(Float(0)) { max($0, abs($1)) }
            guard absMax > 0 else { throw ConversionSkip("it is all zeros, so no power-of-two step can be derived from it") }
            let m = sign ? n - 1 : n
            // No magnitude bits (signed, n = 1): any step will do, the quantizer rejects the bit width itself
            // and names the function.
            guard m >= 1 else { return 1 }
            let e = log2(Double(absMax) / (pow(2.0, Double(m)) - 1))
            let d = pow(2.0, floor ? e.rounded(.down) : e.rounded(.up))
            guard Float(d) > 0, Float(d).isFinite else {
                throw ConversionSkip("its power-of-two step \(d) (max |value| \(absMax), \(m) magnitude bits) is not a positive finite float32 number")
            }
            return d
        }
    }
}
