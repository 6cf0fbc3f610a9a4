/// A float tensor held as 8-bit codes of a grid: element value = (code - `zeroPoint`) * `step`, the codes signed
/// (int8) or unsigned (uint8) within [`minCode`, `maxCode`]. Quantized plans store the outputs of nnabla's
/// `FixedPointQuantize` (`n <= 8`, a power-of-two `delta`, zero point 0) and of its `QuantizeLinear` followed by
/// the matching `DequantizeLinear` (any positive scale and a zero point: ONNX's QDQ pairs) this way: a quarter
/// of the float bytes, and exactly the same values.
public struct QuantizedCodes: Hashable, Sendable, CustomStringConvertible {
    /// How floats are put on the grid.
    public enum Rounding: Hashable, Sendable {
        /// nnabla's FixedPointQuantize: clip, then |v| / step rounded half away from zero.
        case fixedPoint
        /// nnabla's QuantizeLinear (and ONNX's with `halfToEven`): v / step rounded, plus the zero point, saturated.
        case linear(halfToEven: Bool)
    }

    public var signed: Bool
    /// The grid's step (nnabla's `delta`, or QuantizeLinear's scale).
    public var step: Float
    public var zeroPoint: Int
    public var minCode: Int
    public var maxCode: Int
    public var rounding: Rounding

    /// A FixedPointQuantize grid: codes in [-127, 127] or [0, 255] unless narrower bounds are given.
    public init(signed: Bool, step: Float, minCode: Int? = nil, maxCode: Int? = nil) {
        self.signed = signed
        self.step = step
        zeroPoint = 0
        self.minCode = minCode ?? (signed ? -127 : 0)
        self.maxCode = maxCode ?? (signed ? 127 : 255)
        rounding = .fixedPoint
    }

    /// A QuantizeLinear grid.
    public init(signed: Bool, step: Float, zeroPoint: Int, minCode: Int, maxCode: Int, halfToEven: Bool) {
        self.signed = signed
        self.step = step
        self.zeroPoint = zeroPoint
        self.minCode = minCode
        self.maxCode = maxCode
        rounding = .linear(halfToEven: halfToEven)
    }

    /// "u8*2^-5" or "s8*0.1" (FixedPointQuantize), "u8*0.0235-128" (QuantizeLinear: step and zero point), for
    /// plan dumps.
    public var description: String {
        let e = step.exponent
        let pow2 = step == Float(sign: .plus, exponent: e, significand: 1)
        let base = (signed ? "s8" : "u8") + "*" + (pow2 ? "2^\(e)" : "\(step)")
        guard case .linear = rounding else { return base }
        return base + (zeroPoint < 0 ? "+\(-zeroPoint)" : "-\(zeroPoint)")
    }

    /// The float a code stands for.
    public func value(_ code: Int) -> Float { Float(code - zeroPoint) * step }
}
