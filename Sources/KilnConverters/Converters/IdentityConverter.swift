import KilnGraph

/// nnabla's `IdentityConverter`: every function replaced by the same function in a new graph.
///
/// The result computes exactly what the source does and can be changed (functions added, roots dropped,
/// parameters trained) without touching the source graph. Every parameter in `params` is copied into the
/// `name` scope: `conv1/W` becomes `identity/conv1/W` (see `GraphConverter`).
public struct IdentityConverter: GraphConverter {
    /// Function types left as they are. Identity leaves everything as it is, so this has no effect; it is
    /// here because nnabla's converters all take it.
    public var blackList: Set<String>
    /// The parameters to copy, by name (nnabla's `params`, default `nn.get_parameters(grad_only=False)` when
    /// the converter is made).
    public var params: ParameterDictionary
    /// The parameter scope of the copies (nnabla's `name`).
    public var name: String

    public init(blackList: Set<String> = [], params: ParameterDictionary? = nil, name: String = "identity") {
        self.blackList = blackList
        self.params = params ?? Parameters.current(gradOnly: false)
        self.name = name
    }

    public func convert(_ outputs: [Variable], entryVariables: [Variable]) throws -> ConversionResult {
        var g = GraphRewrite(roots: outputs, prefix: name, params: params, entryVariables: entryVariables)
        for node in g.nodes { try g.copy(node) }
        return try g.finish()
    }
}
