import KilnCore
import KilnGraph
import KilnCompiler
import KilnRuntime

/// A callback taking the iteration number.
public typealias IterationCallback = (Int) throws -> Void
/// A callback taking the iteration number and a value (evaluators).
public typealias ValueCallback = (Int, Double) throws -> Void

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
public final class Updater: GradientUpdater, Updating {
    public var loss: Variable?
    public var forwardCallbackOnStart: [IterationCallback] = []
    public var forwardCallbackOnFinish: [IterationCallback] = []
    public var backwardCallbackOnStart: [IterationCallback] = []
    public var backwardCallbackOnFinish: [IterationCallback] = []
    public var commCallbackOnStart: [IterationCallback] = []
    public var commCallbackOnFinish: [IterationCallback] = []
    public var updateCallbackOnStart: [IterationCallback] = []
    public var updateCallbackOnFinish: [IterationCallback] = []

    public init(solver: Solver? = nil, loss: Variable? = nil, dataFeeder: @escaping () throws -> Void = {},
                forwardCallbackOnStart: [IterationCallback] = [], forwardCallbackOnFinish: [IterationCallback] = [],
                backwardCallbackOnStart: [IterationCallback] = [], backwardCallbackOnFinish: [IterationCallback] = [],
                commCallbackOnStart: [IterationCallback] = [], commCallbackOnFinish: [IterationCallback] = [],
                updateCallbackOnStart: [IterationCallback] = [], updateCallbackOnFinish: [IterationCallback] = [],
                clearBuffer: Bool = true, accumGrad: Int = 1, comm: Communicator? = nil, grads: [NDArray] = [],
                precision: Precision = .float) {
        // Everything of its own has a default (no loss, no callbacks): the base is set up first.
        super.init(solver: solver, dataFeeder: dataFeeder, clearBuffer: clearBuffer, accumGrad: accumGrad, comm: comm,
                   grads: grads, precision: precision)
        self.loss = loss
        self.forwardCallbackOnStart = forwardCallbackOnStart
        self.forwardCallbackOnFinish = forwardCallbackOnFinish
        self.backwardCallbackOnStart = backwardCallbackOnStart
        self.backwardCallbackOnFinish = backwardCallbackOnFinish
        self.commCallbackOnStart = commCallbackOnStart
        self.commCallbackOnFinish = commCallbackOnFinish
        self.updateCallbackOnStart = updateCallbackOnStart
        self.updateCallbackOnFinish = updateCallbackOnFinish
    }

    /// Compiles (once) the training plan of the loss.
    public func plan() throws -> Executable {
        if let e = executable { return e }
        guard let loss else { throw KilnError.planFailed("Updater has no loss") }
        return try plan(of: loss)
    }

    public func update(_ i: Int) throws {
        let solver = try checkedSolver()
        let exe = try plan()
        try computeGradients(exe, solver: solver, seed: 1) { stage, finished in
            for c in callbacks(stage, finished) { try c(i) }
        }
        for c in updateCallbackOnStart { try c(i) }
        solver.update()
        for c in updateCallbackOnFinish { try c(i) }
    }

    /// The callbacks that run before (`finished` false) or after a stage.
    private func callbacks(_ stage: Stage, _ finished: Bool) -> [IterationCallback] {
        switch stage {
        case .forward: finished ? forwardCallbackOnFinish : forwardCallbackOnStart
        case .backward: finished ? backwardCallbackOnFinish : backwardCallbackOnStart
        case .comm: finished ? commCallbackOnFinish : commCallbackOnStart
        }
    }
}
