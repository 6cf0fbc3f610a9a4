import KilnCore
import KilnGraph
import KilnRuntime

/// nnabla's `FixedPointWeightConverter`: every inner-product function (default Affine, Convolution,
/// Deconvolution) becomes nnabla's `PF.fixed_point_quantized_affine` / `_convolution` counterpart, whose
/// weight (input 1) and bias (input 2) are read through `FixedPointQuantize(sign, n, delta)`; every other
/// function is copied.
///
/// Parameters, registered as nnabla's parametric functions name them inside the converter's scope, with
/// `<layer>` the weight's `params` name without its trailing `/W` (`conv1/conv/W` -> `conv1/conv`):
/// `<name>/<layer>/fp_quantized_conv/W` and `/b`, the float copies that training updates, and `/W_q` and
/// `/b_q`, the quantized values. `fp_quantized_affine` for Affine; nnabla has no fixed-point deconvolution,
/// so Kiln names that `fp_quantized_deconv`. A parameter read by several layers is quantized once.
///
/// `W_q` is a value the graph computes from `W` on every run, registered as a parameter that needs no
/// gradient, as nnabla's `W_q` is a parameter its quantizer writes. `callForward` (nnabla's
/// `call_forward`, default true) computes each `W_q` and `b_q` once at conversion, so that they can be read
/// or saved at once. Unlike nnabla, which ran the whole network forward for that, only the quantizers run:
/// running batch-normalisation statistics are not touched.
///
/// Steps: `.powerOfTwo` is nnabla's "delta_w / delta_b absent from args_fpq" (see `QuantizationStep`),
/// computed from the parameter's values at conversion time; `floor` picks the finer of the two powers. A
/// parameter that is all zeros has no such step and stays unquantized, with a note. nnabla's old code
/// read `quantize_w` / `quantize_b` but never passed them on; here `false` leaves that parameter as it is.
public struct FixedPointWeightConverter: GraphConverter {
    /// nnabla's `args_fpq` dictionary, one field per key in Swift case; every default is nnabla's.
    public struct Arguments: Equatable, Sendable {
        public var signW: Bool
        public var nW: Int
        public var deltaW: QuantizationStep
        public var quantizeW: Bool
        public var signB: Bool
        public var nB: Int
        public var deltaB: QuantizationStep
        public var quantizeB: Bool

        public init(signW: Bool = true, nW: Int = 8, deltaW: QuantizationStep = 2e-4, quantizeW: Bool = true,
                    signB: Bool = true, nB: Int = 8, deltaB: QuantizationStep = 2e-4, quantizeB: Bool = true) {
            self.signW = signW
            self.nW = nW
            self.deltaW = deltaW
            self.quantizeW = quantizeW
            self.signB = signB
            self.nB = nB
            self.deltaB = deltaB
            self.quantizeB = quantizeB
        }
    }

    public var blackList: Set<String>
    /// The parameters to copy, by name (nnabla's `params`, default the registry when the converter is made).
    public var params: ParameterDictionary
    /// Function types whose input 1 (weight) and input 2 (bias) are quantized.
    public var innerProdFunctions: [String]
    /// Computes the quantized parameters at conversion (nnabla's `call_forward`).
    public var callForward: Bool
    /// Power-of-two steps round `log2` down instead of up (nnabla's `floor`); only for `.powerOfTwo` steps.
    public var floor: Bool
    /// nnabla's `args_fpq`.
    public var argsFpq: Arguments
    /// The parameter scope of new parameters (nnabla's `name`).
    public var name: String

    public static let defaultInnerProdFunctions = ["Affine", "Convolution", "Deconvolution"]

