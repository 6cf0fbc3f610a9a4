import ArgumentParser
import Foundation
import Kiln

struct ImportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import", abstract: "Read an ONNX or nnabla model into a kiln-graph/1 file (and its weights).")

    @Argument(help: "The model: ONNX (.onnx) or nnabla (.nnp).") var model: String
    @Option(name: .shortAndLong, help: "Where to write the graph (kiln-graph/1 JSON).") var output: String
    @Option(name: .customLong("params"), help: ArgumentHelp("Write the weights here (.safetensors, ONNX's initializer names) instead of into the graph file.", valueName: "file"))
    var params: String?
    @Option(name: .customLong("shape"), help: ArgumentHelp("ONNX: an input's dimensions, fixing symbolic ones such as a batch size (repeatable; default 1 for each symbolic dimension).", valueName: "name=d1,d2,..."))
    var shapes: [String] = []
    @Flag(name: .customLong("allow-non-finite"), help: "Import weights holding NaN or infinity (refused by default).")
    var allowNonFinite = false
    @OptionGroup var memory: MemoryBudgetOption

    func validate() throws {
        guard [".onnx", ".nnp"].contains(where: { model.lowercased().hasSuffix($0) }) else {
            throw ValidationError("kiln import reads ONNX (.onnx) and nnabla (.nnp) models, got '\(model)'")
        }
        if !shapes.isEmpty && !model.lowercased().hasSuffix(".onnx") { throw ValidationError("--shape applies to ONNX models") }
        guard output.lowercased().hasSuffix(".json") else { throw ValidationError("-o must name a .json graph file, got '\(output)'") }
        if let params, !params.lowercased().hasSuffix(".safetensors") { throw ValidationError("--params must name a .safetensors file, got '\(params)'") }
        _ = try Self.parseShapes(shapes)
    }

    static func parseShapes(_ specs: [String]) throws -> [String: [Int]] {
        var out: [String: [Int]] = [:]
        for s in specs {
            let parts = s.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, !parts[0].isEmpty else { throw ValidationError("--shape takes name=d1,d2,..., got '\(s)'") }
            let dims = parts[1].split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
            guard !dims.isEmpty, dims.allSatisfy({ ($0 ?? 0) > 0 && ($0 ?? 0) <= Int(Int32.max) }) else {
                throw ValidationError("--shape \(s): dimensions must be positive integers")
            }
            guard out[parts[0]] == nil else { throw ValidationError("--shape gives '\(parts[0])' twice") }
            out[parts[0]] = dims.compactMap { $0 }
        }
        return out
    }

    func run() throws {
        try reportingErrors {
            try memory.apply()
            let graph: GraphFile, parameters: ParameterDictionary, notes: [String], summary: String
            if model.lowercased().hasSuffix(".nnp") {
                let loaded = try NNPFile.load(path: model)
                (graph, parameters, notes) = (loaded.graph, loaded.parameters, [])
                summary = "imported \(model) (network \(loaded.network) of \(loaded.networks.count)): \(graph.functions.count) functions, \(parameters.count) parameters"
            } else {
                let m = try ONNXModel.load(path: model)
                let options = ONNXImporter.Options(inputShapes: try Self.parseShapes(shapes))
                let r: ONNXImporter.Result
                do { r = try ONNXImporter.importGraph(m, options: options) } catch KilnError.invalidGraphFile(let msg) {
                    throw KilnError.invalidGraphFile("\(model): \(msg)")
                }
                (graph, parameters, notes) = (r.graph, r.parameters, r.notes)
                let ops = m.operatorCounts.reduce(0) { $0 + $1.count }
                summary = "imported \(model) (opset \(m.opsetVersion)\(m.producer.isEmpty ? "" : ", from \(m.producer)")): \(ops) nodes as \(graph.functions.count) functions, \(parameters.count) parameters"
            }
            if !allowNonFinite {
                for (name, v) in parameters {
                    if let msg = ParameterFile.nonFiniteMessage(name, v.data) { throw KilnError.invalidGraphFile("\(model): \(msg)") }
                }
            }
            for n in notes { FileHandle.standardError.write(Data("kiln: note: \(n)\n".utf8)) }
            let json = GraphFile.save(graph.outputs, includeData: params == nil,
                                      withoutData: graph.inputsWithoutData.compactMap { graph.variables[$0] })
            if let params { try ParameterFile.save(parameters, to: params) }
            try AtomicFile.write(to: output) { emit in
                try json.serialize(emit)
                try [UInt8(ascii: "\n")].withUnsafeBytes { try emit($0) }
            }
            print(summary)
            for name in graph.inputsWithoutData {
                if let v = graph.variables[name] { print("  input \(name): \(v.dtype) \(v.shape)") }
            }
            for o in graph.outputs { print("  output \(o.name): \(o.dtype) \(o.shape)") }
            print("wrote \(output)" + (params.map { " and \($0)" } ?? ""))
        }
    }
}
