import KilnCore
import KilnGraph

/// A graph-to-graph rewrite, as nnabla's `experimental.graph_converters`: given the roots (outputs) of a
/// graph it builds a new graph and returns the new roots. The input graph is never modified.
///
/// What the new graph shares with the old one, as in nnabla:
/// - Entry variables (`entryVariables`, nnabla's `entry_variables`) are the same `Variable`s in both, and
///   nothing behind them is converted: feeding `x.d` feeds both graphs.
/// - Parameters (the leaves found in `params`, nnabla's result of `nn.get_parameters()`, by default the
///   registry when the converter is made) are copied into new parameters registered in `Parameters` under
///   the converter's `name` scope: `identity/conv1/W`, `bn-folded/conv1/W` (with folded values),
///   `fixed-point-weight-graph/conv1/fp_quantized_conv/W_q`. Training the new graph leaves the old one as
///   it was. Each converter's documentation gives its names.
/// - Other leaves (inputs not given as entry variables, parameters not in `params`) are shared.
///
/// Every function whose output keeps its meaning keeps its output's name, so the new graph's roots are
/// named like the old ones (a folded BN's output name moves to the convolution that now produces it).
public protocol GraphConverter {
    /// Converts the graph behind `outputs`, starting from `entryVariables`.
    func convert(_ outputs: [Variable], entryVariables: [Variable]) throws -> ConversionResult
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
    /// Converts the whole graph behind `outputs` (no entry variables: every graph input is shared).
    func convert(_ outputs: [Variable]) throws -> ConversionResult {
        try convert(outputs, entryVariables: [])
    }

    /// nnabla's `convert(vroot, entry_variables)`: converts the graph behind one root and returns the new root.
    func convert(_ vroot: Variable, entryVariables: [Variable] = []) throws -> Variable {
        let r = try convert([vroot], entryVariables: entryVariables)
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
