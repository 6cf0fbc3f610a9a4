import ArgumentParser
import Dispatch
import Foundation
import Kiln
import KilnMPI

/// `kiln bench`: times a compiled plan. Training runs what a trainer runs per step (zero the gradients,
/// forward, backward, an Adam(1e-3) update) on random images and labels; inference runs the inference plan.
/// Prints one `key: value` per line (machine-readable; Benchmarks/peers/run_peers.py parses it).
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Time a compiled plan: median ms per iteration, images/s, the plan's memory figures and peak RSS.")

    @Argument(help: "A zoo model (\(Zoo.names.joined(separator: ", "))) or a graph file (.json kiln-graph/1, .onnx, .nnp).") var model: String
    @Option(help: "inference or training.") var mode: PlanMode = .inference
    @Option(name: .customLong("batch-size"), parsing: .unconditional, help: "Batch size for zoo models.") var batchSize: Int = 64
    @Option(parsing: .unconditional, help: "Timed iterations (after the warm-up).") var iterations: Int = 20
    @Option(parsing: .unconditional, help: "Untimed iterations first.") var warmup: Int = 2
    @Option(parsing: .unconditional, help: "Threads for kernels and OpenBLAS.") var threads: Int = 1
    @Option(help: "float, or half: float16 activations and gradients, training with dynamic loss scaling.") var precision: Precision = .float
    @Flag(name: .customLong("no-fusion"), help: "Keep every function its own step (no convolution epilogues in inference plans, no joined BatchNormalization, Add2 and ReLU in training plans).") var noFusion = false
    @Flag(help: "Inference plans: store convolution outputs in the padded planes their readers' direct kernel reads, where every reader takes them (off by default: measured no faster).") var layouts = false
    @Flag(name: .customLong("no-recompute"), help: "Training plans: keep every value backward reads from forward, rather than rebuild BatchNormalization, Add2 and ReLU outputs in backward.") var noRecompute = false
    @Flag(help: "Then time iterations on 1 thread and on --threads threads alternately, in this process, and print the speed-up (load on a shared machine drifts between separate runs).")
    var speedup = false
    @Flag(name: .customLong("allow-non-finite"), help: "Load parameters holding NaN or infinity (refused by default).")
    var allowNonFinite = false
    @Flag(help: "Under `mpirun -np N`, with --mode training: time a step without exchange, with the gradient buckets all-reduced after backward and while backward runs, and the all-reduce alone, bucketed and per parameter.")
    var distributed = false
    @Option(name: .customLong("bucket-size"), help: ArgumentHelp("With --distributed: the gradient bucket size (as --max-memory).", valueName: "size"))
    var bucketSize: String = "4M"
    @OptionGroup var params: ParametersOption
    @OptionGroup var memory: MemoryBudgetOption

    func validate() throws {
        try Check.model(model, files: true)
        try Check.positive(batchSize, "--batch-size")
        try Check.positive(iterations, "--iterations")
        try Check.notNegative(warmup, "--warmup")
        try Check.positive(threads, "--threads")
        if speedup && threads < 2 { throw ValidationError("--speedup compares 1 thread with --threads, which must be 2 or more") }
        if distributed {
            guard mode == .training else { throw ValidationError("--distributed times training steps: add --mode training") }
            guard try MemoryBudgetOption.parse(bucketSize, option: "--bucket-size") != nil else {
                throw ValidationError("--bucket-size must be a size with --distributed, got '\(bucketSize)'")
            }
            if speedup { throw ValidationError("--speedup and --distributed cannot be combined") }
        }
    }

    func run() throws {
        try reportingErrors {
            try memory.apply()
            Context.setDefault { $0.threads = threads }
            // Baseline: the runtime loaded, nothing of the network built yet (peers report the same point).
            let baselineRSS = residentBytes()
            let setup = try BenchSetup(model: model, mode: mode, batchSize: batchSize, allowNonFinite: allowNonFinite, weights: params.path)
            if distributed {
                var options = CompileOptions(clearBuffer: true, clearNoNeedGrad: true, fusion: !noFusion,
                                             precision: precision, recompute: !noRecompute)
                options.layouts = layouts
                options.gradientBucketBytes = try MemoryBudgetOption.parse(bucketSize, option: "--bucket-size")
                try onEveryRank { comm in
                    print("model: \(model)")
                    print("threads: \(threads)")
                    try DistributedBench(setup: setup, options: options, iterations: iterations, warmup: warmup).run(comm: comm)
                }
                return
            }
            let compileStart = DispatchTime.now().uptimeNanoseconds
            var options = CompileOptions(clearBuffer: true, clearNoNeedGrad: true, fusion: !noFusion, precision: precision,
                                         recompute: !noRecompute)
            options.layouts = layouts
            let exe = try Compiler.compile(setup.roots, mode, options: options)
            let compileMs = Double(DispatchTime.now().uptimeNanoseconds - compileStart) / 1e6

            // The threads each step runs on: the plan's, or 1 in --speedup's one-thread iterations.
            var stepThreads = threads
            let step: () throws -> Void
            var solverStateBytes = 0
            switch mode {
            case .inference:
                step = { try exe.run(threads: stepThreads) }
            case .training:
                let solver = Adam(alpha: 1e-3)
                solver.setParameters(setup.parameters)
                solverStateBytes = solver.states.reduce(0) { $0 + $1.state.arrays.reduce(0) { $0 + $1.type.byteCount } }
                if precision == .half {
                    // What DynamicLossScalingUpdater does per step (with nnabla's initial scale of 8).
                    let scale: Float = 8
                    step = {
                        solver.zeroGrad()
                        try exe.run(.forward, threads: stepThreads)
                        try exe.run(.backward, seed: scale, threads: stepThreads)
                        if !solver.checkInfOrNanGrad() {
                            solver.scaleGrad(1 / scale)
                            solver.update()
                        }
                    }
                } else {
                    step = {
                        solver.zeroGrad()
                        try exe.run(.forward, threads: stepThreads)
                        try exe.run(.backward, seed: 1, threads: stepThreads)
                        solver.update()
                    }
                }
            }

            for _ in 0..<warmup { try step() }
            var times = [Double](repeating: 0, count: iterations)
            for i in 0..<iterations {
                let start = DispatchTime.now().uptimeNanoseconds
                try step()
                times[i] = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6
            }
            times.sort()
            let median = Self.median(times)
            let mean = times.reduce(0, +) / Double(iterations)

            // The plan's workspaces are sized for `threads`; on one thread only the first slice is used. Each
            // switch of thread count is followed by one untimed step: the first step after a switch finds the
            // data in the other core's cache, which would not happen in a run on one thread count.
            var alternating: (one: Double, many: Double)?
            if speedup {
                var one = [Double](), many = [Double]()
                for _ in 0..<iterations {
                    for (count, into) in [(1, 0), (threads, 1)] {
                        stepThreads = count
                        try step()
                        let start = DispatchTime.now().uptimeNanoseconds
                        try step()
                        let t = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6
                        if into == 0 { one.append(t) } else { many.append(t) }
                    }
                }
                Context.setDefault { $0.threads = threads }
                alternating = (Self.median(one.sorted()), Self.median(many.sorted()))
            }

            var usage = rusage()
            getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
            let plan = exe.plan
            func ms(_ v: Double) -> String { String(format: "%.3f", v) }
            print("model: \(model)")
            print("mode: \(mode.rawValue)")
            print("batch_size: \(setup.batchSize)")
            print("threads: \(threads)")
            print("gemm_kernels: \(OpenBLAS.report?.core ?? "swift")")
            print("kiln_kernels: \(KernelPaths.tiles)")
            print("precision: \(precision.rawValue)")
            print("warmup: \(warmup)")
            print("iterations: \(iterations)")
            print("compile_ms: \(ms(compileMs))")
            print("ms_per_iteration: \(ms(median))")
            print("ms_min: \(ms(times[0]))")
            print("ms_mean: \(ms(mean))")
            print("ms_max: \(ms(times[iterations - 1]))")
            print("images_per_second: \(String(format: "%.1f", Double(setup.batchSize) / (median / 1e3)))")
            print("steps: \(plan.steps.count)")
            print("arena_bytes: \(plan.arenaBytes)")
            print("lower_bound_bytes: \(plan.lowerBoundBytes)")
            print("naive_bytes: \(plan.naiveBytes)")
            print("persistent_bytes: \(plan.persistentBytes)")
            print("solver_state_bytes: \(solverStateBytes)")
            print("peak_rss_bytes: \(Int(usage.ru_maxrss) * 1024)")
            print("baseline_rss_bytes: \(baselineRSS)")
            if let alternating {
                print("alternating_ms_1_thread: \(ms(alternating.one))")
                print("alternating_ms_\(threads)_threads: \(ms(alternating.many))")
                print("speedup: \(String(format: "%.3f", alternating.one / alternating.many))")
            }
        }
    }

    static func median(_ sorted: [Double]) -> Double {
        let n = sorted.count
        return n % 2 == 1 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2
    }

    /// The resident set now (VmRSS of /proc/self/status), 0 where that cannot be read.
    func residentBytes() -> Int {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
        for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            return (Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0) * 1024
        }
        return 0
    }
}

