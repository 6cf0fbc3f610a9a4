/// Add2, Sub2, Mul2, Div2 (broadcasting), AddScalar, MulScalar, PowScalar.
public enum ArithmeticFunctions {
    public static let all: [any Function.Type] = []
}
