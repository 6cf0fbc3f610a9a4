import KilnCore
import KilnKernels

/// A training-mode BatchNormalization with the ReLU after it, and the residual Add2 between them if there is
/// one, as one step: `y = relu(bn(x) (+ r))`.
///
/// Not one of nnabla's functions: the compiler makes it where the values between the three are needed by nothing
/// else, in two places. The `Fusion` pass runs it in a training plan's forward (it then updates the running
/// statistics, as BN's training forward does) and its backward replaces the three backward steps; `Recompute`
/// runs it to rebuild `y` in backward (running statistics untouched: forward updated them already).
///
/// Inputs are the BatchNormalization's (x, beta, gamma as present, mean, variance), then the other operand of the
/// Add2. Forward computes the batch statistics from x as BN's training forward does and writes `y` in one pass
/// where the separate steps write BN's output, then add, then clamp. Backward reads x, gamma, y and dy: ReLU's
/// mask (`y > 0`) on dy, the Add2's gradient to `r` written in the pass that gathers BN's sums, then BN's `dx`.
/// Both directions do the separate steps' operations on the same floats, so every value is bit-identical to
/// theirs.
package struct FusedNormalization: FusedFunction {
    package static let typeName = "FusedNormalization"
    let normalization: BatchNormalization
    /// Whether an Add2 with a tensor shaped like x sits between the BN and the ReLU (the last input).
    let residual: Bool

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

    /// The residual's position among the inputs.
    var residualIndex: Int? { residual ? normalization.inputCount : nil }

    package func mutatesInput(_ index: Int) -> Bool { normalization.mutatesInput(index) }

    /// dx may take dy's memory: the second pass reads y, dy and x at each element before writing dx there (the
    /// separate steps' ReLU backward worked in place, so without this the fused plan holds one tensor more).
    package var backwardInPlace: Bool { true }

    package func propagatesGradient(toInput index: Int, inputCount: Int) -> Bool {
        index == residualIndex || normalization.propagatesGradient(toInput: index, inputCount: normalization.inputCount)
    }

    /// x and gamma (BN's), and y (ReLU's mask).
    package func backwardReads(inputCount: Int, outputCount: Int) -> (inputs: [Bool], outputs: [Bool]) {
        var r = normalization.backwardReads(inputCount: normalization.inputCount, outputCount: 1).inputs
        r += [Bool](repeating: false, count: max(inputCount - r.count, 0))
        return (r, [Bool](repeating: true, count: outputCount))
    }

    package func backwardWorkspace(_ b: TypeBinding) -> Int {
        normalization.backwardWorkspace(TypeBinding(inputs: Array(b.inputs.prefix(normalization.inputCount)),
                                                    outputs: b.outputs))
    }

    package func makeForward(_ b: ForwardBinding) throws -> Kernel {
        let bn = normalization
        let xt = b.inputs[0]
        let l = BatchNormKernels.Layout(shape: xt.shape, axis: try bn.channelAxis(rank: xt.type.rank))
        let x = xt.f, y = b.outputs[0].f
        let beta = bn.betaIndex.map { UnsafePointer(b.inputs[$0].f) }
        let gamma = bn.gammaIndex.map { UnsafePointer(b.inputs[$0].f) }
        let r = residualIndex.map { UnsafePointer(b.inputs[$0].f) }
        let running: (mean: UnsafeMutablePointer<Float>, variance: UnsafeMutablePointer<Float>)? =
            b.recomputing ? nil : (b.inputs[bn.meanIndex].f, b.inputs[bn.varianceIndex].f)
        let decay = Float(bn.decayRate), eps = bn.eps
        return {
            BatchNormKernels.trainingForward(l, x: x, beta: beta, gamma: gamma, running: running, y: y, batchMean: nil,
                                             batchVar: nil, decay: decay, eps: eps, residual: r, relu: true)
        }
    }

    package func makeBackward(_ b: BackwardBinding) throws -> Kernel {
        let bn = normalization
        let dx = b.inputGrads[0]?.f
        let dBeta = bn.betaIndex.flatMap { b.inputGrads[$0]?.f }
        let dGamma = bn.gammaIndex.flatMap { b.inputGrads[$0]?.f }
        let dr = residualIndex.flatMap { b.inputGrads[$0]?.f }
        if dx == nil && dBeta == nil && dGamma == nil && dr == nil { return {} }
        func missing(_ what: String) -> KilnError {
            KilnError.invalidFunction(function: stepName, reason: "backward needs \(what)")
        }
        guard let x = b.inputs[0]?.f else { throw missing("the input x") }
        guard let y = b.outputs[0]?.f else { throw missing("the output y") }
        let l = BatchNormKernels.Layout(shape: b.inputTypes[0].shape, axis: try bn.channelAxis(rank: b.inputTypes[0].rank))
        var gamma: UnsafePointer<Float>? = nil
        if let gi = bn.gammaIndex {
            guard let g = b.inputs[gi]?.f else { throw missing("gamma") }
            gamma = UnsafePointer(g)
        }
        guard let ws = b.workspace?.assumingMemoryBound(to: Float.self) else {
            throw missing("a workspace of \(2 * l.channels) floats")
        }
        let dy = UnsafePointer(b.outputGrads[0].f)
        let accX = b.accumulate[0], accR = residualIndex.map { b.accumulate[$0] } ?? false
        let accB = bn.betaIndex.map { b.accumulate[$0] } ?? false
        let accG = bn.gammaIndex.map { b.accumulate[$0] } ?? false
        let eps = bn.eps
        let relu = BatchNormKernels.ReLUAfter(y: y, dResidual: dr, accumulateResidual: accR)
        return {
            BatchNormKernels.trainingBackward(l, x: x, gamma: gamma, dy: dy, dMean: nil, dVar: nil, dx: dx,
                                              accumulateX: accX, dBeta: dBeta, accumulateBeta: accB, dGamma: dGamma,
                                              accumulateGamma: accG, eps: eps, sums: ws, relu: relu)
        }
    }
}
