import Testing
@testable import Kiln
@testable import KilnCompiler

/// Training plans rebuild cheap values in backward rather than keep them from forward (`Recompute`): the
/// same numbers, a smaller arena.
struct RecomputeTests {
    static func options(_ precision: Precision = .float, recompute: Bool) -> CompileOptions {
        CompileOptions(precision: precision, recompute: recompute)
    }

    /// One ResNet-20 training step at batch 4, with and without recomputation: the loss, every gradient and
    /// every parameter afterwards (BN running statistics included: the recompute steps must not update them a
    /// second time) are the same bits.
    @Test(arguments: [Precision.float, .half])
    func resNetStepIsBitIdentical(_ precision: Precision) throws {
        func step(recompute: Bool) throws -> (plan: Plan, values: [[Float]]) {
            try Parameters.isolated {
                let model = try Zoo.seededResNet20(batchSize: 4)
                let exe = try Compiler.compile(model.loss, .training, options: Self.options(precision, recompute: recompute))
                try exe.plan.verify()
                let params = model.network.getParameters(gradOnly: false)
                for (_, p) in params where p.needGrad { p.zeroGrad() }
                try exe.run()
                let grads = params.filter { $0.variable.needGrad }.map { $0.variable.g }
                return (exe.plan, [model.loss.d] + grads + params.map { $0.variable.d })
            }
        }
        let kept = try step(recompute: false), rebuilt = try step(recompute: true)
        #expect(rebuilt.values.count == kept.values.count)
        for (i, (a, b)) in zip(kept.values, rebuilt.values).enumerated() {
            #expect(a == b, "value \(i) differs")
        }
        #expect(!kept.plan.steps.contains { $0.kind == .recompute })
        #expect(rebuilt.plan.steps.contains { $0.kind == .recompute })
        #expect(rebuilt.plan.arenaBytes < kept.plan.arenaBytes)
    }

