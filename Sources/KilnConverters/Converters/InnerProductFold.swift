import KilnCore
import KilnGraph

/// A test-mode BatchNormalization folded into the Affine, Convolution or Deconvolution that feeds it:
/// `W'[e] = c0[o(e)] * W[e]` and `b'[o] = c1[o] + c0[o] * b[o]` (`b' = c1` without a bias), where `o(e)` is
/// the output channel weight element `e` contributes to. Float32, in nnabla's order.
///
/// Output channels of the weights:
/// - Convolution, W `(outmaps, inmaps/group, *k)`: axis 0.
/// - Affine, W `(inmaps, *outmaps)`: the W axis of the BN's channel axis (the last one for the usual 2-D W).
/// - Deconvolution, W `(inmaps, outmaps/group, *k)`: axis 1 within each group, `o = group(i) * outmaps/group
///   + j` for `W[i, j, ...]`. nnabla's old `BatchNormalizationFoldedConverter` scaled W along axis 0 (the
///   *input* channels) for Deconvolution too, which is only right when that happens to coincide; Kiln folds
///   correctly, so its results differ from nnabla's there (and agree with the unfolded network).
struct InnerProductFold {
    let weight: [Float]
    let bias: [Float]
    let biasShape: [Int]

    /// Throws `ConversionSkip` when the BN's channels are not the layer's output channels or the layer's
    /// weight and bias are not parameters.
    init(layer: FunctionNode, coefficients k: BatchNormalizationCoefficients) throws {
        guard layer.inputs.count >= 2 else { throw ConversionSkip("\(GraphRewrite.describe(layer)) has no weight input") }
        let x = layer.inputs[0].shape, w = layer.inputs[1].shape
        let channel: (Int) -> Int
        switch layer.function {
        case let f as Affine:
            let base = f.baseAxis < 0 ? f.baseAxis + x.count : f.baseAxis
            guard k.axis >= base else {
                throw ConversionSkip("its channel axis \(k.axis) is a batch axis of \(GraphRewrite.describe(layer)) (base_axis \(f.baseAxis)), not one of its output maps")
            }
            let wAxis = k.axis - base + 1
            let inner = Shapes.product(w, (wAxis + 1)..<w.count), channels = w[wAxis]
            channel = { ($0 / inner) % channels }
            biasShape = Array(w.dropFirst())
        case let f as Convolution:
            try Self.checkMapAxis(k, base: f.baseAxis, rank: x.count, layer)
            let perChannel = Shapes.product(w, 1..<w.count)
            channel = { $0 / perChannel }
            biasShape = [w[0]]
        case let f as Deconvolution:
            try Self.checkMapAxis(k, base: f.baseAxis, rank: x.count, layer)
            let kernel = Shapes.product(w, 2..<w.count), perGroupOut = w[1]
            let perGroupIn = w[0] / max(f.group, 1)
            channel = { e in
                let j = (e / kernel) % perGroupOut, i = e / (kernel * perGroupOut)
                return (i / perGroupIn) * perGroupOut + j
            }
            biasShape = [w[1] * f.group]
        default:
            throw ConversionSkip("\(GraphRewrite.describe(layer)) is not Affine, Convolution or Deconvolution, whose weight layouts the folder knows")
        }
        let wValues = try GraphRewrite.parameterValues(layer.inputs[1], role: "weight", of: layer)
        var folded = wValues
        for e in folded.indices { folded[e] = k.c0[channel(e)] * wValues[e] }
        let biasCount = Shapes.product(biasShape, 0..<biasShape.count)
        // The bias is (outmaps,) for convolutions; for Affine it is W.shape[1:], whose element b lies in
        // the same channel as weight element b (the first row of W).
        let biasChannel: (Int) -> Int
        if layer.function is Affine { biasChannel = channel } else { biasChannel = { $0 } }
        var b = [Float](repeating: 0, count: biasCount)
        if layer.inputs.count >= 3 {
            let old = try GraphRewrite.parameterValues(layer.inputs[2], role: "bias", of: layer)
            for o in 0..<biasCount { b[o] = k.c1[biasChannel(o)] + k.c0[biasChannel(o)] * old[o] }
        } else {
            for o in 0..<biasCount { b[o] = k.c1[biasChannel(o)] }
        }
        // c0 * W can overflow float32 even when c0 and W are finite; a folded layer with infinite parameters
        // would compute something else than the BN did (and cannot be written to a graph file).
        if let e = folded.firstIndex(where: { !$0.isFinite }) {
            throw ConversionSkip("folding gives weight element \(e) = c0 \(k.c0[channel(e)]) * W \(wValues[e]), which is not finite in float32")
        }
        if let o = b.firstIndex(where: { !$0.isFinite }) {
            throw ConversionSkip("folding gives bias element \(o) = \(b[o]), which is not finite in float32")
        }
        weight = folded
        bias = b
    }

    /// Convolution and Deconvolution have their maps at `base_axis`; a BN over another axis does not fold.
    private static func checkMapAxis(_ k: BatchNormalizationCoefficients, base: Int, rank: Int, _ layer: FunctionNode) throws {
        let b = base < 0 ? base + rank : base
        guard k.axis == b else {
            throw ConversionSkip("its channel axis \(k.axis) is not the map axis \(b) of \(GraphRewrite.describe(layer))")
        }
    }
}
