import KilnKernels

/// nnabla's `solvers.Sgd(lr=1e-3)`: `p -= lr * g`. No state arrays (only `t`).
public final class Sgd: Solver {
    public init(lr: Float = 1e-3) {
        super.init(name: "Sgd", learningRate: lr, stateNames: [])
    }

    public override func updateParameter(data: UnsafeMutablePointer<Float>, grad: UnsafeMutablePointer<Float>,
                                         count: Int, state: SolverState) {
        let lr = learningRate
        Threads.elements(count, Step(data: data, grad: grad, lr: lr))
    }

    struct Step: ParallelElement {
        let data: UnsafeMutablePointer<Float>, grad: UnsafeMutablePointer<Float>, lr: Float
        @inline(__always) func callAsFunction(_ i: Int) { data[i] -= lr * grad[i] }
    }
}
