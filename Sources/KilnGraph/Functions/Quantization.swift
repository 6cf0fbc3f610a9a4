import Foundation
import KilnCore
import KilnKernels

/// FixedPointQuantize, Pow2Quantize.
public enum QuantizationFunctions {
    public static let all: [any Function.Type] = [FixedPointQuantize.self, Pow2Quantize.self]
}

/// Uniform quantisation to `n` bits with step `delta`, bit-exact with nnabla's CPU code:
/// `max = (2^(n-1) - 1) * delta` (signed) or `(2^n - 1) * delta` (unsigned, `min = 0`), computed in double
/// from the float32 `delta` and stored as float32; `x > max -> max`, `x < min -> min`, else
/// `sign(x) * floor(|x| / delta + 0.5) * delta` with `|x| / delta` in float32 and `+ 0.5` in double (round
/// half away from zero). Backward is the straight-through estimator: with `ste_fine_grained` the gradient
/// passes where `min <= x <= max` only. `quantize = false` is the identity.
public struct FixedPointQuantize: Function {
    struct Forward: UnaryFloatOp {
        let mx: Float, mn: Float, d: Float
        func callAsFunction(_ v: Float) -> Float {
            if v > mx { return mx }
            if v < mn { return mn }
            let q = Float((Double(abs(v) / d) + 0.5).rounded(.down)) * d
            return v < 0 ? -q : q
        }
    }
    /// The fine-grained straight-through estimator: no gradient outside the representable range.
    struct Backward: BinaryFloatOp {
        let mx: Float, mn: Float
        func callAsFunction(_ v: Float, _ g: Float) -> Float { (v > mx || v < mn) ? 0 : g }
    }
    public static let typeName = "FixedPointQuantize"
    public var sign: Bool
    public var n: Int
    public var delta: Double
    public var quantize: Bool
    public var steFineGrained: Bool

    public init(sign: Bool = true, n: Int = 8, delta: Double = 0.0625, quantize: Bool = true, steFineGrained: Bool = true) {
        self.sign = sign
        self.n = n
        self.delta = delta
        self.quantize = quantize
        self.steFineGrained = steFineGrained
    }

    public init(arguments a: inout ArgReader) throws {
        sign = try a.bool("sign", default: true)
        n = try a.int("n", default: 8)
        delta = try a.double("delta", default: 0.0625)
        quantize = try a.bool("quantize", default: true)
        steFineGrained = try a.bool("ste_fine_grained", default: true)
    }

    public var arguments: [(String, ArgValue)] {
        [("sign", .bool(sign)), ("n", .int(n)), ("delta", .double(delta)), ("quantize", .bool(quantize)),
         ("ste_fine_grained", .bool(steFineGrained))]
    }

    public func outputTypes(_ inputs: [TensorType]) throws -> [TensorType] {
        try Check.count(inputs, 1, Self.typeName)
        try Check.float(inputs[0], Self.typeName, "x")
        guard n > 0 else { throw error("bit width n must be positive, got \(n)") }
        guard sign ? n > 1 : true else { throw error("bit width n must be at least 2 with sign=true (the sign takes 1 bit), got \(n)") }
        // Codes past 2^24 have no exact float32 value: wider grids would not be fixed-point at all.
        guard n <= 32 else { throw error("bit width n must be at most 32, got \(n)") }
        let d = Float(delta)
        guard d > 0 && d.isFinite else { throw error("delta must be a positive float32 number, got \(delta)") }
        return [inputs[0]]
    }

    public func backwardReads(inputCount: Int, outputCount: Int) -> (inputs: [Bool], outputs: [Bool]) {
        ([quantize && steFineGrained], [false])
    }

    /// nnabla's bounds: computed in double from the float32 delta, stored as float32.
    package var bounds: (max: Float, min: Float) {
        let d = Double(Float(delta))
        let bits = sign ? n - 1 : n
        let mx = Float((pow(2.0, Double(bits)) - 1) * d)
        return (mx, sign ? -mx : 0)
    }

    public func makeForward(_ b: ForwardBinding) throws -> Kernel {
        let x = b.inputs[0].f, y = b.outputs[0].f, count = b.inputs[0].count
        if !quantize { return { Elementwise.store(count, x, y, accumulate: false) } }
        let (mx, mn) = bounds, d = Float(delta)
        return { Elementwise.map(count, x, y, Forward(mx: mx, mn: mn, d: d)) }
    }

    public func makeBackward(_ b: BackwardBinding) throws -> Kernel {
        guard let dx = b.inputGrads[0]?.f else { return {} }
        let dy = b.outputGrads[0].f, count = b.outputGrads[0].count, acc = b.accumulate[0]
        if !(quantize && steFineGrained) { return { Elementwise.store(count, dy, dx, accumulate: acc) } }
        guard let x = b.inputs[0]?.f else { throw error("backward needs the input value") }
        let (mx, mn) = bounds
        return { Elementwise.zip(count, x, dy, dx, accumulate: acc, Backward(mx: mx, mn: mn)) }
    }
}

