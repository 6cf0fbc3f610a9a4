import Foundation
import KilnCore
import KilnGraph

/// nnabla's `experimental.trainers.Trainer`: `maxEpoch` epochs of `iterPerEpoch` updates (every updater in
/// turn), saving the parameters and evaluating after each epoch.
///
/// Beyond nnabla: with a `modelSavePath` each epoch also writes a checkpoint (parameters, every updater's
/// solver state, and the iteration reached) so that `train(resume: true)` continues where the last save left
/// off. A run that ends normally, and a resumed run before it continues, removes the mid-epoch `partial_*`
/// files no checkpoint names and unfinished temporaries from the save path (`Checkpoint.removeLeftovers`).
/// Differences from nnabla's code, which evaluated and saved the last epoch twice and failed when
/// `iter_per_epoch` was missing: the end of training does not repeat the last epoch's save and evaluation,
/// and a missing `iterPerEpoch` is an error.
public final class Trainer {
    public var updater: [any Updating]
    public var evaluator: [Evaluator]
    public var modelSavePath: String?
    public var maxEpoch: Int
    public var iterPerEpoch: Int?
    public var callbackOnStart: [() throws -> Void]
    public var callbackOnFinish: [() throws -> Void]
    public var updateCallbackOnStart: [IterationCallback]
    public var updateCallbackOnFinish: [IterationCallback]
    /// Called after a resume with the first iteration that will run, so callers can move data iterators.
    public var onResume: [(Int) throws -> Void] = []
    /// Also checkpoint every this many iterations inside an epoch (nil: only at epoch ends), so that a killed
    /// run loses little. Only the newest such mid-epoch checkpoint is kept, and none once the run ends.
    public var checkpointInterval: Int? = nil
    /// The parameters saved with each epoch and checkpoint: nil means the global registry
    /// (`Parameters.current(gradOnly: false)`, what nnabla's trainer saves); module users pass
    /// `network.getParameters(gradOnly: false)`.
    public var parameters: ParameterDictionary? = nil
    /// Resume from a checkpoint whose parameters hold NaN or infinity (refused by default: training on them
    /// would only spread them).
    public var allowNonFinite = false
    /// Distributed training: the ranks check they train the same model, start from rank 0's parameters (and,
    /// resuming, rank 0's checkpoint, which only rank 0 reads), and only rank 0 writes checkpoints and
    /// parameter files. The updaters and evaluators take the same communicator for their reductions.
    public var comm: Communicator? = nil

    public init(updater: [any Updating] = [], evaluator: [Evaluator] = [], modelSavePath: String? = nil, maxEpoch: Int = 1,
                iterPerEpoch: Int? = nil, callbackOnStart: [() throws -> Void] = [],
                callbackOnFinish: [() throws -> Void] = [], updateCallbackOnStart: [IterationCallback] = [],
                updateCallbackOnFinish: [IterationCallback] = []) {
        self.updater = updater
        self.evaluator = evaluator
        self.modelSavePath = modelSavePath
        self.maxEpoch = maxEpoch
        self.iterPerEpoch = iterPerEpoch
        self.callbackOnStart = callbackOnStart
        self.callbackOnFinish = callbackOnFinish
        self.updateCallbackOnStart = updateCallbackOnStart
        self.updateCallbackOnFinish = updateCallbackOnFinish
    }

    public convenience init(_ updater: any Updating, _ evaluator: Evaluator? = nil, modelSavePath: String? = nil,
                            maxEpoch: Int = 1, iterPerEpoch: Int? = nil) {
        self.init(updater: [updater], evaluator: evaluator.map { [$0] } ?? [], modelSavePath: modelSavePath,
                  maxEpoch: maxEpoch, iterPerEpoch: iterPerEpoch)
    }

    public func train(resume: Bool = false) throws {
        guard let perEpoch = iterPerEpoch, perEpoch > 0 else {
            throw KilnError.invalidData("Trainer needs a positive iterPerEpoch")
        }
        guard maxEpoch >= 0 else { throw KilnError.invalidData("maxEpoch must not be negative") }
        let total = try (CheckedInt(maxEpoch) * perEpoch).get("Trainer: maxEpoch \(maxEpoch) x iterPerEpoch \(perEpoch)")
        var start = 0
        let solvers = updater.compactMap { $0.solver }
        let writer = (comm?.rank ?? 0) == 0
        let distributed = (comm?.size ?? 1) > 1
        let saved = parameters ?? Parameters.current(gradOnly: false)
        if distributed, let comm { try comm.checkSameModel(saved) }
        if resume {
            guard let dir = modelSavePath else { throw KilnError.io("resuming needs a modelSavePath") }
            var resumeAt = -1
            if writer, let c = try Checkpoint.latest(in: dir) {
                // A checkpoint names an iteration of this run: anything else is a stranger's file or another
                // run's, and resuming from it would replay (or skip) work the run never asked for.
                guard c.iteration >= 0 && c.iteration < total else {
                    throw KilnError.io("\(dir)/checkpoint.json: iteration \(c.iteration) is outside this run's 0..<\(total) (maxEpoch \(maxEpoch) x iterPerEpoch \(perEpoch))")
                }
                try c.restore(solvers: solvers, parameters: parameters, allowNonFinite: allowNonFinite)
                resumeAt = c.iteration + 1
            }
            if distributed, let comm { resumeAt = try comm.bcast(resumeAt) }
            if resumeAt > 0 {
                start = resumeAt
                for r in onResume { try r(start) }
            }
            // What the interrupted run left: mid-epoch files no checkpoint names, and unfinished temporaries.
            if writer { try Checkpoint.removeLeftovers(in: dir) }
        }
        if distributed, let comm { try comm.bcastTrainingState(parameters: saved, solvers: solvers) }
        for c in callbackOnStart { try c() }
        let saveDir = writer ? modelSavePath : nil
        if let dir = saveDir {
            try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        }
        var i = start
        while i < total {
            for c in updateCallbackOnStart { try c(i) }
            for u in updater { try u.update(i) }
            for c in updateCallbackOnFinish { try c(i) }
            if (i + 1) % perEpoch == 0 {
                if let dir = saveDir {
                    try Checkpoint.save(in: dir, iteration: i, solvers: solvers, keep: true,
                                        parameters: parameters)
                }
                for e in evaluator { try e.evaluate(i) }
            } else if let dir = saveDir, let k = checkpointInterval, k > 0, (i + 1) % k == 0 {
                try Checkpoint.save(in: dir, iteration: i, solvers: solvers, keep: false,
                                    parameters: parameters)
            }
            i += 1
        }
        if let dir = saveDir { try Checkpoint.removeLeftovers(in: dir) }
        for c in callbackOnFinish { try c() }
    }
}

