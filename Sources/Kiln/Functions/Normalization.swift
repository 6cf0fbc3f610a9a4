/// BatchNormalization.
public enum NormalizationFunctions {
    public static let all: [any Function.Type] = []
}
