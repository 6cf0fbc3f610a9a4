/// FixedPointQuantize, Pow2Quantize.
public enum QuantizationFunctions {
    public static let all: [any Function.Type] = []
}
