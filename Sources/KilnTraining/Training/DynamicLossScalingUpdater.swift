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
public final class DynamicLossScalingUpdater: GradientUpdater, Updating {
    public var loss: Variable
    /// The loss scale: the seed of the loss gradient. Changes as training runs.
    public var scale: Float
    public var scalingFactor: Float
    /// nnabla's `N`: successful updates in a row before the scale grows.
    public var n: Int
    /// nnabla's `weight_decay` (nil: none), applied to the unscaled gradients.
    public var weightDecay: Float?
    /// Successful updates since the scale last changed.
    public private(set) var counter = 0
    /// Retries in a row; nnabla gives up (skips the update) after `maxRetries`.
    public private(set) var retries = 0
    public static let maxRetries = 100

    public init(solver: Solver?, loss: Variable, dataFeeder: @escaping () throws -> Void = {}, scale: Float = 8,
                scalingFactor: Float = 2, n: Int = 2000, clearBuffer: Bool = true, accumGrad: Int = 1,
                weightDecay: Float? = nil, comm: Communicator? = nil, grads: [NDArray] = [],
                precision: Precision = .half) {
        self.loss = loss
        self.scale = scale
        self.scalingFactor = scalingFactor
        self.n = n
        self.weightDecay = weightDecay
        super.init(solver: solver, dataFeeder: dataFeeder, clearBuffer: clearBuffer, accumGrad: accumGrad, comm: comm,
                   grads: grads, precision: precision)
    }

    /// Compiles (once) the training plan of the loss.
    public func plan() throws -> Executable { try plan(of: loss) }

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
        let solver = try checkedSolver()
        guard scale > 0, scale.isFinite, scalingFactor > 0, scalingFactor.isFinite else {
            throw KilnError.planFailed("loss scale \(scale) and scaling factor \(scalingFactor) must be positive and finite")
        }
        let exe = try plan()
        var attempts = 0
        while true {
            attempts += 1
            try computeGradients(exe, solver: solver, seed: scale) { _, _ in }
            // Ranks agree on an overflow (any rank's), so that all retry or skip the same steps.
            let overflow = try comm.map { try $0.anyRank(solver.checkInfOrNanGrad()) } ?? solver.checkInfOrNanGrad()
            if overflow {
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
