/// Affine, Convolution, Deconvolution.
public enum LinearFunctions {
    public static let all: [any Function.Type] = []
}
