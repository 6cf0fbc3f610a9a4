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
    /// Divide the all-reduced gradients by the number of ranks (their mean). nnabla's updaters sum
    /// (`division=False`) and leave the scaling to the learning rate; with the mean, N ranks of batch B take
    /// the steps of one process with batch N x B. Kiln's addition.
    public var division = false
    /// With a communicator of more than one rank and no `grads` given: the plan lays the parameter
    /// gradients out in buckets of at most this many bytes, all-reduced one call per bucket. nil: one call
    /// per parameter. Set before the first update. Kiln's addition (nnabla's `all_reduce_callback` packs
    /// gradients in the same spirit).
    public var gradientBucketBytes: Int? = GradientUpdater.defaultBucketBytes
    /// Start each bucket's all-reduce as soon as backward has written it, while backward goes on with earlier
    /// layers (false: reduce the buckets after backward). Kiln's addition.
    public var overlap = true
    public static let defaultBucketBytes = 4 << 20
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
        var (mode, options) = CompileOptions.resolved(.update(clearBuffer: clearBuffer), precision: precision,
                                                      recompute: recompute)
        if let comm, comm.size > 1, grads.isEmpty, let bytes = gradientBucketBytes {
            guard bytes > 0 else { throw KilnError.planFailed("gradientBucketBytes must be positive, got \(bytes)") }
            options.gradientBucketBytes = bytes
        }
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

    /// The observer that starts each bucket's all-reduce during backward, made once per communicator.
    private var reduction: OverlappedBucketReduction?
    private func bucketReduction(_ comm: Communicator) -> OverlappedBucketReduction {
        if let r = reduction, r.comm === comm { return r }
        let r = OverlappedBucketReduction(comm: comm)
        reduction = r
        return r
    }

    /// A stage of the gradient computation, for the callbacks around it.
    enum Stage { case forward, backward, comm }

    /// Zeroes the gradients, runs forward and backward (the loss gradient seeded to `seed`) on `accumGrad`
    /// batches from the data feeder, and all-reduces the gradients (`grads`, or every parameter gradient) when
    /// a communicator is given. `around(stage, finished)` runs before and after each stage.
    ///
    /// A plan with gradient buckets reduces them one call each: with `overlap`, each starts during the last
    /// backward as soon as it is written, and the comm stage waits for them all.
    func computeGradients(_ exe: Executable, solver: Solver, seed: Float,
                          around: (Stage, _ finished: Bool) throws -> Void) throws {
        solver.zeroGrad()
        let buckets = exe.gradientBucketValues
        let overlapping = comm.flatMap { c in overlap && !buckets.isEmpty ? bucketReduction(c) : nil }
        for a in 0..<accumGrad {
            try dataFeeder()
            try around(.forward, false)
            try exe.run(.forward)
            try around(.forward, true)
            try around(.backward, false)
            try exe.run(.backward, seed: seed, buckets: a == accumGrad - 1 ? overlapping : nil)
            try around(.backward, true)
        }
        guard let comm else { return }
        try around(.comm, false)
        if buckets.isEmpty {
            let arrays = grads.isEmpty ? solver.parameters.map { $0.variable.grad } : grads
            try comm.allReduce(arrays, division: division, inplace: false)
        } else {
            if overlapping == nil { for b in buckets { try comm.startAllReduce(b) } }
            try comm.finishAllReduces()
            if division && comm.size > 1 {
                let s = 1 / Float(comm.size)
                for b in buckets { for k in b.indices { b[k] *= s } }
            }
        }
        try around(.comm, true)
    }
}
