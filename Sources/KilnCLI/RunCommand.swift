import ArgumentParser
import Foundation
import Kiln

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run", abstract: "Run a graph file (kiln-graph/1 or ONNX) on named input tensors.")

    @Argument(help: "The graph file: kiln-graph/1 JSON (.json), ONNX (.onnx) or nnabla (.nnp). An ONNX model's integer inputs (a Reshape's shape) are folded from the values given.") var graph: String
    @Option(help: "Input tensors: JSON {\"x\": {\"shape\": [...], \"data\": [...]}} (grad:NAME seeds backward), .safetensors, or NAME.npy for input NAME.") var inputs: String
    @Option(help: "Where to write the outputs (and gradients with --backward): .json, .safetensors, or .npy for a single output.") var outputs: String
    @Flag(help: "Also run backward and write grad:NAME for every variable that needs a gradient.") var backward = false
    @Flag(name: .customLong("allow-non-finite"), help: "Load parameters holding NaN or infinity (refused by default).")
    var allowNonFinite = false
    @OptionGroup var params: ParametersOption
    @OptionGroup var memory: MemoryBudgetOption

    func run() throws {
        try reportingErrors {
            try memory.apply()
            let ins = try TensorFile.readAny(path: inputs)
            let loaded = try ModelFile.load(path: graph, inputs: ins, parameters: params.path, allowNonFinite: allowNonFinite)
            let results = try GraphRunner.run(graph: loaded.graph, inputs: loaded.inputs, backward: backward)
            try TensorFile.write(results, to: outputs)
        }
    }
}
