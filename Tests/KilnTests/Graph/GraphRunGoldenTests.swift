import Foundation
import Testing
@testable import Kiln
@testable import KilnGraph

/// The nnabla golden cases written as kiln-graph/1 files and run the way `kiln run` runs them.
struct GraphRunGoldenTests {
    /// A golden case as a graph file plus an inputs file.
    static func files(_ c: Golden.FunctionCase) throws -> (graph: JSON, inputs: [(String, TensorFile.Entry)]) {
        var variables: [JSON] = []
        var inputs: [(String, TensorFile.Entry)] = []
        for (i, t) in c.inputs.enumerated() {
            variables.append(.object([("name", .string("in\(i)")), ("shape", .array(t.shape.map { .int($0) })),
                                      ("kind", .string("input")), ("dtype", .string(t.dtype.rawValue)),
                                      ("need_grad", .bool(c.differentiable[i]))]))
            inputs.append(("in\(i)", .init(shape: t.shape, data: t.floats)))
        }
        let outNames = c.outputs.indices.map { "out\($0)" }
        let args = Golden.graphArguments(c).sorted { $0.key < $1.key }.map { ($0.key, GraphFile.json($0.value)) }
        let graph = JSON.object([
            ("format", .string("kiln-graph/1")), ("variables", .array(variables)),
            ("functions", .array([.object([("name", .string(c.name)), ("type", .string(Golden.typeNames[c.function] ?? c.function)),
                                           ("inputs", .array(c.inputs.indices.map { .string("in\($0)") })),
                                           ("outputs", .array(outNames.map { .string($0) })), ("args", .object(args))])])),
            ("outputs", .array(outNames.map { .string($0) })),
        ])
        for (j, g) in (c.outputGrads ?? []).enumerated() {
            inputs.append(("grad:out\(j)", .init(shape: g.shape, data: g.floats)))
        }
        return (graph, inputs)
    }

    @Test(arguments: GoldenFunctionTests.allCases)
    func graphFileReproducesNnabla(_ c: Golden.FunctionCase) throws {
        let (graphJSON, inputs) = try Self.files(c)
        let graph = try GraphFile.load(bytes: Array(graphJSON.serialized().utf8))
        let backward = c.outputGrads != nil
        let results = try GraphRunner.run(graph: graph, inputs: inputs, backward: backward)
        let byName = Dictionary(results.map { ($0.0, $0.1) }, uniquingKeysWith: { a, _ in a })
        let tol = GoldenFunctionTests.tolerance(c)
        for (j, e) in c.outputs.enumerated() {
            let got = try #require(byName["out\(j)"])
            #expect(got.shape == e.shape)
            let m = mismatch(got.data, e.floats, rtol: tol.rtol, atol: tol.atol)
            #expect(m == nil, "\(c.name) out\(j): \(m ?? "")")
        }
        // Gradients, for the cases that have them (forward-only cases are fully checked above).
        for (i, e) in (backward ? c.inputGrads ?? [] : []).enumerated() {
            guard let e else { continue }
            let got = try #require(byName["grad:in\(i)"], "\(c.name): no grad:in\(i)")
            let m = mismatch(got.data, e.floats, rtol: max(tol.rtol, 1e-5), atol: max(tol.atol, 1e-6))
            #expect(m == nil, "\(c.name) grad:in\(i): \(m ?? "")")
        }
    }

    /// The real `kiln` binary, when the build produced it, on one case end to end.
    @Test(.enabled(if: KilnProcess.exists, "no kiln binary next to the test bundle"))
    func kilnRunCommandWritesOutputsAndGradients() throws {
        let binary = KilnProcess.binary
        let c = try #require(Golden.cases("activations").first(where: { $0.function == "relu" }), "no relu golden case")
        let (graphJSON, inputs) = try Self.files(c)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("kiln-run-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let g = dir.appendingPathComponent("g.json").path, i = dir.appendingPathComponent("in.json").path
        let o = dir.appendingPathComponent("out.json").path
        try AtomicFile.write(graphJSON.serialized(), to: g)
        try AtomicFile.write(TensorFile.json(inputs).serialized(), to: i)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binary)
        p.arguments = ["run", g, "--inputs", i, "--outputs", o, "--backward"]
        try p.run()
        p.waitUntilExit()
        #expect(p.terminationStatus == 0)
        let out = Dictionary(try TensorFile.read(path: o).map { ($0.0, $0.1) }, uniquingKeysWith: { a, _ in a })
        #expect(out["out0"]?.data == c.outputs[0].floats)
        #expect(out["grad:in0"]?.data == c.inputGrads?[0]?.floats)
    }

    @Test(.enabled(if: KilnProcess.exists, "no kiln binary next to the test bundle"))
    func kilnRunRejectsBadInputsWithExitCode1() throws {
        let binary = KilnProcess.binary
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binary)
        p.arguments = ["run", "/nonexistent.json", "--inputs", "/nonexistent", "--outputs", "/tmp/x.json"]
        let err = Pipe()
        p.standardError = err
        try p.run()
        p.waitUntilExit()
        #expect(p.terminationStatus == 1)
        let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(text.contains("kiln: error:"))
    }
}