    public init(blackList: Set<String> = [], params: ParameterDictionary? = nil, innerProdFunctions: [String]? = nil,
                callForward: Bool = true, floor: Bool = false, argsFpq: Arguments = Arguments(),
                name: String = "fixed-point-weight-graph") {
        self.blackList = blackList
        self.params = params ?? Parameters.current(gradOnly: false)
        self.innerProdFunctions = innerProdFunctions ?? Self.defaultInnerProdFunctions
        self.callForward = callForward
        self.floor = floor
        self.argsFpq = argsFpq
        self.name = name
    }

    /// The scope nnabla's fixed-point parametric function for a layer type creates its parameters in.
    static func parametricScope(_ typeName: String) -> String {
        switch typeName {
        case "Affine": return "fp_quantized_affine"
        case "Convolution": return "fp_quantized_conv"
        case "Deconvolution": return "fp_quantized_deconv"
        default: return "fp_quantized_\(typeName.lowercased())"
        }
    }

    public func convert(_ outputs: [Variable], entryVariables: [Variable]) throws -> ConversionResult {
        var g = GraphRewrite(roots: outputs, prefix: name, params: params, entryVariables: entryVariables)
        /// Quantized values already made, by the new-graph value they quantize and the quantizer's settings.
        var quantized: [QuantizedKey: Variable] = [:]
        let a = argsFpq
        // Inputs 1 and 2 and how each is quantized (nnabla's `_w` and `_b` keys of args_fpq).
        let roles: [Int: (key: String, what: String, quantize: Bool, sign: Bool, n: Int, step: QuantizationStep)] = [
            1: ("W", "weight", a.quantizeW, a.signW, a.nW, a.deltaW), 2: ("b", "bias", a.quantizeB, a.signB, a.nB, a.deltaB),
        ]
        for node in g.nodes {
            guard innerProdFunctions.contains(node.typeName), !blackList.contains(node.typeName), node.inputs.count >= 2 else {
                try g.copy(node)
                continue
            }
            let weight = g.parameterName(node.inputs[1])
            let layer = weight.hasSuffix("/W") ? String(weight.dropLast(2)) : (weight.isEmpty || weight == "W" ? node.name : weight)
            let scope = "\(layer)/\(Self.parametricScope(node.typeName))"
            var inputs: [Variable] = []
            for (index, source) in node.inputs.enumerated() {
                guard let r = roles[index] else { inputs.append(try g.value(source)); continue }
                let float = g.isCopiedParameter(source) ? try g.copyParameter(source, as: "\(scope)/\(r.key)") : try g.value(source)
                guard r.quantize else { inputs.append(float); continue }
                let delta: Double
                do {
                    delta = try r.step.resolve(for: { try GraphRewrite.parameterValues(source, role: r.what, of: node) },
                                               sign: r.sign, n: r.n, floor: floor)
                } catch let skip as ConversionSkip {
                    g.note("the \(r.what) '\(source.name)' of \(GraphRewrite.describe(node)) is not quantized: \(skip.reason)")
                    inputs.append(float)
                    continue
                }
                let key = QuantizedKey(value: ObjectIdentifier(float), sign: r.sign, n: r.n, delta: delta)
                if let done = quantized[key] { inputs.append(done); continue }
                let q = FixedPointQuantize(sign: r.sign, n: r.n, delta: delta, quantize: true, steFineGrained: true)
                let qName = g.uniqueName("\(name)/\(scope)/\(r.key)_q")
                let wq = try g.emit(q, [float], name: qName)[0]
                g.register(wq, as: "\(scope)/\(r.key)_q")
                quantized[key] = wq
                inputs.append(wq)
            }
            let outs = try g.emit(node.function, inputs, name: node.name)
            for (i, o) in outs.enumerated() { g.stand(o, for: node, output: i) }
        }
        if callForward {
            // Only those whose weights are known before the graph runs: a quantizer of a computed weight
            // would need the graph's inputs.
            for q in quantized.values where q.parent?.inputs.allSatisfy({ $0.parent == nil && ($0.isParameter || $0.needGrad) && !$0.isInput }) ?? false {
                try q.forward()
            }
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