/// What a trainer leaves in its model save path after each epoch: `params_<iteration>.safetensors` (as
/// nnabla's `params_<iteration>.h5`), `solver<k>_<iteration>.safetensors` per updater, and
/// `checkpoint.json` naming them, written last and atomically, so that a crash at any point leaves the
/// previous checkpoint intact.
public struct Checkpoint {
    public var iteration: Int
    public var parameters: String
    public var solvers: [String]

    static func name(_ i: Int) -> String {
        let s = String(i)
        return String(repeating: "0", count: max(0, 6 - s.count)) + s
    }

    /// Writes the files, then points `checkpoint.json` at them. `keep: false` marks a mid-epoch checkpoint,
    /// whose files are removed once a newer checkpoint replaces it.
    public static func save(in dir: String, iteration: Int, solvers: [Solver], keep: Bool,
                            parameters: ParameterDictionary? = nil) throws {
        let previous = try? latest(in: dir)
        let prefix = keep ? "" : "partial_"
        let p = "\(prefix)params_\(name(iteration)).safetensors"
        if let parameters {
            try ParameterFile.save(parameters, to: dir + "/" + p)
        } else {
            try Parameters.save(path: dir + "/" + p)
        }
        var solverFiles: [String] = []
        for (k, s) in solvers.enumerated() {
            let f = "\(prefix)solver\(k)_\(name(iteration)).safetensors"
            try s.saveStates(path: dir + "/" + f)
            solverFiles.append(f)
        }
        let json = JSON.object([("iteration", .int(iteration)), ("parameters", .string(p)),
                                ("solvers", .array(solverFiles.map { .string($0) }))])
        try AtomicFile.write(json.serialized() + "\n", to: dir + "/checkpoint.json")
        if let previous, previous.iteration != iteration {
            for f in [previous.parameters] + previous.solvers
            where URL(fileURLWithPath: f).lastPathComponent.hasPrefix("partial_") {
                try? FileManager.default.removeItem(atPath: f)
            }
        }
    }

    /// Removes from `dir` the files an interrupted run can leave there: `partial_*` files that the current
    /// `checkpoint.json` does not name (those it names are kept, so the run can still resume from them) and
    /// AtomicFile's temporaries (`.<name>.tmp-<hex>`). Only regular files are removed; returns their names.
    /// The trainer calls it when a run ends normally (the last checkpoint is then an epoch one, so no
    /// `partial_*` file remains) and when a run resumes, before it continues.
    @discardableResult
    public static func removeLeftovers(in dir: String) throws -> [String] {
        let current = try latest(in: dir)
        let named = Set((current.map { [$0.parameters] + $0.solvers } ?? []).map {
            URL(fileURLWithPath: $0).lastPathComponent
        })
        return AtomicFile.removeRegularFiles(in: dir) { name in
            (name.hasPrefix("partial_") && !named.contains(name)) || AtomicFile.isTemporaryName(name)
        }
    }

    public static func latest(in dir: String) throws -> Checkpoint? {
        let path = dir + "/checkpoint.json"
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        // A checkpoint file holds three names: a megabyte is far more than one needs.
        let data = try FileBytes.read(path: path, limit: 1 << 20, what: "checkpoint")
        let j: JSON
        do { j = try JSON.parse(data) } catch { throw KilnError.io("\(path) is not valid JSON: \(error)") }
        guard let it = j["iteration"]?.int, let p = j["parameters"]?.string,
              let s = j["solvers"]?.array?.compactMap({ $0.string }) else {
            throw KilnError.io("\(path) lacks iteration, parameters or solvers")
        }
        for f in [p] + s where f.contains("/") { throw KilnError.io("\(path) names a file outside its directory: \(f)") }
        return Checkpoint(iteration: it, parameters: dir + "/" + p, solvers: s.map { dir + "/" + $0 })
    }

    /// Loads the parameters and every solver's state (refusing NaN or infinite values in either unless
    /// `allowNonFinite`).
    public func restore(solvers: [Solver], parameters params: ParameterDictionary? = nil,
                        allowNonFinite: Bool = false) throws {
        if let params {
            try ParameterFile.load(into: params, from: parameters, requireAll: true,
                                   allowNonFinite: allowNonFinite)
        } else {
            try Parameters.load(path: parameters, allowNonFinite: allowNonFinite)
        }
        guard self.solvers.count == solvers.count else {
            throw KilnError.io("checkpoint has \(self.solvers.count) solver state file(s), the trainer has \(solvers.count) solver(s)")
        }
        for (f, s) in zip(self.solvers, solvers) { try s.loadStates(path: f, allowNonFinite: allowNonFinite) }
    }
}
