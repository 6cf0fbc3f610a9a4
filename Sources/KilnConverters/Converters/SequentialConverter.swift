import KilnGraph

/// nnabla's `SequentialConverter`: several converters applied one after the other, each to the graph the
/// previous one made (e.g. fixed-point weights, then fixed-point activations).
public struct SequentialConverter: GraphConverter {
    public var converters: [any GraphConverter]

    public init(_ converters: [any GraphConverter]) { self.converters = converters }

    public func convert(_ outputs: [Variable], entryVariables: [Variable]) throws -> ConversionResult {
        var result = ConversionResult(outputs: outputs, notes: [])
        for c in converters {
            let step = try c.convert(result.outputs, entryVariables: entryVariables)
            result = ConversionResult(outputs: step.outputs, notes: result.notes + step.notes)
        }
        // With no converters the graph is still a new one, as the protocol promises.
        if converters.isEmpty { return try IdentityConverter().convert(outputs, entryVariables: entryVariables) }
        return result
    }
}
