import KilnCore
import KilnKernels

/// A training-mode BatchNormalization recomputed in backward together with the ReLU after it, and the
/// residual Add2 between them if there is one, as one step.
///
/// Not one of nnabla's functions: only `Recompute` makes it, when the values between the three are needed by
/// nothing else. Inputs are the BatchNormalization's (x, beta, gamma as present, mean, variance), then the other
/// operand of the Add2. It computes the batch statistics from x as BN's training forward does and writes
/// `relu(bn(x) (+ r))` in one pass where the separate steps write BN's output, then add, then clamp: the same
/// operations on the same floats, so the output is bit-identical to theirs. The running statistics are not
/// touched (forward updated them already).
package struct FusedNormalization: Function {
    package static let typeName = "FusedNormalization"
    let normalization: BatchNormalization
    /// Whether an Add2 with a tensor shaped like x sits between the BN and the ReLU (the last input).
    let residual: Bool

    package init(arguments a: inout ArgReader) throws {
        throw KilnError.invalidFunction(function: Self.typeName, reason: "is made by the compiler, not by graph files")
    }

    package init(normalization: BatchNormalization, residual: Bool) {
        self.normalization = normalization
        self.residual = residual
    }

    /// What the step is called in plans: the fused functions joined by "+".
    package var stepName: String { residual ? "BatchNormalization+Add2+ReLU" : "BatchNormalization+ReLU" }

    package var arguments: [(String, ArgValue)] { normalization.arguments + [("residual", .bool(residual))] }

    package func outputTypes(_ inputs: [TensorType]) throws -> [TensorType] {
        try normalization.outputTypes(Array(inputs.prefix(normalization.inputCount)))
    }

    package var isDifferentiable: Bool { false }

    package func makeForward(_ b: ForwardBinding) throws -> Kernel {
        let bn = normalization
        let xt = b.inputs[0]
        let l = BatchNormKernels.Layout(shape: xt.shape, axis: try bn.channelAxis(rank: xt.type.rank))
        let beta = bn.betaIndex.map { UnsafePointer(b.inputs[$0].f) }
        let gamma = bn.gammaIndex.map { UnsafePointer(b.inputs[$0].f) }
        let r = residual ? UnsafePointer(b.inputs[bn.inputCount].f) : nil
        let item = RecomputedChannels(l: l, x: xt.f, beta: beta, gamma: gamma, residual: r, y: b.outputs[0].f,
                                      eps: bn.eps)
        return { Threads.items(l.channels, workPerItem: 3 * l.perChannel, item) }
    }
}

/// `relu(bn(x) (+ r))` for one channel per item, with the batch statistics of BN's training forward.
struct RecomputedChannels: ParallelItem {
    let l: BatchNormKernels.Layout, x: UnsafePointer<Float>, beta: UnsafePointer<Float>?, gamma: UnsafePointer<Float>?
    let residual: UnsafePointer<Float>?, y: UnsafeMutablePointer<Float>, eps: Double
    @inline(__always) func callAsFunction(_ c: Int) {
        let (_, mf, scale) = BatchNormKernels.batchNormalizer(l, c, x, gamma: gamma?[c], eps: eps)
        let b = beta?[c] ?? 0
        BatchNormKernels.runs(l, c) { o, n in
            BatchNormKernels.normalize(x + o, y + o, n, mean: mf, scale: scale, shift: b, residual: residual.map { $0 + o },
                                       relu: true)
        }
    }
}
