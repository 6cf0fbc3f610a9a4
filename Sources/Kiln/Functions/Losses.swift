/// SoftmaxCrossEntropy, CategoricalCrossEntropy, SigmoidCrossEntropy, SquaredError, TopNError, BinaryError.
public enum LossFunctions {
    public static let all: [any Function.Type] = []
}
