/// nnabla's `solvers.AdamW(alpha=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, wd=1e-4)`: the Adam step plus the
/// decoupled decay `- eta_t * wd * p_old` with `eta_t = alpha / alpha_init` (1 unless the learning rate
/// changes; taken as 1 when the initial alpha is 0) — `wd * p`, not `alpha * wd * p`. `weightDecay(r)` does not
/// touch the gradients: it replaces `wd` by `r` for the next `update()` only.
public final class AdamW: Solver {
    public var beta1: Float
    public var beta2: Float
    public var eps: Float
    /// The decay rate given to the constructor.
    public var wd: Float
    /// The rate of the next update, set by `weightDecay`.
    private var nextWd: Float?

    public init(alpha: Float = 1e-3, beta1: Float = 0.9, beta2: Float = 0.999, eps: Float = 1e-8, wd: Float = 1e-4) {
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps
        self.wd = wd
        super.init(name: "AdamW", learningRate: alpha, stateNames: ["mean", "var"])
    }

    public var alpha: Float {
        get { learningRate }
        set { learningRate = newValue }
    }

    public override func weightDecay(_ decayRate: Float) { nextWd = decayRate }

    public override func update() {
        super.update()
        nextWd = nil
    }

    public override func updateParameter(data: UnsafeMutablePointer<Float>, grad: UnsafeMutablePointer<Float>,
                                         count: Int, state: SolverState) {
        let alphaT = AdamStep.alphaT(alpha: learningRate, beta1: beta1, beta2: beta2, t: state.t)
        let etaT = initialLearningRate == 0 ? 1 : learningRate / initialLearningRate
        AdamStep.run(data: data, grad: grad, m: state.arrays[0].floats, v: state.arrays[1].floats, count: count,
                     alphaT: alphaT, beta1: beta1, beta2: beta2, eps: eps, decay: etaT * (nextWd ?? wd))
    }
}