/// What `kiln bench` runs: the roots to compile, the parameters to update and random data in the inputs.
struct BenchSetup {
    var roots: [Variable]
    var parameters: ParameterDictionary
    /// Images per iteration (for images/s).
    var batchSize: Int

    init(model: String, mode: PlanMode, batchSize: Int, allowNonFinite: Bool = false, weights: String? = nil) throws {
        if let zoo = Zoo(rawValue: model) {
            Parameters.clear()
            let m = try zoo.build(batchSize: batchSize, training: mode == .training)
            if let weights {
                try ParameterFile.load(into: m.network.getParameters(gradOnly: false), from: weights, requireAll: true, allowNonFinite: allowNonFinite)
            }
            BenchSetup.fillUniform(m.input.data, 0, 255)
            BenchSetup.fillLabels(m.label.data, classes: 10)
            roots = [m.root]
            // The zoo's modules hold their parameters (the global registry is empty).
            parameters = m.network.getParameters(gradOnly: true)
            self.batchSize = batchSize
            return
        }
        // A graph file: its outputs with the data it holds; leaves without data in the file are whatever the
        // loader initialised. Images per iteration is the leading dimension of the first leaf input.
        let g = try ModelFile.load(path: model, parameters: weights, allowNonFinite: allowNonFinite).graph
        roots = g.outputs
        parameters = ParameterDictionary(g.leaves.enumerated().filter { $0.element.needGrad && !$0.element.isInput && $0.element.dtype == .float32 }
            .map { (name: $0.element.name.isEmpty ? "leaf\($0.offset)" : $0.element.name, variable: $0.element) })
        self.batchSize = g.leaves.first { !$0.needGrad && $0.ndim > 0 }?.shape[0] ?? 1
    }

    /// Uniform floats in [low, high) from a fixed-seed LCG (the data only has to be plausible).
    static func fillUniform(_ a: NDArray, _ low: Float, _ high: Float) {
        var s: UInt64 = 0x9E3779B97F4A7C15
        let p = a.floats
        let scale = (high - low) / Float(1 << 24)
        for i in 0..<a.count {
            s = s &* 6364136223846793005 &+ 1442695040888963407
            p[i] = low + Float(s >> 40) * scale
        }
    }

    static func fillLabels(_ a: NDArray, classes: Int) {
        var s: UInt64 = 42
        let p = a.int32s
        for i in 0..<a.count {
            s = s &* 6364136223846793005 &+ 1442695040888963407
            p[i] = Int32((s >> 33) % UInt64(classes))
        }
    }
}
