import KilnCore
import KilnKernels
import KilnGraph
import KilnCompiler
import KilnRuntime

/// The shared core of `Updater` and `DynamicLossScalingUpdater`: the settings of the compiled training plan,
/// the plan itself (compiled at the first update), and one update's gradients — zeroed, accumulated over
/// `accumGrad` batches with the loss gradient seeded to a given value, then all-reduced when a communicator
/// is given. The two differ in the seed, in the callbacks around the stages and in what they do with the
/// gradients before the solver steps.
public class GradientUpdater {
    public var solver: Solver?
    public var dataFeeder: () throws -> Void
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

    init(solver: Solver?, dataFeeder: @escaping () throws -> Void, clearBuffer: Bool, accumGrad: Int,
         comm: Communicator?, grads: [NDArray], precision: Precision) {
        self.solver = solver
        self.dataFeeder = dataFeeder
        self.clearBuffer = clearBuffer
        self.accumGrad = accumGrad
        self.comm = comm
        self.grads = grads
        self.precision = precision
    }

    /// The training plan of `loss`, compiled at the first call and kept (nnabla's `clear_no_need_grad` and
    /// `clear_buffer` when `clearBuffer`).
    func plan(of loss: Variable) throws -> Executable {
        if let e = executable { return e }
        let (mode, options) = CompileOptions.resolved(.update(clearBuffer: clearBuffer), precision: precision,
                                                      recompute: recompute)
        let e = try Compiler.compile(loss, mode, options: options)
        executable = e
        return e
    }

    /// The solver, once the settings allow an update ("Updater has no solver", ...).
    func checkedSolver() throws -> Solver {
        guard let solver else { throw KilnError.planFailed("\(type(of: self)) has no solver") }
        guard accumGrad > 0 else { throw KilnError.planFailed("accumGrad must be positive, got \(accumGrad)") }
        return solver
    }

    /// A stage of the gradient computation, for the callbacks around it.
    enum Stage { case forward, backward, comm }

    /// Zeroes the gradients, runs forward and backward (the loss gradient seeded to `seed`) on `accumGrad`
    /// batches from the data feeder, and all-reduces the gradients (`grads`, or every parameter gradient) when
    /// a communicator is given. `around(stage, finished)` runs before and after each stage.
    func computeGradients(_ exe: Executable, solver: Solver, seed: Float,
                          around: (Stage, _ finished: Bool) throws -> Void) throws {
        solver.zeroGrad()
        for _ in 0..<accumGrad {
            try dataFeeder()
            try around(.forward, false)
            try exe.run(.forward)
            try around(.forward, true)
            try around(.backward, false)
            try exe.run(.backward, seed: seed)
            try around(.backward, true)
        }
        if let comm {
            try around(.comm, false)
            let arrays = grads.isEmpty ? solver.parameters.map { $0.variable.grad } : grads
            try comm.allReduce(arrays, division: false, inplace: false)
            try around(.comm, true)
        }
    }
}
