import KilnGraph

/// nnabla's `BatchNormalizationFoldedConverter`: a test-mode BatchNormalization that reads the output of an
/// inner-product function (Affine, Convolution, Deconvolution) directly is folded into that function's
/// weight and bias (see `InnerProductFold`), and the BN disappears.
///
/// Folding happens only when the layer's output has exactly one reader, the BN (reading it as x), and is not
/// itself a root: another reader would see different values. The folded layer always has a bias. Its new
/// parameters are registered as nnabla named them: `<name>/<W's name>` (`bn-folded/conv/W`) and
/// `<name>/<W's scope>/b` (`bn-folded/conv/b`), W's name being its key in `params` (or its own name);
/// other parameters are copied into the `name` scope (see `GraphConverter`). The layer keeps its function
/// name and takes over the BN output's name. Every BN left in the graph (training
/// mode, not after such a layer, a branch, black-listed layer type) gets a note saying why.
public struct BatchNormalizationFoldedConverter: GraphConverter {
    /// Function types left as they are: a black-listed layer type or "BatchNormalization" folds nothing.
    public var blackList: Set<String>
    /// Function types a BN may be folded into (nnabla's default: Affine, Convolution, Deconvolution; other
    /// types are never folded, with a note, since their weight layouts are not known).
    public var innerProdFunctions: [String]
    /// The parameters to copy, by name (nnabla's `params`, default the registry when the converter is made).
    public var params: ParameterDictionary
    /// The parameter scope of new parameters (nnabla's `name`).
    public var name: String

    public static let defaultInnerProdFunctions = ["Affine", "Convolution", "Deconvolution"]

    public init(blackList: Set<String> = [], params: ParameterDictionary? = nil, innerProdFunctions: [String]? = nil,
                name: String = "bn-folded") {
        self.blackList = blackList
        self.params = params ?? Parameters.current(gradOnly: false)
        self.innerProdFunctions = innerProdFunctions ?? Self.defaultInnerProdFunctions
        self.name = name
    }

    public func convert(_ outputs: [Variable], entryVariables: [Variable]) throws -> ConversionResult {
        var g = GraphRewrite(roots: outputs, prefix: name, params: params, entryVariables: entryVariables)
        /// Why a BN right after an inner-product layer was not folded, reported when the BN is reached.
        var reasons: [ObjectIdentifier: String] = [:]
        for node in g.nodes {
            if g.isReplaced(node) { continue }   // a BN folded into the layer before it
            if node.typeName == BatchNormalization.typeName {
                if !blackList.contains(node.typeName) {
                    g.note("\(GraphRewrite.describe(node)) left as it is: \(reasons[ObjectIdentifier(node)] ?? whyNotFolded(node))")
                }
                try g.copy(node)
                continue
            }
            guard isLayer(node), let bn = bnReading(node, in: g) else {
                try g.copy(node)
                continue
            }
            do {
                try fold(node, into: bn, &g)
            } catch let skip as ConversionSkip {
                reasons[ObjectIdentifier(bn)] = skip.reason
                try g.copy(node)
            }
        }
        return try g.finish()
    }

    private func isLayer(_ node: FunctionNode) -> Bool {
        innerProdFunctions.contains(node.typeName) && !blackList.contains(node.typeName) && node.outputTypes.count == 1
    }

    /// A non-black-listed BatchNormalization reading the layer's output as its x, if there is one.
    private func bnReading(_ layer: FunctionNode, in g: GraphRewrite) -> FunctionNode? {
        guard !blackList.contains(BatchNormalization.typeName) else { return nil }
        return g.readers(ofOutput: 0, of: layer).first { r in
            r.typeName == BatchNormalization.typeName && r.inputs.first?.parent === layer
        }
    }

    /// Folds `bn` into `layer` or throws `ConversionSkip` saying why it may not.
    private func fold(_ layer: FunctionNode, into bn: FunctionNode, _ g: inout GraphRewrite) throws {
        let k = try BatchNormalizationCoefficients(bn)
        let readers = g.readers(ofOutput: 0, of: layer)
        guard readers.count == 1 else {
            throw ConversionSkip("the output of \(GraphRewrite.describe(layer)) has \(readers.count) readers; folding needs the BN to be the only one")
        }
        guard !g.isRoot(output: 0, of: layer) else {
            throw ConversionSkip("the output of \(GraphRewrite.describe(layer)) is also a graph output, which folding would change")
        }
        let fold = try InnerProductFold(layer: layer, coefficients: k)
        let w = layer.inputs[1]
        // nnabla: W keeps its params name, b is "b" beside it (os.path.join(dirname(W), "b")).
        let wName = g.parameterName(w).isEmpty ? "\(layer.name)/W" : g.parameterName(w)
        let bName = wName.lastIndex(of: "/").map { "\(wName[..<$0])/b" } ?? "b"
        let newW = try g.parameter(wName, shape: w.shape, values: fold.weight, needGrad: w.needGrad)
        let newB = try g.parameter(bName, shape: fold.biasShape, values: fold.bias, needGrad: true)
        let y = try g.emit(layer.function, [try g.value(layer.inputs[0]), newW, newB], name: layer.name)[0]
        g.stand(y, for: bn, output: 0)
    }

    /// Why a BN that no layer folded stays: training mode, or what its input comes from.
    private func whyNotFolded(_ bn: FunctionNode) -> String {
        if let f = bn.function as? BatchNormalization, f.batchStat {
            return "batch_stat=true (training mode); only test-mode (batch_stat=false) BatchNormalization is folded, as in nnabla"
        }
        guard let p = bn.inputs.first?.parent else {
            return "its input '\(bn.inputs.first?.name ?? "")' is a graph input, not the output of \(innerProdFunctions.joined(separator: "/"))"
        }
        if innerProdFunctions.contains(p.typeName) && blackList.contains(p.typeName) {
            return "\(p.typeName) is black-listed"
        }
        return "its input comes from \(GraphRewrite.describe(p)), not from \(innerProdFunctions.joined(separator: "/"))"
    }
}
