import Foundation
import Testing
@testable import Kiln

/// Tensor data in JSON: NaN and the infinities travel as the strings "NaN", "Infinity", "-Infinity" (they
/// used to be written as null, which did not read back), a finite number beyond float32's range is an error
/// naming the file, the tensor and the index (it used to become infinity), and a member of the wrong type
/// ("dtype": 5) is an error rather than the default.
struct JSONTensorValueTests {
    @Test func nonFiniteFloatsAreWrittenAsStrings() {
        #expect(JSON.float(.nan) == .string("NaN"))
        #expect(JSON.float(.infinity) == .string("Infinity"))
        #expect(JSON.float(-.infinity) == .string("-Infinity"))
        #expect(JSON.array([JSON.float(1), JSON.float(.nan), JSON.float(-.infinity)]).serialized() == #"[1, "NaN", "-Infinity"]"#)
        #expect(JSON.double(.infinity).serialized() == #""Infinity""#)
    }

    @Test func tensorValuesReadTheStringsBack() throws {
        let items = try #require(try JSON.parse(#"[1, -2.5, "NaN", "Infinity", "-Infinity", 3.4028234e38]"#).array)
        let v = try JSON.tensorValues(items, place: "t") { KilnError.invalidData($0) }
        #expect(v.count == 6 && v[0] == 1 && v[1] == -2.5 && v[2].isNaN && v[3] == .infinity && v[4] == -.infinity)
        #expect(v[5] == 3.4028234e38)
        #expect(JSON.string("nan").tensorValue == nil && JSON.string("inf").tensorValue == nil && JSON.null.tensorValue == nil)
    }

    @Test func tensorFileRoundTripsNaNAndInfinity() throws {
        let dir = try KilnProcess.directory([:])
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("t.json").path
        let text = TensorFile.json([("x", .init(shape: [4], data: [.nan, .infinity, -.infinity, 0.5]))]).serialized()
        #expect(text == #"{"x": {"shape": [4], "data": ["NaN", "Infinity", "-Infinity", 0.5]}}"#)
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        let back = try TensorFile.read(path: path)
        #expect(back.count == 1 && back[0].0 == "x" && back[0].1.shape == [4])
        let d = back[0].1.data
        #expect(d[0].isNaN && d[1] == .infinity && d[2] == -.infinity && d[3] == 0.5)
    }

    static func read(_ text: String) throws -> [(String, TensorFile.Entry)] {
        let dir = try KilnProcess.directory(["t.json": text])
        defer { try? FileManager.default.removeItem(at: dir) }
        return try TensorFile.read(path: dir.appendingPathComponent("t.json").path)
    }

    /// The error of reading `text` as a tensor file, with the temporary path replaced by "t.json".
    static func error(_ text: String) throws -> String? {
        let dir = try KilnProcess.directory(["t.json": text])
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("t.json").path
        do { _ = try TensorFile.read(path: path) } catch let e as KilnError {
            return e.description.replacingOccurrences(of: path, with: "t.json")
        }
        return nil
    }

