import Foundation
import Testing

/// `kiln`'s numeric options and MODEL arguments are validated before anything runs: each message names the
/// option that is wrong and its value (exit status 64, `Error: ...`), negative numbers parse as values, and
/// an unknown model reads as one. The full messages are in Tests/CLISnapshots; these pin the rules.
@Suite(.enabled(if: KilnProcess.exists, "no kiln binary next to the test bundle"))
struct CLIValidationTests {
    /// The first line of standard error and the status of `kiln arguments`.
    static func error(_ arguments: [String]) throws -> (status: Int32, line: String) {
        let r = try KilnProcess.run(arguments, files: [:])
        return (r.status, String(r.stderr.split(separator: "\n").first ?? ""))
    }

    @Test(arguments: [
        (["train", "lenet", "--learning-rate", "nan"], "Error: --learning-rate must be a positive finite number, got nan"),
        (["train", "lenet", "--learning-rate", "-inf"], "Error: --learning-rate must be a positive finite number, got -inf"),
        (["train", "lenet", "--learning-rate", "0"], "Error: --learning-rate must be a positive finite number, got 0.0"),
        (["train", "mlp", "--loss-scale", "-8"], "Error: --loss-scale must be a positive finite number, got -8.0"),
        (["train", "mlp", "--checkpoint-interval", "0"], "Error: --checkpoint-interval must be positive, got 0"),
        (["train", "mlp", "--threads", "-2"], "Error: --threads must be positive, got -2"),
        (["train", "mlp", "--eval-iterations", "0"], "Error: --eval-iterations must be positive, got 0"),
        (["bench", "mlp", "--batch-size", "-1"], "Error: --batch-size must be positive, got -1"),
        (["bench", "mlp", "--iterations", "0"], "Error: --iterations must be positive, got 0"),
        (["bench", "mlp", "--warmup", "-1"], "Error: --warmup must not be negative, got -1"),
        (["bench", "mlp", "--threads", "0"], "Error: --threads must be positive, got 0"),
        (["profile", "mlp", "--batch-size", "0"], "Error: --batch-size must be positive, got 0"),
        (["profile", "mlp", "--iterations", "0"], "Error: --iterations must be positive, got 0"),
        (["profile", "mlp", "--threads", "0"], "Error: --threads must be positive, got 0"),
        (["profile", "mlp", "--top", "-5"], "Error: --top must not be negative, got -5"),
        (["demo", "--epochs", "0"], "Error: --epochs must be positive, got 0"),
        (["demo", "--batch-size", "-64"], "Error: --batch-size must be positive, got -64"),
        (["plan", "mlp", "--batch-size", "-4"], "Error: --batch-size must be positive, got -4"),
        (["view", "mlp", "-o", "x.svg", "--batch-size", "0"], "Error: --batch-size must be positive, got 0"),
        (["convert", "g.json", "--converter", "fixed-point-activation", "--n", "-1", "-o", "o.json"], "Error: --n must be between 1 and 32, got -1"),
        (["plan", "resnet1000"], "Error: unknown model 'resnet1000'; the zoo models are lenet, resnet20, mlp, or give a graph file (.json, .onnx, .nnp)"),
        (["bench", "resnet1000"], "Error: unknown model 'resnet1000'; the zoo models are lenet, resnet20, mlp, or give a graph file (.json, .onnx, .nnp)"),
        (["profile", "resnet1000"], "Error: unknown model 'resnet1000'; the zoo models are lenet, resnet20, mlp, or give a graph file (.json, .onnx, .nnp)"),
        (["train", "resnet1000"], "Error: unknown model 'resnet1000'; the zoo models are lenet, resnet20, mlp, or give a graph file (.json, .onnx, .nnp)"),
        (["view", "mlp", "-o", "x.svg", "--mode", "sideways"], "Error: The value 'sideways' is invalid for '--mode <mode>'. Please provide one of 'inference' and 'training'."),
    ])
    func usageErrorsNameTheOptionAndValue(_ arguments: [String], _ message: String) throws {
        let r = try Self.error(arguments)
        #expect(r.status == 64)
        #expect(r.line == message)
    }

    /// Epochs times iterations beyond Int's range is a data error naming both, before any training (it
    /// trapped in the progress arithmetic). Needs Fashion-MNIST, which `make test` installs.
    @Test(.enabled(if: FileManager.default.fileExists(atPath: "/usr/share/datasets/fashion-mnist"),
                   "Debian's dataset-fashion-mnist is not installed"))
    func epochsTimesIterationsOverflowIsAnError() throws {
        let r = try Self.error(["train", "lenet", "--epochs", "\(Int.max)", "--max-iterations", "2"])
        #expect(r.status == 1)
        #expect(r.line == "kiln: error: invalid shape: --epochs \(Int.max) x 2 iterations per epoch overflows the integer range")
    }

    /// `profile` times the inference plan unless asked otherwise, as `plan` and `bench` do.
    @Test func profileDefaultsToInference() throws {
        let r = try KilnProcess.run(["profile", "mlp", "--iterations", "1", "--batch-size", "4"], files: [:])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.hasPrefix("mlp inference batch 4:"), "\(r.stdout)")
    }

    /// A path that does not exist is still a file to the loader (an i/o error, status 1), not an unknown model.
    @Test func aMissingFileIsAnIOError() throws {
        let r = try Self.error(["plan", "missing.json"])
        #expect(r.status == 1)
        #expect(r.line == "kiln: error: i/o: cannot read graph file missing.json: No such file or directory")
    }

    /// profile --iterations 1 reports a finite time per run (0 iterations used to print "inf ms").
    @Test func profileRunsWithItsValidatedOptions() throws {
        let r = try KilnProcess.run(["profile", "mlp", "--mode", "training", "--batch-size", "2", "--iterations", "1", "--top", "0"], files: [:])
        #expect(r.status == 0, "\(r.stderr)")
        let first = String(r.stdout.split(separator: "\n").first ?? "")
        #expect(first.hasPrefix("mlp training batch 2: ") && first.hasSuffix(" ms per run") && !first.contains("inf"))
    }
}
