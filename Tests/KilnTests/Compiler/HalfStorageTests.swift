import Testing
@testable import Kiln
@testable import KilnCompiler

/// Half-precision plans: float16 storage of activations and gradients, float32 kernels through staging.
/// Expected values come from the float32 plan of the same graph (within float16 rounding) or from Swift's own
/// Float16 conversion of a hand-computed value.
struct HalfStorageTests {
    static let half = CompileOptions(precision: .half)

    static func fill(_ v: Variable, _ rng: inout SplitMix64, _ range: ClosedRange<Float>) throws {
        try v.setData((0..<v.size).map { _ in Float.random(in: range, using: &rng) })
    }

    static func relativeError(_ a: [Float], _ b: [Float]) -> Double {
        var num = 0.0, den = 0.0
        for (x, y) in zip(a, b) { num += Double(x - y) * Double(x - y); den += Double(y) * Double(y) }
        return (num / max(den, 1e-30)).squareRoot()
    }

    /// One training step's loss and parameter gradients under the given options, back-propagated from
    /// `scale` and divided by it (loss scaling keeps small gradients above float16's subnormals).
    static func step(_ model: Zoo.Model, _ options: CompileOptions, scale: Float = 1) throws -> (loss: Float, grads: [[Float]], plan: Plan) {
        let exe = try Compiler.compile(model.loss, .training, options: options)
        try exe.plan.verify()
        let params = model.network.getParameters(gradOnly: true)
        for (_, p) in params { p.zeroGrad() }
        try exe.run(seed: scale)
        return (model.loss.d[0], params.map { $0.variable.g.map { $0 / scale } }, exe.plan)
    }

