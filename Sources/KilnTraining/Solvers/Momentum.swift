import KilnKernels

/// nnabla's `solvers.Momentum(lr=1e-3, momentum=0.9)`: `m = momentum * m + lr * g; p -= m` (state "m").
public final class Momentum: VelocitySolver {
    public init(lr: Float = 1e-3, momentum: Float = 0.9) {
        super.init(name: "Momentum", lr: lr, momentum: momentum, rule: .heavyBall)
    }
}

/// Momentum's element rule: the parameter follows the new velocity.
enum HeavyBall: VelocityRule {
    @inline(__always) static func move(p: inout Float, m: inout Float, g: Float, lr: Float, mu: Float) {
        m = mu * m + lr * g
        p -= m
    }
}
