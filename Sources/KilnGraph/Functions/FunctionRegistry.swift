import KilnCore

/// Every function type a graph file may name, found by nnabla's type name.
///
/// Each family file lists its types; this registry joins the lists, so adding a function means adding it to
/// its family's list.
public enum FunctionRegistry {
    public static let all: [any Function.Type] =
        ActivationFunctions.all + ArithmeticFunctions.all + ReductionFunctions.all + ShapeFunctions.all
        + LossFunctions.all + QuantizationFunctions.all + LinearQuantizationFunctions.all + LinearFunctions.all
        + NormalizationFunctions.all + PoolingFunctions.all + EmbeddingFunctions.all + StochasticFunctions.all + MathFunctions.all

    private static let byName: [String: any Function.Type] = {
        var d: [String: any Function.Type] = [:]
        for t in all { d[t.typeName] = t }
        return d
    }()

    public static var typeNames: [String] { all.map { $0.typeName }.sorted() }

    /// Builds a function from its type name and graph-file arguments.
    public static func make(type: String, arguments: [String: ArgValue]) throws -> any Function {
        guard let t = byName[type] else {
            throw KilnError.invalidFunction(function: type, reason: "unknown function type (known: \(typeNames.joined(separator: ", ")))")
        }
        var reader = ArgReader(function: type, values: arguments)
        let f = try t.init(arguments: &reader)
        try reader.finish()
        return f
    }
}