    /// Gradients of a half plan against the float plan's. A network's gradients can be sensitive to tiny
    /// changes (ReLU masks flip, batch-norm backward subtracts nearly equal sums), so the yardstick is the float
    /// plan's own change when every input pixel moves by up to 5e-4 relative, float16's unit roundoff: half
    /// storage must not be much worse than that. LeNet must also be within 2% outright.
    @Test(arguments: [Zoo.lenet, Zoo.resnet20])
    func trainingMatchesFloatWithinHalfRounding(_ zoo: Zoo) throws {
        try Parameters.isolated {
            let model = try zoo.build(batchSize: 4, training: true)
            var rng = SplitMix64(seed: 11)
            try Self.fill(model.input, &rng, 0...255)
            try model.label.setData((0..<4).map { Float($0 * 3 % 10) })
            let f = try Self.step(model, CompileOptions())
            let h = try Self.step(model, Self.half, scale: 1024)
            #expect(abs(h.loss - f.loss) <= 2e-3 * max(1, abs(f.loss)))
            #expect(h.plan.buffers.contains { $0.type.dtype == .float16 })
            let x = model.input.d
            try model.input.setData(x.map { $0 * (1 + 5e-4 * Float.random(in: -1...1, using: &rng)) })
            let p = try Self.step(model, CompileOptions())
            let halfError = zip(h.grads, f.grads).map { Self.relativeError($0, $1) }
            let perturbedError = zip(p.grads, f.grads).map { Self.relativeError($0, $1) }
            let mean = { (e: [Double]) in e.reduce(0, +) / Double(e.count) }
            #expect(mean(halfError) <= 2 * mean(perturbedError) + 1e-3)
            if zoo == .lenet { #expect(halfError.allSatisfy { $0 < 2e-2 }) }
            // The classifier's gradients come first in backward, before errors can build up.
            #expect(halfError.last! < 5e-3)
        }
    }

    /// Where a value is stored (float16, or float32 rounded to float16) must not change any result: ResNet-20
    /// and LeNet training, loss and every parameter gradient bit for bit, against storing everything as float16.
    @Test(arguments: [Zoo.lenet, Zoo.resnet20])
    func storageChoiceDoesNotChangeResults(_ zoo: Zoo) throws {
        try Parameters.isolated {
            let model = try zoo.build(batchSize: 3, training: true)
            var rng = SplitMix64(seed: 12)
            try Self.fill(model.input, &rng, 0...255)
            try model.label.setData([1, 4, 7] as [Float])
            var everywhere = Self.half
            everywhere.halfStorageEverywhere = true
            let all = try Self.step(model, everywhere, scale: 64)
            let chosen = try Self.step(model, Self.half, scale: 64)
            #expect(all.loss == chosen.loss)
            #expect(all.grads == chosen.grads)
            #expect(all.plan.buffers.allSatisfy { !($0.kind == .activation || $0.kind == .gradient) || $0.type.dtype != .float32 })
            // Both forms occur, and the chosen plan never needs more memory.
            #expect(chosen.plan.buffers.contains { $0.type.dtype == .float16 })
            #expect(chosen.plan.steps.contains { !$0.rounded.isEmpty })
            #expect(chosen.plan.lowerBoundBytes <= all.plan.lowerBoundBytes)
        }
    }

    /// With rounding in place of staging where it costs less, a half plan is never larger than the float plan
    /// for the zoo (inference plans have almost nothing waiting across steps).
    @Test(arguments: [Zoo.lenet, Zoo.resnet20, Zoo.mlp])
    func halfPlansAreNeverLarger(_ zoo: Zoo) throws {
        try Parameters.isolated {
            for mode in PlanMode.allCases {
                let model = try zoo.build(batchSize: 32, training: mode == .training)
                // Both keep every value backward reads: recomputation is another choice (below).
                let f = try Compiler.plan([model.root], mode, options: CompileOptions(recompute: false))
                let h = try Compiler.plan([model.root], mode, options: CompileOptions(precision: .half, recompute: false))
                try h.verify()
                #expect(h.lowerBoundBytes <= f.lowerBoundBytes, "\(zoo) \(mode): \(h.lowerBoundBytes) > \(f.lowerBoundBytes)")
                // Recomputation never makes a half plan larger (the plan that keeps everything is a candidate).
                let r = try Compiler.plan([model.root], mode, options: Self.half)
                try r.verify()
                #expect(r.arenaBytes <= h.arenaBytes)
            }
        }
    }

    @Test func resnetTrainingArenaShrinksByAlmostHalf() throws {
        try Parameters.isolated {
            let model = try Zoo.resnet20.build(batchSize: 32, training: true)
            // Float plans without training fusion, which half precision plans do not get: the same steps.
            let f = try Compiler.plan([model.loss], .training, options: CompileOptions(fusion: false, recompute: false))
            let h = try Compiler.plan([model.loss], .training, options: CompileOptions(precision: .half, recompute: false))
            try h.verify()
            // Float16 values are half the bytes; staging adds the float32 copies of one step's values.
            #expect(h.arenaBytes < f.arenaBytes * 6 / 10)
            #expect(h.persistentBytes == f.persistentBytes)
            #expect(h.steps.count == f.steps.count)
        }
    }

    /// x -> MulScalar(3) -> AddScalar(0.5): the middle value lives in the arena as float16, so the output is
    /// float(half(3x)) + 0.5, rounded in float32 (the output stays float32).
    @Test func valuesAreRoundedToHalfBetweenFunctions() throws {
        let x = try Variable(shape: [37])
        var rng = SplitMix64(seed: 3)
        try Self.fill(x, &rng, -100...100)
        let y = try F.addScalar(F.mulScalar(x, val: 3), val: 0.5)
        let exe = try Compiler.compile(y, .inference, options: Self.half)
        try exe.plan.verify()
        try exe.run()
        let expected = x.d.map { Float(Float16($0 * 3)) + 0.5 }
        #expect(y.d == expected)
    }

    /// Gradients beyond float16's range become infinities, which is what dynamic loss scaling detects.
    @Test func overflowingGradientsBecomeInfinite() throws {
        let x = try Variable(shape: [4])
        let w = try Variable(shape: [4], needGrad: true)
        try x.setData([1, 2, 3, 4] as [Float])
        try w.setData([1, 1, 1, 1] as [Float])
        let loss = try F.sum(F.mulScalar(F.mul2(x, w), val: 1))
        let exe = try Compiler.compile(loss, .training, options: Self.half)
        w.zeroGrad()
        try exe.run(seed: 1e5)
        #expect(w.g.allSatisfy { $0.isInfinite })
        w.zeroGrad()
        try exe.run(seed: 1000)
        #expect(w.g == [1000, 2000, 3000, 4000])
    }

    /// An in-place ReLU keeps one staging region for its input and output.
    @Test func inPlaceStepsShareTheirStagingRegion() throws {
        let x = try Variable(shape: [8, 16])
        let h = try F.relu(F.mulScalar(x, val: 2))
        let y = try F.addScalar(h, val: 1)
        var everywhere = Self.half
        everywhere.halfStorageEverywhere = true
        let plan = try Compiler.plan([y], .inference, options: everywhere)
        try plan.verify()
        let relu = try #require(plan.steps.first { $0.function == "ReLU" })
        #expect(relu.staged.count == 2)
        #expect(Set(relu.staged.map(\.offset)).count == 1)
        #expect(plan.buffers[relu.staging!].bytes == 8 * 16 * 4)
        #expect(plan.dump().hasPrefix("plan inference  clear_buffer=true  clear_no_need_grad=true  precision=half\n"))
    }

    /// Fused inference steps stage like any other: ResNet-20 evaluation agrees with the float plan.
    @Test func fusedResNetInferenceMatchesFloat() throws {
        try Parameters.isolated {
            let model = try Zoo.resnet20.build(batchSize: 2, training: false)
            var rng = SplitMix64(seed: 5)
            try Self.fill(model.input, &rng, 0...255)
            let f = try Compiler.compile(model.prediction, .inference)
            try f.run()
            let expected = model.prediction.d
            let h = try Compiler.compile(model.prediction, .inference, options: Self.half)
            #expect(h.plan.steps.contains { $0.function.hasPrefix("Convolution+") && ($0.staging != nil || !$0.rounded.isEmpty) })
            try h.run()
            #expect(Self.relativeError(model.prediction.d, expected) < 1e-2)
        }
    }

    @Test func halfConversionRoundsToNearestEvenAndSaturatesToInfinity() {
        let src: [Float] = [1, 1 + 1 / 2048, 1 + 3 / 2048, 65504, 65520, -70000, 1e-8, 0.1, -0, 3.14159, 2, 4, 8, 16, 32, 64, 128]
        var h = [Float16](repeating: 0, count: src.count)
        var back = [Float](repeating: 0, count: src.count)
        HalfConversion.narrow(src.count, src, &h)
        HalfConversion.widen(src.count, h, &back)
        #expect(back == src.map { Float(Float16($0)) })
        #expect(back[1] == 1 && back[2] == 1 + 4 / 2048)  // ties to even
        #expect(back[4] == .infinity && back[5] == -.infinity)
    }
}
