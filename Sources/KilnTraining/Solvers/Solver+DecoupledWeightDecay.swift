import KilnCore
import KilnKernels
import KilnGraph
import KilnCompiler
import KilnRuntime

/// Decoupled weight decay, shared by AdamW and SgdW: their `weightDecay(r)` does not touch the gradients but
/// sets `nextWeightDecay`, which replaces their `wd` for the next `update()` only; that update's step
/// subtracts `decoupledDecay(wd:) * p_old` itself.
extension Solver {
    /// The decay rate of the next update: `eta_t * (r ?? wd)` with `eta_t = lr / lr_init` (taken as 1 when
    /// lr_init is 0), `r` the rate `weightDecay` gave since the last update.
    func decoupledDecay(wd: Float) -> Float {
        let etaT = initialLearningRate == 0 ? 1 : learningRate / initialLearningRate
        return etaT * (nextWeightDecay ?? wd)
    }
}
