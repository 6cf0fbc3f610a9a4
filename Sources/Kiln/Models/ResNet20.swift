import KilnGraph
import KilnCompiler

/// ResNet-20 for CIFAR-10 (He et al. 2016): a 3x3 stem of 16 maps, three stages of three basic blocks
/// (16, 32, 64 maps; the first block of stages 2 and 3 strides by 2 with a 1x1 projection shortcut),
/// global average pooling and an affine layer to 10 classes. Every convolution is followed by BN.
public final class ResNet20: Module {
    /// A convolution without bias followed by batch normalization.
    public final class ConvBN: Module {
        public let conv: Module.Convolution
        public let bn: Module.BatchNorm2d

        public init(_ inMaps: Int, _ outMaps: Int, kernel: Int, stride: Int, rng: NumpyRandom?) throws {
            let p = kernel / 2
            conv = try Convolution(inMaps: inMaps, outMaps: outMaps, kernel: [kernel, kernel], pad: [p, p],
                                   stride: [stride, stride], rng: rng, withBias: false)
            bn = try BatchNorm2d(nFeatures: outMaps)
            try super.init()
        }

        public override func call(_ x: Variable) throws -> Variable { try bn(conv(x)) }
    }

    /// conv-BN-relu-conv-BN plus the shortcut (identity, or a strided 1x1 projection with BN), then relu.
    public final class BasicBlock: Module {
        public let conv1: ConvBN
        public let conv2: ConvBN
        public let shortcut: ConvBN?

        public init(_ inMaps: Int, _ outMaps: Int, stride: Int, rng: NumpyRandom?) throws {
            conv1 = try ConvBN(inMaps, outMaps, kernel: 3, stride: stride, rng: rng)
            conv2 = try ConvBN(outMaps, outMaps, kernel: 3, stride: 1, rng: rng)
            shortcut = stride == 1 && inMaps == outMaps ? nil : try ConvBN(inMaps, outMaps, kernel: 1, stride: stride, rng: rng)
            try super.init()
        }

        public override func call(_ x: Variable) throws -> Variable {
            let h = try conv2(F.relu(conv1(x)))
            return try F.relu(F.add2(h, shortcut.map { try $0(x) } ?? x))
        }
    }

    public let stem: ConvBN
    public let stage1: [BasicBlock]
    public let stage2: [BasicBlock]
    public let stage3: [BasicBlock]
    public let fc: Module.Affine

    public init(rng: NumpyRandom? = nil) throws {
        stem = try ConvBN(3, 16, kernel: 3, stride: 1, rng: rng)
        func stage(_ inMaps: Int, _ maps: Int, stride: Int) throws -> [BasicBlock] {
            try (0..<3).map { b in try BasicBlock(b == 0 ? inMaps : maps, maps, stride: b == 0 ? stride : 1, rng: rng) }
        }
        stage1 = try stage(16, 16, stride: 1)
        stage2 = try stage(16, 32, stride: 2)
        stage3 = try stage(32, 64, stride: 2)
        fc = try Affine(nInMaps: 64, nOutMaps: 10, rng: rng)
        try super.init()
    }

    /// Batch statistics (training) or running statistics (inference) in every BN layer, for the graphs
    /// built from now on.
    public var batchStat: Bool = true {
        didSet {
            for (_, m) in getModules() { (m as? Module.BatchNormalization)?.batchStat = batchStat }
        }
    }

    public override func call(_ image: Variable) throws -> Variable {
        var h = try F.relu(stem(image))
        for block in stage1 + stage2 + stage3 { h = try block(h) }
        return try fc(F.globalAveragePooling(h))
    }
}
