// Whole-model steps, as a trainer runs them: training = zero the gradients, forward, backward, Adam(1e-3)
// update (what `Updater.update` does, without its data feeder), on random images and labels; inference =
// one run of the inference plan. `mallocCountTotal` is the number of mallocs in one step after the warm-up
// step: it must be 0 (plans allocate nothing once built; the solver's update loops allocate nothing).
import Benchmark
import BenchSupport
import Kiln

let benchmarks: @Sendable () -> Void = {
    KilnBench.configure()

    // What the framework itself counts for one iteration (wall clock overhead, mallocs): subtract it.
    KilnBench.register("baseline: empty iteration", maxDuration: .seconds(1)) { return {} }

    func model(_ zoo: Zoo, batch: Int, training: Bool) throws -> Zoo.Model {
        Parameters.clear()
        let m = try zoo.build(batchSize: batch, training: training)
        KilnBench.fillUniform(m.input.data, 0, 255)
        KilnBench.fillLabels(m.label.data, classes: 10)
        return m
    }

    for (zoo, batch) in [(Zoo.lenet, 64), (.resnet20, 32), (.resnet20, 128)] {
        let long = zoo == .resnet20
        KilnBench.register("train step \(zoo.rawValue) b\(batch) (forward + backward + Adam)", images: batch,
                           maxDuration: .seconds(long ? 20 : 5), maxIterations: long ? 30 : 500) {
            let m = try model(zoo, batch: batch, training: true)
            let solver = Adam(alpha: 1e-3)
            solver.setParameters(Parameters.current(gradOnly: true))
            let exe = try Compiler.compile(m.loss, .training, options: CompileOptions(clearBuffer: true, clearNoNeedGrad: true))
            return {
                solver.zeroGrad()
                try exe.run(.forward)
                try exe.run(.backward, seed: 1)
                solver.update()
            }
        }
    }
    for (zoo, batch) in [(Zoo.lenet, 256), (.resnet20, 256)] {
        KilnBench.register("inference \(zoo.rawValue) b\(batch)", images: batch,
                           maxDuration: .seconds(zoo == .resnet20 ? 20 : 5), maxIterations: 200) {
            let m = try model(zoo, batch: batch, training: false)
            let exe = try Compiler.compile(m.prediction, .inference)
            return { try exe.run() }
        }
    }

    // Mixed precision: float16 activations and gradients, the loss-scaled step DynamicLossScalingUpdater runs.
    KilnBench.register("train step resnet20 b32 half (loss scale 8)", images: 32, maxDuration: .seconds(20), maxIterations: 30) {
        let m = try model(.resnet20, batch: 32, training: true)
        let solver = Adam(alpha: 1e-3)
        solver.setParameters(Parameters.current(gradOnly: true))
        let exe = try Compiler.compile(m.loss, .training, options: CompileOptions(precision: .half))
        return {
            solver.zeroGrad()
            try exe.run(.forward)
            try exe.run(.backward, seed: 8)
            if !solver.checkInfOrNanGrad() {
                solver.scaleGrad(1 / 8)
                solver.update()
            }
        }
    }
    // Converted inference: every test-mode BN folded into the convolution before it (nnabla's
    // BatchNormalizationFoldedConverter), then compiled with fusion as usual.
    KilnBench.register("inference resnet20 b256 bn-folded", images: 256, maxDuration: .seconds(20), maxIterations: 200) {
        let m = try model(.resnet20, batch: 256, training: false)
        let folded = try BatchNormalizationFoldedConverter().convert([m.prediction])
        let exe = try Compiler.compile(folded.outputs, .inference)
        return { try exe.run() }
    }
}
