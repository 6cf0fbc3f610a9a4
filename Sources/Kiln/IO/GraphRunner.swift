import KilnCore
import KilnGraph
import KilnCompiler

/// What `kiln run` does, as a library call: load a graph file, feed inputs, run forward (and backward),
/// and collect the outputs and gradients by name.
public enum GraphRunner {
    /// Every input variable the graph file gives no data for must be in `inputs` (an error names those
    /// missing: running on zeros would be a result nobody asked for); an input with data in the file may be
    /// fed to replace it. A name may appear once.
    public static func run(graph: GraphFile, inputs: [(String, TensorFile.Entry)], backward: Bool) throws -> [(String, TensorFile.Entry)] {
        var outputGrads: [String: TensorFile.Entry] = [:]
        var fed = Set<String>()
        for (name, entry) in inputs {
            guard fed.insert(name).inserted else { throw KilnError.invalidData("inputs give '\(name)' twice") }
            if name.hasPrefix("grad:") { outputGrads[String(name.dropFirst(5))] = entry; continue }
            guard let v = graph.variables[name] else {
                throw KilnError.invalidData("inputs name '\(name)', which is not a variable of the graph")
            }
            guard v.parent == nil else { throw KilnError.invalidData("'\(name)' is computed by the graph and cannot be fed") }
            guard entry.shape == v.shape else {
                throw KilnError.invalidData("input '\(name)' has shape \(entry.shape), the graph declares \(v.shape)")
            }
            // From the file's numbers when there are any: an int32 input takes only integers within its range.
            do { try v.setData(converting: entry.written ?? entry.data.map { Double($0) }) } catch KilnError.invalidData(let m) {
                throw KilnError.invalidData("input \(m)")
            }
        }
        let missing = graph.inputsWithoutData.filter { !fed.contains($0) }
        if !missing.isEmpty {
            let names = missing.map { "'\($0)'" }.joined(separator: ", ")
            throw KilnError.invalidData(missing.count == 1
                ? "input \(names) is not given (the graph file has no data for it)"
                : "inputs \(names) are not given (the graph file has no data for them)")
        }
        for name in outputGrads.keys where !graph.outputs.contains(where: { $0.name == name }) {
            throw KilnError.invalidData("grad:\(name) is given but '\(name)' is not an output of the graph")
        }
        var results: [(String, TensorFile.Entry)] = []
        if backward {
            for p in graph.leaves where p.needGrad { p.zeroGrad() }
            for o in graph.outputs {
                if let g = outputGrads[o.name] {
                    guard g.shape == o.shape else {
                        throw KilnError.invalidData("grad:\(o.name) has shape \(g.shape), the output is \(o.shape)")
                    }
                }
            }
            let exe = try Compiler.compile(graph.outputs, .training, options: CompileOptions())
            try exe.run(.forward)
            for o in graph.outputs {
                try o.setGrad(outputGrads[o.name]?.data ?? [Float](repeating: 1, count: o.size))
            }
            try exe.run(.backward, seed: nil)
        } else {
            try Compiler.compile(graph.outputs, .inference, options: CompileOptions()).run()
        }
        for o in graph.outputs { results.append((o.name, .init(shape: o.shape, data: o.d))) }
        if backward {
            for v in graph.leaves where v.needGrad { results.append(("grad:\(v.name)", .init(shape: v.shape, data: v.g))) }
        }
        return results
    }
}
