// Plan compilation: the ResNet-20 training plan (lowering alone, and lowering plus binding into an
// Executable), and chains of 1k / 10k / 100k functions to show how compilation scales with graph size.
// Graphs are built in setup; only `Compiler.plan` / `Compiler.compile` are timed.
import Benchmark
import BenchSupport
import Foundation
import Kiln

/// Graphs stay alive for the whole process: releasing a 100k-function chain drops its nodes one into the next.
nonisolated(unsafe) var keptGraphs: [Variable] = []

/// The 100k ReLU chain's training compile (about 1.4 s) runs only with KILN_BENCH_HUGE=1, to keep `make bench`
/// short; the Add2 chain covers 100k for training.
let huge = ProcessInfo.processInfo.environment["KILN_BENCH_HUGE"] == "1"

let benchmarks: @Sendable () -> Void = {
    KilnBench.configure()
    let training = CompileOptions(clearBuffer: true, clearNoNeedGrad: true)

    for batch in [32] {
        func loss() throws -> Variable {
            Parameters.clear()
            let m = try Zoo.resnet20.build(batchSize: batch, training: true)
            keptGraphs.append(m.loss)
            return m.loss
        }
        KilnBench.register("plan resnet20 training b\(batch) (Compiler.plan)", maxDuration: .seconds(5), maxIterations: 20) {
            let l = try loss()
            return { _ = try Compiler.plan([l], .training, options: training) }
        }
        KilnBench.register("compile resnet20 training b\(batch) (Compiler.compile: plan + arena + kernels)",
                           maxDuration: .seconds(5), maxIterations: 20) {
            let l = try loss()
            return { _ = try Compiler.compile(l, .training, options: training) }
        }
        KilnBench.register("compile resnet20 inference b\(batch)", maxDuration: .seconds(5), maxIterations: 20) {
            Parameters.clear()
            let y = try Zoo.resnet20.build(batchSize: batch, training: false).prediction
            keptGraphs.append(y)
            return { _ = try Compiler.compile(y, .inference) }
        }
    }

    // Chains: relu(relu(...relu(x))) and h = add2(h, x) repeated, on a small tensor so kernels cost nothing.
    let shape = [4, 16]
    func reluChain(_ n: Int, grad: Bool) throws -> Variable {
        var h = try KilnBench.variable(shape, needGrad: grad)
        for _ in 0..<n { h = try F.relu(h) }
        keptGraphs.append(h)
        return h
    }
    func addChain(_ n: Int, grad: Bool) throws -> Variable {
        let x = try KilnBench.variable(shape, needGrad: grad)
        var h = x
        for _ in 0..<n { h = try F.add2(h, x) }
        keptGraphs.append(h)
        return h
    }
    for n in [1_000, 10_000, 100_000] {
        let label = n >= 1000 ? "\(n / 1000)k" : "\(n)"
        let limits: (Duration, Int) = n >= 100_000 ? (.seconds(30), 3) : (.seconds(10), 20)
        KilnBench.register("compile relu chain \(label) inference", maxDuration: limits.0, maxIterations: limits.1) {
            let y = try reluChain(n, grad: false)
            return { _ = try Compiler.compile(y, .inference) }
        }
        if n < 100_000 || huge {
            KilnBench.register("compile relu chain \(label) training", maxDuration: limits.0, maxIterations: limits.1) {
                let y = try reluChain(n, grad: true)
                return { _ = try Compiler.compile(y, .training, options: training) }
            }
        }
        KilnBench.register("compile add2 chain \(label) training", maxDuration: limits.0, maxIterations: limits.1) {
            let y = try addChain(n, grad: true)
            return { _ = try Compiler.compile(y, .training, options: training) }
        }
    }
}
