/// Reshape, Transpose, Concatenate, Split, Slice.
public enum ShapeFunctions {
    public static let all: [any Function.Type] = []
}
