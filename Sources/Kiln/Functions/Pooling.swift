/// MaxPooling, AveragePooling, GlobalAveragePooling.
public enum PoolingFunctions {
    public static let all: [any Function.Type] = []
}
