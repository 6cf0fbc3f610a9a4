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
    }

    public var inputShape: [Int] {
        switch self {
        case .lenet, .mlp: return [1, 28, 28]
        case .resnet20: return [3, 32, 32]
        }
    }

    /// Builds the model in the current parameter scope (parameters are created or reused by name).
    /// `training` picks batch statistics for BN and the loss as root.
    public func build(batchSize: Int, training: Bool) throws -> Model {
        guard batchSize > 0 else { throw KilnError.invalidShape("batch size must be positive, got \(batchSize)") }
        let x = try Variable(shape: [batchSize] + inputShape, name: "x")
        let t = try Variable(shape: [batchSize, 1], dtype: .int32, name: "t")
        let y: Variable
        switch self {
        case .lenet: y = try Zoo.lenet(x)
        case .mlp: y = try Zoo.mlp(x)
        case .resnet20: y = try Zoo.resnet20(x, training: training)
        }
        let loss = try F.mean(F.softmaxCrossEntropy(y, t))
        return Model(input: x, label: t, prediction: y, loss: loss, root: training ? loss : y)
    }

    /// nnabla-examples' LeNet: conv5x5 16, maxpool 2, relu, conv5x5 16, maxpool 2, relu, affine 50, relu,
    /// affine 10, on images scaled by 1/255.
    public static func lenet(_ image: Variable) throws -> Variable {
        var h = try F.mulScalar(image, val: 1.0 / 255)
        h = try PF.convolution(h, outMaps: 16, kernel: [5, 5], name: "conv1")
        h = try F.relu(F.maxPooling(h, kernel: [2, 2]))
        h = try PF.convolution(h, outMaps: 16, kernel: [5, 5], name: "conv2")
        h = try F.relu(F.maxPooling(h, kernel: [2, 2]))
        h = try F.relu(PF.affine(h, outMaps: 50, name: "fc3"))
        return try PF.affine(h, outMaps: 10, name: "fc4")
    }

    /// Two hidden layers of 256 with ReLU.
    public static func mlp(_ image: Variable) throws -> Variable {
        var h = try F.mulScalar(image, val: 1.0 / 255)
        h = try F.relu(PF.affine(h, outMaps: 256, name: "fc1"))
        h = try F.relu(PF.affine(h, outMaps: 256, name: "fc2"))
        return try PF.affine(h, outMaps: 10, name: "fc3")
    }

    /// ResNet-20 for CIFAR-10 (He et al. 2016): a 3x3 stem of 16 maps, three stages of three basic blocks
    /// (16, 32, 64 maps; the first block of stages 2 and 3 strides by 2 with a 1x1 projection shortcut),
    /// global average pooling and an affine layer to 10 classes. Every convolution is followed by BN.
    public static func resnet20(_ image: Variable, training: Bool) throws -> Variable {
        func convBN(_ x: Variable, _ maps: Int, _ kernel: Int, stride: Int, name: String) throws -> Variable {
            try Parameters.scope(name) {
                let p = kernel / 2
                let c = try PF.convolution(x, outMaps: maps, kernel: [kernel, kernel], pad: [p, p], stride: [stride, stride],
                                           withBias: false)
                return try PF.batchNormalization(c, batchStat: training)
            }
        }
        func block(_ x: Variable, _ maps: Int, stride: Int, name: String) throws -> Variable {
            try Parameters.scope(name) {
                var h = try F.relu(convBN(x, maps, 3, stride: stride, name: "conv1"))
                h = try convBN(h, maps, 3, stride: 1, name: "conv2")
                let shortcut = stride == 1 && x.shape[1] == maps ? x : try convBN(x, maps, 1, stride: stride, name: "shortcut")
                return try F.relu(F.add2(h, shortcut))
            }
        }
        var h = try F.relu(convBN(image, 16, 3, stride: 1, name: "stem"))
        for (s, maps) in [16, 32, 64].enumerated() {
            for b in 0..<3 {
                h = try block(h, maps, stride: s > 0 && b == 0 ? 2 : 1, name: "stage\(s + 1)/block\(b + 1)")
            }
        }
        h = try F.globalAveragePooling(h)
        return try PF.affine(h, outMaps: 10, name: "fc")
    }
}
