import Foundation
import Testing
@testable import Kiln

/// `kiln run` must be given every input variable the graph file has no data for: running on the zeros a
/// fresh variable holds was a wrong success (an inputs file `{}` exited 0).
struct UnfedInputTests {
    /// y = x + z, with z's data in the file and x without.
    static let add = """
    {"format": "kiln-graph/1",
     "variables": [{"name": "x", "shape": [2], "kind": "input"},
                   {"name": "u", "shape": [2], "kind": "input"},
                   {"name": "z", "shape": [2], "kind": "input", "data": [10, 20]}],
     "functions": [{"name": "f", "type": "Add2", "inputs": ["x", "z"], "outputs": ["s"]},
                   {"name": "g", "type": "Add2", "inputs": ["s", "u"], "outputs": ["y"]}],
     "outputs": ["y"]}
    """

    static func graph() throws -> GraphFile { try GraphFile.load(bytes: Array(add.utf8)) }
    static func entry(_ data: [Float]) -> TensorFile.Entry { .init(shape: [2], data: data) }

    @Test func theFileListsItsInputsWithoutData() throws {
        #expect(try Self.graph().inputsWithoutData == ["x", "u"])
    }

    @Test func everyInputWithoutDataMustBeFed() throws {
        #expect(throws: KilnError.invalidData("inputs 'x', 'u' are not given (the graph file has no data for them)")) {
            try GraphRunner.run(graph: Self.graph(), inputs: [], backward: false)
        }
        #expect(throws: KilnError.invalidData("input 'u' is not given (the graph file has no data for it)")) {
            try GraphRunner.run(graph: Self.graph(), inputs: [("x", Self.entry([1, 2]))], backward: false)
        }
        // A gradient seed is not an input.
        #expect(throws: KilnError.invalidData("input 'x' is not given (the graph file has no data for it)")) {
            try GraphRunner.run(graph: Self.graph(), inputs: [("u", Self.entry([1, 2])), ("grad:y", Self.entry([1, 1]))], backward: true)
        }
    }

    @Test func anInputWithDataInTheFileNeedNotBeFed() throws {
        // y = x + z + u = [1, 2] + [10, 20] + [100, 200].
        let out = try GraphRunner.run(graph: Self.graph(), inputs: [("x", Self.entry([1, 2])), ("u", Self.entry([100, 200]))], backward: false)
        #expect(out.map { $0.0 } == ["y"] && out[0].1.data == [111, 222])
        // Fed, it is replaced: [1, 2] + [3, 4] + [100, 200].
        let fed = try GraphRunner.run(graph: Self.graph(), inputs: [("x", Self.entry([1, 2])), ("z", Self.entry([3, 4])), ("u", Self.entry([100, 200]))], backward: false)
        #expect(fed[0].1.data == [104, 206])
    }

    @Test func anInputGivenTwiceIsAnError() throws {
        #expect(throws: KilnError.invalidData("inputs give 'x' twice")) {
            try GraphRunner.run(graph: Self.graph(), inputs: [("x", Self.entry([1, 2])), ("u", Self.entry([0, 0])), ("x", Self.entry([3, 4]))], backward: false)
        }
    }

    @Test(.enabled(if: KilnProcess.exists, "no kiln binary next to the test bundle"))
    func kilnRunWithAnEmptyInputsFileFails() throws {
        let r = try KilnProcess.run(["run", "g.json", "--inputs", "in.json", "--outputs", "out.json"],
                                    files: ["g.json": Self.add, "in.json": "{}"])
        #expect(r.status == 1)
        #expect(r.stderr == "kiln: error: invalid data: inputs 'x', 'u' are not given (the graph file has no data for them)\n")
        let ok = try KilnProcess.run(["run", "g.json", "--inputs", "in.json", "--outputs", "out.json"],
                                     files: ["g.json": Self.add, "in.json": #"{"x": {"shape": [2], "data": [1, 2]}, "u": {"shape": [2], "data": [0, 0.5]}}"#])
        #expect(ok.status == 0 && ok.stderr.isEmpty)
    }
}
