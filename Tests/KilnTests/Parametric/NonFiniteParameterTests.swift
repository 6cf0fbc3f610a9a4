import Foundation
import Testing
@testable import Kiln

/// Parameters holding NaN or an infinity are refused when loaded (safetensors parameter files, checkpoints,
/// `Module.loadParameters`, graph-file parameter data) unless the caller allows them: they used to be
/// trained or run on without a word.
struct NonFiniteParameterTests {
    static let hint = "(non-finite parameters are refused unless allowed: allowNonFinite, --allow-non-finite)"

    static func directory() throws -> URL { try KilnProcess.directory([:]) }

    @Test func parameterFileRefusesNaNAndInfinity() throws {
        let dir = try Self.directory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("p.safetensors").path
        let w = try Variable(shape: [2, 2], needGrad: true), b = try Variable(shape: [2], needGrad: true)
        try w.setData([Float]([1, 2, .nan, 4]))
        try b.setData([Float]([0, -.infinity]))
        try ParameterFile.save([("fc/W", w), ("fc/b", b)], to: path)

        let w2 = try Variable(shape: [2, 2], needGrad: true), b2 = try Variable(shape: [2], needGrad: true)
        try w2.setData([Float]([9, 9, 9, 9]))
        #expect(throws: KilnError.invalidParameters("\(path): parameter 'fc/W' holds nan at index 2 \(Self.hint)")) {
            try ParameterFile.load(into: [("fc/W", w2), ("fc/b", b2)], from: path, requireAll: true)
        }
        #expect(throws: KilnError.invalidParameters("\(path): parameter 'fc/b' holds -inf at index 1 \(Self.hint)")) {
            try ParameterFile.load(into: [("fc/b", b2)], from: path, requireAll: true)
        }
        // Nothing was changed by the refused loads.
        #expect(w2.d == [9, 9, 9, 9])
        try ParameterFile.load(into: [("fc/W", w2), ("fc/b", b2)], from: path, requireAll: true, allowNonFinite: true)
        #expect(w2.d[0] == 1 && w2.d[2].isNaN && b2.d == [0, -.infinity])
    }

    @Test func float16ParametersAreCheckedToo() throws {
        let dir = try Self.directory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("h.safetensors").path
        let h = try NDArray(shape: [3], dtype: .float16)
        h.halves[0] = 1; h.halves[1] = .infinity; h.halves[2] = 2
        try SafeTensors.write([("h", h)], to: path)
        let v = try Variable(shape: [3], dtype: .float16, needGrad: true)
        #expect(throws: KilnError.invalidParameters("\(path): parameter 'h' holds inf at index 1 \(Self.hint)")) {
            try ParameterFile.load(into: [("h", v)], from: path, requireAll: true)
        }
    }

    @Test func moduleLoadParametersRefusesThemUnlessAllowed() throws {
        let dir = try Self.directory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("m.safetensors").path
        let m = try Module.Affine(nInMaps: 2, nOutMaps: 1, wInit: .constant(1), bInit: .constant(0))
        let names = m.getParameters(gradOnly: false).map { $0.name }
        #expect(names == ["W", "b"])
        try m.getParameters(gradOnly: false)[1].variable.setData([Float]([.infinity]))
        try m.saveParameters(path: path)
        let fresh = try Module.Affine(nInMaps: 2, nOutMaps: 1, wInit: .constant(3), bInit: .constant(5))
        #expect(throws: KilnError.invalidParameters("\(path): parameter 'b' holds inf at index 0 \(Self.hint)")) {
            try fresh.loadParameters(path: path)
        }
        try fresh.loadParameters(path: path, allowNonFinite: true)
        #expect(fresh.getParameters(gradOnly: false).map { $0.variable.d } == [[1, 1], [.infinity]])
    }

    @Test func checkpointsAreRestoredOnlyWithFiniteParameters() throws {
        let dir = try Self.directory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let w = try Variable(shape: [2], needGrad: true)
        try w.setData([Float]([.nan, 1]))
        try Checkpoint.save(in: dir.path, iteration: 3, solvers: [], keep: true, parameters: [(name: "w", variable: w)])
        let c = try #require(try Checkpoint.latest(in: dir.path))
        let w2 = try Variable(shape: [2], needGrad: true)
        #expect(throws: KilnError.invalidParameters("\(c.parameters): parameter 'w' holds nan at index 0 \(Self.hint)")) {
            try c.restore(solvers: [], parameters: [(name: "w", variable: w2)])
        }
    }

    /// y = ReLU(x) * w (Mul2), w a parameter with data.
    static func graph(w: String, x: String = "") -> String {
        """
        {"format": "kiln-graph/1",
         "variables": [{"name": "x", "shape": [2], "kind": "input"\(x)},
                       {"name": "w", "shape": [2], "kind": "parameter", "data": \(w)}],
         "functions": [{"name": "r", "type": "ReLU", "inputs": ["x"], "outputs": ["h"]},
                       {"name": "m", "type": "Mul2", "inputs": ["h", "w"], "outputs": ["y"]}],
         "outputs": ["y"]}
        """
    }

    @Test func graphFileParameterDataMustBeFinite() throws {
        #expect(throws: KilnError.invalidGraphFile("parameter 'w' holds nan at index 1 \(Self.hint)")) {
            try GraphFile.load(bytes: Array(Self.graph(w: #"[1, "NaN"]"#).utf8))
        }
        let allowed = try GraphFile.load(bytes: Array(Self.graph(w: #"["Infinity", 2]"#).utf8), allowNonFinite: true)
        #expect(allowed.variables["w"]?.d == [.infinity, 2])
        // Inputs' data is not a parameter: it may hold them.
        let input = try GraphFile.load(bytes: Array(Self.graph(w: "[1, 2]", x: #", "data": ["NaN", 0]"#).utf8))
        #expect(input.variables["x"]?.d[0].isNaN == true)
    }

    @Test func conversionRefusesThemOnBothSides() throws {
        let dir = try KilnProcess.directory(["nan.json": Self.graph(w: #"["-Infinity", 1]"#)])
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("nan.json").path, out = dir.appendingPathComponent("out.json").path
        #expect(throws: KilnError.invalidGraphFile("\(path): parameter 'w' holds -inf at index 0 \(Self.hint)")) {
            try GraphFileConversion.convert(graph: path, with: IdentityConverter(), to: out)
        }
        try GraphFileConversion.convert(graph: path, with: IdentityConverter(), to: out, allowNonFinite: true)
        #expect(try GraphFile.load(path: out, allowNonFinite: true).variables["w"]?.d == [-.infinity, 1])
    }

    @Test(.enabled(if: KilnProcess.exists, "no kiln binary next to the test bundle"))
    func kilnRunAndConvertRefuseThemUnlessAllowed() throws {
        let dir = try KilnProcess.directory(["g.json": Self.graph(w: #"[2, "Infinity"]"#),
                                             "in.json": #"{"x": {"shape": [2], "data": [3, -1]}}"#])
        defer { try? FileManager.default.removeItem(at: dir) }
        let run = ["run", "g.json", "--inputs", "in.json", "--outputs", "out.json"]
        let refused = try KilnProcess.run(run, in: dir)
        #expect(refused.status == 1)
        #expect(refused.stderr == "kiln: error: graph file: g.json: parameter 'w' holds inf at index 1 \(Self.hint)\n")
        let allowed = try KilnProcess.run(run + ["--allow-non-finite"], in: dir)
        #expect(allowed.status == 0 && allowed.stderr.isEmpty)
        // y = ReLU([3, -1]) * [2, inf] = [6, 0 * inf] = [6, NaN].
        #expect(try String(contentsOf: dir.appendingPathComponent("out.json"), encoding: .utf8)
                == #"{"y": {"shape": [2], "data": [6, "NaN"]}}"# + "\n")
        let convert = try KilnProcess.run(["convert", "g.json", "--converter", "identity", "-o", "c.json"], in: dir)
        #expect(convert.status == 1)
        #expect(convert.stderr == "kiln: error: graph file: g.json: parameter 'w' holds inf at index 1 \(Self.hint)\n")
        for command in [["convert", "g.json", "--converter", "identity", "-o", "c.json"], ["plan", "g.json"], ["bench", "g.json", "--iterations", "1"]] {
            let r = try KilnProcess.run(command + ["--allow-non-finite"], in: dir)
            #expect(r.status == 0, "\(command): \(r.stderr)")
        }
    }
}

extension ParameterFileTests {
    /// The registry's `Parameters.load` refuses them too (in this serialized suite: it touches the registry).
    @Test func registryLoadRefusesNonFiniteValues() throws {
        let dir = try KilnProcess.directory([:])
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("r.safetensors").path
        let a = try Variable(shape: [1], needGrad: true)
        try a.setData([Float]([.nan]))
        try ParameterFile.save([("nonfinite\(getpid())/a", a)], to: path)
        #expect(throws: KilnError.invalidParameters("\(path): parameter 'nonfinite\(getpid())/a' holds nan at index 0 \(NonFiniteParameterTests.hint)")) {
            try Parameters.load(path: path)
        }
        #expect(Parameters.get("nonfinite\(getpid())/a") == nil)
        try Parameters.load(path: path, allowNonFinite: true)
        #expect(Parameters.get("nonfinite\(getpid())/a")?.d[0].isNaN == true)
    }
}
