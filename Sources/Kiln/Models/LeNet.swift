import KilnGraph

/// nnabla-examples' LeNet for 28x28 grey images: conv5x5 16, maxpool 2, relu, conv5x5 16, maxpool 2, relu,
/// affine 50, relu, affine 10, on images scaled by 1/255.
public final class LeNet: Module {
    public let conv1: Module.Convolution
    public let conv2: Module.Convolution
    public let fc3: Module.Affine
    public let fc4: Module.Affine

    public init(rng: NumpyRandom? = nil) throws {
        conv1 = try Convolution(inMaps: 1, outMaps: 16, kernel: [5, 5], rng: rng)
        conv2 = try Convolution(inMaps: 16, outMaps: 16, kernel: [5, 5], rng: rng)
        fc3 = try Affine(nInMaps: 16 * 4 * 4, nOutMaps: 50, rng: rng)
        fc4 = try Affine(nInMaps: 50, nOutMaps: 10, rng: rng)
        try super.init()
    }

    public override func call(_ image: Variable) throws -> Variable {
        var h = try F.mulScalar(image, val: 1.0 / 255)
        h = try F.relu(F.maxPooling(conv1(h), kernel: [2, 2]))
        h = try F.relu(F.maxPooling(conv2(h), kernel: [2, 2]))
        h = try F.relu(fc3(h))
        return try fc4(h)
    }
}

/// A multi-layer perceptron for 28x28 images: two hidden layers of 256 with ReLU.
public final class MLP: Module {
    public let fc1: Module.Affine
    public let fc2: Module.Affine
    public let fc3: Module.Affine

    public init(rng: NumpyRandom? = nil) throws {
        fc1 = try Affine(nInMaps: 784, nOutMaps: 256, rng: rng)
        fc2 = try Affine(nInMaps: 256, nOutMaps: 256, rng: rng)
        fc3 = try Affine(nInMaps: 256, nOutMaps: 10, rng: rng)
        try super.init()
    }

    public override func call(_ image: Variable) throws -> Variable {
        var h = try F.mulScalar(image, val: 1.0 / 255)
        h = try F.relu(fc1(h))
        h = try F.relu(fc2(h))
        return try fc3(h)
    }
}