    @Test func tensorFileRejectsWhatFloat32CannotHold() throws {
        // float32's largest value is about 3.4028235e38; 1e39 is beyond it, 3e38 is not.
        #expect(try Self.error(#"{"x": {"shape": [2], "data": [3e38, 1e39]}}"#)
                == "invalid data: t.json: tensor 'x' data[1] is 1e+39, beyond float32's range (largest magnitude 3.4028235e+38)")
        #expect(try Self.error(#"{"x": {"shape": [1], "data": [-1e39]}}"#)
                == "invalid data: t.json: tensor 'x' data[0] is -1e+39, beyond float32's range (largest magnitude 3.4028235e+38)")
        #expect(try Self.error(#"{"x": {"shape": [2], "data": [1, "inf"]}}"#)
                == #"invalid data: t.json: tensor 'x' data[1] is "inf", not a number or "NaN", "Infinity", "-Infinity""#)
        #expect(try Self.error(#"{"x": {"shape": [1], "data": [null]}}"#)
                == #"invalid data: t.json: tensor 'x' data[0] is null, not a number or "NaN", "Infinity", "-Infinity""#)
        #expect(try Self.error(#"{"x": {"shape": [1], "data": [1], "dtype": 5}}"#)
                == #"invalid data: t.json: tensor 'x': unknown member "dtype" (a tensor has "shape" and "data")"#)
        #expect(try Self.error(#"{"x": [1, 2]}"#) == #"invalid data: t.json: tensor 'x' must be an object with "shape" and "data""#)
    }

    static let graph = """
    {"format": "kiln-graph/1",
     "variables": [{"name": "x", "shape": [2], "kind": "input", "data": DATA}],
     "functions": [{"name": "f", "type": "ReLU", "inputs": ["x"], "outputs": ["y"]}],
     "outputs": ["y"]}
    """

    @Test func graphFileDataRoundTripsAndIsChecked() throws {
        let g = try GraphFile.load(bytes: Array(Self.graph.replacingOccurrences(of: "DATA", with: #"["-Infinity", "NaN"]"#).utf8))
        let x = try #require(g.variables["x"])
        #expect(x.d[0] == -.infinity && x.d[1].isNaN)
        let saved = GraphFile.save(g.outputs)
        let data = saved["variables"]?.array?.first { $0["name"]?.string == "x" }?["data"]
        #expect(data == .array([.string("-Infinity"), .string("NaN")]))
        #expect(throws: KilnError.invalidGraphFile("variable 'x' data[0] is 1e+39, beyond float32's range (largest magnitude 3.4028235e+38)")) {
            try GraphFile.load(bytes: Array(Self.graph.replacingOccurrences(of: "DATA", with: "[1e39, 0]").utf8))
        }
    }

    @Test func graphFileMembersMustHaveTheirTypes() throws {
        let relu = Self.graph.replacingOccurrences(of: #", "data": DATA"#, with: "")
        #expect(throws: KilnError.invalidGraphFile("variable 'x': dtype must be a string, got 5")) {
            try GraphFile.load(bytes: Array(relu.replacingOccurrences(of: #""kind": "input""#, with: #""kind": "input", "dtype": 5"#).utf8))
        }
        #expect(throws: KilnError.invalidGraphFile("variable 'x': kind must be a string, got [\"input\"]")) {
            try GraphFile.load(bytes: Array(relu.replacingOccurrences(of: #""kind": "input""#, with: #""kind": ["input"]"#).utf8))
        }
        #expect(throws: KilnError.invalidGraphFile("functions[0]: name must be a string, got 7")) {
            try GraphFile.load(bytes: Array(relu.replacingOccurrences(of: #""name": "f""#, with: #""name": 7"#).utf8))
        }
    }

    @Test(.enabled(if: KilnProcess.exists, "no kiln binary next to the test bundle"))
    func kilnRunKeepsNaNAndInfinityAndNamesTheFileOfAnOverflow() throws {
        let relu = Self.graph.replacingOccurrences(of: #", "data": DATA"#, with: "")
        let dir = try KilnProcess.directory(["g.json": relu, "in.json": #"{"x": {"shape": [2], "data": ["Infinity", "-Infinity"]}}"#,
                                             "big.json": #"{"x": {"shape": [2], "data": [0, 1e39]}}"#])
        defer { try? FileManager.default.removeItem(at: dir) }
        let r = try KilnProcess.run(["run", "g.json", "--inputs", "in.json", "--outputs", "out.json"], in: dir)
        #expect(r.status == 0)
        // ReLU([inf, -inf]) = [inf, 0].
        #expect(try String(contentsOf: dir.appendingPathComponent("out.json"), encoding: .utf8)
                == #"{"y": {"shape": [2], "data": ["Infinity", 0]}}"# + "\n")
        let big = try KilnProcess.run(["run", "g.json", "--inputs", "big.json", "--outputs", "out.json"], in: dir)
        #expect(big.status == 1)
        #expect(big.stderr == "kiln: error: invalid data: big.json: tensor 'x' data[1] is 1e+39, beyond float32's range (largest magnitude 3.4028235e+38)\n")
    }
}
