import KilnKernels

/// nnabla's `solvers.RMSprop(lr=1e-3, decay=0.9, eps=1e-8)` (state "v"):
/// `v = decay * v + (1 - decay) * g^2; p -= lr * g / (sqrt(v) + eps)`.
public final class RMSprop: Solver {
    public var decay: Float
    public var eps: Float

    public init(lr: Float = 1e-3, decay: Float = 0.9, eps: Float = 1e-8) {
        self.decay = decay
        self.eps = eps
        super.init(name: "RMSprop", learningRate: lr, stateNames: ["v"])
    }

    public override func updateParameter(data: UnsafeMutablePointer<Float>, grad: UnsafeMutablePointer<Float>,
                                         count: Int, state: SolverState) {
        let lr = learningRate, eps = eps, d = decay, d1 = 1 - decay
        let v = state.arrays[0].floats
        Threads.elements(count, Step(data: data, grad: grad, v: v, lr: lr, eps: eps, d: d, d1: d1))
    }

    struct Step: ParallelElement {
        let data: UnsafeMutablePointer<Float>, grad: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>
        let lr: Float, eps: Float, d: Float, d1: Float
        @inline(__always) func callAsFunction(_ i: Int) {
            let g = grad[i]
            v[i] = d * v[i] + d1 * g * g
            data[i] -= lr * g / (v[i].squareRoot() + eps)
        }
    }
}
