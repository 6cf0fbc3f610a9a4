import ArgumentParser
import Foundation
import Kiln

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run", abstract: "Run a kiln-graph/1 file on named input tensors.")

    @Argument(help: "The graph file (kiln-graph/1 JSON).") var graph: String
    @Option(help: "Input tensors: {\"x\": {\"shape\": [...], \"data\": [...]}}; grad:NAME seeds backward.") var inputs: String
    @Option(help: "Where to write the outputs (and gradients with --backward).") var outputs: String
    @Flag(help: "Also run backward and write grad:NAME for every variable that needs a gradient.") var backward = false
    @Flag(name: .customLong("allow-non-finite"), help: "Load parameters holding NaN or infinity (refused by default).")
    var allowNonFinite = false
    @OptionGroup var memory: MemoryBudgetOption

    func run() throws {
        try reportingErrors {
            try memory.apply()
            let g = try GraphFile.load(path: graph, allowNonFinite: allowNonFinite)
            let ins = try TensorFile.read(path: inputs)
            let results = try GraphRunner.run(graph: g, inputs: ins, backward: backward)
            try AtomicFile.write(TensorFile.json(results).serialized() + "\n", to: outputs)
        }
    }
}
