import Foundation
import Testing
@testable import Kiln

/// End to end: `kiln train` killed with SIGKILL after a mid-epoch checkpoint, then resumed.
struct TrainResumeCLITests {
    static let binary = Bundle.module.bundleURL.deletingLastPathComponent().appendingPathComponent("kiln").path
    static let available = FileManager.default.isExecutableFile(atPath: binary)
        && FileManager.default.fileExists(atPath: FashionMNIST.defaultDirectory)

    /// Starts `kiln` with `arguments`, collecting its standard output in a file.
    static func launch(_ arguments: [String], output: String) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binary)
        p.arguments = arguments
        _ = FileManager.default.createFile(atPath: output, contents: nil)
        let h = try FileHandle(forWritingTo: URL(fileURLWithPath: output))
        p.standardOutput = h
        p.standardError = h
        try p.run()
        return p
    }

    @Test(.enabled(if: available), .timeLimit(.minutes(2)))
    func sigkillThenResume() throws {
        let dir = try trainingTempDir("cli-resume")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let save = dir + "/model"
        let args = ["train", "mlp", "--epochs", "1", "--max-iterations", "60", "--checkpoint-interval", "20",
                    "--model-save-path", save, "--monitor-path", dir + "/monitor"]
        let first = try Self.launch(args, output: dir + "/first.txt")
        // Wait for the first mid-epoch checkpoint, then kill without warning.
        let deadline = Date().addingTimeInterval(90)
        var reached = -1
        while first.isRunning && Date() < deadline {
            if let c = try? Checkpoint.latest(in: save) { reached = c.iteration }
            if reached >= 19 { break }
            usleep(5_000)
        }
        let killed = first.isRunning
        if killed { kill(first.processIdentifier, SIGKILL) }
        first.waitUntilExit()
        #expect(reached >= 19, "no checkpoint appeared: \(String(decoding: FileManager.default.contents(atPath: dir + "/first.txt") ?? Data(), as: UTF8.self))")
        print("sigkill test: killed \(killed), checkpoint seen at iteration \(reached)")
        // 40 more iterations and an evaluation of 10,000 images cannot finish within one 5 ms poll.
        try #require(killed, "the first run finished before it could be killed")
        #expect(first.terminationReason == .uncaughtSignal)
        // The run may have written a later checkpoint between the last look and the kill.
        let resumeFrom = try #require(try Checkpoint.latest(in: save)).iteration + 1
        #expect(resumeFrom >= 20 && resumeFrom < 60)
        // What a kill in the middle of a save leaves: a temporary of an unfinished write and a mid-epoch file
        // that no checkpoint names yet (the kill may have left real ones too).
        let leftovers = [".partial_params_000099.safetensors.tmp-0123456789abcdef", ".checkpoint.json.tmp-fedcba9876543210",
                         "partial_solver0_000099.safetensors"]
        for f in leftovers { try Data("unfinished".utf8).write(to: URL(fileURLWithPath: save + "/" + f)) }
        print("sigkill test: after the kill \(try FileManager.default.contentsOfDirectory(atPath: save).sorted())")

        let second = try Self.launch(args + ["--resume"], output: dir + "/second.txt")
        second.waitUntilExit()
        let out = String(decoding: FileManager.default.contents(atPath: dir + "/second.txt") ?? Data(), as: UTF8.self)
        #expect(second.terminationStatus == 0, "\(out)")
        #expect(out.contains("resuming from the checkpoint: \(resumeFrom) of 60 steps done; continuing with step \(resumeFrom + 1) of 60 in epoch 1 of 1"), "\(out)")
        // The loss series (every 10 iterations) keeps the killed run's lines before the checkpoint and continues:
        // one line per ten iterations, none repeated or missing.
        let series = try MonitorLog.read(path: dir + "/monitor/Training-loss.series.txt")
        #expect(series.map(\.index) == [9, 19, 29, 39, 49, 59], "\(series)")
        // --max-iterations 60 bounds the evaluation too: 6,000 of the 10,000 test images.
        #expect(out.contains("on 6000 of 10000 test images"), "\(out)")
        let c = try #require(try Checkpoint.latest(in: save))
        #expect(c.iteration == 59)
        let params = try SafeTensors.read(path: c.parameters)
        #expect(!params.tensors.isEmpty)
        #expect(params.tensors.allSatisfy { $0.1.toFloats().allSatisfy { $0.isFinite } })
        #expect(try SafeTensors.read(path: c.solvers[0]).tensors.count > 0)
        // No leftover mid-epoch checkpoint or temporary once the resumed run has finished.
        let files = try FileManager.default.contentsOfDirectory(atPath: save)
        #expect(!files.contains { $0.hasPrefix("partial_") }, "\(files)")
        #expect(!files.contains { AtomicFile.isTemporaryName($0) || $0.contains(".tmp-") }, "\(files)")
        #expect(Set(files) == ["checkpoint.json", "params_000059.safetensors", "solver0_000059.safetensors"], "\(files)")
    }

    /// `kiln train --precision half` trains the MLP with dynamic loss scaling: the loss falls and the run
    /// reports the loss scale it ended with.
    @Test(.enabled(if: available), .timeLimit(.minutes(2)))
    func halfPrecisionTrains() throws {
        let dir = try trainingTempDir("cli-half")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let p = try Self.launch(["train", "mlp", "--precision", "half", "--max-iterations", "120",
                                 "--monitor-path", dir], output: dir + "/out.txt")
        p.waitUntilExit()
        let out = String(decoding: FileManager.default.contents(atPath: dir + "/out.txt") ?? Data(), as: UTF8.self)
        #expect(p.terminationStatus == 0, "\(out)")
        #expect(out.contains("precision half") && out.contains("final loss scale: "), "\(out)")
        let series = try String(contentsOfFile: dir + "/Training-loss.series.txt", encoding: .utf8)
        let losses = series.split(separator: "\n").compactMap { Double($0.split(separator: " ").last ?? "") }
        #expect(losses.count >= 10)
        #expect(losses.allSatisfy { $0.isFinite })
        #expect(losses.suffix(3).reduce(0, +) < losses.prefix(3).reduce(0, +))
    }
}