    /// In ResNet-20 every BatchNormalization, Add2 and ReLU output is rebuilt (the stem and each stage start
    /// from values backward keeps: convolution outputs and the input), and no convolution is run again.
    @Test func resNetRebuildsEveryCheapValueAndNoConvolution() throws {
        try Parameters.isolated {
            let model = try Zoo.resnet20.build(batchSize: 8, training: true)
            let plan = try Compiler.plan([model.loss], .training)
            try plan.verify()
            let forward = plan.steps.prefix(plan.forwardStepCount)
            // A forward BN runs alone or at the head of a fused training step (named after it).
            let normalizations = Set(forward.filter { $0.function.hasPrefix("BatchNormalization") }.map { $0.node })
            let recomputes = plan.steps.filter { $0.kind == .recompute }
            // Every BN is rebuilt, alone or at the head of a fused step (named after it); every ReLU output is
            // rebuilt once, by a ReLU step or a fused one; an Add2 is rebuilt alone only where its ReLU is not.
            #expect(normalizations.count == 21)
            #expect(Set(recomputes.filter { $0.function.hasPrefix("BatchNormalization") }.map { $0.node }) == normalizations)
            #expect(recomputes.filter { $0.function == "ReLU" || $0.function.hasSuffix("+ReLU") }.count == 19)
            #expect(recomputes.allSatisfy {
                ["BatchNormalization", "Add2", "ReLU", "BatchNormalization+ReLU", "BatchNormalization+Add2+ReLU"]
                    .contains($0.function)
            })
            // ResNet-20's chains all fuse: the stem's BN+ReLU, each block's BN+ReLU and BN+Add2+ReLU; the
            // projections' BNs are rebuilt alone (their output feeds the Add2 of a fused step).
            #expect(recomputes.filter { $0.function == "BatchNormalization+ReLU" }.count == 10)
            #expect(recomputes.filter { $0.function == "BatchNormalization+Add2+ReLU" }.count == 9)
            #expect(recomputes.filter { $0.function == "BatchNormalization" }.count == 2)
            #expect(recomputes.count == 21)
            // The dump's step line and the JSON count them.
            let count = plan.steps.filter { $0.kind == .recompute }.count
            #expect(plan.dump().contains("(forward \(plan.forwardStepCount), recompute \(count))"))
            #expect(plan.json()["recompute_steps"]?.int == count)
            // Recompute steps run in the backward phase only, and never write a parameter (BN statistics).
            for (i, s) in plan.steps.enumerated() where s.kind == .recompute {
                #expect(i >= plan.forwardStepCount)
                #expect(s.outputs.allSatisfy { plan.buffers[$0].kind == .activation })
            }
        }
    }

    /// What issue 7 asks of the training arena: with recomputation ResNet-20's float32 arena at batch 32 is
    /// below 0.6 of the arena that keeps every value backward reads (which is XLA's figure within 1%).
    @Test func resNetArenaShrinks() throws {
        try Parameters.isolated {
            let model = try Zoo.resnet20.build(batchSize: 32, training: true)
            let kept = try Compiler.plan([model.loss], .training, options: Self.options(recompute: false))
            let rebuilt = try Compiler.plan([model.loss], .training)
            #expect(rebuilt.arenaBytes * 10 < kept.arenaBytes * 6, "\(rebuilt.arenaBytes) vs \(kept.arenaBytes)")
            #expect(rebuilt.arenaBytes == rebuilt.lowerBoundBytes)
        }
    }

    /// A chain of 100 links from a leaf that needs a gradient. A value whose rebuilding would take more than
    /// `Recompute.maximumSteps` (16) steps is kept and the chain starts again from it.
    @Test func longChainsKeepACheckpointEveryNineLinks() throws {
        // The links are named by the plan's count of "ReLU" nodes; in the shared registry another test's
        // parameter scope (PF, modules) could prefix some of their names while this graph is built.
        try Parameters.isolated { try checkLongChain() }
    }

    func checkLongChain() throws {
        #expect(Recompute.maximumSteps == 16)
        let x = try Variable(shape: [64], needGrad: true)
        var rng = SplitMix64(seed: 1)
        try x.setData((0..<64).map { _ in Float.random(in: -1...1, using: &rng) })
        var h = x
        for _ in 0..<100 { h = try F.relu(F.mulScalar(h, val: 1)) }
        // Each link is a MulScalar (backward reads nothing) and a ReLU (backward reads its output). Rebuilding
        // ReLU k from the last kept ReLU j takes 2(k - j) steps: ReLU j+8 takes 16; the MulScalar of link j+9
        // would be the 17th, so ReLU j+9 is kept. From x (a parameter): ReLUs 9, 18, ..., 99 are kept, ReLU 100
        // is the root; the 88 other ReLUs and their 88 MulScalars are rebuilt.
        let plan = try Compiler.plan([h], .training)
        try plan.verify()
        let rebuilt = Set(plan.steps.filter { $0.kind == .recompute }.map { $0.node })
        #expect(rebuilt.count == 88 + 88)
        let notRebuilt = (1...100).filter { k in !rebuilt.contains(k == 1 ? "ReLU" : "ReLU_\(k)") }
        #expect(notRebuilt == Array(stride(from: 9, through: 99, by: 9)) + [100])
        // Each rebuilding takes at most 16 steps: no recompute run between two backward steps is longer.
        var run = 0
        for s in plan.steps {
            run = s.kind == .recompute ? run + 1 : 0
            #expect(run <= Recompute.maximumSteps)
        }
        // And the gradient is the one of the plan that keeps everything.
        x.zeroGrad()
        try Compiler.compile(h, .training).run()
        let g = x.g
        x.zeroGrad()
        try Compiler.compile(h, .training, options: Self.options(recompute: false)).run()
        #expect(g == x.g)
    }

    /// A cheap function reading BN's running mean before the BN updates it in forward: rebuilt in backward it
    /// would read the updated mean, so its output is kept. (Backward reads the mean as it is then, updated,
    /// as nnabla's does: the gradient of relu(h * m)^2 is 2 relu(h * m_before) * m_after.)
    @Test func valuesChangedInPlaceAreNotReadAgain() throws {
        var rng = SplitMix64(seed: 4)
        func variable(_ shape: [Int], needGrad: Bool) throws -> Variable {
            let v = try Variable(shape: shape, needGrad: needGrad)
            try v.setData((0..<v.size).map { _ in Float.random(in: -1...1, using: &rng) })
            return v
        }
        let x = try variable([4, 3, 2, 2], needGrad: true), h = try variable([4, 3, 2, 2], needGrad: true)
        let beta = try variable([1, 3, 1, 1], needGrad: true), gamma = try variable([1, 3, 1, 1], needGrad: true)
        let mean = try variable([1, 3, 1, 1], needGrad: false), variance = try Variable(shape: [1, 3, 1, 1])
        try variance.setData([Float](repeating: 1, count: 3))
        // Made first, so scheduled before the BN: reads the mean as it was before this step.
        let scaled = try F.relu(F.mul2(h, mean))
        let normalized = try F.batchNormalization(x, beta, gamma, mean, variance)
        let loss = try F.sum(F.add2(F.mul2(scaled, scaled), normalized))
        let before: [Float] = [0.5, -1, 2]
        func gradient(recompute: Bool) throws -> (dh: [Float], after: [Float]) {
            try mean.setData(before)
            h.zeroGrad()
            let exe = try Compiler.compile(loss, .training, options: Self.options(recompute: recompute))
            try exe.plan.verify()
            try exe.run()
            if recompute { #expect(!exe.plan.steps.contains { $0.kind == .recompute && $0.function == "Mul2" }) }
            return (h.g, mean.d)
        }
        let kept = try gradient(recompute: false)
        #expect(kept.after != before)
        #expect(try gradient(recompute: true).dh == kept.dh)
        let expected = h.d.enumerated().map { i, v -> Float in
            let c = (i / 4) % 3
            return 2 * max(v * before[c], 0) * kept.after[c]
        }
        #expect(mismatch(kept.dh, expected, rtol: 1e-6, atol: 1e-6) == nil)
    }

    /// Recomputation is only a choice of the training plan: it changes nothing in inference plans, in plans
    /// without clear_buffer, or where nothing cheap is read by backward (LeNet: ReLU outputs come from
    /// convolutions that backward does not keep).
    @Test func recomputationOnlyWhereItSaves() throws {
        try Parameters.isolated {
            let lenet = try Zoo.lenet.build(batchSize: 16, training: true)
            for mode in PlanMode.allCases {
                let plan = try Compiler.plan([lenet.loss], mode)
                #expect(!plan.steps.contains { $0.kind == .recompute })
            }
            let resnet = try Zoo.resnet20.build(batchSize: 2, training: true)
            let naive = try Compiler.plan([resnet.loss], .training, options: CompileOptions(clearBuffer: false))
            #expect(!naive.steps.contains { $0.kind == .recompute })
        }
    }
}
