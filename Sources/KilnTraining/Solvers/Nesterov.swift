import KilnKernels

/// nnabla's `solvers.Nesterov(lr=1e-3, momentum=0.9)` (state "m"):
/// `m_prev = m; m = momentum * m - lr * g; p += -momentum * m_prev + (1 + momentum) * m`.
public final class Nesterov: VelocitySolver {
    public init(lr: Float = 1e-3, momentum: Float = 0.9) {
        super.init(name: "Nesterov", lr: lr, momentum: momentum, rule: .lookAhead)
    }
}

/// Nesterov's element rule: the parameter looks ahead along the new velocity.
enum LookAhead: VelocityRule {
    @inline(__always) static func move(p: inout Float, m: inout Float, g: Float, lr: Float, mu: Float) {
        let prev = m
        let next = mu * prev - lr * g
        m = next
        p += -mu * prev + (1 + mu) * next
    }
}
