import ArgumentParser
import Foundation
import Kiln

struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export", abstract: "Write a zoo model or graph file with its weights (ONNX, nnabla .nnp, kiln-graph/1), or its weights alone.")

    @Argument(help: "A zoo model (\(Zoo.names.joined(separator: ", "))) or a graph file (.json, .onnx, .nnp).") var model: String
    @Option(name: .shortAndLong, help: "Where to write it: .onnx (ONNX, opset 17), .nnp (nnabla), .json (kiln-graph/1); or the weights alone: .h5, .protobuf (nnabla's), .safetensors.") var output: String
    @OptionGroup var params: ParametersOption
    @Option(name: .customLong("batch-size"), parsing: .unconditional, help: "Batch size of a zoo model's input.") var batchSize: Int = 1
    @Option(parsing: .unconditional, help: "Seed of a zoo model's initial weights (used without --params).") var seed: UInt32 = 313
    @Flag(name: .customLong("allow-non-finite"), help: "Export weights holding NaN or infinity (refused by default).")
    var allowNonFinite = false
    @OptionGroup var memory: MemoryBudgetOption

    func validate() throws {
        try Check.model(model, files: true)
        let ext = (output as NSString).pathExtension.lowercased()
        guard Self.formats.contains(ext) else {
            throw ValidationError("-o must end in \(Self.formats.map { "." + $0 }.joined(separator: ", ")), got '\(output)'")
        }
        guard batchSize > 0 else { throw ValidationError("--batch-size must be positive, got \(batchSize)") }
    }

    static let formats = ["onnx", "nnp", "json", "h5", "protobuf", "safetensors"]

    func run() throws {
        try reportingErrors {
            try memory.apply()
            let outputs: [Variable]
            var withoutData: [Variable] = []
            var weights = ParameterDictionary()
            if let zoo = Zoo(rawValue: model) {
                // The zoo's inference graph (BatchNormalization with running statistics), seeded weights unless
                // trained ones are given: the same on every run and in every format.
                let net = try zoo.network(rng: NumpyRandom(seed: seed))
                let m = try zoo.build(batchSize: batchSize, training: false, network: net)
                if let p = params.path {
                    try ParameterFile.load(into: net.getParameters(gradOnly: false), from: p, requireAll: true, allowNonFinite: allowNonFinite)
                }
                m.prediction.name = "y"
                outputs = [m.prediction]
                weights = net.getParameters(gradOnly: false)
                withoutData = [m.input]
            } else {
                let g = try ModelFile.load(path: model, parameters: params.path, allowNonFinite: allowNonFinite).graph
                outputs = g.outputs
                withoutData = g.inputsWithoutData.compactMap { g.variables[$0] }
            }
            if weights.isEmpty {
                var seen = Set<ObjectIdentifier>()
                for n in GraphCollector.nodes(from: outputs) {
                    for v in n.inputs where v.parent == nil && v.isParameter && !v.isInput && seen.insert(ObjectIdentifier(v)).inserted {
                        weights[v.name] = v
                    }
                }
            }
            switch (output as NSString).pathExtension.lowercased() {
            case "onnx":
                let model = try ONNXExporter.export(outputs, producerVersion: KilnVersion.number)
                for n in model.notes { FileHandle.standardError.write(Data("kiln: note: \(n)\n".utf8)) }
                try model.save(path: output)
            case "nnp": try NNPFile.save(outputs, to: output)
            case "h5", "protobuf": try NNablaParameterFile.save(weights, to: output)
            case "safetensors": try ParameterFile.save(weights, to: output)
            default:
                let json = GraphFile.save(outputs, withoutData: withoutData)
                try AtomicFile.write(to: output) { emit in
                    try json.serialize(emit)
                    try [UInt8(ascii: "\n")].withUnsafeBytes { try emit($0) }
                }
            }
            print("wrote \(output)")
        }
    }
}
