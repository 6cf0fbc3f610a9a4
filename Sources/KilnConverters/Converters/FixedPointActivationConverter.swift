import KilnGraph

/// nnabla's `FixedPointActivationConverter`: every activation function (default ReLU) is replaced by
/// `FixedPointQuantize(x, sign, n, delta)` of its input; every other function, BatchNormalization included,
/// is copied. With nnabla's defaults (unsigned, 8 bits, delta 2e-4) the quantizer clips to
/// `[0, 255 * delta]`, so it also does the ReLU's work. The quantizer keeps the activation's function name
/// under the converter's prefix and its output keeps the activation output's name. Parameters are copied
/// into the `name` scope (see `GraphConverter`).
///
/// `quantize: false` leaves every activation as it is, as `quantizeW` / `quantizeB` do for weights. (A
/// `FixedPointQuantize` with quantize=false passes x through, so standing it in for a ReLU would silently
/// drop the nonlinearity; nnabla's old converter never passed `quantize` on at all.)
public struct FixedPointActivationConverter: GraphConverter {
    /// nnabla's `args_fpq` dictionary, one field per key; the defaults are those of nnabla's signature
    /// (unsigned: its docstring's "sign: True" disagrees with the code).
    public struct Arguments: Equatable, Sendable {
        public var sign: Bool
        public var n: Int
        public var delta: Double
        public var quantize: Bool

        public init(sign: Bool = false, n: Int = 8, delta: Double = 2e-4, quantize: Bool = true) {
            self.sign = sign
            self.n = n
            self.delta = delta
            self.quantize = quantize
        }
    }

    public var blackList: Set<String>
    /// The parameters to copy, by name (nnabla's `params`, default the registry when the converter is made).
    public var params: ParameterDictionary
    /// Function types replaced by the quantizer (nnabla's default: ReLU). Only their first input is kept.
    public var activationFunctions: [String]
    /// nnabla's `args_fpq`.
    public var argsFpq: Arguments
    /// The parameter scope of copies and the prefix of new names (nnabla's `name`).
    public var name: String

    public static let defaultActivationFunctions = ["ReLU"]

    public init(blackList: Set<String> = [], params: ParameterDictionary? = nil, activationFunctions: [String]? = nil,
                argsFpq: Arguments = Arguments(), name: String = "fixed-point-activation-graph") {
        self.blackList = blackList
        self.params = params ?? Parameters.current(gradOnly: false)
        self.activationFunctions = activationFunctions ?? Self.defaultActivationFunctions
        self.argsFpq = argsFpq
        self.name = name
    }

    public func convert(_ outputs: [Variable], entryVariables: [Variable]) throws -> ConversionResult {
        var g = GraphRewrite(roots: outputs, prefix: name, params: params, entryVariables: entryVariables)
        let a = argsFpq
        let q = FixedPointQuantize(sign: a.sign, n: a.n, delta: a.delta, quantize: a.quantize, steFineGrained: true)
        for node in g.nodes {
            guard a.quantize, activationFunctions.contains(node.typeName), !blackList.contains(node.typeName) else {
                try g.copy(node)
                continue
            }
            guard node.outputTypes.count == 1, let x = node.inputs.first, node.outputTypes[0] == x.type else {
                g.note("\(GraphRewrite.describe(node)) left as it is: a quantizer can only stand for a function with one output shaped like its input")
                try g.copy(node)
                continue
            }
            let y = try g.emit(q, [try g.value(x)], name: "\(name)/\(node.name)")[0]
            g.stand(y, for: node, output: 0)
        }
        return try g.finish()
    }
}
