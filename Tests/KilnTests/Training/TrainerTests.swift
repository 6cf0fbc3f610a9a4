import Foundation
import Testing
@testable import Kiln

/// A small regression problem: 10 samples of 2 features, target x0 - 2 x1 + 0.5.
enum TinyRegression {
    static let inputs: [[Float]] = (0..<10).map { i in [Float(i % 5) * 0.3 - 0.6, Float(i / 5) - 0.5 + Float(i % 3) * 0.1] }
    static let targets: [Float] = inputs.map { $0[0] - 2 * $0[1] + 0.5 }

    static func iterator(batchSize: Int = 4, shuffle: Bool = true, seed: UInt32 = 7) throws -> DataIterator {
        try DataIterator(size: 10, batchSize: batchSize, shuffle: shuffle, seed: seed, sampleShapes: [[2], [1]]) { i in
            [inputs[i], [targets[i]]]
        }
    }

    /// x -> affine(3) -> relu -> affine(1); mean squared error. Builds parameters in the current scope.
    static func model(batchSize: Int = 4) throws -> (x: Variable, t: Variable, loss: Variable) {
        let x = try Variable(shape: [batchSize, 2]), t = try Variable(shape: [batchSize, 1])
        let h = try F.relu(PF.affine(x, outMaps: 3, name: "fc1"))
        let y = try PF.affine(h, outMaps: 1, name: "fc2")
        return (x, t, try F.mean(F.squaredError(y, t)))
    }

    static func snapshot() -> [String: [Float]] {
        var d: [String: [Float]] = [:]
        for (n, v) in Parameters.current(gradOnly: false) { d[n] = v.d }
        return d
    }
}

struct StopTraining: Error {}

struct TrainerTests {
    @Test func callbackOrderOverEpochs() throws {
        try Parameters.isolated {
            let log = EventLog()
            let m = try TinyRegression.model()
            let data = try TinyRegression.iterator()
            let solver = Sgd(lr: 0.01)
            solver.setParameters(Parameters.current())
            let feed: () throws -> Void = { let b = try data.next(); try m.x.setData(b[0]); try m.t.setData(b[1]) }
            let u1 = Updater(solver: solver, loss: m.loss, dataFeeder: { log.add("feed"); try feed() },
                             updateCallbackOnFinish: [{ i in log.add("u1:\(i)") }])
            // A second updater without parameters of its own, to see that both run in turn.
            let u2 = Updater(solver: Sgd(lr: 0), loss: m.loss, dataFeeder: feed,
                             updateCallbackOnFinish: [{ i in log.add("u2:\(i)") }])
            let x = try Variable(shape: [1])
            let ev = try Evaluator(F.mean(x), valIter: 1, callbackOnStart: [{ i in log.add("eval\(i)") }])
            let trainer = Trainer(updater: [u1, u2], evaluator: [ev], maxEpoch: 2, iterPerEpoch: 3,
                                  callbackOnStart: [{ log.add("start") }], callbackOnFinish: [{ log.add("finish") }],
                                  updateCallbackOnStart: [{ i in log.add("s\(i)") }],
                                  updateCallbackOnFinish: [{ i in log.add("f\(i)") }])
            try trainer.train()
            var expected = ["start"]
            for i in 0..<6 {
                expected += ["s\(i)", "feed", "u1:\(i)", "u2:\(i)", "f\(i)"]
                if i == 2 || i == 5 { expected.append("eval\(i)") }
            }
            expected.append("finish")
            // Evaluated once per epoch, not again at the end (nnabla repeats the last one).
            #expect(log.events == expected)
        }
    }

