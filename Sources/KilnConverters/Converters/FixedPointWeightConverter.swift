import KilnGraph

/// nnabla's `FixedPointWeightConverter`: the weight (input 1) and bias (input 2) of every inner-product
/// function (default Affine, Convolution, Deconvolution) are read through
/// `FixedPointQuantize(sign, n, delta)`, as nnabla's `fixed_point_quantized_affine` / `_convolution` /
/// `_deconvolution` do; every other function is copied.
///
/// The float weight stays the parameter (it is what training updates) and the quantized weight is a value
/// the graph computes, `<name>/<W's name>_q` (nnabla's `W_q`). That is how nnabla's `call_forward` maps:
/// nnabla stored `W_q` as a parameter that a forward pass had to fill (`call_forward=true` ran one at
/// conversion, updating running BN statistics on the way); here `W_q` is recomputed on every run, so it can
/// never be stale and there is no forward to call. A parameter read by several layers is quantized once.
///
/// Steps: `.powerOfTwo` is nnabla's "delta_w / delta_b absent from args_fpq" (see `QuantizationStep`),
/// computed from the parameter's values at conversion time; `floor` picks the finer of the two powers. A
/// parameter that is all zeros has no such step and stays unquantized, with a note. nnabla's old code
/// read `quantize_w` / `quantize_b` but never passed them on; here `false` leaves that parameter as it is.
public struct FixedPointWeightConverter: GraphConverter {
    public var blackList: Set<String>
    /// Function types whose input 1 (weight) and input 2 (bias) are quantized.
    public var innerProdFunctions: [String]
    /// Power-of-two steps round `log2` down instead of up (nnabla's `floor`); only for `.powerOfTwo` steps.
    public var floor: Bool
    // nnabla's args_fpq, in Swift case.
    public var signW: Bool
    public var nW: Int
    public var deltaW: QuantizationStep
    public var quantizeW: Bool
    public var signB: Bool
    public var nB: Int
    public var deltaB: QuantizationStep
    public var quantizeB: Bool
    /// The prefix of new names (nnabla's `name`).
    public var name: String

    public static let defaultInnerProdFunctions = ["Affine", "Convolution", "Deconvolution"]

    public init(blackList: Set<String> = [], innerProdFunctions: [String]? = nil, floor: Bool = false,
                signW: Bool = true, nW: Int = 8, deltaW: QuantizationStep = 2e-4, quantizeW: Bool = true,
                signB: Bool = true, nB: Int = 8, deltaB: QuantizationStep = 2e-4, quantizeB: Bool = true,
                name: String = "fixed-point-weight-graph") {
        self.blackList = blackList
        self.innerProdFunctions = innerProdFunctions ?? Self.defaultInnerProdFunctions
        self.floor = floor
        self.signW = signW
        self.nW = nW
        self.deltaW = deltaW
        self.quantizeW = quantizeW
        self.signB = signB
        self.nB = nB
        self.deltaB = deltaB
        self.quantizeB = quantizeB
        self.name = name
    }

    public func convert(_ outputs: [Variable]) throws -> ConversionResult {
        var g = GraphRewrite(roots: outputs, prefix: name)
        /// Quantized values already made, by the new-graph value they quantize and the quantizer's settings.
        var quantized: [QuantizedKey: Variable] = [:]
        for node in g.nodes {
            guard innerProdFunctions.contains(node.typeName), !blackList.contains(node.typeName), node.inputs.count >= 2 else {
                try g.copy(node)
                continue
            }
            var inputs = try g.inputs(of: node)
            let roles: [(index: Int, role: String, quantize: Bool, sign: Bool, n: Int, step: QuantizationStep)] = [
                (1, "weight", quantizeW, signW, nW, deltaW), (2, "bias", quantizeB, signB, nB, deltaB),
            ]
            for r in roles where r.quantize && r.index < inputs.count {
                let source = node.inputs[r.index]
                let delta: Double
                do {
                    delta = try r.step.resolve(for: { try GraphRewrite.parameterValues(source, role: r.role, of: node) },
                                               sign: r.sign, n: r.n, floor: floor)
                } catch let skip as ConversionSkip {
                    g.note("the \(r.role) '\(source.name)' of \(GraphRewrite.describe(node)) is not quantized: \(skip.reason)")
                    continue
                }
                let q = FixedPointQuantize(sign: r.sign, n: r.n, delta: delta, quantize: true, steFineGrained: true)
                let key = QuantizedKey(value: ObjectIdentifier(inputs[r.index]), sign: r.sign, n: r.n, delta: delta)
                if let done = quantized[key] { inputs[r.index] = done; continue }
                let base = source.name.isEmpty ? "\(node.name)/\(r.role)" : source.name
                let qName = g.uniqueName("\(name)/\(base)_q")
                let wq = try g.emit(q, [inputs[r.index]], name: qName)[0]
                wq.name = qName
                quantized[key] = wq
                inputs[r.index] = wq
            }
            let outs = try g.emit(node.function, inputs, name: node.name)
            for (i, o) in outs.enumerated() { g.stand(o, for: node, output: i) }
        }
        return try g.finish()
    }
}

/// One quantized value: what it quantizes and how.
private struct QuantizedKey: Hashable {
    let value: ObjectIdentifier
    let sign: Bool
    let n: Int
    let delta: Double
}