/// Power-of-two quantisation, bit-exact with nnabla's CPU code: `n_eff = n - sign - with_zero`,
/// `p_max = 2^m`, `p_min = 2^(m - (2^n_eff - 1))`, `threshold = p_min * 2^-0.5`, all stored as float32 (a
/// tiny `p_min` underflows to 0). `q = 2^round(log2|x|)` (float32 log2, rounding half away from zero),
/// `q > p_max -> p_max`, `q < p_min -> (with_zero and |x| < threshold) ? 0 : p_min`; signed: `sign(x) * q`;
/// unsigned: negative x gives 0 (with_zero) or p_min. Fine-grained STE: the gradient is cut where
/// `2^round(log2|x|) > p_max` and, unsigned, where `x < 0`.
public struct Pow2Quantize: Function {
    struct Forward: UnaryFloatOp {
        let pMax: Float, pMin: Float, threshold: Float, sign: Bool, withZero: Bool
        func callAsFunction(_ v: Float) -> Float {
            let a = abs(v)
            var q = Pow2Quantize.power(a)
            if q > pMax {
                q = pMax
            } else if q < pMin {
                q = withZero && a < threshold ? 0 : pMin
            }
            if v < 0 {
                return sign ? -q : (withZero ? 0 : pMin)
            }
            return q
        }
    }
    struct Backward: BinaryFloatOp {
        let pMax: Float, sign: Bool
        func callAsFunction(_ v: Float, _ g: Float) -> Float {
            if Pow2Quantize.power(abs(v)) > pMax || (!sign && v < 0) { return 0 * g }
            return g
        }
    }
    public static let typeName = "Pow2Quantize"
    public var sign: Bool
    public var withZero: Bool
    public var n: Int
    public var m: Int
    public var quantize: Bool
    public var steFineGrained: Bool

    public init(sign: Bool = true, withZero: Bool = true, n: Int = 8, m: Int = 1, quantize: Bool = true,
                steFineGrained: Bool = true) {
        self.sign = sign
        self.withZero = withZero
        self.n = n
        self.m = m
        self.quantize = quantize
        self.steFineGrained = steFineGrained
    }

    public init(arguments a: inout ArgReader) throws {
        sign = try a.bool("sign", default: true)
        withZero = try a.bool("with_zero", default: true)
        n = try a.int("n", default: 8)
        m = try a.int("m", default: 1)
        quantize = try a.bool("quantize", default: true)
        steFineGrained = try a.bool("ste_fine_grained", default: true)
    }

    public var arguments: [(String, ArgValue)] {
        [("sign", .bool(sign)), ("with_zero", .bool(withZero)), ("n", .int(n)), ("m", .int(m)),
         ("quantize", .bool(quantize)), ("ste_fine_grained", .bool(steFineGrained))]
    }

    var effectiveBits: Int { n - (sign ? 1 : 0) - (withZero ? 1 : 0) }

    public func outputTypes(_ inputs: [TensorType]) throws -> [TensorType] {
        try Check.count(inputs, 1, Self.typeName)
        try Check.float(inputs[0], Self.typeName, "x")
        guard n > 0 else { throw error("bit width n must be positive, got \(n)") }
        guard effectiveBits > 0 else {
            throw error("bit width n = \(n) leaves no bits after the sign (\(sign)) and zero (\(withZero)) bits")
        }
        guard n <= 64, abs(m) <= 1 << 20 else { throw error("n = \(n) or m = \(m) is out of range") }
        return [inputs[0]]
    }

    public func backwardReads(inputCount: Int, outputCount: Int) -> (inputs: [Bool], outputs: [Bool]) {
        ([quantize && steFineGrained], [false])
    }

    /// p_max, p_min and the pruning threshold as nnabla stores them (float32).
    var constants: (pMax: Float, pMin: Float, threshold: Float) {
        let pMax = Float(pow(2.0, Double(m)))
        let pMin = Float(pow(2.0, Double(m) - (pow(2.0, Double(effectiveBits)) - 1)))
        let threshold = Float(Double(pMin) * pow(2.0, -0.5))
        return (pMax, pMin, threshold)
    }

    /// `2^round(log2|x|)` as nnabla computes it: float32 log2 and round, the power in double, stored float32.
    @inline(__always)
    static func power(_ xAbs: Float) -> Float {
        Float(exp2(Double(log2(xAbs).rounded(.toNearestOrAwayFromZero))))
    }

    public func makeForward(_ b: ForwardBinding) throws -> Kernel {
        let x = b.inputs[0].f, y = b.outputs[0].f, count = b.inputs[0].count
        if !quantize { return { Elementwise.store(count, x, y, accumulate: false) } }
        let (pMax, pMin, threshold) = constants
        let sign = sign, withZero = withZero
        return {
            Elementwise.map(count, x, y, Forward(pMax: pMax, pMin: pMin, threshold: threshold, sign: sign, withZero: withZero))
        }
    }

    public func makeBackward(_ b: BackwardBinding) throws -> Kernel {
        guard let dx = b.inputGrads[0]?.f else { return {} }
        let dy = b.outputGrads[0].f, count = b.outputGrads[0].count, acc = b.accumulate[0]
        if !(quantize && steFineGrained) { return { Elementwise.store(count, dy, dx, accumulate: acc) } }
        guard let x = b.inputs[0]?.f else { throw error("backward needs the input value") }
        let pMax = constants.pMax, sign = sign
        return { Elementwise.zip(count, x, dy, dx, accumulate: acc, Backward(pMax: pMax, sign: sign)) }
    }
}

public extension F {
    /// nnabla's `F.fixed_point_quantize`.
    static func fixedPointQuantize(_ x: Variable, sign: Bool = true, n: Int = 8, delta: Double = 0.0625,
                                   quantize: Bool = true, steFineGrained: Bool = true) throws -> Variable {
        try apply1(FixedPointQuantize(sign: sign, n: n, delta: delta, quantize: quantize, steFineGrained: steFineGrained), [x])
    }

    /// nnabla's `F.pow2_quantize`.
    static func pow2Quantize(_ x: Variable, sign: Bool = true, withZero: Bool = true, n: Int = 8, m: Int = 1,
                             quantize: Bool = true, steFineGrained: Bool = true) throws -> Variable {
        try apply1(Pow2Quantize(sign: sign, withZero: withZero, n: n, m: m, quantize: quantize,
                                steFineGrained: steFineGrained), [x])
    }
}
