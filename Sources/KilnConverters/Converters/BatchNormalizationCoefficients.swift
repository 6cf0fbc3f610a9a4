import KilnGraph

/// A test-mode BatchNormalization as the per-channel affine map it computes, `y = c0 * x + c1` with
/// `c0 = gamma / sqrt(var + eps)` and `c1 = beta - gamma * mean / sqrt(var + eps)`: what both BN converters
/// build on. Float32 arithmetic in this order, as nnabla's converters compute it with numpy (the golden
/// numbers match to the last bit).
struct BatchNormalizationCoefficients {
    let c0: [Float]
    let c1: [Float]
    /// The channel axis in the BN input's rank.
    let axis: Int
    /// The shape of the BN's parameters (the input's rank, 1 except C at the channel axis).
    let parameterShape: [Int]
    /// The scope of the BN's parameters (`bn1/mean` -> `bn1`), to name what is derived from them.
    let scope: String

    /// The coefficients of a test-mode BN with parameter inputs; throws `ConversionSkip` for anything else
    /// (training mode, statistics computed by the graph, a non-positive `var + eps`).
    init(_ node: FunctionNode) throws {
        guard let bn = node.function as? BatchNormalization else {
            throw ConversionSkip("it is not a BatchNormalization")
        }
        guard !bn.batchStat else {
            throw ConversionSkip("batch_stat=true (training mode); nnabla's converters only convert test-mode (batch_stat=false) BatchNormalization")
        }
        guard node.inputs.count == bn.inputCount, let x = node.inputs.first else {
            throw ConversionSkip("it has \(node.inputs.count) inputs, expected \(bn.inputCount)")
        }
        axis = try bn.channelAxis(rank: x.type.rank)
        let channels = x.shape[axis]
        let mean = try GraphRewrite.parameterValues(node.inputs[bn.meanIndex], role: "mean", of: node)
        let variance = try GraphRewrite.parameterValues(node.inputs[bn.varianceIndex], role: "variance", of: node)
        let beta = try bn.betaIndex.map { try GraphRewrite.parameterValues(node.inputs[$0], role: "beta", of: node) }
            ?? [Float](repeating: 0, count: channels)
        let gamma = try bn.gammaIndex.map { try GraphRewrite.parameterValues(node.inputs[$0], role: "gamma", of: node) }
            ?? [Float](repeating: 1, count: channels)
        let eps = Float(bn.eps)
        var c0 = [Float](repeating: 0, count: channels), c1 = c0
        for c in 0..<channels {
            let sigma = (variance[c] + eps).squareRoot()
            c0[c] = gamma[c] / sigma
            c1[c] = beta[c] - (gamma[c] * mean[c]) / sigma
            guard c0[c].isFinite && c1[c].isFinite else {
                throw ConversionSkip("channel \(c) (gamma \(gamma[c]), beta \(beta[c]), mean \(mean[c]), variance \(variance[c]), eps \(bn.eps)) gives c0 = gamma / sqrt(var + eps) = \(c0[c]) and c1 = beta - gamma * mean / sqrt(var + eps) = \(c1[c]), which are not both finite in float32")
            }
        }
        self.c0 = c0
        self.c1 = c1
        parameterShape = node.inputs[bn.meanIndex].shape
        scope = GraphRewrite.scope(of: node.inputs[bn.meanIndex], fallback: node.name)
    }
}
