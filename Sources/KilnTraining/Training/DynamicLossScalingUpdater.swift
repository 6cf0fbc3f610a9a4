import KilnCore
import KilnGraph
import KilnCompiler
import KilnRuntime

/// nnabla's `experimental.mixed_precision_training.DynamicLossScalingUpdater`: training with float16
/// activations and gradients, where the loss gradient is scaled up so that small gradients do not vanish
/// in float16, and the scale adapts to the largest value that does not overflow.
///
/// One `update()`: zero the gradients; `accumGrad` times feed data, run forward and backward with the
/// loss gradient seeded to `scale`; all-reduce when a communicator is given. If any parameter gradient then
/// holds an infinity or a NaN, the scale is divided by `scalingFactor`, the counter reset and the whole
/// update retried (after 100 retries in a row the update is skipped). Otherwise the gradients are divided by
/// `scale`, weight decay applied, the solver steps, and every `n + 1` successful updates in a row (the first
/// time after `n + 2`, as in nnabla's code) the scale is multiplied by `scalingFactor`.
///
/// The plan is compiled with `precision` (default `.half`: float16 activations and gradients in the arena,
/// float32 parameters, gradients of parameters and solver state; see `HalfStorage`). nnabla's recursion for
/// the retries is a loop here.
public final class DynamicLossScalingUpdater: Updating {
    public var solver: Solver?
    public var loss: Variable
    public var dataFeeder: () throws -> Void
    /// The loss scale: the seed of the loss gradient. Changes as training runs.
    public var scale: Float
    public var scalingFactor: Float
    /// nnabla's `N`: successful updates in a row before the scale grows.
    public var n: Int
    public var clearBuffer: Bool
    /// Rebuild cheap values in backward rather than keep them (`CompileOptions.recompute`); set before the
    /// first update. Kiln's addition: nnabla keeps them.
    public var recompute = true
    public var accumGrad: Int
    /// nnabla's `weight_decay` (nil: none), applied to the unscaled gradients.
    public var weightDecay: Float?
    public var comm: Communicator?
    public var grads: [NDArray]
    public var precision: Precision
    /// Successful updates since the scale last changed.
    public private(set) var counter = 0
    /// Retries in a row; nnabla gives up (skips the update) after `maxRetries`.
    public private(set) var retries = 0
    public static let maxRetries = 100
    public private(set) var executable: Executable?

    public init(solver: Solver?, loss: Variable, dataFeeder: @escaping () throws -> Void = {}, scale: Float = 8,
                scalingFactor: Float = 2, n: Int = 2000, clearBuffer: Bool = true, accumGrad: Int = 1,
                weightDecay: Float? = nil, comm: Communicator? = nil, grads: [NDArray] = [],
                precision: Precision = .half) {
        self.solver = solver
        self.loss = loss
        self.dataFeeder = dataFeeder
        self.scale = scale
        self.scalingFactor = scalingFactor
        self.n = n
        self.clearBuffer = clearBuffer
        self.accumGrad = accumGrad
        self.weightDecay = weightDecay
        self.comm = comm
        self.grads = grads
        self.precision = precision
    }

    /// Compiles (once) the training plan of the loss.
    public func plan() throws -> Executable {
        if let e = executable { return e }
        let e = try Compiler.compile(loss, .training, options: CompileOptions(
            clearBuffer: clearBuffer, clearNoNeedGrad: clearBuffer, precision: precision, recompute: recompute))
        executable = e
        return e
    }

    /// What one `update()` did.
    public struct Outcome: Equatable, Sendable {
        /// Forward/backward attempts, each consuming one batch from the data feeder (times `accumGrad`).
        public var attempts: Int
        /// False when every attempt overflowed and the update was skipped.
        public var updated: Bool
    }

    public func update(_ i: Int) throws { try update() }

    @discardableResult
    public func update() throws -> Outcome {
        guard let solver else { throw KilnError.planFailed("DynamicLossScalingUpdater has no solver") }
        guard accumGrad > 0 else { throw KilnError.planFailed("accumGrad must be positive, got \(accumGrad)") }
        guard scale > 0, scale.isFinite, scalingFactor > 0, scalingFactor.isFinite else {
            throw KilnError.planFailed("loss scale \(scale) and scaling factor \(scalingFactor) must be positive and finite")
        }
        let exe = try plan()
        var attempts = 0
        while true {
            attempts += 1
            solver.zeroGrad()
            for _ in 0..<accumGrad {
                try dataFeeder()
                try exe.run(.forward)
                try exe.run(.backward, seed: scale)
            }
            if let comm {
                let arrays = grads.isEmpty ? solver.parameters.map { $0.variable.grad } : grads
                try comm.allReduce(arrays, division: false, inplace: false)
            }
            if solver.checkInfOrNanGrad() {
                scale /= scalingFactor
                counter = 0
                retries += 1
                if retries > Self.maxRetries {
                    retries = 0
                    return Outcome(attempts: attempts, updated: false)
                }
                continue
            }
            retries = 0
            solver.scaleGrad(1 / scale)
            if let weightDecay { solver.weightDecay(weightDecay) }
            solver.update()
            if counter > n {
                scale *= scalingFactor
                counter = 0
            }
            counter += 1
            return Outcome(attempts: attempts, updated: true)
        }
    }
}
