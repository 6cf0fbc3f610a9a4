import ArgumentParser
import Foundation
import Kiln

/// `kiln profile`: where the time of one plan run goes, step by step.
struct ProfileCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "profile", abstract: "Time every step of a model's plan on random data.")

    @Argument(help: "A zoo model (\(Zoo.names.joined(separator: ", "))) or a graph file (.json kiln-graph/1, .onnx, .nnp).") var model: String
    @Option(help: "inference or training (inference by default, as for plan and bench).") var mode: PlanMode = .inference
    @Option(name: .customLong("batch-size"), parsing: .unconditional, help: "Batch size for zoo models.") var batchSize: Int = 64
    @Option(parsing: .unconditional, help: "Timed iterations (after 2 untimed ones).") var iterations: Int = 20
    @Option(parsing: .unconditional, help: "Threads for kernels and OpenBLAS.") var threads: Int = 1
    @Option(parsing: .unconditional, help: "How many of the slowest steps to list.") var top: Int = 25
    @Flag(name: .customLong("no-recompute"), help: "Training plans: keep every value backward reads from forward, rather than rebuild BatchNormalization, Add2 and ReLU outputs in backward.") var noRecompute = false
    @OptionGroup var params: ParametersOption
    @OptionGroup var memory: MemoryBudgetOption

    func validate() throws {
        try Check.model(model, files: true)
        try Check.positive(batchSize, "--batch-size")
        try Check.positive(iterations, "--iterations")
        try Check.positive(threads, "--threads")
        try Check.notNegative(top, "--top")
    }

    func run() throws {
        try reportingErrors {
            try memory.apply()
            Context.setDefault { $0.threads = threads }
            // The model and data `kiln bench` times: a zoo model on random images, or a graph file's outputs.
            let setup = try BenchSetup(model: model, mode: mode, batchSize: batchSize, weights: params.path)
            let exe = try Compiler.compile(setup.roots, mode, options: CompileOptions(recompute: !noRecompute))
            _ = try exe.profile(iterations: 2)
            let t = try exe.profile(iterations: iterations)
            let total = t.reduce(0, +)
            var rows = exe.plan.steps.enumerated().map { ($0.offset, $0.element, t[$0.offset]) }
            rows.sort { $0.2 > $1.2 }
            print(String(format: "%@ %@ batch %d: %.3f ms per run", model, mode.rawValue, setup.batchSize, total / Double(iterations) * 1000))
            for (i, s, sec) in rows.prefix(top) {
                print(String(format: "%4d %-9@ %-22@ %8.3f ms %5.1f%%  ", i, s.kind.rawValue, s.function,
                             sec / Double(iterations) * 1000, sec / total * 100) + s.node)
            }
            // Totals per kind of step, so that many small steps of one function are not lost below the list.
            var byFunction: [String: Double] = [:]
            for (_, s, sec) in rows { byFunction["\(s.kind.rawValue) \(s.function)", default: 0] += sec }
            print("by function:")
            for (name, sec) in byFunction.sorted(by: { $0.value > $1.value }) {
                print(String(format: "  %-50@ %8.3f ms %5.1f%%", name, sec / Double(iterations) * 1000, sec / total * 100))
            }
        }
    }
}
