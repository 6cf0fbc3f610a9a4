import ArgumentParser
import Foundation
import Kiln
import KilnGraphviz

/// `kiln view MODEL -o FILE.(png|svg|pdf|dot)`: draws a model's graph (nnabla's SimpleGraph style) or, with
/// `--plan`, its memory plan, through libgvc (no `dot` process).
struct ViewCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "view",
        abstract: "Draw a model's graph, or its memory plan with --plan, as png, svg, pdf or dot.")

    static let formats = ["png", "svg", "pdf", "dot"]

    @Argument(help: "A zoo model name or a graph file (.json kiln-graph/1, .onnx, .nnp).") var model: String
    @Option(name: .shortAndLong, help: "The picture to write; its extension picks the format (png, svg, pdf, dot).")
    var output: String
    @Flag(help: "Show shapes, need_grad and function arguments.") var verbose = false
    @Flag(help: "Draw the memory plan (steps across, arena offsets down) instead of the graph.") var plan = false
    @Flag(help: "With --plan, inference: store convolution outputs in the padded planes their readers' direct kernel reads, where every reader takes them (off by default: measured no faster).") var layouts = false
    @Flag(help: "One box per chain of functions, parameters listed in it, values as edges, repeated blocks (a ResNet stage's) drawn once with their count.") var compact = false
    @Flag(name: .customLong("left-to-right"), help: "Lay the graph out left to right.") var leftToRight = false
    @Flag(name: .customLong("nnabla-labels"), help: "nnabla's SimpleGraph drawing: every function labelled with its scope, no clusters.") var nnablaLabels = false
    @Option(help: "inference or training: the plan drawn with --plan (and how zoo models are built).")
    var mode: PlanMode = .inference
    @Option(parsing: .unconditional, help: "Batch size for zoo models (graph files keep their own shapes).") var batchSize: Int?
    @Flag(name: .customLong("allow-non-finite"), help: "Load parameters holding NaN or infinity (refused by default).")
    var allowNonFinite = false
    @OptionGroup var params: ParametersOption
    @OptionGroup var memory: MemoryBudgetOption

    func validate() throws {
        let ext = (output as NSString).pathExtension.lowercased()
        guard Self.formats.contains(ext) else {
            throw ValidationError("cannot tell the format of '\(output)': the extension must be one of \(Self.formats.joined(separator: ", "))")
        }
        try Check.model(model, files: true)
        if let b = batchSize { try Check.positive(b, "--batch-size") }
        if compact && nnablaLabels { throw ValidationError("--compact draws Kiln's scoped picture; it cannot be combined with --nnabla-labels") }
    }

    func run() throws {
        try reportingErrors {
            try memory.apply()
            do {
                let format = (output as NSString).pathExtension.lowercased()
                let outputs = try ModelLoader.outputs(model, batchSize: batchSize ?? 64, mode: mode, allowNonFinite: allowNonFinite, parameters: params.path)
                if plan {
                    var options = CompileOptions()
                    options.layouts = layouts
                    let p = try Compiler.plan(outputs, mode, options: options)
                    try PlanPicture.render(p, to: output, format: format)
                } else {
                    var viewer = SimpleGraph(format: format, verbose: verbose)
                    viewer.scoped = !nnablaLabels
                    viewer.compact = compact
                    viewer.leftToRight = leftToRight
                    try viewer.createGraphvizDigraph(outputs).render(to: output)
                }
                print("wrote \(output)")
            } catch let e as GraphvizError {
                FileHandle.standardError.write(Data("kiln: error: \(e)\n".utf8))
                throw ExitCode(1)
            }
        }
    }
}

