import CKilnKernels
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

    /// ResNet-20 in evaluation mode with random weights, non-trivial running statistics and a random input.
    static func randomResNet(batchSize: Int, seed: UInt64) throws -> Zoo.Model {
        let model = try Zoo.resnet20.build(batchSize: batchSize, training: false)
        var rng = SplitMix64(seed: seed)
        for (name, v) in model.network.getParameters(gradOnly: false) {
            if name.hasSuffix("var") { try fill(v, &rng, 0.5...2) }
            else if name.hasSuffix("mean") || name.hasSuffix("beta") || name.hasSuffix("gamma") { try fill(v, &rng, -1...1) }
        }
        try fill(model.input, &rng, 0...255)
        return model
    }

    @Test func resnetInferenceIsBitIdentical() throws {
        try Parameters.isolated {
            let model = try Self.randomResNet(batchSize: 3, seed: 42)
            let (fused, a) = try Self.run([model.prediction], fusion: true)
            let (plain, b) = try Self.run([model.prediction], fusion: false)
            #expect(a == b)
            let names = fused.steps.map { $0.function }
            // The stem and every block's first conv: conv-BN-ReLU. Every block's second conv, or its projection
            // shortcut, takes the residual Add2 and the ReLU after it; the other of the two is conv-BN.
            #expect(names.filter { $0 == "Convolution+BatchNormalization+ReLU" }.count == 10)
            #expect(names.filter { $0 == "Convolution+BatchNormalization+Add2+ReLU" }.count == 9)
            #expect(names.filter { $0 == "Convolution+BatchNormalization" }.count == 2)
            #expect(!names.contains("BatchNormalization") && !names.contains("ReLU") && !names.contains("Add2"))
            #expect(fused.steps.count == plain.steps.count - 21 - 9 - 19)
            #expect(fused.arenaBytes <= plain.arenaBytes)
        }
    }

    /// Batch 1 on two threads: each sample's blocks of maps are shared between the threads, each applying the
    /// epilogue (BN, the residual, ReLU) to its maps. Same bits as the separate steps on one thread.
    @Test func resnetBatchOneOnTwoThreadsIsBitIdentical() throws {
        try Parameters.isolated {
            let model = try Self.randomResNet(batchSize: 1, seed: 43)
            let (_, reference) = try Self.run([model.prediction], fusion: false)
            for fusion in [true, false] {
                let (_, a) = try Threads.with(2) { try Self.run([model.prediction], fusion: fusion) }
                #expect(a == reference, "fusion \(fusion)")
            }
        }
    }

    struct Chain: CustomTestStringConvertible, Sendable {
        var bias = false, bn = false, residual = false, relu = false, relu6 = false, group = 1, kernel = 3
        /// 16-wide rows, where the direct kernel runs the product; with a NaN and infinities among the inputs.
        var wide = false
        var testDescription: String {
            "bias \(bias) bn \(bn) residual \(residual) relu \(relu) relu6 \(relu6) group \(group) kernel \(kernel) wide \(wide)"
        }
    }

    /// Small chains with and without bias, groups, a ReLU alone, BN without scale or bias, a residual that is
    /// computed (and whose memory the output takes over) or a 1x1 convolution's residual (never shared), ReLU6
    /// (MobileNets') after BN, a depthwise convolution or a residual; on the direct kernel's rows (on the AVX2 and
    /// generic tile paths), with non-finite inputs.
    @Test(arguments: [
        Chain(bias: true, bn: true, relu: true), Chain(bn: true, group: 2), Chain(bias: true, relu: true),
        Chain(bn: true, relu: true, group: 4), Chain(bn: true, residual: true, relu: true),
        Chain(bias: true, residual: true), Chain(bn: true, residual: true, relu: true, kernel: 1),
        Chain(bn: true, relu6: true), Chain(bias: true, relu6: true, group: 4), Chain(residual: true, relu6: true, kernel: 1),
        Chain(bias: true, bn: true, residual: true, relu6: true, wide: true), Chain(bn: true, relu: true, wide: true),
        Chain(residual: true, relu: true, wide: true), Chain(bias: true, wide: true),
    ])
    func chainsAreBitIdentical(_ c: Chain) throws {
        var rng = SplitMix64(seed: 7)
        let x = try Variable(shape: [2, 4, 7, c.wide ? 16 : 6])
        let w = try Variable(shape: [8, 4 / c.group, c.kernel, c.kernel])
        try Self.fill(x, &rng, -1...1)
        if c.wide {
            var values = x.d
            values[5] = .nan; values[40] = .infinity; values[77] = -.infinity
            try x.setData(values)
        }
        // Larger weights for ReLU6, so that values pass its upper bound.
        try Self.fill(w, &rng, c.relu6 ? -8...8 : -1...1)
        let pad = c.kernel == 3 ? [1, 1] : [0, 0]
        // The residual is made before the convolution, from x, so it dies at the fused step.
        let side = try Variable(shape: [8, 4, 1, 1])
        try Self.fill(side, &rng, -1...1)
        let residual = c.residual ? try F.tanh(F.convolution(x, side, nil)) : nil
        var h = try F.convolution(x, w, c.bias ? Variable(shape: [8]) : nil, pad: pad, group: c.group)
        if c.bias, let b = h.parent?.inputs[2] { try Self.fill(b, &rng, -1...1) }
        if c.bn {
            let gamma = try Variable(shape: [1, 8, 1, 1]), mean = try Variable(shape: [1, 8, 1, 1])
            let variance = try Variable(shape: [1, 8, 1, 1])
            try Self.fill(gamma, &rng, -2...2); try Self.fill(mean, &rng, -1...1); try Self.fill(variance, &rng, 0.1...3)
            h = try F.batchNormalization(h, nil, gamma, mean, variance, batchStat: false)
        }
        if let residual { h = try F.add2(residual, h) }
        if c.relu { h = try F.relu(h) }
        if c.relu6 { h = try F.relu6(h) }
        // One more step, so that the fused output is an arena value (roots have their own memory).
        h = try F.mulScalar(h, val: 2)
        let (fused, a) = try Self.run([h], fusion: true)
        let (_, b) = try Self.run([h], fusion: false)
        #expect(a.map { $0.map(\.bitPattern) } == b.map { $0.map(\.bitPattern) })
        if c.wide {
            #expect(a[0].contains { $0.isNaN })
            kiln_tile_force_path("generic")
            defer { kiln_tile_force_path(nil) }
            let (_, g) = try Self.run([h], fusion: true)
            #expect(g.map { $0.map(\.bitPattern) } == b.map { $0.map(\.bitPattern) })
        }
        #expect(fused.steps.count == (c.residual ? 4 : 2))
        #expect(a[0].contains { $0 != 0 })
        // ReLU6's upper bound is reached (the outputs are doubled).
        if c.relu6 { #expect(a[0].contains(12)) }
        if c.residual {
            // Output over the residual's memory, except where the 1x1 product is written straight to the output.
            #expect((fused.aliases[fused.steps[2].outputs[0]] != nil) == (c.kernel != 1))
        }
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
