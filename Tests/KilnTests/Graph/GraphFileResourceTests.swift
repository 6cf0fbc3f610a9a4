import Foundation
import Testing
@testable import Kiln
@testable import KilnCore

/// What loading a graph file costs is decided by the file before it is paid: whole-file reads check the
/// file's kind and size first, declared inputs and parameters must fit the memory budget before any is
/// allocated, resolution is one pass whatever the order of functions, and structure-only loads skip
/// initialising parameters.
struct GraphFileResourceTests {
    static func graph(_ functions: [String], inputs: String = #"{"name": "x", "shape": [2, 3], "kind": "input"}"#) -> String {
        #"{"format": "kiln-graph/1", "variables": [\#(inputs)], "functions": [\#(functions.joined(separator: ", "))], "outputs": ["z"]}"#
    }

    /// x -> a = ReLU(x), b = Sigmoid(x) -> z = a + b: listed producers first and consumers first, the two files
    /// load to the same graph.
    @Test func functionOrderDoesNotMatter() throws {
        let functions = [
            #"{"name": "r", "type": "ReLU", "inputs": ["x"], "outputs": ["a"]}"#,
            #"{"name": "s", "type": "Sigmoid", "inputs": ["x"], "outputs": ["b"]}"#,
            #"{"name": "add", "type": "Add2", "inputs": ["a", "b"], "outputs": ["z"]}"#,
        ]
        let forward = try GraphFile.load(bytes: Array(Self.graph(functions).utf8))
        let backward = try GraphFile.load(bytes: Array(Self.graph(functions.reversed()).utf8))
        // The same variables and functions; independent functions may come in another order.
        func parts(_ g: GraphFile) -> Set<String> {
            let json = GraphFile.save(g.outputs)
            return Set(((json["variables"]?.array ?? []) + (json["functions"]?.array ?? [])).map { $0.serialized() })
        }
        #expect(parts(forward) == parts(backward) && parts(forward).count == 7)
        #expect(backward.functions.count == 3)
    }

    @Test func aCycleIsStillNamed() {
        let text = Self.graph([#"{"name": "f", "type": "ReLU", "inputs": ["z"], "outputs": ["a"]}"#,
                               #"{"name": "g", "type": "ReLU", "inputs": ["a"], "outputs": ["z"]}"#])
        let error = #expect(throws: KilnError.self) { _ = try GraphFile.load(bytes: Array(text.utf8)) }
        #expect("\(error.map { "\($0)" } ?? "")".contains("is part of a cycle"))
    }

    /// Two declared parameters of 2^20 floats each (8 MiB in all) against a 4 MiB budget.
    @Test func declaredLeavesMustFitTheBudget() throws {
        let inputs = #"{"name": "x", "shape": [1048576], "kind": "input"}, {"name": "w", "shape": [1048576], "kind": "parameter"}"#
        let text = Self.graph([#"{"name": "m", "type": "Mul2", "inputs": ["x", "w"], "outputs": ["z"]}"#], inputs: inputs)
        let error = #expect(throws: KilnError.self) {
            try Context.with(Context(memoryBudget: 4 << 20)) { _ = try GraphFile.load(bytes: Array(text.utf8)) }
        }
        #expect("\(error.map { "\($0)" } ?? "")".contains("the inputs and parameters declared take 8388608 bytes, above the memory budget of 4194304 bytes"))
        try Context.with(Context(memoryBudget: 8 << 20)) { _ = try GraphFile.load(bytes: Array(text.utf8)) }
    }

    /// Without initialisation a data-less parameter holds zeros; with it, nnabla's initial values (not all 0).
    @Test func structureOnlyLoadsSkipInitialisation() throws {
        let inputs = #"{"name": "x", "shape": [2, 3], "kind": "input"}, {"name": "w", "shape": [3, 4], "kind": "parameter"}"#
        let text = Self.graph([#"{"name": "a", "type": "Affine", "inputs": ["x", "w"], "outputs": ["z"]}"#], inputs: inputs)
        try Parameters.isolated {
            let bare = try GraphFile.load(bytes: Array(text.utf8), initializeParameters: false)
            #expect(try #require(bare.variables["w"]).d.allSatisfy { $0 == 0 })
            let initialised = try GraphFile.load(bytes: Array(text.utf8))
            #expect(try #require(initialised.variables["w"]).d.contains { $0 != 0 })
        }
    }

    @Test func wholeFileReadsCheckTheFileFirst() throws {
        let dir = try trainingTempDir("file-bytes")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Data([1, 2, 3, 4, 5]).write(to: URL(fileURLWithPath: dir + "/five"))
        #expect(try FileBytes.read(path: dir + "/five", limit: 5, what: "test file") == [1, 2, 3, 4, 5])
        #expect(try FileBytes.read(path: dir + "/five", limit: nil, what: "test file") == [1, 2, 3, 4, 5])
        for (path, limit, message) in [
            (dir + "/five", 4, "cannot read test file \(dir)/five: its 5 bytes exceed the memory budget of 4 bytes"),
            (dir, 100, "cannot read test file \(dir): it is a directory"),
            ("/dev/zero", 100, "cannot read test file /dev/zero: it is not a regular file"),
            (dir + "/missing", 100, "cannot read test file \(dir)/missing: No such file or directory"),
        ] {
            let error = #expect(throws: KilnError.self) { _ = try FileBytes.read(path: path, limit: limit, what: "test file") }
            #expect("\(error.map { "\($0)" } ?? "")".contains(message), "\(String(describing: error))")
        }
    }
}
