import KilnCore
import KilnGraph
import KilnConverters

/// What `kiln convert` does, as a library call: load a graph file, convert its graph, write the new graph
/// (parameters with their data, so `kiln run` runs it) atomically, and return the converter's notes.
/// Parameters holding NaN or an infinity, read or written, are an error unless `allowNonFinite`.
public enum GraphFileConversion {
    @discardableResult
    public static func convert(graph path: String, with converter: any GraphConverter, to output: String,
                               parameters: String? = nil, allowNonFinite: Bool = false) throws -> [String] {
        let source = try ModelFile.load(path: path, parameters: parameters, allowNonFinite: allowNonFinite).graph
        let result = try converter.convert(source.outputs)
        // Inputs the source gave no data for are written without data too: a run must feed them.
        let json = GraphFile.save(result.outputs, withoutData: source.inputsWithoutData.compactMap { source.variables[$0] })
        // The written file must load (a folded weight that overflowed to infinity is refused, for one): say
        // so here, naming the cause, rather than in the next `kiln run`.
        do { _ = try GraphFile.load(json: json, allowNonFinite: allowNonFinite) } catch let e as KilnError {
            throw KilnError.invalidGraphFile("\(path): the converted graph cannot be written as a valid graph file: \(e)")
        }
        // Written as it is serialised: the text of the weights is never held whole.
        try AtomicFile.write(to: output) { emit in
            try json.serialize(emit)
            try [UInt8(ascii: "\n")].withUnsafeBytes { try emit($0) }
        }
        return result.notes
    }
}
