import KilnGraph

/// nnabla's `IdentityConverter`: every function replaced by the same function in a new graph.
///
/// The result computes exactly what the source does and can be changed (functions added, roots dropped)
/// without touching the source graph. Leaves are shared (see `GraphConverter`); nnabla copied parameters
/// into its `identity` scope instead, which with shared leaves has nothing to do.
public struct IdentityConverter: GraphConverter {
    /// Function types left as they are. Identity leaves everything as it is, so this has no effect; it is
    /// here because nnabla's converters all take it.
    public var blackList: Set<String>
    /// The prefix of new names (nnabla's `name`); identity makes none.
    public var name: String

    public init(blackList: Set<String> = [], name: String = "identity") {
        self.blackList = blackList
        self.name = name
    }

    public func convert(_ outputs: [Variable]) throws -> ConversionResult {
        var g = GraphRewrite(roots: outputs, prefix: name)
        for node in g.nodes { try g.copy(node) }
        return try g.finish()
    }
}
