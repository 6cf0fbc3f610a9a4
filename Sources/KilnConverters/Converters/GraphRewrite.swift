import KilnCore
import KilnGraph

/// Rebuilds the graph behind some roots into a new graph, one source function at a time in topological
/// order: the machinery every converter shares.
///
/// Each source value maps to its value in the new graph:
/// - an entry variable (nnabla's `entry_variables`) maps to itself, and the walk stops there: nothing
///   behind it is converted;
/// - a parameter (a leaf found in `params`, nnabla's `nn.get_parameters()`) maps to a copy registered in
///   `Parameters` as `<prefix>/<its params name>` under the current scope, as nnabla's identity conversion
///   did with `get_parameter_or_create` inside `parameter_scope(name)`;
/// - any other leaf maps to itself (shared with the source graph);
/// - a function output maps to whatever the converter made stand for it.
/// A converter handles each source function by copying it (`copy`), by emitting other functions whose
/// outputs stand for its outputs (`emit` + `stand`), or by skipping it because an earlier emit already
/// stands for its outputs (a BatchNormalization folded into the convolution before it).
struct GraphRewrite {
    typealias Key = GraphCollector.ValueKey

    /// The converter's name prefix: the parameter scope of what it makes, and of its notes.
    let prefix: String
    let roots: [Variable]
    /// The source functions behind the roots, in topological order.
    let nodes: [FunctionNode]
    /// The source functions reading each source value (once per input slot).
    private let readers: [Key: [FunctionNode]]
    private let rootKeys: Set<Key>
    private let entries: Set<Key>
    /// The params name of each parameter the conversion may copy, by the variable's identity.
    private let parameterNames: [ObjectIdentifier: String]
    private var mapped: [Key: Variable] = [:]
    /// Every variable name of the source graph and every name given out since: new names never collide.
    private var names: Set<String>
    private var notes: [String] = []

    init(roots: [Variable], prefix: String, params: ParameterDictionary, entryVariables: [Variable]) {
        self.prefix = prefix
        self.roots = roots
        entries = Set(entryVariables.map { Key($0) })
        nodes = GraphCollector.nodes(from: roots, stoppingAt: entries)
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
        var parameterNames: [ObjectIdentifier: String] = [:]
        for (name, v) in params where v.parent == nil && parameterNames[ObjectIdentifier(v)] == nil {
            parameterNames[ObjectIdentifier(v)] = name
        }
        self.parameterNames = parameterNames
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

    /// The name a parameter goes by: its key in `params`, or else its own name.
    func parameterName(_ v: Variable) -> String { parameterNames[ObjectIdentifier(v)] ?? v.name }

    /// Whether `v` is a leaf the conversion copies (and may compute with): found in `params`, float32, not
    /// an entry variable.
    func isCopiedParameter(_ v: Variable) -> Bool {
        v.parent == nil && v.dtype == .float32 && parameterNames[ObjectIdentifier(v)] != nil && !entries.contains(Key(v))
    }

    /// The scope of a layer's parameter (`conv1/conv/W` -> `conv1/conv`), or `fallback` for a bare name: to
    /// name the functions a converter adds after the layer they stand for.
    static func scope(of parameter: Variable, fallback: String) -> String {
        guard let slash = parameter.name.lastIndex(of: "/"), slash != parameter.name.startIndex else {
            return fallback
        }
        return String(parameter.name[..<slash])
    }

    static func describe(_ node: FunctionNode) -> String { "\(node.typeName) '\(node.name)'" }

    // MARK: Building the new graph

    /// The new graph's value for a source value.
    mutating func value(_ v: Variable) throws -> Variable {
        let key = Key(v)
        if entries.contains(key) { return v }
        if let m = mapped[key] { return m }
        guard let p = v.parent else {
            guard isCopiedParameter(v) else { return v }
            return try copyParameter(v, as: parameterName(v))
        }
        // Nodes are visited in topological order, so this means a converter forgot a node: a bug, reported
        // as an error rather than a graph that silently mixes old and new functions.
        throw KilnError.planFailed("\(prefix): output \(v.outputIndex) of \(Self.describe(p)) was read before it was converted")
    }

    mutating func inputs(of node: FunctionNode) throws -> [Variable] { try node.inputs.map { try value($0) } }

    /// The copy of parameter `v` registered as `<prefix>/<path>`; made on first use, the same copy after.
    mutating func copyParameter(_ v: Variable, as path: String) throws -> Variable {
        let key = Key(v)
        if let m = mapped[key] { return m }
        let copy = try parameter(path, shape: v.shape, values: v.d, needGrad: v.needGrad)
        mapped[key] = copy
        return copy
    }

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

    /// Makes `v` the new graph's value of the source leaf `leaf` for every reader (a quantized graph input).
    mutating func stand(_ v: Variable, forLeaf leaf: Variable) {
        mapped[Key(leaf)] = v
    }

    /// A name no variable of either graph has: `base`, or `base_1`, `base_2`, ...
    mutating func uniqueName(_ base: String) -> String {
        var name = base, k = 1
        while names.contains(name) { name = "\(base)_\(k)"; k += 1 }
        names.insert(name)
        return name
    }

    /// The parameter `<prefix>/<path>` under the current scope holding `values`, registered in `Parameters`
    /// (nnabla's `get_parameter_or_create` in `parameter_scope(name)`). A registered parameter of that name
    /// with the same shape, flag and values is reused, so converting twice gives the same parameters; one
    /// that differs is replaced by a new variable (a graph converted earlier keeps its own), since reusing
    /// it as nnabla does would silently compute with stale values.
    func parameter(_ path: String, shape: [Int], values: [Float], needGrad: Bool) throws -> Variable {
        try Parameters.scope(prefix) {
            let full = Parameters.currentScope + path
            if let old = Parameters.get(full), old.parent == nil, old.dtype == .float32, old.shape == shape,
               old.needGrad == needGrad, old.d == values {
                return old
            }
            let p = try Variable(shape: shape, needGrad: needGrad, name: full)
            try p.setData(values)
            p.isParameter = true
            Parameters.set(path, p)
            return p
        }
    }

    /// Registers a value the new graph computes as the parameter `<prefix>/<path>` (nnabla's `W_q`, a
    /// parameter whose data a quantizer writes) and names it so.
    func register(_ v: Variable, as path: String) {
        Parameters.scope(prefix) {
            v.name = Parameters.currentScope + path
            Parameters.set(path, v)
        }
    }

    mutating func note(_ text: String) { notes.append("\(prefix): \(text)") }

    /// The new roots (a root that is a leaf stays itself) and the notes.
    mutating func finish() throws -> ConversionResult {
        var outputs: [Variable] = []
        for r in roots { outputs.append(try value(r)) }
        return ConversionResult(outputs: outputs, notes: notes)
    }
}
