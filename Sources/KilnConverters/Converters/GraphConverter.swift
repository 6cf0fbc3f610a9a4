import KilnCore
import KilnGraph

/// A graph-to-graph rewrite, as nnabla's `experimental.graph_converters`: given the roots (outputs) of a
/// graph it builds a new graph and returns the new roots. The input graph is never modified.
///
/// What the new graph shares with the old one: leaves the conversion leaves alone (inputs and unchanged
/// parameters) are the same `Variable`s, so feeding `x.d` feeds both graphs, as nnabla's `entry_variables`,
/// and no weights are copied. Everything a converter computes (folded weights, BN coefficients) is a new
/// parameter named `<converter name>/<layer scope>/<what>`; the old ones are untouched. New parameters are not
/// registered in `Parameters` (nnabla's global registry), so converting has no global side effect; nnabla's
/// `params` argument is therefore not needed (variables carry their names).
///
/// Every function whose output keeps its meaning keeps its output's name, so the new graph's roots are
/// named like the old ones (a folded BN's output name moves to the convolution that now produces it).
public protocol GraphConverter {
    func convert(_ outputs: [Variable]) throws -> ConversionResult
}

/// The new graph and what the converter chose not to convert.
public struct ConversionResult {
    /// The new roots, in the order of the roots given.
    public var outputs: [Variable]
    /// One line per place the converter left as it was although it looked at it, and why (a training-mode
    /// BatchNormalization, a convolution whose output has two readers, ...). Empty when everything it
    /// could convert was converted.
    public var notes: [String]

    public init(outputs: [Variable], notes: [String]) {
        self.outputs = outputs
        self.notes = notes
    }
}

public extension GraphConverter {
    /// Converts the graph behind one root and returns the new root.
    func convert(_ output: Variable) throws -> Variable {
        let r = try convert([output])
        guard let y = r.outputs.first else {
            throw KilnError.planFailed("\(Self.self) returned no output")
        }
        return y
    }
}

/// Why a converter leaves one place unchanged. Thrown by conversion helpers and caught by the converter,
/// which copies the function as it is and records the reason as a note; never escapes a converter.
struct ConversionSkip: Error {
    let reason: String
    init(_ reason: String) { self.reason = reason }
}
