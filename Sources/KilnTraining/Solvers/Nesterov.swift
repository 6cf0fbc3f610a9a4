import KilnKernels

/// nnabla's `solvers.Nesterov(lr=1e-3, momentum=0.9)` (state "m"):
/// `m_prev = m; m = momentum * m - lr * g; p += -momentum * m_prev + (1 + momentum) * m`.
public final class Nesterov: Solver {
    public var momentum: Float

    public init(lr: Float = 1e-3, momentum: Float = 0.9) {
        self.momentum = momentum
        super.init(name: "Nesterov", learningRate: lr, stateNames: ["m"])
    }

    public override func updateParameter(data: UnsafeMutablePointer<Float>, grad: UnsafeMutablePointer<Float>,
                                         count: Int, state: SolverState) {
        let lr = learningRate, mu = momentum
        let m = state.arrays[0].floats
        Threads.elements(count, Step(data: data, grad: grad, m: m, lr: lr, mu: mu))
    }

    struct Step: ParallelElement {
        let data: UnsafeMutablePointer<Float>, grad: UnsafeMutablePointer<Float>, m: UnsafeMutablePointer<Float>
        let lr: Float, mu: Float
        @inline(__always) func callAsFunction(_ i: Int) {
            let prev = m[i]
            let next = mu * prev - lr * grad[i]
            m[i] = next
            data[i] += -mu * prev + (1 + mu) * next
        }
    }
}
