/// Dropout.
public enum StochasticFunctions {
    public static let all: [any Function.Type] = []
}
