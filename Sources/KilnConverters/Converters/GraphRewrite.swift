import KilnCore
import KilnGraph

/// Rebuilds the graph behind some roots into a new graph, one source function at a time in topological
/// order: the machinery every converter shares.
///
/// Each source value maps to its value in the new graph; a leaf maps to itself (shared, see
/// `GraphConverter`). A converter handles each source function by copying it (`copy`), by emitting other
/// functions whose outputs stand for its outputs (`emit` + `stand`), or by skipping it because an earlier
/// emit already stands for its outputs (a BatchNormalization folded into the convolution before it).
struct GraphRewrite {
    typealias Key = GraphCollector.ValueKey

    /// The converter's name prefix, for new names and notes.
    let prefix: String
    let roots: [Variable]
    /// The source functions behind the roots, in topological order.
    let nodes: [FunctionNode]
    /// The source functions reading each source value (once per input slot).
    private let readers: [Key: [FunctionNode]]
    private let rootKeys: Set<Key>
    private var mapped: [Key: Variable] = [:]
    /// Every variable name of the source graph and every name given out since: new names never collide.
    private var names: Set<String>
    private var notes: [String] = []

    init(roots: [Variable], prefix: String) {
        self.prefix = prefix
        self.roots = roots
        nodes = GraphCollector.nodes(from: roots)
        var readers: [Key: [FunctionNode]] = [:]
        var names = Set<String>()
        for n in nodes {
            for v in n.inputs {
                readers[Key(v), default: []].append(n)
                names.insert(v.name)
            }
            for case let o? in n.outputs { names.insert(o.name) }
        }
        for r in roots { names.insert(r.name) }
        names.remove("")
        self.readers = readers
        self.names = names
        rootKeys = Set(roots.map { Key($0) })
    }

    // MARK: Looking at the source graph

    /// The source functions reading output `index` of `node` (a function reading it twice appears twice).
    func readers(ofOutput index: Int, of node: FunctionNode) -> [FunctionNode] {
        readers[.output(node: ObjectIdentifier(node), index: index)] ?? []
    }

    /// Whether output `index` of `node` is one of the roots (read by the caller, so it must stay computed).
    func isRoot(output index: Int, of node: FunctionNode) -> Bool {
        rootKeys.contains(.output(node: ObjectIdentifier(node), index: index))
    }

    /// The values of a parameter, for conversions that compute with them. Only a leaf marked as a parameter
    /// (or taking a gradient, which is how `GraphFile.save` tells parameters apart) has values known before
    /// the graph runs; anything else makes the conversion skip this place.
    static func parameterValues(_ v: Variable, role: String, of node: FunctionNode) throws -> [Float] {
        guard v.parent == nil else {
            throw ConversionSkip("its \(role) '\(v.name)' is computed by \(v.parent.map { "'\($0.name)' (\($0.typeName))" } ?? "a function"), not a parameter with known values")
        }
        guard v.isParameter || v.needGrad else {
            throw ConversionSkip("its \(role) '\(v.name)' is an input, not a parameter: its values are not known before the graph runs")
        }
        guard v.dtype == .float32 else {
            throw ConversionSkip("its \(role) '\(v.name)' is \(v.dtype.rawValue), not float32")
        }
        return v.d
    }

    /// The scope of a layer's parameter (`conv1/conv/W` -> `conv1/conv`), or `fallback` for a bare name:
    /// new parameters are named after the layer they belong to, as nnabla's converters did.
    static func scope(of parameter: Variable, fallback: String) -> String {
        guard let slash = parameter.name.lastIndex(of: "/"), slash != parameter.name.startIndex else {
            return fallback
        }
        return String(parameter.name[..<slash])
    }

    static func describe(_ node: FunctionNode) -> String { "\(node.typeName) '\(node.name)'" }

    // MARK: Building the new graph

    /// The new graph's value for a source value.
    func value(_ v: Variable) throws -> Variable {
        if let m = mapped[Key(v)] { return m }
        guard let p = v.parent else { return v }
        // Nodes are visited in topological order, so this means a converter forgot a node: a bug, reported
        // as an error rather than a graph that silently mixes old and new functions.
        throw KilnError.planFailed("\(prefix): output \(v.outputIndex) of \(Self.describe(p)) was read before it was converted")
    }

    func inputs(of node: FunctionNode) throws -> [Variable] { try node.inputs.map { try value($0) } }

    /// Whether an earlier emit already stands for every output of `node`.
    func isReplaced(_ node: FunctionNode) -> Bool {
        node.outputTypes.indices.allSatisfy { mapped[.output(node: ObjectIdentifier(node), index: $0)] != nil }
    }

    /// The same function on the new graph's inputs, outputs named as before (nnabla's identity conversion).
    mutating func copy(_ node: FunctionNode) throws {
        let outs = try emit(node.function, try inputs(of: node), name: node.name)
        for (i, o) in outs.enumerated() { stand(o, for: node, output: i) }
    }

    /// Adds a function to the new graph; its outputs are unnamed until `stand` or `name` names them.
    func emit(_ function: any Function, _ inputs: [Variable], name: String) throws -> [Variable] {
        do { return try apply(function, inputs, name: name) } catch let e as KilnError {
            throw KilnError.invalidFunction(function: name, reason: "\(prefix) conversion built an invalid \(function.typeName): \(e)")
        }
    }

    /// Makes `v` the new graph's value of output `index` of the source `node`, with that output's name.
    mutating func stand(_ v: Variable, for node: FunctionNode, output index: Int) {
        mapped[.output(node: ObjectIdentifier(node), index: index)] = v
        if index < node.outputs.count, let old = node.outputs[index] {
            v.name = old.name
            v.persistent = old.persistent
        }
    }

    /// A name no variable of either graph has: `base`, or `base_1`, `base_2`, ...
    mutating func uniqueName(_ base: String) -> String {
        var name = base, k = 1
        while names.contains(name) { name = "\(base)_\(k)"; k += 1 }
        names.insert(name)
        return name
    }

    /// A new parameter holding `values`, named `<prefix>/<path>` (made unique).
    mutating func newParameter(_ path: String, shape: [Int], values: [Float], needGrad: Bool) throws -> Variable {
        let p = try Variable(shape: shape, needGrad: needGrad, name: uniqueName("\(prefix)/\(path)"))
        try p.setData(values)
        p.isParameter = true
        return p
    }

    mutating func note(_ text: String) { notes.append("\(prefix): \(text)") }

    /// The new roots (a root that is a leaf stays itself) and the notes.
    func finish() throws -> ConversionResult {
        ConversionResult(outputs: try roots.map { try value($0) }, notes: notes)
    }
}
