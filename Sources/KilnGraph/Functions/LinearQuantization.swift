import Foundation
import KilnCore
import KilnKernels

/// QuantizeLinear, DequantizeLinear: nnabla's functions that align with ONNX's QDQ operators.
public enum LinearQuantizationFunctions {
    public static let all: [any Function.Type] = [QuantizeLinear.self, DequantizeLinear.self]
}

/// The shared shape rule: x, scale and zero_point of one rank, each of scale's and zero_point's dimensions 1 or
/// x's (per tensor, per channel, or any broadcast nnabla allows).
private func checkOperands(_ inputs: [TensorType], _ name: String, error: (String) -> KilnError) throws {
    try Check.count(inputs, 3, name)
    for (k, role) in ["x", "scale", "zero_point"].enumerated() { try Check.float(inputs[k], name, role) }
    let x = inputs[0].shape
    for (k, role) in [(1, "scale"), (2, "zero_point")] {
        let s = inputs[k].shape
        guard s.count == x.count else {
            throw error("\(role) must have x's \(x.count) dimensions, got \(s)")
        }
        for d in s.indices where s[d] != 1 && s[d] != x[d] {
            throw error("\(role) dimension \(d) is \(s[d]): it must be 1 or x's \(x[d])")
        }
    }
}

/// The loop over x with scale and zero_point broadcast onto it.
private func operandLoop(_ b: ForwardBinding) -> StridedLoop {
    let shape = b.inputs[0].shape
    return StridedLoop(shape: shape, strides: [Shapes.strides(shape), Broadcast.strides(b.inputs[1].shape, in: shape),
                                               Broadcast.strides(b.inputs[2].shape, in: shape)])
}

/// `y = saturate(round(x / scale) + zero_point)`, bit-exact with nnabla's CPU code: the division in float32, then
/// `round_mode` (HALF_AWAY_FROM_ZERO, nnabla's default, or HALF_TO_EVEN, ONNX's), the zero point itself rounded
/// the same way and saturated to the range, the sum saturated to `dtype`'s range: int8 [-128, 127] (numpy's
/// type number 1, the default) or uint8 [0, 255] (2), without the lowest code when `narrow_range`. The result
/// holds the integer codes as floats. Backward is `dx = dy / scale` (nnabla's); scale and zero_point take no
/// gradient. nnabla rounds and saturates the zero point array in place; Kiln leaves that input untouched.
public struct QuantizeLinear: Function {
    public static let typeName = "QuantizeLinear"
    public var roundMode: String
    public var narrowRange: Bool
    public var dtype: Int

    public init(roundMode: String = "HALF_AWAY_FROM_ZERO", narrowRange: Bool = false, dtype: Int = 1) {
        self.roundMode = roundMode
        self.narrowRange = narrowRange
        self.dtype = dtype
    }

    public init(arguments a: inout ArgReader) throws {
        roundMode = try a.string("round_mode", default: "HALF_AWAY_FROM_ZERO")
        narrowRange = try a.bool("narrow_range", default: false)
        dtype = try a.int("dtype", default: 1)
    }

    public var arguments: [(String, ArgValue)] {
        [("round_mode", .string(roundMode)), ("narrow_range", .bool(narrowRange)), ("dtype", .int(dtype))]
    }

    /// Whether halfway cases go to the even code (else away from zero).
    public var halfToEven: Bool { roundMode == "HALF_TO_EVEN" }
    /// Whether the codes are int8 (else uint8).
    public var signed: Bool { dtype == 1 }

    /// The codes' range for `dtype` and `narrow_range`.
    public var range: (min: Int, max: Int) {
        signed ? (narrowRange ? -127 : -128, 127) : (narrowRange ? 1 : 0, 255)
    }

