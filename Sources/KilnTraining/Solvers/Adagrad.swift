import KilnKernels

/// nnabla's `solvers.Adagrad(lr=1e-2, eps=1e-8)` (state "v"): `v += g^2; p -= lr * g / (sqrt(v) + eps)`.
public final class Adagrad: Solver {
    public var eps: Float

    public init(lr: Float = 1e-2, eps: Float = 1e-8) {
        self.eps = eps
        super.init(name: "Adagrad", learningRate: lr, stateNames: ["v"])
    }

    public override func updateParameter(data: UnsafeMutablePointer<Float>, grad: UnsafeMutablePointer<Float>,
                                         count: Int, state: SolverState) {
        let lr = learningRate, eps = eps
        let v = state.arrays[0].floats
        Threads.elements(count, Step(data: data, grad: grad, v: v, lr: lr, eps: eps))
    }

    struct Step: ParallelElement {
        let data: UnsafeMutablePointer<Float>, grad: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>
        let lr: Float, eps: Float
        @inline(__always) func callAsFunction(_ i: Int) {
            let g = grad[i]
            v[i] += g * g
            data[i] -= lr * g / (v[i].squareRoot() + eps)
        }
    }
}
