import KilnCore
import KilnGraph
import KilnCompiler
import KilnRuntime

/// A callback taking the iteration number.
public typealias IterationCallback = (Int) throws -> Void
/// A callback taking the iteration number and a value (evaluators).
public typealias ValueCallback = (Int, Double) throws -> Void

/// Exchanges gradients between processes in distributed training (nnabla's `Communicator`). Kiln ships no
/// transport; a single process needs none.
public protocol Communicator: AnyObject {
    func allReduce(_ arrays: [NDArray], division: Bool, inplace: Bool) throws
}

/// What a `Trainer` drives: one update per iteration with a solver whose state it checkpoints.
public protocol Updating: AnyObject {
    var solver: Solver? { get }
    func update(_ i: Int) throws
}

/// nnabla's `experimental.trainers.Updater`: one call of `update(i)` zeroes the gradients, then
/// `accumGrad` times feeds data and runs forward and backward of the loss, all-reduces the gradients when a
/// communicator is given, and updates the solver, with callbacks around each stage.
///
/// Forward and backward are the two phases of one compiled training plan (memory-lean: nnabla's
/// `clear_no_need_grad` and `clear_buffer` when `clearBuffer`), built at the first update.
/// Two defects of nnabla's class are fixed: it called `forward_callback_on_finish` before the forward
/// (here `forwardCallbackOnStart` runs there), and it referenced an undefined `grads` (here the
/// `grads` given, or every parameter gradient when none are given, are all-reduced).
public final class Updater: Updating {
    public var solver: Solver?
    public var loss: Variable?
    public var dataFeeder: () throws -> Void
    public var forwardCallbackOnStart: [IterationCallback]
    public var forwardCallbackOnFinish: [IterationCallback]
    public var backwardCallbackOnStart: [IterationCallback]
    public var backwardCallbackOnFinish: [IterationCallback]
    public var commCallbackOnStart: [IterationCallback]
    public var commCallbackOnFinish: [IterationCallback]
    public var updateCallbackOnStart: [IterationCallback]
    public var updateCallbackOnFinish: [IterationCallback]
    public var clearBuffer: Bool
    /// Rebuild cheap values in backward rather than keep them (`CompileOptions.recompute`); set before the
    /// first update. Kiln's addition: nnabla keeps them.
    public var recompute = true
    public var accumGrad: Int
    public var comm: Communicator?
    public var grads: [NDArray]
    /// Storage precision of the compiled plan (nnabla chooses it through the context's `type_config`).
    /// With `.half`, use `DynamicLossScalingUpdater` unless gradients are known to stay within float16.
    public var precision: Precision
    /// The compiled training plan (available after the first update).
    public private(set) var executable: Executable?

    public init(solver: Solver? = nil, loss: Variable? = nil, dataFeeder: @escaping () throws -> Void = {},
                forwardCallbackOnStart: [IterationCallback] = [], forwardCallbackOnFinish: [IterationCallback] = [],
                backwardCallbackOnStart: [IterationCallback] = [], backwardCallbackOnFinish: [IterationCallback] = [],
                commCallbackOnStart: [IterationCallback] = [], commCallbackOnFinish: [IterationCallback] = [],
                updateCallbackOnStart: [IterationCallback] = [], updateCallbackOnFinish: [IterationCallback] = [],
                clearBuffer: Bool = true, accumGrad: Int = 1, comm: Communicator? = nil, grads: [NDArray] = [],
                precision: Precision = .float) {
        self.solver = solver
        self.loss = loss
        self.dataFeeder = dataFeeder
        self.forwardCallbackOnStart = forwardCallbackOnStart
        self.forwardCallbackOnFinish = forwardCallbackOnFinish
        self.backwardCallbackOnStart = backwardCallbackOnStart
        self.backwardCallbackOnFinish = backwardCallbackOnFinish
        self.commCallbackOnStart = commCallbackOnStart
        self.commCallbackOnFinish = commCallbackOnFinish
        self.updateCallbackOnStart = updateCallbackOnStart
        self.updateCallbackOnFinish = updateCallbackOnFinish
        self.clearBuffer = clearBuffer
        self.accumGrad = accumGrad
        self.comm = comm
        self.grads = grads
        self.precision = precision
    }

    /// Compiles (once) the training plan of the loss.
    public func plan() throws -> Executable {
        if let e = executable { return e }
        guard let loss else { throw KilnError.planFailed("Updater has no loss") }
        let e = try Compiler.compile(loss, .training, options: CompileOptions(clearBuffer: clearBuffer, clearNoNeedGrad: clearBuffer,
                                                                   precision: precision, recompute: recompute))
        executable = e
        return e
    }

    public func update(_ i: Int) throws {
        guard let solver else { throw KilnError.planFailed("Updater has no solver") }
        guard accumGrad > 0 else { throw KilnError.planFailed("accumGrad must be positive, got \(accumGrad)") }
        let exe = try plan()
        solver.zeroGrad()
        for _ in 0..<accumGrad {
            try dataFeeder()
            for c in forwardCallbackOnStart { try c(i) }
            try exe.run(.forward)
            for c in forwardCallbackOnFinish { try c(i) }
            for c in backwardCallbackOnStart { try c(i) }
            try exe.run(.backward, seed: 1)
            for c in backwardCallbackOnFinish { try c(i) }
        }
        if let comm {
            for c in commCallbackOnStart { try c(i) }
            let arrays = grads.isEmpty ? solver.parameters.map { $0.variable.grad } : grads
            try comm.allReduce(arrays, division: false, inplace: false)
            for c in commCallbackOnFinish { try c(i) }
        }
        for c in updateCallbackOnStart { try c(i) }
        solver.update()
        for c in updateCallbackOnFinish { try c(i) }
    }
}
