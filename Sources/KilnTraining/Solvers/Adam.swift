import Foundation
import KilnKernels

/// nnabla's `solvers.Adam(alpha=1e-3, beta1=0.9, beta2=0.999, eps=1e-8)` (states "mean", "var"):
/// `m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2; alpha_t = alpha*sqrt(1-b2^t)/(1-b1^t);
/// p -= alpha_t * m / (sqrt(v) + eps)` — eps outside the square root and not bias-corrected.
public final class Adam: AdamSolver {
    public init(alpha: Float = 1e-3, beta1: Float = 0.9, beta2: Float = 0.999, eps: Float = 1e-8) {
        super.init(name: "Adam", alpha: alpha, beta1: beta1, beta2: beta2, eps: eps)
    }
}
