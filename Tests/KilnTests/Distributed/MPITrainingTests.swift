import Foundation
import Testing
@testable import Kiln

/// `kiln train --distributed` under Open MPI's `mpirun -np 2` on this machine (loopback, shared memory):
/// two ranks with batch B take the steps of one process with batch 2B, a distributed run resumes, and a rank
/// that fails or dies ends the whole job. `make deps` installs Open MPI (openmpi-bin, libopenmpi-dev).
@Suite(.serialized) struct MPITrainingTests {
    static let mpirun = "/usr/bin/mpirun"
    /// Root may run ranks (CI does), more ranks than cores are fine, and no single-copy shared memory (which
    /// needs ptrace rights containers often lack).
    static let launcherOptions = ["--allow-run-as-root", "--oversubscribe", "--mca", "btl_vader_single_copy_mechanism", "none"]
    static let timeScale = ProcessInfo.processInfo.environment["KILN_TEST_TIME_SCALE"].flatMap(Double.init) ?? 1

    static func requireLauncher() throws {
        try #require(FileManager.default.isExecutableFile(atPath: mpirun),
                     "Open MPI's mpirun is missing: `make deps` installs it (apt install openmpi-bin libopenmpi-dev)")
        try #require(KilnProcess.exists, "the kiln binary is not built")
    }

    /// Runs `mpirun -np 2 kiln train ARGS --distributed`, or (np 0) `kiln train ARGS` alone (paths in ARGS must
    /// be absolute: the process runs in the test's directory, not in `dir`, which only receives its output).
    static func train(np: Int, _ arguments: [String], in dir: URL, timeout: Double = 300) throws -> BoundedProcess.Result {
        let kiln = ["train", "lenet"] + arguments
        if np == 0 { return try BoundedProcess.run(KilnProcess.binary, kiln, directory: dir, timeout: timeout * timeScale) }
        return try BoundedProcess.run(mpirun, launcherOptions + ["-np", String(np), KilnProcess.binary] + kiln + ["--distributed"],
                                      directory: dir, timeout: timeout * timeScale)
    }

    /// The largest difference between the parameters of two parameter files.
    static func maxDifference(_ a: String, _ b: String) throws -> Float {
        let x = try SafeTensors.read(path: a).tensors, y = try SafeTensors.read(path: b).tensors
        try #require(x.map(\.0) == y.map(\.0) && !x.isEmpty)
        var worst: Float = 0
        for ((_, p), (_, q)) in zip(x, y) {
            try #require(p.count == q.count)
            for k in 0..<p.count { worst = max(worst, abs(p.floats[k] - q.floats[k])) }
        }
        return worst
    }

    struct Case: Sendable, CustomTestStringConvertible {
        var options: [String]
        var tolerance: Float
        var testDescription: String { options.joined(separator: " ") }
    }

    /// The issue's bounds: 1e-4 in float; with loss scaling in half precision, 5e-3 (the spread one process
    /// already shows between 1 and 2 threads). Buckets of 8 KiB split LeNet's gradients into several.
    static let cases: [Case] = [
        Case(options: ["--solver", "sgd", "--learning-rate", "0.05"], tolerance: 1e-4),
        Case(options: ["--solver", "adam"], tolerance: 1e-4),
        Case(options: ["--solver", "momentum", "--learning-rate", "0.01", "--bucket-size", "8K"], tolerance: 1e-4),
        Case(options: ["--solver", "adam", "--bucket-size", "none", "--no-overlap"], tolerance: 1e-4),
        Case(options: ["--solver", "adam", "--precision", "half"], tolerance: 5e-3),
    ]

    @Test(arguments: cases)
    func twoRanksOfBatchBTakeTheStepsOfOneProcessOfBatch2B(_ c: Case) throws {
        try Self.requireLauncher()
        let dir = try KilnProcess.directory([:])
        defer { try? FileManager.default.removeItem(at: dir) }
        let common = ["--max-iterations", "6", "--eval-iterations", "1", "--seed", "21"] + c.options
        let one = try Self.train(np: 0, common + ["--batch-size", "64", "--model-save-path", dir.appendingPathComponent("one").path], in: dir)
        #expect(one.status == 0, "\(one.stderr)")
        let two = try Self.train(np: 2, common + ["--batch-size", "32", "--model-save-path", dir.appendingPathComponent("two").path], in: dir)
        #expect(two.status == 0, "\(two.stderr)")
        #expect(two.stdout.contains("distributed: 2 processes x batch 32 = global batch 64"))
        // Only rank 0 prints.
        #expect(two.stdout.components(separatedBy: "training plan:").count == 2)
        let file = "params_000005.safetensors"
        let d = try Self.maxDifference(dir.appendingPathComponent("one/\(file)").path,
                                       dir.appendingPathComponent("two/\(file)").path)
        #expect(d <= c.tolerance, "max |difference| \(d)")
        // Training moved the parameters far more than the runs differ: the comparison is not of two untouched
        // initialisations.
        let start = try Self.train(np: 0, ["--max-iterations", "1", "--eval-iterations", "1", "--seed", "21",
                                           "--learning-rate", "1e-30", "--model-save-path", dir.appendingPathComponent("start").path], in: dir)
        #expect(start.status == 0)
        let moved = try Self.maxDifference(dir.appendingPathComponent("start/params_000000.safetensors").path,
                                           dir.appendingPathComponent("one/\(file)").path)
        #expect(moved > 10 * max(d, 1e-6), "moved \(moved), difference \(d)")
    }

    @Test func aDistributedRunResumesFromRankZerosCheckpoint() throws {
        try Self.requireLauncher()
        let dir = try KilnProcess.directory([:])
        defer { try? FileManager.default.removeItem(at: dir) }
        let common = ["--epochs", "2", "--max-iterations", "3", "--eval-iterations", "1", "--batch-size", "16"]
        let whole = try Self.train(np: 2, common + ["--model-save-path", dir.appendingPathComponent("whole").path], in: dir)
        #expect(whole.status == 0, "\(whole.stderr)")
        // The state after the first epoch, as an interrupted run would have left it.
        let fm = FileManager.default
        try fm.createDirectory(at: dir.appendingPathComponent("cut"), withIntermediateDirectories: true)
        for f in ["params_000002.safetensors", "solver0_000002.safetensors"] {
            try fm.copyItem(at: dir.appendingPathComponent("whole/\(f)"), to: dir.appendingPathComponent("cut/\(f)"))
        }
        try Data(#"{"iteration": 2, "parameters": "params_000002.safetensors", "solvers": ["solver0_000002.safetensors"]}"#.utf8)
            .write(to: dir.appendingPathComponent("cut/checkpoint.json"))
        let resumed = try Self.train(np: 2, common + ["--model-save-path", dir.appendingPathComponent("cut").path, "--resume"], in: dir)
        #expect(resumed.status == 0, "\(resumed.stderr)")
        #expect(resumed.stdout.contains("resuming from the checkpoint: 3 of 6 steps done"))
        let d = try Self.maxDifference(dir.appendingPathComponent("whole/params_000005.safetensors").path,
                                       dir.appendingPathComponent("cut/params_000005.safetensors").path)
        #expect(d == 0)
    }

    @Test func anOrdinaryErrorOnOneRankEndsTheJob() throws {
        try Self.requireLauncher()
        let dir = try KilnProcess.directory([:])
        defer { try? FileManager.default.removeItem(at: dir) }
        // Rank 1 cannot find its dataset (a missing file on one host); rank 0 would wait for it forever.
        let args = ["train", "lenet", "--distributed", "--max-iterations", "3"]
        let r = try BoundedProcess.run(Self.mpirun, Self.launcherOptions + ["-np", "1", KilnProcess.binary] + args
                                       + [":", "-np", "1", KilnProcess.binary] + args + ["--data-dir", "/nonexistent"],
                                       directory: dir, timeout: 60 * Self.timeScale)
        #expect(!r.timedOut)
        #expect(r.status != 0 && r.status != nil)
        #expect(r.stderr.contains("kiln: error on rank 1 of 2"), "\(r.stderr)")
        #expect(r.stderr.contains("/nonexistent"))
    }

    @Test func ranksBuildingDifferentModelsAreRefused() throws {
        try Self.requireLauncher()
        let dir = try KilnProcess.directory([:])
        defer { try? FileManager.default.removeItem(at: dir) }
        let r = try BoundedProcess.run(Self.mpirun, Self.launcherOptions + [
            "-np", "1", KilnProcess.binary, "train", "lenet", "--distributed", "--max-iterations", "2", ":",
            "-np", "1", KilnProcess.binary, "train", "mlp", "--distributed", "--max-iterations", "2",
        ], directory: dir, timeout: 60 * Self.timeScale)
        #expect(!r.timedOut)
        #expect(r.status != 0 && r.status != nil)
        #expect(r.stderr.contains("rank 1 builds a different model than rank 0"), "\(r.stderr)")
    }

    @Test func misuseIsAClearError() throws {
        try Self.requireLauncher()
        let dir = try KilnProcess.directory([:])
        defer { try? FileManager.default.removeItem(at: dir) }
        // No launcher.
        let alone = try KilnProcess.run(["train", "lenet", "--distributed", "--max-iterations", "1"], in: dir)
        #expect(alone.status == 1)
        #expect(alone.stderr.contains("distributed training needs an MPI launcher"))
        // A global batch larger than the dataset.
        let big = try Self.train(np: 2, ["--batch-size", "40000"], in: dir, timeout: 60)
        #expect(big.status != 0 && !big.timedOut)
        #expect(big.stderr.contains("2 process(es) x --batch-size 40000 is more than the 60000 training images"), "\(big.stderr)")
        let size = try KilnProcess.run(["train", "lenet", "--bucket-size", "lots"], in: dir)
        #expect(size.status == 64)
        #expect(size.stderr.contains("--bucket-size must be a size"))
    }

    @Test func aKilledRankEndsTheJobWithinAMinute() throws {
        try Self.requireLauncher()
        let dir = try KilnProcess.directory([:])
        defer { try? FileManager.default.removeItem(at: dir) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Self.mpirun)
        p.arguments = Self.launcherOptions + ["-np", "2", KilnProcess.binary, "train", "lenet", "--distributed", "--epochs", "50"]
        p.currentDirectoryURL = dir
        let out = dir.appendingPathComponent("mpirun.out")
        _ = FileManager.default.createFile(atPath: out.path, contents: nil)
        p.standardOutput = try FileHandle(forWritingTo: out)
        p.standardError = p.standardOutput
        try p.run()
        defer { if p.isRunning { kill(-p.processIdentifier, SIGKILL); p.terminate() } }
        // Wait until training runs, then kill one rank (a child of mpirun) as a crash or the OOM killer would.
        let started = Date()
        var ranks: [pid_t] = []
        while Date().timeIntervalSince(started) < 120 * Self.timeScale {
            let text = (try? String(contentsOf: out, encoding: .utf8)) ?? ""
            ranks = Self.children(of: p.processIdentifier).filter { Self.commandLine($0).contains("kiln") }
            if text.contains("training plan:") && ranks.count == 2 { break }
            usleep(100_000)
        }
        try #require(ranks.count == 2, "the ranks did not start: \((try? String(contentsOf: out, encoding: .utf8)) ?? "")")
        usleep(500_000)
        let killedAt = Date()
        kill(ranks[1], SIGKILL)
        while p.isRunning && Date().timeIntervalSince(killedAt) < 60 { usleep(50_000) }
        let seconds = Date().timeIntervalSince(killedAt)
        #expect(!p.isRunning, "mpirun still running \(seconds) s after a rank was killed")
        if !p.isRunning { #expect(p.terminationStatus != 0) }
        #expect(seconds < 60)
    }

    /// Processes whose parent is `pid` (from /proc).
    static func children(of pid: pid_t) -> [pid_t] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { Int32($0) }.filter { child in
            guard let stat = try? String(contentsOfFile: "/proc/\(child)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { return false }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            return fields.count > 2 && Int32(fields[1]) == pid
        }
    }

    static func commandLine(_ pid: pid_t) -> String {
        guard let d = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return "" }
        return String(decoding: d.map { $0 == 0 ? 32 : $0 }, as: UTF8.self)
    }
}
