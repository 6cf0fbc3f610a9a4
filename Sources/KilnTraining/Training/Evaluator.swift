import KilnCore
import KilnGraph
import KilnCompiler
import KilnRuntime

/// nnabla's `experimental.trainers.Evaluator`: `evaluate(i)` runs `valIter` batches through each root's
/// inference plan and hands each root's value averaged over the batches to its callbacks. A root with more
/// than one element contributes the mean of its elements.
public final class Evaluator {
    public var vroot: [Variable]
    public var dataFeeder: () throws -> Void
    public var valIter: Int
    /// Called with the iteration number before the evaluation (nnabla's `callback_on_start(i)`).
    public var callbackOnStart: [IterationCallback]
    /// One callback per root (nnabla requires as many as roots).
    public var callbackOnFinish: [ValueCallback]
    public var clearBuffer: Bool
    /// Distributed evaluation: each rank feeds its own batches and every rank gets the mean over the ranks.
    public var comm: Communicator?
    private var executables: [Executable] = []

    /// nnabla defaults `val_iter` to None and fails when it evaluates; here a missing or non-positive
    /// `valIter` is an error when the evaluator is made.
    public init(vroot: [Variable], dataFeeder: @escaping () throws -> Void = {}, valIter: Int? = nil,
                callbackOnStart: [IterationCallback] = [], callbackOnFinish: [ValueCallback] = [],
                clearBuffer: Bool = true, comm: Communicator? = nil) throws {
        guard callbackOnFinish.isEmpty || callbackOnFinish.count == vroot.count else {
            throw KilnError.invalidData("Evaluator: \(vroot.count) roots but \(callbackOnFinish.count) finish callbacks")
        }
        guard let valIter else { throw KilnError.invalidData("Evaluator needs valIter (how many batches an evaluation takes)") }
        guard valIter > 0 else { throw KilnError.invalidData("Evaluator: valIter must be positive, got \(valIter)") }
        self.vroot = vroot
        self.dataFeeder = dataFeeder
        self.valIter = valIter
        self.callbackOnStart = callbackOnStart
        self.callbackOnFinish = callbackOnFinish
        self.clearBuffer = clearBuffer
        self.comm = comm
    }

    public convenience init(_ vroot: Variable, dataFeeder: @escaping () throws -> Void = {}, valIter: Int? = nil,
                            callbackOnStart: [IterationCallback] = [], callbackOnFinish: [ValueCallback] = [],
                            clearBuffer: Bool = true, comm: Communicator? = nil) throws {
        try self.init(vroot: [vroot], dataFeeder: dataFeeder, valIter: valIter, callbackOnStart: callbackOnStart,
                      callbackOnFinish: callbackOnFinish, clearBuffer: clearBuffer, comm: comm)
    }

    /// The averaged values of the last evaluation, one per root.
    public private(set) var lastValues: [Double] = []

    public func evaluate(_ i: Int) throws {
        if executables.isEmpty {
            let (mode, options) = CompileOptions.resolved(.evaluate(clearBuffer: clearBuffer),
                                                          precision: Context.current.precision)
            executables = try vroot.map { try Compiler.compile($0, mode, options: options) }
        }
        for c in callbackOnStart { try c(i) }
        var sums = [Double](repeating: 0, count: vroot.count)
        for _ in 0..<valIter {
            try dataFeeder()
            for (j, e) in executables.enumerated() {
                try e.run()
                let d = vroot[j].data
                var s = 0.0
                for k in 0..<d.count { s += Double(d.floats[k]) }
                sums[j] += s / Double(max(d.count, 1))
            }
        }
        lastValues = sums.map { $0 / Double(valIter) }
        // Distributed: each rank evaluated its own batches; the value is the mean over the ranks.
        if let comm, comm.size > 1 {
            let values = try NDArray(shape: [lastValues.count], floats: lastValues.map { Float($0) })
            try comm.allReduce([values], division: true, inplace: true)
            lastValues = values.toFloats().map { Double($0) }
        }
        for (j, c) in callbackOnFinish.enumerated() { try c(i, lastValues[j]) }
    }
}
