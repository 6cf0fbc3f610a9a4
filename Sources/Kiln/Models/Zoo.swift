import KilnCore
import KilnGraph

/// The model zoo used by the CLI, tests and benchmarks: LeNet and an MLP for 28x28 images (Fashion-MNIST),
/// and ResNet-20 for 32x32 RGB images (CIFAR-style, with batch normalization).
public enum Zoo: String, CaseIterable, Sendable {
    case lenet, resnet20, mlp

    public static var names: [String] { allCases.map { $0.rawValue } }

    /// A built model: its input and label variables, the prediction and the training loss.
    public struct Model {
        public var input: Variable
        public var label: Variable
        public var prediction: Variable
        public var loss: Variable
        /// What a plan of this mode computes: the loss for training, the prediction for inference.
        public var root: Variable
        /// The network (its parameters are `network.getParameters()`).
        public var network: Module
    }

    public var inputShape: [Int] {
        switch self {
        case .lenet, .mlp: return [1, 28, 28]
        case .resnet20: return [3, 32, 32]
        }
    }

    /// A new network of this kind, initialised from `rng` (the global generator when nil).
    public func network(rng: NumpyRandom? = nil) throws -> Module {
        switch self {
        case .lenet: return try LeNet(rng: rng)
        case .mlp: return try MLP(rng: rng)
        case .resnet20: return try ResNet20(rng: rng)
        }
    }

    /// Builds the graph of `network` (a new one when nil) for a batch: `training` picks batch statistics for
    /// BN and the loss as root. Building twice on one network shares its parameters (a training graph and an
    /// evaluation graph, say).
    public func build(batchSize: Int, training: Bool, network: Module? = nil) throws -> Model {
        guard batchSize > 0 else { throw KilnError.invalidShape("batch size must be positive, got \(batchSize)") }
        let net = try network ?? self.network()
        (net as? ResNet20)?.batchStat = training
        let x = try Variable(shape: [batchSize] + inputShape, name: "x")
        let t = try Variable(shape: [batchSize, 1], dtype: .int32, name: "t")
        let y = try net(x)
        let loss = try F.mean(F.softmaxCrossEntropy(y, t))
        return Model(input: x, label: t, prediction: y, loss: loss, root: training ? loss : y, network: net)
    }
}
