import Foundation
import Testing
@testable import Kiln

struct GraphFileTests {
    static let relu = """
    {"format": "kiln-graph/1",
     "variables": [{"name": "x", "shape": [2, 3], "kind": "input"},
                   {"name": "y", "shape": [2, 3], "kind": "buffer"}],
     "functions": [{"name": "act", "type": "ReLU", "inputs": ["x"], "outputs": ["y"], "args": {}}],
     "outputs": ["y"]}
    """

    @Test func loadsAndRunsAGraph() throws {
        let g = try GraphFile.load(bytes: Array(Self.relu.utf8))
        let x = try #require(g.variables["x"])
        try x.setData([Float]([-1, 2, -3, 4, 0, 6]))
        try g.outputs[0].forward()
        #expect(g.outputs[0].d == [0, 2, 0, 4, 0, 6])
    }

    @Test func savedGraphLoadsBackIdentically() throws {
        let g = try GraphFile.load(bytes: Array(Self.relu.utf8))
        let saved = GraphFile.save(g.outputs)
        let again = try GraphFile.load(json: saved)
        #expect(GraphFile.save(again.outputs) == saved)
    }

    /// An input that takes a gradient stays an input through save and load (it used to come back as a
    /// parameter, which a solver would then train).
    @Test func inputWithNeedGradStaysAnInput() throws {
        let text = Self.relu.replacingOccurrences(of: #""kind": "input"}"#, with: #""kind": "input", "need_grad": true}"#)
        let g = try GraphFile.load(bytes: Array(text.utf8))
        #expect(g.variables["x"]?.isInput == true && g.variables["x"]?.needGrad == true)
        let saved = GraphFile.save(g.outputs)
        let x = try #require(saved["variables"]?.array?.first { $0["name"]?.string == "x" })
        #expect(x["kind"]?.string == "input")
        #expect(x["need_grad"]?.bool == true)
        let again = try GraphFile.load(json: saved)
        #expect(again.variables["x"]?.isInput == true && again.variables["x"]?.isParameter == false)
    }

    static let broken: [(String, String)] = [
        ("format", #"{"format": "other", "variables": [], "functions": [], "outputs": []}"#),
        ("unknown type", #"{"format": "kiln-graph/1", "variables": [{"name": "x", "shape": [2], "kind": "input"}], "functions": [{"name": "f", "type": "Bogus", "inputs": ["x"], "outputs": ["y"]}], "outputs": ["y"]}"#),
        ("unknown arg", #"{"format": "kiln-graph/1", "variables": [{"name": "x", "shape": [2], "kind": "input"}], "functions": [{"name": "f", "type": "ReLU", "inputs": ["x"], "outputs": ["y"], "args": {"alpha": 2}}], "outputs": ["y"]}"#),
        ("dangling input", #"{"format": "kiln-graph/1", "variables": [], "functions": [{"name": "f", "type": "ReLU", "inputs": ["nope"], "outputs": ["y"]}], "outputs": ["y"]}"#),
        ("wrong declared shape", #"{"format": "kiln-graph/1", "variables": [{"name": "x", "shape": [2], "kind": "input"}, {"name": "y", "shape": [3], "kind": "buffer"}], "functions": [{"name": "f", "type": "ReLU", "inputs": ["x"], "outputs": ["y"]}], "outputs": ["y"]}"#),
        ("overflowing shape", #"{"format": "kiln-graph/1", "variables": [{"name": "x", "shape": [4294967296, 4294967296, 4294967296], "kind": "input"}], "functions": [], "outputs": ["x"]}"#),
        ("negative shape", #"{"format": "kiln-graph/1", "variables": [{"name": "x", "shape": [-1], "kind": "input"}], "functions": [], "outputs": ["x"]}"#),
        ("data length", #"{"format": "kiln-graph/1", "variables": [{"name": "x", "shape": [3], "kind": "parameter", "data": [1, 2]}], "functions": [], "outputs": ["x"]}"#),
        ("cycle", #"{"format": "kiln-graph/1", "variables": [], "functions": [{"name": "f", "type": "ReLU", "inputs": ["b"], "outputs": ["a"]}, {"name": "g", "type": "ReLU", "inputs": ["a"], "outputs": ["b"]}], "outputs": ["a"]}"#),
        ("two producers", #"{"format": "kiln-graph/1", "variables": [{"name": "x", "shape": [2], "kind": "input"}], "functions": [{"name": "f", "type": "ReLU", "inputs": ["x"], "outputs": ["y"]}, {"name": "g", "type": "ReLU", "inputs": ["x"], "outputs": ["y"]}], "outputs": ["y"]}"#),
        ("missing output", #"{"format": "kiln-graph/1", "variables": [{"name": "x", "shape": [2], "kind": "input"}], "functions": [], "outputs": ["z"]}"#),
        ("truncated", #"{"format": "kiln-graph/1", "variables": [{"name": "x", "sha"#),
        ("int input to relu", #"{"format": "kiln-graph/1", "variables": [{"name": "x", "shape": [2], "kind": "input", "dtype": "int32"}], "functions": [{"name": "f", "type": "ReLU", "inputs": ["x"], "outputs": ["y"]}], "outputs": ["y"]}"#),
    ]

    @Test(arguments: broken.map { $0.0 })
    func rejectsBrokenFilesWithAClearError(_ which: String) throws {
        let text = try #require(Self.broken.first { $0.0 == which }?.1)
        #expect(throws: KilnError.self) { try GraphFile.load(bytes: Array(text.utf8)) }
    }

    @Test func errorNamesTheFunction() {
        let text = Self.broken[2].1
        do { _ = try GraphFile.load(bytes: Array(text.utf8)); Issue.record("no error") } catch {
            #expect("\(error)".contains("'f'") && "\(error)".contains("alpha"))
        }
    }
}