    @Test func missingOrBadSettingsThrow() throws {
        try Parameters.isolated {
            let m = try TinyRegression.model()
            let u = Updater(solver: Sgd(), loss: m.loss)
            #expect(throws: KilnError.self) { try Trainer(u).train() }
            #expect(throws: KilnError.self) { try Trainer(u, iterPerEpoch: 0).train() }
            let t = Trainer(u, maxEpoch: -1, iterPerEpoch: 1)
            #expect(throws: KilnError.self) { try t.train() }
            #expect(throws: KilnError.self) { try Trainer(u, iterPerEpoch: 1).train(resume: true) }
        }
    }

    /// One training run of 3 epochs x 3 iterations (batch 4 of a shuffled 10-sample set, so data epochs wrap
    /// mid-batch), Adam, checkpoints every 2 iterations. `stopAfter` throws from the callback after that
    /// iteration's update (before its checkpoint); `resume` continues from `dir`.
    @discardableResult
    static func run(dir: String, resume: Bool = false, stopAfter: Int? = nil,
                    inspect: ((Int) -> Void)? = nil, finished: ((Int) -> Void)? = nil,
                    resumedAt: ((Int) -> Void)? = nil) throws -> [String: [Float]] {
        try Parameters.isolated {
            let m = try TinyRegression.model()
            let data = try TinyRegression.iterator()
            let solver = Adam(alpha: 0.05)
            solver.setParameters(Parameters.current())
            let u = Updater(solver: solver, loss: m.loss,
                            dataFeeder: { let b = try data.next(); try m.x.setData(b[0]); try m.t.setData(b[1]) })
            let trainer = Trainer(updater: [u], modelSavePath: dir, maxEpoch: 3, iterPerEpoch: 3,
                                  updateCallbackOnStart: [{ i in inspect?(i) }],
                                  updateCallbackOnFinish: [{ i in
                                      finished?(i)
                                      if i == stopAfter { throw StopTraining() }
                                  }])
            trainer.checkpointInterval = 2
            trainer.onResume = [{ start in
                let consumed = start * data.batchSize
                try data.seek(epoch: consumed / data.size, position: consumed % data.size)
                resumedAt?(start)
            }]
            try trainer.train(resume: resume)
            return TinyRegression.snapshot()
        }
    }