    public func outputTypes(_ inputs: [TensorType]) throws -> [TensorType] {
        guard roundMode == "HALF_AWAY_FROM_ZERO" || roundMode == "HALF_TO_EVEN" else {
            throw error("round_mode must be HALF_AWAY_FROM_ZERO or HALF_TO_EVEN, got '\(roundMode)'")
        }
        guard dtype == 1 || dtype == 2 else {
            throw error("dtype must be 1 (int8) or 2 (uint8), numpy's type numbers, got \(dtype)")
        }
        try checkOperands(inputs, Self.typeName, error: error)
        return [inputs[0]]
    }

    public func backwardReads(inputCount: Int, outputCount: Int) -> (inputs: [Bool], outputs: [Bool]) {
        ([false, true, false], [false])
    }

    /// 1.5 * 2^23: adding and subtracting it rounds a float of magnitude below 2^22 to an integer, half to even
    /// (the default rounding of float addition), without a library call.
    static let magic: Float = 12_582_912

    /// `v` rounded as `round_mode` says; exact for |v| < 2^22 (larger values are saturated before this).
    @inline(__always)
    static func rounded(_ v: Float, halfToEven: Bool) -> Float {
        if halfToEven { return (v + magic) - magic }
        let a = abs(v)
        var r = (a + magic) - magic
        if r - a == -0.5 { r += 1 }     // a halfway case rounded down to even: away from zero instead
        return v < 0 ? -r : r
    }

    /// One code as nnabla computes it, the zero point already rounded and saturated (`z`): `x / scale` is held
    /// within one code past the range first (rounding cannot bring it back, and the rounding stays exact); a NaN
    /// stays NaN, as nnabla's comparisons leave it.
    @inline(__always)
    static func code(_ x: Float, scale: Float, z: Float, halfToEven: Bool, min lo: Float, max hi: Float) -> Float {
        var t = x / scale
        if t < lo - z - 1 { t = lo - z - 1 } else if t > hi - z + 1 { t = hi - z + 1 }
        let q = rounded(t, halfToEven: halfToEven) + z
        return q < lo ? lo : q > hi ? hi : q
    }

    /// The zero point as QuantizeLinear uses it: rounded, then saturated to the codes' range.
    @inline(__always)
    static func zeroPoint(_ z: Float, halfToEven: Bool, min lo: Float, max hi: Float) -> Float {
        let c = z < lo - 1 ? lo - 1 : z > hi + 1 ? hi + 1 : z
        let r = rounded(c, halfToEven: halfToEven)
        return r < lo ? lo : r > hi ? hi : r
    }

    public func makeForward(_ b: ForwardBinding) throws -> Kernel {
        let x = UnsafePointer(b.inputs[0].f), s = UnsafePointer(b.inputs[1].f), z = UnsafePointer(b.inputs[2].f)
        let y = b.outputs[0].f, l = operandLoop(b)
        let even = halfToEven, lo = Float(range.min), hi = Float(range.max)
        return {
            let n = l.inner, i1 = l.i1, i2 = l.i2
            l.rows(0, l.outer) { o0, o1, o2 in
                if i1 == 0 && i2 == 0 {
                    // One scale and zero point along the row: the loop the compiler vectorises.
                    let scale = s[o1], zp = Self.zeroPoint(z[o2], halfToEven: even, min: lo, max: hi)
                    for j in 0..<n {
                        y[o0 + j] = Self.code(x[o0 + j], scale: scale, z: zp, halfToEven: even, min: lo, max: hi)
                    }
                } else {
                    for j in 0..<n {
                        let zp = Self.zeroPoint(z[o2 + j * i2], halfToEven: even, min: lo, max: hi)
                        y[o0 + j] = Self.code(x[o0 + j], scale: s[o1 + j * i1], z: zp, halfToEven: even, min: lo, max: hi)
                    }
                }
            }
        }
    }

