import Testing
@testable import Kiln

/// Two threads compute what one thread computes. Every parallel loop is a value handed to the worker pool
/// (`ParallelPart` and friends), so these tests run each kind of loop split over threads, on tensors large
/// enough (`Threads.minimumWork` elements and up) for the split to happen.
struct ThreadedRunTests {
    /// A ResNet-20 training step at batch 8: every stage-1 tensor has 131,072 elements, so element-wise loops,
    /// batch normalisation, pooling, im2col/col2im and the convolution chunks all split. The loss and every
    /// gradient must match one thread's; only the convolution weight gradients are summed in another order
    /// (per-thread accumulators), so the comparison allows float32 rounding.
    @Test func resNetTrainingStepMatchesOneThread() throws {
        func step(threads: Int) throws -> (loss: Float, grads: [[Float]]) {
            try Parameters.isolated {
                let model = try Zoo.seededResNet20(batchSize: 8)
                return try Context.with({ $0.threads = threads }) {
                    let exe = try Compiler.compile(model.loss, .training)
                    #expect(exe.plan.threads == threads)
                    let params = model.network.getParameters(gradOnly: true)
                    for (_, p) in params { p.zeroGrad() }
                    try exe.run()
                    return (model.loss.d[0], params.map { $0.variable.g })
                }
            }
        }
        let one = try step(threads: 1), two = try step(threads: 2)
        #expect(abs(one.loss - two.loss) <= 1e-5 * abs(one.loss))
        for (a, b) in zip(one.grads, two.grads) {
            let scale = a.map { abs($0) }.max() ?? 0
            #expect(mismatch(b, a, rtol: 1e-3, atol: 1e-4 * scale + 1e-7) == nil)
        }
    }

    /// Every solver's update, weight decay, gradient scaling and clipping on a parameter of 300,000 values:
    /// element-wise, so two threads give the same bits as one.
    @Test func solverUpdatesMatchOneThreadBitForBit() throws {
        let makers: [() -> Solver] = [
            { Sgd(lr: 0.1) }, { Momentum(lr: 0.1) }, { Nesterov(lr: 0.1) }, { Adagrad() }, { RMSprop() },
            { Adam() }, { AdamW() }, { SgdW() },
        ]
        let n = 300_000
        var rng = SplitMix64(seed: 7)
        let start = (0..<n).map { _ in Float.random(in: -1...1, using: &rng) }
        let grad = (0..<n).map { _ in Float.random(in: -1...1, using: &rng) }
        for make in makers {
            func run(threads: Int) throws -> [Float] {
                let p = try Variable(shape: [n], needGrad: true, name: "p")
                try p.setData(start)
                let solver = make()
                solver.setParameters([(name: "p", variable: p)])
                try Threads.with(threads) {
                    for _ in 0..<2 {
                        try p.setGrad(grad)
                        solver.weightDecay(1e-3)
                        solver.scaleGrad(0.5)
                        solver.clipGradByNorm(100)
                        solver.update()
                    }
                }
                return p.d
            }
            let one = try run(threads: 1)
            #expect(try run(threads: 2) == one, "\(make().name)")
            #expect(one != start)
        }
    }
}
