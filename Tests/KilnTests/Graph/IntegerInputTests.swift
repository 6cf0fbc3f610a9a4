import Foundation
import Testing
@testable import Kiln

/// Values for int32 data must be integers within int32's range: 1.5, inf, NaN or 1e30 are errors naming the
/// variable, the index and the value (they used to become 1, 0, 0 and a trap), through every path from input:
/// `Variable.setData`, `NDArray.setFloats`/`toInt32s`/`fill`, graph-file data and `kiln run`'s inputs.
struct IntegerInputTests {
    @Test func setDataRejectsWhatInt32CannotHold() throws {
        let t = try Variable(shape: [3], dtype: .int32, name: "t")
        try t.setData([Float]([1, -2, 3]))
        #expect(throws: KilnError.invalidData("'t' is int32 but value 1.5 at index 1 is not an integer")) {
            try t.setData([Float]([0, 1.5, 2]))
        }
        #expect(throws: KilnError.invalidData("'t' is int32 but value inf at index 2 is not finite")) {
            try t.setData([Float]([0, 1, .infinity]))
        }
        #expect(throws: KilnError.invalidData("'t' is int32 but value nan at index 0 is not finite")) {
            try t.setData([Float]([.nan, 1, 2]))
        }
        #expect(throws: KilnError.invalidData("'t' is int32 but value 1e+30 at index 0 is outside int32's range -2147483648...2147483647")) {
            try t.setData([Float]([1e30, 1, 2]))
        }
        // 2^31 is one past Int32.max; -2^31 is Int32.min itself.
        #expect(throws: KilnError.invalidData("'t' is int32 but value 2.1474836e+09 at index 2 is outside int32's range -2147483648...2147483647")) {
            try t.setData([Float]([0, 0, 2147483648]))
        }
        // Nothing was written by the failed calls.
        #expect(Array(UnsafeBufferPointer(start: t.data.int32s, count: 3)) == [1, -2, 3])
        try t.setData([Float]([-2147483648, 0, 7]))
        #expect(Array(UnsafeBufferPointer(start: t.data.int32s, count: 3)) == [Int32.min, 0, 7])
    }

    @Test func theDSetterReportsTheSameErrorAtTheNextRun() throws {
        let t = try Variable(shape: [2], dtype: .int32, name: "t")
        t.d = [4, 0.25]
        #expect(throws: KilnError.invalidData("'t' is int32 but value 0.25 at index 1 is not an integer")) {
            try t.takePendingError()
        }
    }

    @Test func arraysWithoutANameSayInt32Data() throws {
        let a = try NDArray(shape: [2], dtype: .int32)
        #expect(throws: KilnError.invalidData("int32 data: value -0.5 at index 1 is not an integer")) {
            try a.setFloats([3, -0.5])
        }
        #expect(throws: KilnError.invalidData("int32 data: value 3e+09 at index 0 is outside int32's range -2147483648...2147483647")) {
            try a.fill(3e9)
        }
        let f = try NDArray(shape: [2], floats: [3, -0.5])
        #expect(throws: KilnError.invalidData("int32 data: value -0.5 at index 1 is not an integer")) { try f.toInt32s() }
        let g = try NDArray(shape: [2], floats: [3, -4])
        #expect(try g.toInt32s() == [3, -4])
        // float16 holds at most 65504: 70000 would become infinity.
        let h = try NDArray(shape: [1], dtype: .float16)
        #expect(throws: KilnError.invalidData("float16 data: value 70000.0 at index 0 is beyond float16's range")) {
            try h.setFloats([70000])
        }
    }

    /// Embed(i, W): an int32 input of the graph, fed from a tensor file.
    static let embed = """
    {"format": "kiln-graph/1",
     "variables": [{"name": "i", "shape": [2], "kind": "input", "dtype": "int32"},
                   {"name": "W", "shape": [3, 2], "kind": "parameter", "data": [0, 1, 10, 11, 20, 21]}],
     "functions": [{"name": "e", "type": "Embed", "inputs": ["i", "W"], "outputs": ["y"]}],
     "outputs": ["y"]}
    """

    static func inputs(_ data: String, in dir: URL) throws -> [(String, TensorFile.Entry)] {
        let path = dir.appendingPathComponent("in.json").path
        try Data(#"{"i": {"shape": [2], "data": \#(data)}}"#.utf8).write(to: URL(fileURLWithPath: path))
        return try TensorFile.read(path: path)
    }

    @Test func graphRunnerFeedsInt32InputsExactly() throws {
        let dir = try KilnProcess.directory([:])
        defer { try? FileManager.default.removeItem(at: dir) }
        let g = try GraphFile.load(bytes: Array(Self.embed.utf8))
        let out = try GraphRunner.run(graph: g, inputs: Self.inputs("[2, 0]", in: dir), backward: false)
        #expect(out[0].1.data == [20, 21, 0, 1])
        for (data, message) in [
            ("[1, 1.5]", "input 'i' is int32 but value 1.5 at index 1 is not an integer"),
            ("[1e30, 0]", "input 'i' is int32 but value 1e+30 at index 0 is outside int32's range -2147483648...2147483647"),
            ("[0, -3000000000]", "input 'i' is int32 but value -3000000000.0 at index 1 is outside int32's range -2147483648...2147483647"),
        ] {
            let g = try GraphFile.load(bytes: Array(Self.embed.utf8))
            #expect(throws: KilnError.invalidData(message)) {
                try GraphRunner.run(graph: g, inputs: Self.inputs(data, in: dir), backward: false)
            }
        }
        // 16777217 = 2^24 + 1 has no float32: the file's number itself is fed. Embed then rejects it as a row
        // index (W has 3 rows), which shows the exact value arrived.
        let big = try GraphFile.load(bytes: Array(Self.embed.utf8))
        #expect(throws: KilnError.invalidFunction(function: "Embed", reason: "index 16777217 at position 0 of x is out of range for W with 3 rows")) {
            try GraphRunner.run(graph: big, inputs: Self.inputs("[16777217, 0]", in: dir), backward: false)
        }
        #expect(big.variables["i"]?.data.int32s[0] == 16_777_217)
    }

    @Test func graphFileInt32DataMustBeIntegers() throws {
        let text = Self.embed.replacingOccurrences(of: #""dtype": "int32"}"#, with: #""dtype": "int32", "data": [0, 2.5]}"#)
        #expect(throws: KilnError.invalidGraphFile("variable 'i' is int32 but value 2.5 at index 1 is not an integer")) {
            try GraphFile.load(bytes: Array(text.utf8))
        }
        let exact = Self.embed.replacingOccurrences(of: #""dtype": "int32"}"#, with: #""dtype": "int32", "data": [2147483647, 16777217]}"#)
        let g = try GraphFile.load(bytes: Array(exact.utf8))
        #expect(Array(UnsafeBufferPointer(start: g.variables["i"]?.data.int32s, count: 2)) == [Int32.max, 16_777_217])
    }

    @Test(.enabled(if: KilnProcess.exists, "no kiln binary next to the test bundle"))
    func kilnRunRejectsAFractionalInt32Input() throws {
        let r = try KilnProcess.run(["run", "g.json", "--inputs", "in.json", "--outputs", "out.json"],
                                    files: ["g.json": Self.embed, "in.json": #"{"i": {"shape": [2], "data": [inf, 0]}}"#])
        // `inf` is not JSON; the file is rejected before any conversion.
        #expect(r.status == 1)
        let s = try KilnProcess.run(["run", "g.json", "--inputs", "in.json", "--outputs", "out.json"],
                                    files: ["g.json": Self.embed, "in.json": #"{"i": {"shape": [2], "data": [0, 1.5]}}"#])
        #expect(s.status == 1)
        #expect(s.stderr == "kiln: error: invalid data: input 'i' is int32 but value 1.5 at index 1 is not an integer\n")
        #expect(s.stdout.isEmpty)
    }
}
