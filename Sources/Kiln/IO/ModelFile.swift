import Foundation
import KilnCore
import KilnGraph
import KilnInterop

/// A model file in any format Kiln reads, told by its extension: an ONNX model (`.onnx`), an nnabla model
/// (`.nnp`), or else a kiln-graph/1 graph file. Every command that takes a graph loads it here.
public enum ModelFile {
    public enum Format: String, CaseIterable, Sendable {
        case graph = "json", onnx, nnp
    }

    /// `.onnx` and `.nnp` name those formats; any other file is read as a kiln-graph/1 graph file.
    public static func format(of path: String) -> Format {
        let ext = (path as NSString).pathExtension.lowercased()
        return Format(rawValue: ext) ?? .graph
    }

    /// A loaded model, the inputs a run still feeds, and notes on what an import decided.
    public struct Loaded {
        public var graph: GraphFile
        public var inputs: [(String, TensorFile.Entry)]
        public var notes: [String]
    }

    /// Loads a model. `inputs` are what a run will feed: for an ONNX model they fix symbolic dimensions (a
    /// batch size), and the values of integer inputs (a Reshape's shape) are folded into the graph and
    /// dropped from the inputs returned.
    public static func load(path: String, inputs: [(String, TensorFile.Entry)] = [], parameters: String? = nil,
                            allowNonFinite: Bool = false, initializeParameters: Bool = true) throws -> Loaded {
        var loaded = try read(path: path, inputs: inputs, allowNonFinite: allowNonFinite,
                              initializeParameters: initializeParameters || parameters != nil)
        if let p = parameters { loaded.notes += try loadParameters(p, into: loaded.graph, allowNonFinite: allowNonFinite) }
        return loaded
    }

    /// Loads trained weights (a safetensors file, names as the graph's parameters) into a loaded graph.
    /// Parameters the file lacks keep their values; a file that matches none of them is an error, as is one
    /// whose tensor has another shape than its parameter. Returns notes on what did not match.
    public static func loadParameters(_ path: String, into graph: GraphFile, allowNonFinite: Bool = false) throws -> [String] {
        var params = ParameterDictionary()
        for v in graph.leaves where v.isParameter && !v.isInput { params[v.name] = v }
        let ext = (path as NSString).pathExtension.lowercased()
        if ext == "h5" || ext == "protobuf" { return try loadNNablaParameters(path, into: params, allowNonFinite: allowNonFinite) }
        let unmatched = try ParameterFile.load(into: params, from: path, requireAll: false, allowNonFinite: allowNonFinite)
        let file = try SafeTensors.read(path: path).tensors.count
        if file > 0 && unmatched.count == file {
            throw KilnError.invalidParameters("\(path): none of its \(file) tensors names a parameter of the graph (its parameters: \(params.names.prefix(5).joined(separator: ", "))\(params.count > 5 ? ", ..." : ""))")
        }
        return unmatched.isEmpty ? [] : ["\(path): \(unmatched.count) tensor(s) match no parameter: \(unmatched.prefix(5).joined(separator: ", "))"]
    }

    static func read(path: String, inputs: [(String, TensorFile.Entry)], allowNonFinite: Bool,
                     initializeParameters: Bool) throws -> Loaded {
        switch format(of: path) {
        case .graph:
            return Loaded(graph: try GraphFile.load(path: path, allowNonFinite: allowNonFinite,
                                                    initializeParameters: initializeParameters),
                          inputs: inputs, notes: [])
        case .nnp:
            // nnabla's networks have a batch size; inputs given with another one rebuild it.
            let batch = inputs.first { !$0.0.hasPrefix("grad:") }?.1.shape.first
            let loaded = try NNPFile.load(path: path, batchSize: batch)
            if !allowNonFinite {
                for (name, v) in loaded.parameters {
                    if let m = ParameterFile.nonFiniteMessage(name, v.data) { throw KilnError.invalidGraphFile("\(path): \(m)") }
                }
            }
            return Loaded(graph: loaded.graph, inputs: inputs, notes: [])
        case .onnx:
            let model = try ONNXModel.load(path: path)
            var options = ONNXImporter.Options()
            var feeds: [(String, TensorFile.Entry)] = []
            let declared = Dictionary(model.inputs.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
            for (name, entry) in inputs {
                guard let d = declared[name] else { feeds.append((name, entry)); continue }
                if ["float", "double", "float16"].contains(d.elementType) {
                    options.inputShapes[name] = entry.shape
                    options.runValues[name] = ONNXTensor(shape: entry.shape, floats: entry.data)
                    feeds.append((name, entry))
                } else {
                    let values = try (entry.written ?? entry.data.map { Double($0) }).enumerated().map { k, v -> Int64 in
                        guard let i = Int64(exactly: v) else {
                            throw KilnError.invalidData("input '\(name)' is \(d.elementType) but value \(v) at index \(k) is not an integer")
                        }
                        return i
                    }
                    options.constantInputs[name] = ONNXTensor(shape: entry.shape, ints: values)
                }
            }
            do {
                let r = try ONNXImporter.importGraph(model, options: options)
                if !allowNonFinite {
                    for (name, v) in r.parameters {
                        if let m = ParameterFile.nonFiniteMessage(name, v.data) { throw KilnError.invalidGraphFile(m) }
                    }
                }
                // A value given for an input the imported graph does not read (Dropout's ratio) changes nothing.
                let used = feeds.filter { name, _ in declared[name] == nil || r.graph.variables[name] != nil || name.hasPrefix("grad:") }
                return Loaded(graph: r.graph, inputs: used, notes: r.notes)
            } catch KilnError.invalidGraphFile(let m) {
                throw KilnError.invalidGraphFile("\(path): \(m)")
            }
        }
    }

    /// nnabla's `.h5` or `.protobuf` parameters into `params`, by name: shapes must match, and nothing
    /// changes unless every match does.
    static func loadNNablaParameters(_ path: String, into params: ParameterDictionary, allowNonFinite: Bool) throws -> [String] {
        let entries = try NNablaParameterFile.read(path: path)
        var assignments: [(Variable, NDArray)] = []
        var unmatched: [String] = []
        for e in entries {
            guard let v = params[e.name] else { unmatched.append(e.name); continue }
            guard v.shape == e.array.shape, v.dtype == e.array.dtype else {
                throw KilnError.invalidParameters("parameter '\(e.name)' has shape \(v.shape) but \(path) holds shape \(e.array.shape)")
            }
            if !allowNonFinite, let m = ParameterFile.nonFiniteMessage(e.name, e.array) {
                throw KilnError.invalidParameters("\(path): \(m)")
            }
            assignments.append((v, e.array))
        }
        if !entries.isEmpty && assignments.isEmpty {
            throw KilnError.invalidParameters("\(path): none of its \(entries.count) parameters names a parameter of the graph")
        }
        for (v, a) in assignments {
            v.dataView = nil
            try v.data.copy(from: a)
        }
        return unmatched.isEmpty ? [] : ["\(path): \(unmatched.count) parameter(s) match no parameter of the graph: \(unmatched.prefix(5).joined(separator: ", "))"]
    }
}
