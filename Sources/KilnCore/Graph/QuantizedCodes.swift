/// A float tensor held as 8-bit codes of a fixed-point grid: element value = code * `step`, the codes signed
/// (int8) or unsigned (uint8). Quantized plans store the outputs of nnabla's `FixedPointQuantize` this way
/// (`n <= 8`, a power-of-two `delta`): a quarter of the float bytes, and exactly the same values.
public struct QuantizedCodes: Hashable, Sendable, CustomStringConvertible {
    public var signed: Bool
    /// The grid's step (nnabla's `delta`).
    public var step: Float

    public init(signed: Bool, step: Float) {
        self.signed = signed
        self.step = step
    }

    /// "u8*2^-5" or "s8*0.1": the storage and its step, for plan dumps.
    public var description: String {
        let e = step.exponent
        let pow2 = step == Float(sign: .plus, exponent: e, significand: 1)
        return (signed ? "s8" : "u8") + "*" + (pow2 ? "2^\(e)" : "\(step)")
    }

    /// The float a code stands for.
    public func value(_ code: Int) -> Float { Float(code) * step }
}