    static func files(_ dir: String) -> Set<String> {
        Set((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [])
    }

    @Test func checkpointFilesPerEpochAndPartialOnesReplaced() throws {
        let dir = try trainingTempDir("trainer-ckpt")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var seen: [Int: Set<String>] = [:]
        var atFive: [String: [Float]] = [:]
        let final = try Self.run(dir: dir, inspect: { i in seen[i] = Self.files(dir) },
                                 finished: { i in if i == 5 { atFive = TinyRegression.snapshot() } })
        func epoch(_ i: Int) -> Set<String> { ["params_00000\(i).safetensors", "solver0_00000\(i).safetensors"] }
        func partial(_ i: Int) -> Set<String> { ["partial_params_00000\(i).safetensors", "partial_solver0_00000\(i).safetensors"] }
        let ckpt: Set<String> = ["checkpoint.json"]
        #expect(seen[0] == [] && seen[1] == [])
        #expect(seen[2] == ckpt.union(partial(1)))
        #expect(seen[3] == ckpt.union(epoch(2)))                   // the partial checkpoint at 1 is gone
        #expect(seen[4] == ckpt.union(epoch(2)).union(partial(3)))
        #expect(seen[5] == seen[4])
        #expect(seen[6] == ckpt.union(epoch(2)).union(epoch(5)))   // replaced by the epoch checkpoint
        #expect(seen[8] == ckpt.union(epoch(2)).union(epoch(5)).union(partial(7)))
        #expect(Self.files(dir) == ckpt.union(epoch(2)).union(epoch(5)).union(epoch(8)))

        let c = try #require(try Checkpoint.latest(in: dir))
        #expect(c.iteration == 8)
        #expect(c.parameters == dir + "/params_000008.safetensors")
        #expect(c.solvers == [dir + "/solver0_000008.safetensors"])

        // The epoch files hold the parameters as they were after that iteration.
        for (i, expected) in [(5, atFive), (8, final)] {
            let file = try SafeTensors.read(path: dir + "/params_00000\(i).safetensors")
            #expect(Set(file.tensors.map { $0.0 }) == Set(expected.keys))
            for (name, a) in file.tensors { #expect(a.toFloats() == expected[name], "\(name) at \(i)") }
        }
        // The solver state file has Adam's state for every parameter.
        let s = try SafeTensors.read(path: dir + "/solver0_000008.safetensors")
        #expect(s.tensors.contains { $0.0 == "fc1/affine/W/t" })
        #expect(s.tensors.first { $0.0 == "fc1/affine/W/t" }?.1.int32s[0] == 9)
    }

    @Test func resumeIsBitIdenticalToAnUninterruptedRun() throws {
        let a = try trainingTempDir("trainer-full"), b = try trainingTempDir("trainer-resumed")
        defer { try? FileManager.default.removeItem(atPath: a); try? FileManager.default.removeItem(atPath: b) }
        let reference = try Self.run(dir: a)

        #expect(throws: StopTraining.self) { try Self.run(dir: b, stopAfter: 4) }
        #expect(try Checkpoint.latest(in: b)?.iteration == 3)
        #expect(Self.files(b).contains("partial_params_000003.safetensors"))

        var resumedAt: Int?
        var ran: [Int] = []
        let resumed = try Self.run(dir: b, resume: true, inspect: { ran.append($0) }, resumedAt: { resumedAt = $0 })
        #expect(resumedAt == 4)
        #expect(ran == Array(4..<9))
        #expect(Set(resumed.keys) == Set(reference.keys) && reference.count == 4)
        for (name, values) in reference {
            #expect(resumed[name] == values, "\(name) differs after resuming")
        }
        // Training moved the parameters at all (the comparison is not vacuous).
        let untrained = try Parameters.isolated { () -> [String: [Float]] in
            _ = try TinyRegression.model()
            return TinyRegression.snapshot()
        }
        #expect(untrained["fc2/affine/W"] != reference["fc2/affine/W"])
        #expect(Self.files(b) == Self.files(a))

        // Resuming a finished run trains nothing more.
        var more: [Int] = []
        let again = try Self.run(dir: b, resume: true, inspect: { more.append($0) })
        #expect(more.isEmpty)
        #expect(again == reference)
    }

    /// What a killed run leaves (an orphaned mid-epoch file, temporaries of unfinished writes) is removed when
    /// the run resumes, before it continues, except the files the checkpoint names; once the run ends no
    /// `partial_*` file or temporary remains. Other files are left alone.
    @Test func resumeAndTheEndOfARunRemoveLeftovers() throws {
        let dir = try trainingTempDir("trainer-leftovers")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(throws: StopTraining.self) { try Self.run(dir: dir, stopAfter: 4) }
        let named: Set<String> = ["partial_params_000003.safetensors", "partial_solver0_000003.safetensors"]
        #expect(Self.files(dir).isSuperset(of: named))
        let leftovers = ["partial_params_000005.safetensors", ".partial_solver0_000005.safetensors.tmp-0123456789abcdef",
                         ".checkpoint.json.tmp-31337"]
        for f in leftovers + ["notes.txt"] { try Data("x".utf8).write(to: URL(fileURLWithPath: dir + "/" + f)) }
        let before = Self.files(dir)

        var atResume: Set<String>?
        try Self.run(dir: dir, resume: true, inspect: { _ in if atResume == nil { atResume = Self.files(dir) } })
        #expect(atResume == before.subtracting(leftovers))
        #expect(atResume?.isSuperset(of: named) == true)
        let after = Self.files(dir)
        #expect(!after.contains { $0.hasPrefix("partial_") || AtomicFile.isTemporaryName($0) }, "\(after)")
        #expect(after == ["checkpoint.json", "notes.txt", "params_000002.safetensors", "solver0_000002.safetensors",
                          "params_000005.safetensors", "solver0_000005.safetensors",
                          "params_000008.safetensors", "solver0_000008.safetensors"])
        #expect(try Checkpoint.latest(in: dir)?.iteration == 8)
    }

