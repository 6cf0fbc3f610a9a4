import KilnCore
import KilnKernels
import KilnGraph
import KilnCompiler
import KilnRuntime

import Foundation

/// The shared core of nnabla's Adam and AdamW (states "mean", "var"): the hyperparameters and the Adam
/// step `m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2; alpha_t = alpha*sqrt(1-b2^t)/(1-b1^t);
/// p -= alpha_t * m / (sqrt(v) + eps)`. The two differ only in the decay fused after it (`fusedDecay`).
public class AdamSolver: Solver {
    public var beta1: Float
    public var beta2: Float
    public var eps: Float

    init(name: String, alpha: Float, beta1: Float, beta2: Float, eps: Float) {
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps
        super.init(name: name, learningRate: alpha, stateNames: ["mean", "var"])
    }

    /// The step size (the learning rate).
    public var alpha: Float {
        get { learningRate }
        set { learningRate = newValue }
    }

    /// The rate of `p -= rate * p_old` fused into this update (AdamW's decoupled decay; 0 for Adam).
    var fusedDecay: Float { 0 }

    public override func updateParameter(data: UnsafeMutablePointer<Float>, grad: UnsafeMutablePointer<Float>,
                                         count: Int, state: SolverState) {
        let alphaT = AdamStep.alphaT(alpha: learningRate, beta1: beta1, beta2: beta2, t: state.t)
        AdamStep.run(data: data, grad: grad, m: state.arrays[0].floats, v: state.arrays[1].floats, count: count,
                     alphaT: alphaT, beta1: beta1, beta2: beta2, eps: eps, decay: fusedDecay)
    }
}

/// The Adam element step of `AdamSolver`.
enum AdamStep {
    /// `alpha * sqrt(1 - beta2^t) / (1 - beta1^t)`, in double as nnabla's `std::pow` does.
    static func alphaT(alpha: Float, beta1: Float, beta2: Float, t: Int) -> Float {
        let tt = Double(t)
        return Float(Double(alpha) * (1 - pow(Double(beta2), tt)).squareRoot() / (1 - pow(Double(beta1), tt)))
    }

    /// The Adam update, then `p -= decay * p_old` (AdamW's fused decay; 0 for Adam).
    @inline(__always)
    static func run(data: UnsafeMutablePointer<Float>, grad: UnsafeMutablePointer<Float>,
                    m: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>, count: Int,
                    alphaT: Float, beta1: Float, beta2: Float, eps: Float, decay: Float) {
        Threads.chunks(count, Step(data: data, grad: grad, m: m, v: v, alphaT: alphaT, b1: beta1, b2: beta2,
                                   c1: 1 - beta1, c2: 1 - beta2, eps: eps, decay: decay))
    }

    struct Step: ParallelChunk {
        let data: UnsafeMutablePointer<Float>, grad: UnsafeMutablePointer<Float>
        let m: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>
        let alphaT: Float, b1: Float, b2: Float, c1: Float, c2: Float, eps: Float, decay: Float

        /// Moves element i's moments and returns them.
        @inline(__always) func moments(_ i: Int) -> (m: Float, v: Float) {
            let g = grad[i]
            let mi = b1 * m[i] + c1 * g
            let vi = b2 * v[i] + c2 * g * g
            m[i] = mi
            v[i] = vi
            return (mi, vi)
        }

        // The decay test stays outside the loops: `p - 0 * p` is not `p` for an infinite p.
        @inline(__always) func callAsFunction(_ s: Int, _ e: Int) {
            if decay == 0 {
                for i in s..<e {
                    let (mi, vi) = moments(i)
                    data[i] -= alphaT * mi / (vi.squareRoot() + eps)
                }
            } else {
                for i in s..<e {
                    let (mi, vi) = moments(i)
                    let p = data[i]
                    data[i] = p - alphaT * mi / (vi.squareRoot() + eps) - decay * p
                }
            }
        }
    }
}
