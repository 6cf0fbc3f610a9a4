import ArgumentParser
import Foundation
import Kiln

enum OutputFormat: String, ExpressibleByArgument, CaseIterable { case text, json }

struct PlanCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plan", abstract: "Compile a zoo model or graph file and print its execution plan.")

    @Argument(help: "A zoo model (\(Zoo.names.joined(separator: ", "))) or a graph file (.json kiln-graph/1, .onnx, .nnp).") var model: String
    @Option(help: "inference or training.") var mode: PlanMode = .inference
    @Option(name: .customLong("batch-size"), parsing: .unconditional, help: "Batch size for zoo models.") var batchSize: Int = 64
    @Option(help: "float, or half: activations and their gradients stored as float16.") var precision: Precision = .float
    @Flag(name: .customLong("no-clear-buffer"), help: "Give every buffer its own memory (nnabla's clear_buffer=False).") var noClearBuffer = false
    @Flag(name: .customLong("no-fusion"), help: "Keep every function its own step (no convolution epilogues in inference plans, no joined BatchNormalization, Add2 and ReLU in training plans).") var noFusion = false
    @Flag(help: "Inference plans: store convolution outputs in the padded planes their readers' direct kernel reads, where every reader takes them (off by default: measured no faster).") var layouts = false
    @Flag(name: .customLong("no-recompute"), help: "Training plans: keep every value backward reads from forward, rather than rebuild BatchNormalization, Add2 and ReLU outputs in backward.") var noRecompute = false
    @Option(parsing: .unconditional, help: "Threads the plan is made for (convolution workspaces hold one slice per thread).") var threads: Int = 1
    @Option(help: "text or json.") var format: OutputFormat = .text
    @Option(name: .customLong("bucket-size"), help: ArgumentHelp("Training plans: lay the parameter gradients out in buckets of at most this size (as --max-memory), as distributed training does.", valueName: "size"))
    var bucketSize: String?
    @Flag(name: .customLong("allow-non-finite"), help: "Load parameters holding NaN or infinity (refused by default).")
    var allowNonFinite = false
    @OptionGroup var params: ParametersOption
    @OptionGroup var memory: MemoryBudgetOption

    func validate() throws {
        try Check.model(model, files: true)
        try Check.positive(batchSize, "--batch-size")
        try Check.positive(threads, "--threads")
        if let bucketSize {
            guard try MemoryBudgetOption.parse(bucketSize, option: "--bucket-size") != nil, mode == .training else {
                throw ValidationError("--bucket-size takes a size and --mode training, got '\(bucketSize)' for \(mode.rawValue)")
            }
        }
    }

    func run() throws {
        try reportingErrors {
            try memory.apply()
            Context.setDefault { $0.threads = threads }
            let outputs = try ModelLoader.outputs(model, batchSize: batchSize, mode: mode, allowNonFinite: allowNonFinite, parameters: params.path)
            var options = CompileOptions(clearBuffer: !noClearBuffer, fusion: !noFusion, precision: precision, recompute: !noRecompute)
            options.layouts = layouts
            options.gradientBucketBytes = try bucketSize.flatMap { try MemoryBudgetOption.parse($0, option: "--bucket-size") }
            let plan = try Compiler.plan(outputs, mode, options: options)
            try plan.verify()
            switch format {
            case .text: print(plan.dump(), terminator: "")
            case .json: print(plan.json().serialized())
            }
        }
    }
}

extension PlanMode: ExpressibleByArgument {}
extension Precision: ExpressibleByArgument {}

/// Resolves a MODEL argument: a zoo name or a graph file (`Check.model` has refused unknown names).
enum ModelLoader {
    static func outputs(_ model: String, batchSize: Int, mode: PlanMode, allowNonFinite: Bool, parameters: String? = nil) throws -> [Variable] {
        if let zoo = Zoo(rawValue: model) {
            Parameters.clear()
            let m = try zoo.build(batchSize: batchSize, training: mode == .training)
            if let parameters { try ParameterFile.load(into: m.network.getParameters(gradOnly: false), from: parameters, requireAll: true, allowNonFinite: allowNonFinite) }
            return [m.root]
        }
        // Plans and pictures need the graph's shapes, not its initial weights.
        return try ModelFile.load(path: model, parameters: parameters, allowNonFinite: allowNonFinite, initializeParameters: false).graph.outputs
    }
}
