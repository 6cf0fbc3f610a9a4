import Testing
@testable import Kiln
@testable import KilnCompiler

/// The training half of fusion (`TrainingFusion`): a training-mode BatchNormalization, a residual Add2 and a
/// ReLU run as one step forward and one step backward, with exactly (bit for bit) the loss, gradients and
/// running statistics of the separate steps.
struct TrainingFusionTests {
    /// One training step: the loss, then every leaf's gradient and every parameter (running statistics
    /// included) afterwards.
    static func step(_ build: () throws -> (loss: Variable, leaves: [Variable]), fusion: Bool, recompute: Bool = true,
                     threads: Int = 1) throws -> (plan: Plan, values: [[Float]]) {
        try Parameters.isolated {
            let (loss, leaves) = try build()
            let exe = try Compiler.compile(loss, .training, options: CompileOptions(fusion: fusion, recompute: recompute),
                                           context: Context(threads: threads))
            try exe.plan.verify()
            for v in leaves where v.needGrad { v.zeroGrad() }
            try exe.run()
            return (exe.plan, [loss.d] + leaves.filter { $0.needGrad }.map { $0.g } + leaves.map { $0.d })
        }
    }

    static func expectSame(_ a: [[Float]], _ b: [[Float]], _ what: String) {
        #expect(a.count == b.count, "\(what)")
        for (i, (x, y)) in zip(a, b).enumerated() { #expect(x == y, "\(what): value \(i) differs") }
    }

    static func resNet() throws -> (loss: Variable, leaves: [Variable]) {
        let model = try Zoo.seededResNet20(batchSize: 4)
        return (model.loss, model.network.getParameters(gradOnly: false).map { $0.variable })
    }

    /// ResNet-20 at batch 4: every BN-ReLU and BN-Add2-ReLU chain is one step in forward and in backward, and
    /// the step's values are those of the plan without fusion, with and without recomputation, on 1 and 2 threads.
    @Test(arguments: [(true, 1), (false, 1), (true, 2)])
    func resNetStepIsBitIdentical(_ recompute: Bool, _ threads: Int) throws {
        let fused = try Self.step(Self.resNet, fusion: true, recompute: recompute, threads: threads)
        let plain = try Self.step(Self.resNet, fusion: false, recompute: recompute, threads: threads)
        Self.expectSame(fused.values, plain.values, "recompute \(recompute), \(threads) thread(s)")
        for kind in [StepKind.forward, .backward] {
            let names = fused.plan.steps.filter { $0.kind == kind }.map { $0.function }
            // The stem and each block's first BN with their ReLU; each block's second BN (or, in the two
            // projection blocks, one of the two BNs feeding the Add2) with the Add2 and ReLU; two BNs alone.
            #expect(names.filter { $0 == "BatchNormalization+ReLU" }.count == 10, "\(kind)")
            #expect(names.filter { $0 == "BatchNormalization+Add2+ReLU" }.count == 9, "\(kind)")
            #expect(names.filter { $0 == "BatchNormalization" }.count == 2, "\(kind)")
            #expect(!names.contains("ReLU") && !names.contains("Add2"), "\(kind)")
        }
        #expect(fused.plan.steps.count < plain.plan.steps.count)
        #expect(fused.plan.arenaBytes <= plain.plan.arenaBytes)
    }

    /// Small graphs covering the chain's variants: BN without scale or bias, an x that needs no gradient (BN
    /// over an input), a residual that is a parameter (its gradient adds) or that another function also reads
    /// (the fused step's gradient is one of two contributions), and a residual that is itself a BN output.
    @Test(arguments: 0..<6)
    func variantsAreBitIdentical(_ variant: Int) throws {
        let build = { () throws -> (loss: Variable, leaves: [Variable]) in
            var rng = SplitMix64(seed: UInt64(variant + 1))
            func leaf(_ shape: [Int], needGrad: Bool, _ range: ClosedRange<Float> = -1...1) throws -> Variable {
                let v = try Variable(shape: shape, needGrad: needGrad)
                try v.setData((0..<shape.reduce(1, *)).map { _ in Float.random(in: range, using: &rng) })
                return v
            }
            let shape = [3, 4, 5, 6], param = [1, 4, 1, 1]
            let x0 = try leaf(shape, needGrad: variant != 1)
            let w = try leaf([4, 4, 3, 3], needGrad: true)
            let x = variant == 1 ? x0 : try F.convolution(x0, w, nil, pad: [1, 1])
            let beta = try leaf(param, needGrad: true), gamma = try leaf(param, needGrad: true, 0.5...2)
            let mean = try leaf(param, needGrad: false), variance = try leaf(param, needGrad: false, 0.5...2)
            let noScale = variant == 2, noBias = variant == 3
            let bn = try F.batchNormalization(x, noBias ? nil : beta, noScale ? nil : gamma, mean, variance)
            let r = try leaf(shape, needGrad: true)
            var leaves = [x0, w, beta, gamma, mean, variance, r]
            let y: Variable
            switch variant {
            case 4:
                // The residual is also read by another function: its gradient has two contributions.
                y = try F.add2(F.relu(F.add2(bn, F.mulScalar(r, val: 2))), F.mulScalar(r, val: 3))
            case 5:
                // The residual is a second BN's output (a projection shortcut).
                let m2 = try leaf(param, needGrad: false), v2 = try leaf(param, needGrad: false, 0.5...2)
                leaves += [m2, v2]
                y = try F.relu(F.add2(bn, F.batchNormalization(r, nil, nil, m2, v2)))
            default:
                y = try F.relu(F.add2(bn, r))
            }
            return (try F.mean(F.mul2(y, y)), leaves)
        }
        let fused = try Self.step(build, fusion: true), plain = try Self.step(build, fusion: false)
        Self.expectSame(fused.values, plain.values, "variant \(variant)")
        #expect(fused.plan.steps.contains { $0.kind == .backward && $0.function == "BatchNormalization+Add2+ReLU" })
    }

    /// A BN without the Add2: BN-ReLU alone fuses; where another function also reads the BN output, or the
    /// BN output is a requested output, nothing fuses.
    @Test func chainsNeedTheirIntermediatesToThemselves() throws {
        try Parameters.isolated {
            let x = try Variable(shape: [4, 3, 2, 2], needGrad: true)
            try x.setData((0..<48).map { Float($0 % 7) - 3 })
            func norm() throws -> Variable {
                try F.batchNormalization(x, Variable(shape: [1, 3, 1, 1], needGrad: true),
                                         Variable(shape: [1, 3, 1, 1], needGrad: true), Variable(shape: [1, 3, 1, 1]),
                                         Variable(shape: [1, 3, 1, 1]))
            }
            func functions(_ roots: [Variable]) throws -> [String] {
                try Compiler.plan(roots, .training).steps.filter { $0.kind == .forward }.map { $0.function }
            }
            #expect(try functions([F.sum(F.relu(norm()))]).contains("BatchNormalization+ReLU"))
            let shared = try norm()
            #expect(try !functions([F.sum(F.add2(F.relu(shared), shared))]).contains { $0.contains("+") })
            let requested = try norm()
            #expect(try !functions([F.sum(F.relu(requested)), requested]).contains { $0.contains("+") })
        }
    }

    /// Half precision rounds every stored value to float16, and the separate steps round between BN, Add2 and
    /// ReLU: training fusion leaves those plans alone, as it does plans that keep every value (clear_buffer or
    /// clear_no_need_grad off) or have fusion off.
    @Test func onlyFloatPlansThatFreeValuesFuse() throws {
        try Parameters.isolated {
            let model = try Zoo.resnet20.build(batchSize: 2, training: true)
            func fusedSteps(_ options: CompileOptions) throws -> Int {
                try Compiler.plan([model.loss], .training, options: options).steps
                    .filter { $0.kind != .recompute && $0.function.contains("+") }.count
            }
            #expect(try fusedSteps(CompileOptions()) == 2 * (10 + 9))
            #expect(try fusedSteps(CompileOptions(precision: .half)) == 0)
            #expect(try fusedSteps(CompileOptions(clearBuffer: false)) == 0)
            #expect(try fusedSteps(CompileOptions(clearNoNeedGrad: false)) == 0)
            #expect(try fusedSteps(CompileOptions(fusion: false)) == 0)
        }
    }
}
