import KilnCore
import KilnKernels
import KilnGraph
import KilnCompiler
import KilnRuntime

/// The shared core of nnabla's Momentum and Nesterov: one velocity "m" per parameter, decayed by
/// `momentum` and fed by the scaled gradient. The two differ only in how one element's velocity and
/// parameter move (`VelocityRule`); the hyperparameter, the state and the parallel loop are here once.
public class VelocitySolver: Solver {
    public var momentum: Float
    /// The element rule of the concrete solver.
    let rule: Rule

    /// Which `VelocityRule` moves the elements; a case, not a stored metatype, so that each loop is
    /// specialised for its rule.
    enum Rule { case heavyBall, lookAhead }

    init(name: String, lr: Float, momentum: Float, rule: Rule) {
        self.momentum = momentum
        self.rule = rule
        super.init(name: name, learningRate: lr, stateNames: ["m"])
    }

    public override func updateParameter(data: UnsafeMutablePointer<Float>, grad: UnsafeMutablePointer<Float>,
                                         count: Int, state: SolverState) {
        let m = state.arrays[0].floats
        switch rule {
        case .heavyBall: move(HeavyBall.self, data: data, grad: grad, m: m, count: count)
        case .lookAhead: move(LookAhead.self, data: data, grad: grad, m: m, count: count)
        }
    }

    private func move<R: VelocityRule>(_ rule: R.Type, data: UnsafeMutablePointer<Float>,
                                       grad: UnsafeMutablePointer<Float>, m: UnsafeMutablePointer<Float>, count: Int) {
        Threads.elements(count, Step<R>(data: data, grad: grad, m: m, lr: learningRate, mu: momentum))
    }

    struct Step<R: VelocityRule>: ParallelElement {
        let data: UnsafeMutablePointer<Float>, grad: UnsafeMutablePointer<Float>, m: UnsafeMutablePointer<Float>
        let lr: Float, mu: Float
        @inline(__always) func callAsFunction(_ i: Int) { R.move(p: &data[i], m: &m[i], g: grad[i], lr: lr, mu: mu) }
    }
}

/// How one element of the parameter `p` and of its velocity `m` move for the gradient `g`.
protocol VelocityRule {
    static func move(p: inout Float, m: inout Float, g: Float, lr: Float, mu: Float)
}
