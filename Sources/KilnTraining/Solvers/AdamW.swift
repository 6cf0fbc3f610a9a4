/// nnabla's `solvers.AdamW(alpha=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, wd=1e-4)`: the Adam step plus the
/// decoupled decay `- eta_t * wd * p_old` with `eta_t = alpha / alpha_init` (1 unless the learning rate
/// changes; taken as 1 when the initial alpha is 0) — `wd * p`, not `alpha * wd * p`. `weightDecay(r)` does not
/// touch the gradients: it replaces `wd` by `r` for the next `update()` only.
public final class AdamW: AdamSolver {
    /// The decay rate given to the constructor.
    public var wd: Float

    public init(alpha: Float = 1e-3, beta1: Float = 0.9, beta2: Float = 0.999, eps: Float = 1e-8, wd: Float = 1e-4) {
        self.wd = wd
        super.init(name: "AdamW", alpha: alpha, beta1: beta1, beta2: beta2, eps: eps)
    }

    public override func weightDecay(_ decayRate: Float) { nextWeightDecay = decayRate }

    override var fusedDecay: Float { decoupledDecay(wd: wd) }
}
