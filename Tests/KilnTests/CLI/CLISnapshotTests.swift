import Foundation
import Testing
import Kiln

/// Outside the suite: its @Suite trait cannot refer to the suite's own members.
private let kilnBinaryPath = Bundle.module.bundleURL.deletingLastPathComponent().appendingPathComponent("kiln").path

/// `kiln`'s help texts and error messages compared byte for byte with the files in Tests/CLISnapshots/, so
/// that any change to the command-line interface (an option renamed, a default changed, a message reworded)
/// shows up as a diff to review. After an intended change, rewrite the files with
/// `Tests/CLISnapshots/regenerate.sh` (KILN_UPDATE_SNAPSHOTS=1) and review the diff.
///
/// Skipped, with this reason, when the `kiln` binary is not next to the test bundle.
@Suite(.enabled(if: FileManager.default.isExecutableFile(atPath: kilnBinaryPath),
                "no kiln binary next to the test bundle (build it with swift build --build-tests)"))
struct CLISnapshotTests {
    static let binary = kilnBinaryPath
    static var binaryExists: Bool { FileManager.default.isExecutableFile(atPath: binary) }
    static var updating: Bool { ProcessInfo.processInfo.environment["KILN_UPDATE_SNAPSHOTS"] == "1" }

    /// Tests/CLISnapshots, outside the test target so that it is not a bundle resource.
    static var directory: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("CLISnapshots")
    }

    /// One invocation: its snapshot file is `<name>.txt`; `<tmp>` in the arguments is a fresh directory
    /// holding `files`, and stands for that directory in the snapshot too.
    struct Case: Sendable, CustomTestStringConvertible {
        var name: String
        var arguments: [String]
        var testDescription: String { name }
    }

    /// Files written into each case's temporary directory.
    static let files: [String: String] = [
        "not-json.json": "this is not JSON\n",
        "not-onnx.onnx": "this is not a protobuf\n",
        "not-a-graph.json": #"{"format": "onnx", "variables": [], "functions": [], "outputs": []}"#,
        "bogus-function.json": #"{"format": "kiln-graph/1", "variables": [{"name": "x", "shape": [2], "kind": "input"}], "functions": [{"name": "f", "type": "Bogus", "inputs": ["x"], "outputs": ["y"]}], "outputs": ["y"]}"#,
        "graph.json": #"{"format": "kiln-graph/1", "variables": [{"name": "x", "shape": [2], "kind": "input"}], "functions": [{"name": "f", "type": "ReLU", "inputs": ["x"], "outputs": ["y"]}], "outputs": ["y"]}"#,
        "no-x.json": #"{"z": {"shape": [2], "data": [1, 2]}}"#,
        "no-inputs.json": "{}",
        "x-input.json": #"{"x": {"shape": [2], "data": [1, -2]}}"#,
        "nan-weight.json": #"{"format": "kiln-graph/1", "variables": [{"name": "x", "shape": [2], "kind": "input"}, {"name": "w", "shape": [2], "kind": "parameter", "data": [1, "NaN"]}], "functions": [{"name": "f", "type": "Mul2", "inputs": ["x", "w"], "outputs": ["y"]}], "outputs": ["y"]}"#,
    ]

    /// The subcommands listed under SUBCOMMANDS in `kiln --help` (empty without the binary).
    static let subcommands: [String] = {
        guard binaryExists, let help = try? run(["--help"], in: nil).stdout else { return [] }
        return help.split(separator: "\n", omittingEmptySubsequences: false)
            .drop { $0 != "SUBCOMMANDS:" }.dropFirst().prefix { !$0.isEmpty }
            .filter { $0.hasPrefix("  ") && !$0.hasPrefix("   ") }
            .compactMap { $0.split(separator: " ").first.map(String.init) }
    }()

    static var helpCases: [Case] {
        [Case(name: "help-kiln", arguments: ["--help"])] + subcommands.map { Case(name: "help-\($0)", arguments: [$0, "--help"]) }
    }

    static let errorCases: [Case] = [
        ("no-subcommand", []),
        ("unknown-subcommand", ["frobnicate"]),
        ("plan-unknown-option", ["plan", "mlp", "--frobnicate"]),
        ("plan-missing-model", ["plan"]),
        ("plan-bad-mode", ["plan", "mlp", "--mode", "sideways"]),
        ("plan-bad-precision", ["plan", "mlp", "--precision", "double"]),
        ("plan-bad-format", ["plan", "mlp", "--format", "yaml"]),
        ("plan-batch-size-not-a-number", ["plan", "mlp", "--batch-size", "ten"]),
        ("plan-negative-batch-size", ["plan", "mlp", "--batch-size", "-4"]),
        ("plan-negative-batch-size-equals", ["plan", "mlp", "--batch-size=-4"]),
        ("plan-zero-threads", ["plan", "mlp", "--threads", "0"]),
        ("plan-unknown-model", ["plan", "resnet1000"]),
        ("plan-nonexistent-file", ["plan", "<tmp>/missing.json"]),
        ("plan-not-json", ["plan", "<tmp>/not-json.json"]),
        ("plan-not-a-kiln-graph", ["plan", "<tmp>/not-a-graph.json"]),
        ("plan-unknown-function-type", ["plan", "<tmp>/bogus-function.json"]),
        ("run-without-inputs", ["run", "<tmp>/graph.json", "--outputs", "<tmp>/out.json"]),
        ("run-nonexistent-graph", ["run", "<tmp>/missing.json", "--inputs", "<tmp>/no-x.json", "--outputs", "<tmp>/out.json"]),
        ("run-inputs-not-json", ["run", "<tmp>/graph.json", "--inputs", "<tmp>/not-json.json", "--outputs", "<tmp>/out.json"]),
        ("run-input-not-given", ["run", "<tmp>/graph.json", "--inputs", "<tmp>/no-inputs.json", "--outputs", "<tmp>/out.json"]),
        ("run-input-unknown", ["run", "<tmp>/graph.json", "--inputs", "<tmp>/no-x.json", "--outputs", "<tmp>/out.json"]),
        ("run-non-finite-parameter", ["run", "<tmp>/nan-weight.json", "--inputs", "<tmp>/x-input.json", "--outputs", "<tmp>/out.json"]),
        ("plan-non-finite-parameter", ["plan", "<tmp>/nan-weight.json"]),
        ("convert-unknown-converter", ["convert", "<tmp>/graph.json", "--converter", "magic", "-o", "<tmp>/out.json"]),
        ("convert-no-converter", ["convert", "<tmp>/graph.json", "-o", "<tmp>/out.json"]),
        ("convert-missing-output", ["convert", "<tmp>/graph.json", "--converter", "identity"]),
        ("convert-flag-for-another-converter", ["convert", "<tmp>/graph.json", "--converter", "bn-linear", "--delta", "0.1", "-o", "<tmp>/out.json"]),
        ("convert-bad-delta-w", ["convert", "<tmp>/graph.json", "--converter", "fixed-point-weight", "--delta-w", "zero", "-o", "<tmp>/out.json"]),
        ("convert-n-out-of-range", ["convert", "<tmp>/graph.json", "--converter", "fixed-point-activation", "--n", "0", "-o", "<tmp>/out.json"]),
        ("convert-n-too-wide", ["convert", "<tmp>/graph.json", "--converter", "fixed-point-weight", "--n-w", "33", "-o", "<tmp>/out.json"]),
        ("quantize-zero-bits", ["quantize", "lenet", "--bits", "0", "-o", "<tmp>/q.json"]),
        ("quantize-nine-bits", ["quantize", "lenet", "--bits", "9", "-o", "<tmp>/q.json"]),
        ("quantize-zero-batches", ["quantize", "lenet", "--batches", "0", "-o", "<tmp>/q.json"]),
        ("quantize-not-json", ["quantize", "lenet", "-o", "<tmp>/q.onnx"]),
        ("quantize-missing-output", ["quantize", "lenet"]),
        ("quantize-unknown-dataset", ["quantize", "lenet", "--dataset", "<tmp>/missing", "-o", "<tmp>/q.json"]),
        ("evaluate-unknown-model", ["evaluate", "resnet1000"]),
        ("evaluate-zero-max-images", ["evaluate", "lenet", "--max-images", "0"]),
        ("evaluate-graph-without-images", ["evaluate", "<tmp>/graph.json"]),
        ("convert-negative-delta", ["convert", "<tmp>/graph.json", "--converter", "fixed-point-activation", "--delta", "-0.5", "-o", "<tmp>/out.json"]),
        ("convert-nan-delta", ["convert", "<tmp>/graph.json", "--converter", "fixed-point-activation", "--delta", "nan", "-o", "<tmp>/out.json"]),
        ("convert-signed-one-bit", ["convert", "<tmp>/graph.json", "--converter", "fixed-point-weight", "--n-w", "1", "-o", "<tmp>/out.json"]),
        ("convert-unknown-black-list-type", ["convert", "<tmp>/graph.json", "--converter", "identity", "--black-list", "Bogus", "-o", "<tmp>/out.json"]),
        ("convert-nonexistent-graph", ["convert", "<tmp>/missing.json", "--converter", "identity", "-o", "<tmp>/out.json"]),
        ("view-bad-format", ["view", "mlp", "-o", "<tmp>/net.jpg"]),
        ("view-bad-mode", ["view", "mlp", "-o", "<tmp>/net.svg", "--mode", "sideways"]),
        ("view-zero-batch-size", ["view", "mlp", "-o", "<tmp>/net.svg", "--batch-size", "0"]),
        ("view-negative-batch-size", ["view", "mlp", "-o", "<tmp>/net.svg", "--batch-size", "-2"]),
        ("view-unknown-model", ["view", "resnet1000", "-o", "<tmp>/net.svg"]),
        ("view-missing-output", ["view", "mlp"]),
        ("bench-speedup-one-thread", ["bench", "mlp", "--threads", "1", "--speedup"]),
        ("bench-zero-iterations", ["bench", "mlp", "--iterations", "0"]),
        ("bench-negative-batch-size", ["bench", "mlp", "--batch-size", "-1"]),
        ("bench-negative-warmup", ["bench", "mlp", "--warmup", "-1"]),
        ("bench-zero-threads", ["bench", "mlp", "--threads", "0"]),
        ("bench-unknown-model", ["bench", "resnet1000"]),
        ("profile-unknown-model", ["profile", "resnet1000"]),
        ("profile-bad-mode", ["profile", "mlp", "--mode", "sideways"]),
        ("profile-zero-batch-size", ["profile", "mlp", "--batch-size", "0"]),
        ("profile-zero-iterations", ["profile", "mlp", "--iterations", "0"]),
        ("profile-zero-threads", ["profile", "mlp", "--threads", "0"]),
        ("profile-negative-top", ["profile", "mlp", "--top", "-1"]),
        ("train-unknown-dataset", ["train", "lenet", "--dataset", "cifar10"]),
        ("train-negative-random-crop", ["train", "lenet", "--random-crop", "-1"]),
        ("train-unknown-model", ["train", "resnet1000"]),
        ("train-resume-without-save-path", ["train", "lenet", "--resume"]),
        ("train-bad-learning-rate", ["train", "lenet", "--learning-rate", "fast"]),
        ("train-nan-learning-rate", ["train", "lenet", "--learning-rate", "nan"]),
        ("train-infinite-learning-rate", ["train", "lenet", "--learning-rate", "inf"]),
        ("train-zero-learning-rate", ["train", "lenet", "--learning-rate", "0"]),
        ("train-negative-learning-rate", ["train", "lenet", "--learning-rate", "-0.01"]),
        ("train-infinite-loss-scale", ["train", "lenet", "--precision", "half", "--loss-scale", "inf"]),
        ("train-negative-batch-size", ["train", "lenet", "--batch-size", "-1"]),
        ("train-zero-epochs", ["train", "lenet", "--epochs", "0"]),
        ("train-zero-max-iterations", ["train", "lenet", "--max-iterations", "0"]),
        ("train-missing-data", ["train", "mlp", "--data-dir", "<tmp>/no-data"]),
        ("demo-zero-epochs", ["demo", "--epochs", "0"]),
        ("demo-negative-batch-size", ["demo", "--batch-size", "-3"]),
        ("demo-zero-threads", ["demo", "--threads", "0"]),
        ("demo-missing-data", ["demo", "--data-dir", "<tmp>/no-data"]),
        ("import-not-onnx", ["import", "<tmp>/graph.json", "-o", "<tmp>/out.json"]),
        ("import-not-a-model", ["import", "<tmp>/not-onnx.onnx", "-o", "<tmp>/out.json"]),
        ("import-bad-shape", ["import", "<tmp>/not-onnx.onnx", "-o", "<tmp>/out.json", "--shape", "x=1,0"]),
        ("export-bad-extension", ["export", "lenet", "-o", "<tmp>/lenet.pb"]),
        ("export-unknown-model", ["export", "resnet1000", "-o", "<tmp>/out.onnx"]),
        ("run-params-not-safetensors", ["run", "<tmp>/graph.json", "--params", "<tmp>/w.h5", "--inputs", "<tmp>/x-input.json", "--outputs", "<tmp>/out.json"]),
    ].map { Case(name: "error-\($0.0)", arguments: $0.1) }

    /// Runs kiln with a fixed terminal width (swift-argument-parser wraps help and usage to COLUMNS), in
    /// `directory` if given, with `<tmp>` in the arguments replaced by it and its path replaced by `<tmp>`
    /// in the output.
    static func run(_ arguments: [String], in directory: URL?) throws -> (status: Int32, stdout: String, stderr: String) {
        let tmp = directory?.path ?? "<tmp>"
        let scratch = directory ?? FileManager.default.temporaryDirectory
        let outURL = scratch.appendingPathComponent(".stdout-\(UUID())"), errURL = scratch.appendingPathComponent(".stderr-\(UUID())")
        _ = FileManager.default.createFile(atPath: outURL.path, contents: nil)
        _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: outURL); try? FileManager.default.removeItem(at: errURL) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binary)
        p.arguments = arguments.map { $0.replacingOccurrences(of: "<tmp>", with: tmp) }
        p.environment = ProcessInfo.processInfo.environment.merging(["COLUMNS": "80", "LINES": "24"]) { $1 }
        if let directory { p.currentDirectoryURL = directory }
        p.standardOutput = try FileHandle(forWritingTo: outURL)
        p.standardError = try FileHandle(forWritingTo: errURL)
        try p.run()
        p.waitUntilExit()
        func read(_ url: URL) throws -> String {
            String(decoding: try Data(contentsOf: url), as: UTF8.self).replacingOccurrences(of: tmp, with: "<tmp>")
        }
        return (p.terminationStatus, try read(outURL), try read(errURL))
    }

    /// Runs a case in a fresh temporary directory and compares (or, when updating, writes) its snapshot:
    /// the arguments, the exit status, then standard output for help (standard error for errors), then the
    /// other stream's text if it is not empty.
    func check(_ c: Case, help: Bool) throws {
        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("kiln-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: tmp) }
        for (name, text) in Self.files { try Data(text.utf8).write(to: tmp.appendingPathComponent(name)) }
        let r = try Self.run(c.arguments, in: tmp)
        let (main, other, otherName) = help ? (r.stdout, r.stderr, "stderr") : (r.stderr, r.stdout, "stdout")
        var fresh = "$ " + (["kiln"] + c.arguments).joined(separator: " ") + "\nexit: \(r.status)\n" + main
        if !other.isEmpty { fresh += "--- \(otherName) ---\n" + other }
        let file = Self.directory.appendingPathComponent(c.name + ".txt")
        if Self.updating {
            try FileManager.default.createDirectory(at: Self.directory, withIntermediateDirectories: true)
            try Data(fresh.utf8).write(to: file)
            return
        }
        guard let golden = try? String(contentsOf: file, encoding: .utf8) else {
            Issue.record("\(file.lastPathComponent) is missing; run Tests/CLISnapshots/regenerate.sh and review it")
            return
        }
        if fresh != golden {
            let a = fresh.split(separator: "\n", omittingEmptySubsequences: false)
            let b = golden.split(separator: "\n", omittingEmptySubsequences: false)
            let i = (0..<min(a.count, b.count)).first { a[$0] != b[$0] } ?? min(a.count, b.count)
            Issue.record("\(file.lastPathComponent) differs at line \(i + 1): got '\(i < a.count ? a[i] : "<end>")', golden '\(i < b.count ? b[i] : "<end>")'")
        }
    }

    @Test(arguments: helpCases)
    func help(_ c: Case) throws {
        try check(c, help: true)
    }

    @Test(arguments: errorCases)
    func error(_ c: Case) throws {
        try check(c, help: false)
    }

    /// Every subcommand has a help snapshot and every snapshot file belongs to a case (a removed case or
    /// subcommand leaves no stale file; when updating, stale files are deleted).
    @Test func snapshotFilesMatchTheCases() throws {
        #expect(Self.subcommands.count >= 8, "could not read the subcommands from kiln --help")
        let expected = Set((Self.helpCases + Self.errorCases).map { $0.name + ".txt" })
        let present = Set(try FileManager.default.contentsOfDirectory(atPath: Self.directory.path).filter { $0.hasSuffix(".txt") })
        for stale in present.subtracting(expected).sorted() {
            if Self.updating {
                try FileManager.default.removeItem(at: Self.directory.appendingPathComponent(stale))
            } else {
                Issue.record("\(stale) belongs to no case; remove it (or run Tests/CLISnapshots/regenerate.sh)")
            }
        }
        if !Self.updating {
            for missing in expected.subtracting(present).sorted() { Issue.record("\(missing) is missing") }
        }
    }

    /// docs/CLI.md, the command-line reference the README points to, is `kiln --help` and every
    /// subcommand's `--help`, generated (rewritten when updating), so it always says what the binary does.
    @Test func cliReferenceIsTheHelp() throws {
        var text = """
        # Command-line reference

        Generated from `kiln --help` and each subcommand's `--help` by `Tests/CLISnapshots/regenerate.sh`;
        the test `CLISnapshotTests.cliReferenceIsTheHelp` fails when this file and the binary disagree.
        Conventions that hold for every command are in the README's "Command line" section.

        """
        for c in Self.helpCases {
            let r = try Self.run(c.arguments, in: nil)
            #expect(r.status == 0, "\(c.arguments) exits with \(r.status)")
            let command = (["kiln"] + c.arguments.dropLast()).joined(separator: " ")
            text += "\n## \(command)\n\n```text\n\(r.stdout.trimmingCharacters(in: .newlines))\n```\n"
        }
        let url = Self.directory.deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("docs/CLI.md")
        if Self.updating {
            try AtomicFile.write(text, to: url.path)
        } else {
            let present = try String(contentsOf: url, encoding: .utf8)
            #expect(present == text, "docs/CLI.md differs from kiln's help; run Tests/CLISnapshots/regenerate.sh")
        }
    }
}