    public func makeBackward(_ b: BackwardBinding) throws -> Kernel {
        if b.inputGrads[1] != nil || b.inputGrads[2] != nil {
            throw error("backward with respect to the scale or the zero point is not supported (nor in nnabla)")
        }
        guard let dx = b.inputGrads[0]?.f else { return {} }
        guard let s = b.inputs[1]?.f else { throw error("backward needs the scale") }
        return try scaledGradient(b, dx: dx, scale: UnsafePointer(s)) { $0 / $1 }
    }
}

/// `y = (x - zero_point) * scale`, nnabla's DequantizeLinear (in float32, as nnabla computes it). Backward is
/// `dx = dy * scale`; scale and zero_point take no gradient.
public struct DequantizeLinear: Function {
    public static let typeName = "DequantizeLinear"

    public init() {}
    public init(arguments a: inout ArgReader) throws {}
    public var arguments: [(String, ArgValue)] { [] }

    public func outputTypes(_ inputs: [TensorType]) throws -> [TensorType] {
        try checkOperands(inputs, Self.typeName, error: error)
        return [inputs[0]]
    }

    public func backwardReads(inputCount: Int, outputCount: Int) -> (inputs: [Bool], outputs: [Bool]) {
        ([false, true, false], [false])
    }

    public func makeForward(_ b: ForwardBinding) throws -> Kernel {
        let x = UnsafePointer(b.inputs[0].f), s = UnsafePointer(b.inputs[1].f), z = UnsafePointer(b.inputs[2].f)
        let y = b.outputs[0].f, l = operandLoop(b)
        return {
            let n = l.inner, i1 = l.i1, i2 = l.i2
            l.rows(0, l.outer) { o0, o1, o2 in
                for j in 0..<n { y[o0 + j] = (x[o0 + j] - z[o2 + j * i2]) * s[o1 + j * i1] }
            }
        }
    }

    public func makeBackward(_ b: BackwardBinding) throws -> Kernel {
        if b.inputGrads[1] != nil || b.inputGrads[2] != nil {
            throw error("backward with respect to the scale or the zero point is not supported (nor in nnabla)")
        }
        guard let dx = b.inputGrads[0]?.f else { return {} }
        guard let s = b.inputs[1]?.f else { throw error("backward needs the scale") }
        return try scaledGradient(b, dx: dx, scale: UnsafePointer(s)) { $0 * $1 }
    }
}

/// `dx (+)= op(dy, scale)` with the scale broadcast onto x.
private func scaledGradient(_ b: BackwardBinding, dx: UnsafeMutablePointer<Float>, scale: UnsafePointer<Float>,
                            _ op: @escaping (Float, Float) -> Float) throws -> Kernel {
    let shape = b.inputTypes[0].shape
    let l = StridedLoop(shape: shape, strides: [Shapes.strides(shape), Broadcast.strides(b.inputTypes[1].shape, in: shape)])
    let dy = UnsafePointer(b.outputGrads[0].f), accumulate = b.accumulate[0]
    return {
        let n = l.inner, i1 = l.i1
        l.rows(0, l.outer) { o0, o1, _ in
            for j in 0..<n {
                let g = op(dy[o0 + j], scale[o1 + j * i1])
                dx[o0 + j] = accumulate ? dx[o0 + j] + g : g
            }
        }
    }
}

public extension F {
    /// nnabla's `F.quantize_linear`.
    static func quantizeLinear(_ x: Variable, scale: Variable, zeroPoint: Variable, roundMode: String = "HALF_AWAY_FROM_ZERO",
                               narrowRange: Bool = false, dtype: Int = 1) throws -> Variable {
        try apply1(QuantizeLinear(roundMode: roundMode, narrowRange: narrowRange, dtype: dtype), [x, scale, zeroPoint])
    }

    /// nnabla's `F.dequantize_linear`.
    static func dequantizeLinear(_ x: Variable, scale: Variable, zeroPoint: Variable) throws -> Variable {
        try apply1(DequantizeLinear(), [x, scale, zeroPoint])
    }
}