    /// A run that is not resumed, in a directory a killed run left files in, also ends without them.
    @Test func aFinishedRunLeavesNoPartialFilesOrTemporaries() throws {
        let dir = try trainingTempDir("trainer-finished")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for f in ["partial_params_000042.safetensors", ".params_000008.safetensors.tmp-00000000deadbeef"] {
            try Data("x".utf8).write(to: URL(fileURLWithPath: dir + "/" + f))
        }
        try Self.run(dir: dir)
        let after = Self.files(dir)
        #expect(!after.contains { $0.hasPrefix("partial_") || AtomicFile.isTemporaryName($0) }, "\(after)")
        #expect(after.count == 7 && after.contains("checkpoint.json"), "\(after)")
    }

    @Test func resumeWithoutCheckpointStartsFromScratch() throws {
        let a = try trainingTempDir("trainer-fresh"), b = try trainingTempDir("trainer-fresh-resume")
        defer { try? FileManager.default.removeItem(atPath: a); try? FileManager.default.removeItem(atPath: b) }
        var ran: [Int] = []
        let resumed = try Self.run(dir: b, resume: true, inspect: { ran.append($0) })
        #expect(ran == Array(0..<9))
        #expect(resumed == (try Self.run(dir: a)))
    }

    @Test func corruptCheckpointIsAnError() throws {
        let dir = try trainingTempDir("trainer-corrupt")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try AtomicFile.write("{\"iteration\": 3}\n", to: dir + "/checkpoint.json")
        #expect(throws: KilnError.self) { try Self.run(dir: dir, resume: true) }
        try AtomicFile.write("{\"iteration\": 3, \"parameters\": \"../x.safetensors\", \"solvers\": []}\n", to: dir + "/checkpoint.json")
        #expect(throws: KilnError.self) { try Self.run(dir: dir, resume: true) }
        try AtomicFile.write("{\"iteration\": 3, \"parameters\": \"missing.safetensors\", \"solvers\": [\"s.safetensors\"]}\n",
                             to: dir + "/checkpoint.json")
        #expect(throws: KilnError.self) { try Self.run(dir: dir, resume: true) }
    }

    /// A checkpoint claiming an iteration this run never reaches (1e12, Int.max, negative) is refused at once,
    /// naming it, instead of replaying a trillion shuffles or overflowing `iteration + 1`; so is a run whose
    /// epochs x iterations overflow.
    @Test func checkpointIterationsOutsideTheRunAreRefusedAtOnce() throws {
        let dir = try trainingTempDir("trainer-far-iteration")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Self.run(dir: dir)                                   // a real checkpoint at iteration 8
        let text = try String(contentsOfFile: dir + "/checkpoint.json", encoding: .utf8)
        #expect(text.contains("\"iteration\": 8"))
        for claimed in ["1000000000000", "\(Int.max)", "-1", "9"] {
            try AtomicFile.write(text.replacingOccurrences(of: "\"iteration\": 8", with: "\"iteration\": \(claimed)"),
                                 to: dir + "/checkpoint.json")
            let start = ContinuousClock.now
            do {
                try Self.run(dir: dir, resume: true)
                Issue.record("iteration \(claimed) was accepted")
            } catch {
                #expect("\(error)".contains("iteration \(claimed) is outside this run's 0..<9"), "\(error)")
            }
            #expect(ContinuousClock.now - start < .seconds(5))
        }
        try Parameters.isolated {
            let m = try TinyRegression.model()
            let u = Updater(solver: Sgd(), loss: m.loss)
            let huge = Trainer(u, maxEpoch: Int.max / 2, iterPerEpoch: 3)
            #expect(throws: KilnError.self) { try huge.train() }
        }
    }
}
