/// Sum, Mean.
public enum ReductionFunctions {
    public static let all: [any Function.Type] = []
}
