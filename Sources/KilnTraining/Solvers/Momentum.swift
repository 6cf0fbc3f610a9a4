import KilnKernels

/// nnabla's `solvers.Momentum(lr=1e-3, momentum=0.9)`: `m = momentum * m + lr * g; p -= m` (state "m").
public final class Momentum: Solver {
    public var momentum: Float

    public init(lr: Float = 1e-3, momentum: Float = 0.9) {
        self.momentum = momentum
        super.init(name: "Momentum", learningRate: lr, stateNames: ["m"])
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
            m[i] = mu * m[i] + lr * grad[i]
            data[i] -= m[i]
        }
    }
}
