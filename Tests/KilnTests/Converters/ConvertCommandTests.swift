import Foundation
import Testing
@testable import Kiln

/// `kiln convert` end to end: the library call it makes (`GraphFileConversion`), and the real binary when the
/// build produced it (graph file in, graph file out, `kiln run` on the result, compared with nnabla).
struct ConvertCommandTests {
    static let binary = Bundle.module.bundleURL.deletingLastPathComponent().appendingPathComponent("kiln").path

    static func tempDir(_ tag: String) throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("kiln-convert-\(tag)-\(getpid())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    /// Runs `kiln` with arguments; returns the exit status and standard error.
    static func kiln(_ arguments: [String]) throws -> (status: Int32, stderr: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binary)
        p.arguments = arguments
        let err = Pipe()
        p.standardError = err
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        let data = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    @Test func libraryConversionWritesAGraphFileThatRuns() throws {
        let dir = try Self.tempDir("lib")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let c = try ConverterFixtures.goldenCase()
        let source = dir + "/net.json", out = dir + "/folded.json"
        try AtomicFile.write(try ConverterFixtures.graph(c).serialized(), to: source)
        let notes = try GraphFileConversion.convert(graph: source, with: ConverterSettings().converter(.bnFolded), to: out)
        #expect(notes.isEmpty)
        let g = try GraphFile.load(path: out)
        let y = try ConverterFixtures.run(g, x: try ConverterFixtures.tensor(c["input"], "input"))["y"]
        let expected = try ConverterFixtures.tensor(c["b_batch_normalization_folded"]?["output"], "folded output")
        #expect(mismatch(try #require(y), expected.floats, rtol: 1e-4, atol: 1e-5) == nil)

        // A malformed graph is an error naming the file, and nothing is written.
        let broken = dir + "/broken.json", never = dir + "/never.json"
        try AtomicFile.write(#"{"format": "kiln-graph/1", "variables": [], "functions": [{"name": "f", "type": "ReLU", "inputs": ["nope"], "outputs": ["y"]}], "outputs": ["y"]}"#, to: broken)
        do {
            try GraphFileConversion.convert(graph: broken, with: IdentityConverter(), to: never)
            Issue.record("a dangling input was accepted")
        } catch let e as KilnError {
            #expect("\(e)".contains("broken.json") && "\(e)".contains("nope"), "\(e)")
        }
        #expect(!FileManager.default.fileExists(atPath: never))
    }

    @Test func settingsMapShorthandsOntoEachConverter() throws {
        var s = ConverterSettings()
        s.delta = 0.0625
        s.nB = 6
        s.sign = false
        let w = try #require(s.converter(.fixedPointWeight) as? FixedPointWeightConverter)
        #expect(w.argsFpq.deltaW == .fixed(0.0625) && w.argsFpq.deltaB == .fixed(0.0625) && w.argsFpq.nW == 8 && w.argsFpq.nB == 6 && !w.argsFpq.signW && !w.argsFpq.signB)
        let a = try #require(s.converter(.fixedPointActivation) as? FixedPointActivationConverter)
        #expect(a.argsFpq.delta == 0.0625 && a.argsFpq.n == 8 && !a.argsFpq.sign)
        let d = try #require(ConverterSettings().converter(.fixedPointWeight) as? FixedPointWeightConverter)
        #expect(d.argsFpq == FixedPointWeightConverter.Arguments() && d.argsFpq.deltaW == .fixed(2e-4) && d.argsFpq.deltaB == .fixed(2e-4) && d.argsFpq.signW && d.argsFpq.signB && d.argsFpq.nW == 8 && d.name == "fixed-point-weight-graph")
        #expect(ConverterSettings().converter([.fixedPointWeight, .fixedPointActivation]) is SequentialConverter)
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: binary)))
    func kilnConvertThenKilnRunReproducesNnabla() throws {
        let dir = try Self.tempDir("cli")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let c = try ConverterFixtures.goldenCase()
        let source = dir + "/net.json", inputs = dir + "/in.json"
        try AtomicFile.write(try ConverterFixtures.graph(c).serialized(), to: source)
        let x = try ConverterFixtures.tensor(c["input"], "input")
        try AtomicFile.write(TensorFile.json([("x", .init(shape: x.shape, data: x.floats))]).serialized(), to: inputs)
        let cases: [([String], JSON?)] = [
            (["--converter", "identity"], c["a_reference_output"]),
            (["--converter", "bn-folded"], c["b_batch_normalization_folded"]?["output"]),
            (["--converter", "bn-linear"], c["c_batch_normalization_linear"]?["output"]),
            (["--converter", "fixed-point-weight"], c["d_fixed_point_weight"]?["delta2e-4"]?["output"]),
            (["--converter", "fixed-point-weight", "--delta", "0.0625"], c["d_fixed_point_weight"]?["delta0.0625"]?["output"]),
            (["--converter", "fixed-point-weight", "--delta-w", "0.0625", "--delta-b", "0.0625"], c["d_fixed_point_weight"]?["delta0.0625"]?["output"]),
            (["--converter", "fixed-point-activation"], c["e_fixed_point_activation"]?["delta2e-4"]?["output"]),
            (["--converter", "fixed-point-activation", "--delta", "0.0625"], c["e_fixed_point_activation"]?["delta0.0625"]?["output"]),
            (["--converter", "fixed-point-weight", "--converter", "fixed-point-activation", "--delta", "0.0625"],
             c["e_fixed_point_activation"]?["delta0.0625_sequential_with_weight_converter"]?["output"]),
        ]
        for (k, (args, expectedJSON)) in cases.enumerated() {
            let out = dir + "/out\(k).json", results = dir + "/y\(k).json"
            let convert = try Self.kiln(["convert", source] + args + ["-o", out])
            #expect(convert.status == 0, "\(args): \(convert.stderr)")
            let run = try Self.kiln(["run", out, "--inputs", inputs, "--outputs", results])
            #expect(run.status == 0, "\(args): \(run.stderr)")
            let y = try TensorFile.read(path: results).first { $0.0 == "y" }?.1.data
            let expected = try ConverterFixtures.tensor(expectedJSON, "\(args)")
            #expect(mismatch(try #require(y, "\(args)"), expected.floats, rtol: 1e-4, atol: 1e-5) == nil, "\(args)")
        }
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: binary)))
    func kilnConvertRejectsBadInputWithoutCrashing() throws {
        let dir = try Self.tempDir("bad")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let c = try ConverterFixtures.goldenCase()
        let source = dir + "/net.json", out = dir + "/out.json"
        try AtomicFile.write(try ConverterFixtures.graph(c).serialized(), to: source)

        let unknown = try Self.kiln(["convert", source, "--converter", "bn-fold", "-o", out])
        #expect(unknown.status != 0 && unknown.stderr.contains("bn-fold"), "\(unknown.stderr)")
        let wrongFlag = try Self.kiln(["convert", source, "--converter", "bn-folded", "--delta-w", "0.5", "-o", out])
        #expect(wrongFlag.status != 0 && wrongFlag.stderr.contains("--delta-w"), "\(wrongFlag.stderr)")
        let badType = try Self.kiln(["convert", source, "--converter", "identity", "--black-list", "Relu", "-o", out])
        #expect(badType.status != 0 && badType.stderr.contains("Relu"), "\(badType.stderr)")
        // One bit with a sign leaves none for the value: refused while checking options, before any work.
        let oneBit = try Self.kiln(["convert", source, "--converter", "fixed-point-weight", "--n", "1", "-o", out])
        #expect(oneBit.status == 64 && oneBit.stderr.contains("at least 2 bits"), "\(oneBit.stderr)")
        let oneBitUnsigned = try Self.kiln(["convert", source, "--converter", "fixed-point-activation", "--n", "1", "-o", out])
        #expect(oneBitUnsigned.status == 0, "\(oneBitUnsigned.stderr)")
        try? FileManager.default.removeItem(atPath: out)
        let missing = try Self.kiln(["convert", dir + "/none.json", "--converter", "identity", "-o", out])
        #expect(missing.status == 1 && missing.stderr.hasPrefix("kiln: error:"), "\(missing.stderr)")
        let garbage = dir + "/garbage.json"
        try AtomicFile.write("{\"format\": \"kiln-graph/1\", \"variables\": [", to: garbage)
        let malformed = try Self.kiln(["convert", garbage, "--converter", "bn-linear", "-o", out])
        #expect(malformed.status == 1 && malformed.stderr.contains("garbage.json"), "\(malformed.stderr)")
        #expect(!FileManager.default.fileExists(atPath: out))

        // A training-mode BN is left as it is, said on standard error; the conversion still succeeds.
        let training = try ConverterFixtures.graph(c, batchStat: true)
        let trainingPath = dir + "/training.json"
        try AtomicFile.write(training.serialized(), to: trainingPath)
        let r = try Self.kiln(["convert", trainingPath, "--converter", "bn-folded", "-o", out])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderr.contains("kiln: note:") && r.stderr.contains("batch_stat=true"), "\(r.stderr)")
        let g = try GraphFile.load(path: out)
        #expect(ConverterFixtures.functionTypes(g).filter { $0 == "BatchNormalization" }.count == 2)
    }
}
