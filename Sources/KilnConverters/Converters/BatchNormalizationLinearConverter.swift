import KilnGraph

/// nnabla's `BatchNormalizationLinearConverter`: every test-mode BatchNormalization becomes `c0 * x + c1`
/// (Mul2, then Add2, broadcasting), with `c0` and `c1` new parameters shaped like the BN's parameters
/// (see `BatchNormalizationCoefficients`), registered as nnabla named them: `<name>/c0-<name>-<k>` and
/// `<name>/c1-<name>-<k>` for the k-th converted BN (`bn-linear/c0-bn-linear-0`). Other parameters are
/// copied into the `name` scope (see `GraphConverter`).
///
/// Training-mode BNs (`batch_stat=true`) and BNs whose statistics are not parameters are left as they
/// are, with a note. The Mul2 takes x first (nnabla wrote `c0 * x`): the product is the same and x's
/// buffer can then be reused in place.
public struct BatchNormalizationLinearConverter: GraphConverter {
    /// Function types left as they are ("BatchNormalization" here leaves every BN).
    public var blackList: Set<String>
    /// The parameters to copy, by name (nnabla's `params`, default the registry when the converter is made).
    public var params: ParameterDictionary
    /// The parameter scope of new parameters (nnabla's `name`).
    public var name: String

    public init(blackList: Set<String> = [], params: ParameterDictionary? = nil, name: String = "bn-linear") {
        self.blackList = blackList
        self.params = params ?? Parameters.current(gradOnly: false)
        self.name = name
    }

    public func convert(_ outputs: [Variable], entryVariables: [Variable]) throws -> ConversionResult {
        var g = GraphRewrite(roots: outputs, prefix: name, params: params, entryVariables: entryVariables)
        var converted = 0
        for node in g.nodes {
            guard node.typeName == BatchNormalization.typeName, !blackList.contains(node.typeName) else {
                try g.copy(node)
                continue
            }
            do {
                let k = try BatchNormalizationCoefficients(node)
                let c0 = try g.parameter("c0-\(name)-\(converted)", shape: k.parameterShape, values: k.c0, needGrad: true)
                let c1 = try g.parameter("c1-\(name)-\(converted)", shape: k.parameterShape, values: k.c1, needGrad: true)
                converted += 1
                let x = try g.value(node.inputs[0])
                let scaled = try g.emit(Mul2(), [x, c0], name: "\(name)/\(k.scope)/Mul2")[0]
                scaled.name = g.uniqueName("\(name)/\(k.scope)/c0x")
                let y = try g.emit(Add2(), [scaled, c1], name: "\(name)/\(k.scope)/Add2")[0]
                g.stand(y, for: node, output: 0)
            } catch let skip as ConversionSkip {
                g.note("\(GraphRewrite.describe(node)) left as it is: \(skip.reason)")
                try g.copy(node)
            }
        }
        return try g.finish()
    }
}
