import KilnKernels

/// nnabla's `solvers.SgdW(lr=1e-3, momentum=0.9, wd=1e-4)` (state "m"):
/// `m = momentum * m + lr * g; p = p - m - (lr / lr_init) * wd * p_old` (lr / lr_init taken as 1 when lr_init
/// is 0). `weightDecay(r)` does not touch the gradients: it replaces `wd` by `r` for the next `update()` only.
public final class SgdW: Solver {
    public var momentum: Float
    /// The decay rate given to the constructor.
    public var wd: Float

    public init(lr: Float = 1e-3, momentum: Float = 0.9, wd: Float = 1e-4) {
        self.momentum = momentum
        self.wd = wd
        super.init(name: "SgdW", learningRate: lr, stateNames: ["m"])
    }

    public override func weightDecay(_ decayRate: Float) { nextWeightDecay = decayRate }

    public override func updateParameter(data: UnsafeMutablePointer<Float>, grad: UnsafeMutablePointer<Float>,
                                         count: Int, state: SolverState) {
        let lr = learningRate, mu = momentum
        let decay = decoupledDecay(wd: wd)
        let m = state.arrays[0].floats
        Threads.elements(count, Step(data: data, grad: grad, m: m, lr: lr, mu: mu, decay: decay))
    }

    struct Step: ParallelElement {
        let data: UnsafeMutablePointer<Float>, grad: UnsafeMutablePointer<Float>, m: UnsafeMutablePointer<Float>
        let lr: Float, mu: Float, decay: Float
        @inline(__always) func callAsFunction(_ i: Int) {
            let p = data[i]
            let mi = mu * m[i] + lr * grad[i]
            m[i] = mi
            data[i] = p - mi - decay * p
        }
    }
}
