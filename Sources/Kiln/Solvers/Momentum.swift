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
        Threads.chunks(count) { s, e in
            for i in s..<e {
                m[i] = mu * m[i] + lr * grad[i]
                data[i] -= m[i]
            }
        }
    }
}
