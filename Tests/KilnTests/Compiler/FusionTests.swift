import Testing
@testable import Kiln

/// The Fusion pass: which chains it joins, which it must leave alone, and that fused plans compute exactly
/// (bit for bit) what the separate steps compute.
struct FusionTests {
    static func fill(_ v: Variable, _ rng: inout SplitMix64, _ range: ClosedRange<Float>) throws {
        try v.setData((0..<v.shape.reduce(1, *)).map { _ in Float.random(in: range, using: &rng) })
    }

    static func run(_ roots: [Variable], fusion: Bool, mode: PlanMode = .inference) throws -> (Plan, [[Float]]) {
        let exe = try Compiler.compile(roots, mode, options: CompileOptions(fusion: fusion))
        try exe.plan.verify()
        try exe.run()
        return (exe.plan, roots.map { $0.d })
    }

    /// ResNet-20 in evaluation mode with random weights and non-trivial running statistics.
    @Test func resnetInferenceIsBitIdentical() throws {
        try Parameters.isolated {
            let model = try Zoo.resnet20.build(batchSize: 3, training: false)
            var rng = SplitMix64(seed: 42)
            for (name, v) in model.network.getParameters(gradOnly: false) {
                if name.hasSuffix("var") { try Self.fill(v, &rng, 0.5...2) }
                else if name.hasSuffix("mean") || name.hasSuffix("beta") || name.hasSuffix("gamma") { try Self.fill(v, &rng, -1...1) }
            }
            try Self.fill(model.input, &rng, 0...255)
            let (fused, a) = try Self.run([model.prediction], fusion: true)
            let (plain, b) = try Self.run([model.prediction], fusion: false)
            #expect(a == b)
            let names = fused.steps.map { $0.function }
            // 19 conv-BN-ReLU or conv-BN pairs, plus 2 projection shortcuts (conv-BN).
            #expect(names.filter { $0 == "Convolution+BatchNormalization+ReLU" }.count == 10)
            #expect(names.filter { $0 == "Convolution+BatchNormalization" }.count == 11)
            #expect(!names.contains("BatchNormalization"))
            #expect(fused.steps.count == plain.steps.count - 31)
            #expect(fused.arenaBytes <= plain.arenaBytes)
        }
    }

    /// Small chains with and without bias, groups, a ReLU alone, and BN without scale or bias.
    @Test(arguments: [(true, true, true, 1), (false, true, false, 2), (true, false, true, 1), (false, true, true, 4)])
    func chainsAreBitIdentical(_ c: (bias: Bool, bn: Bool, relu: Bool, group: Int)) throws {
        var rng = SplitMix64(seed: 7)
        let x = try Variable(shape: [2, 4, 7, 6])
        let w = try Variable(shape: [8, 4 / c.group, 3, 3])
        try Self.fill(x, &rng, -1...1)
        try Self.fill(w, &rng, -1...1)
        var h = try F.convolution(x, w, c.bias ? Variable(shape: [8]) : nil, pad: [1, 1], stride: [1, 2], group: c.group)
        if c.bias, let b = h.parent?.inputs[2] { try Self.fill(b, &rng, -1...1) }
        if c.bn {
            let gamma = try Variable(shape: [1, 8, 1, 1]), mean = try Variable(shape: [1, 8, 1, 1])
            let variance = try Variable(shape: [1, 8, 1, 1])
            try Self.fill(gamma, &rng, -2...2); try Self.fill(mean, &rng, -1...1); try Self.fill(variance, &rng, 0.1...3)
            h = try F.batchNormalization(h, nil, gamma, mean, variance, batchStat: false)
        }
        if c.relu { h = try F.relu(h) }
        let (fused, a) = try Self.run([h], fusion: true)
        let (_, b) = try Self.run([h], fusion: false)
        #expect(a == b)
        #expect(fused.steps.count == 1)
        #expect(a[0].contains { $0 != 0 })
    }

    /// Chains that must not be joined: training plans, clear_buffer off, an intermediate value with a second
    /// reader or asked for as an output, and BN with batch statistics.
    @Test func leavesUnsafeChainsAlone() throws {
        let x = try Variable(shape: [2, 3, 5, 5], needGrad: true)
        let w = try Variable(shape: [4, 3, 3, 3], needGrad: true)
        let y = try F.convolution(x, w, nil)
        let r = try F.relu(y)
        func stepCount(_ roots: [Variable], _ mode: PlanMode = .inference, clearBuffer: Bool = true) throws -> Int {
            try Compiler.plan(roots, mode, options: CompileOptions(clearBuffer: clearBuffer)).steps.filter { $0.kind == .forward }.count
        }
        #expect(try stepCount([r]) == 1)
        #expect(try stepCount([F.sum(r)], .training) == 3)
        #expect(try stepCount([r], clearBuffer: false) == 2)
        #expect(try stepCount([r, y]) == 2)
        #expect(try stepCount([F.add2(r, y)]) == 3)
        let stats = try (0..<2).map { _ in try Variable(shape: [1, 4, 1, 1]) }
        let bnTrain = try F.batchNormalization(y, nil, nil, stats[0], stats[1], batchStat: true)
        #expect(try stepCount([bnTrain]) == 2)
    }
}
