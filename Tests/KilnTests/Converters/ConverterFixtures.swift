import Foundation
@testable import Kiln

/// The conv -> BN -> ReLU -> affine -> BN network of `graph_converters.json` as a kiln-graph/1 file, and the
/// helpers converter tests share: running a graph the way `kiln run` does and reading values by name.
enum ConverterFixtures {
    /// The golden case (the file holds the network with conv/affine biases).
    static func goldenCase() throws -> JSON {
        let file = try Golden.json("graph_converters")
        guard let c = file["cases"]?.array?.first else {
            throw KilnError.invalidData("graph_converters.json has no case")
        }
        return c
    }

    static func tensor(_ j: JSON?, _ what: String) throws -> Golden.TensorCase {
        guard let t = Golden.tensor(j) else { throw KilnError.invalidData("graph_converters.json: no tensor at \(what)") }
        return t
    }

    /// The golden network as a graph file. `withBias: false` drops conv/b and fc/b (the network nnabla's
    /// README calls `..._without_bias`, whose expectations the tests derive from the with-bias numbers).
    /// `batchStat: true` puts both BNs in training mode.
    static func graph(_ c: JSON, withBias: Bool = true, batchStat: Bool = false) throws -> JSON {
        var variables: [JSON] = []
        let x = try tensor(c["input"], "input")
        variables.append(.object([("name", .string("x")), ("shape", .array(x.shape.map { .int($0) })),
                                  ("kind", .string("input"))]))
        let biases: Set<String> = ["conv/b", "fc/b"]
        for (name, p) in c["params"]?.objectMembers ?? [] where withBias || !biases.contains(name) {
            let t = try tensor(p, name)
            let stat = name.hasSuffix("/mean") || name.hasSuffix("/var")
            variables.append(.object([("name", .string(name)), ("shape", .array(t.shape.map { .int($0) })),
                                      ("kind", .string("parameter")), ("need_grad", .bool(!stat)),
                                      ("data", .array(t.floats.map { JSON.float($0) }))]))
        }
        var functions: [JSON] = []
        for (i, op) in (c["network"]?.array ?? []).enumerated() {
            guard let fn = op["op"]?.string, let type = Golden.typeNames[fn], let out = op["output"]?.string else {
                throw KilnError.invalidData("graph_converters.json: network[\(i)] is incomplete")
            }
            let inputs = (op["inputs"]?.array ?? []).compactMap { $0.string }.filter { withBias || !biases.contains($0) }
            var args = op["args"]?.objectMembers ?? []
            if batchStat { args = args.map { $0.0 == "batch_stat" ? ($0.0, .bool(true)) : $0 } }
            functions.append(.object([("name", .string("f\(i)_\(fn)")), ("type", .string(type)),
                                      ("inputs", .array(inputs.map { .string($0) })),
                                      ("outputs", .array([.string(out)])), ("args", .object(args))]))
        }
        return .object([("format", .string(GraphFile.format)), ("variables", .array(variables)),
                        ("functions", .array(functions)), ("outputs", .array([.string("y")]))])
    }

    /// A converted graph as `kiln convert` writes it, loaded back as `kiln run` loads it.
    static func roundTrip(_ outputs: [Variable]) throws -> GraphFile {
        try GraphFile.load(bytes: Array(GraphFile.save(outputs).serialized().utf8))
    }

    /// The graph's outputs for input x, computed as `kiln run` computes them.
    static func run(_ g: GraphFile, x: Golden.TensorCase) throws -> [String: [Float]] {
        let results = try GraphRunner.run(graph: g, inputs: [("x", .init(shape: x.shape, data: x.floats))], backward: false)
        return Dictionary(results.map { ($0.0, $0.1.data) }, uniquingKeysWith: { a, _ in a })
    }

    /// Values computed inside a graph (not roots), by name: compiled as roots of their own.
    static func computed(_ g: GraphFile, _ names: [String]) throws -> [String: [Float]] {
        let vs = try names.map { n -> Variable in
            guard let v = g.variables[n] else { throw KilnError.invalidData("no variable '\(n)' in the converted graph (has \(g.variables.keys.sorted()))") }
            return v
        }
        try Compiler.compile(vs, .inference, options: CompileOptions()).run()
        return Dictionary(uniqueKeysWithValues: zip(names, vs.map { $0.d }))
    }

    static func functionTypes(_ g: GraphFile) -> [String] { g.functions.map { $0.typeName } }
}
