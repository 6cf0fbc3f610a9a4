import KilnCore
import KilnGraph

/// Reads an ONNX model into a Kiln graph: each node becomes the Kiln functions (nnabla's, with nnabla's
/// arguments) that compute it, initializers become parameters under their ONNX names, and whatever static
/// shapes decide is folded while importing (Constant nodes, Shape/Gather/Unsqueeze/Concat chains feeding a
/// Reshape, the values given for shape-determining inputs).
///
/// Contract: the result computes what the ONNX model computes in inference (BatchNormalization uses its
/// running statistics, Dropout passes through); an operator or attribute value Kiln cannot compute exactly
/// is an error naming the node and the operator, and nothing is returned.
public enum ONNXImporter {
    public struct Options {
        /// Dimensions for the inputs' symbolic dimensions (a batch size written as "N"), by input name.
        /// Symbolic dimensions not given here are 1.
        public var inputShapes: [String: [Int]] = [:]
        /// Values of inputs that decide shapes (Reshape's shape, Slice's starts): they are folded into the
        /// graph and no longer fed at run time.
        public var constantInputs: [String: ONNXTensor] = [:]
        /// Values a run will feed to float inputs: used only where an operator needs its argument known
        /// (Clip's bounds, Pad's value given as inputs), which then no longer reads the input.
        public var runValues: [String: ONNXTensor] = [:]

        /// A training graph: BatchNormalization normalises with batch statistics (and updates the running
        /// ones), Dropout drops. Otherwise the graph is the model's inference.
        public var training = false
        /// The size of a symbolic leading (batch) dimension of every input, instead of 1.
        public var batchSize: Int?
        /// Parameters to use instead of new ones, by name and shape (an evaluation graph sharing a training
        /// graph's weights).
        public var parameters: ParameterDictionary?

        public init(inputShapes: [String: [Int]] = [:], constantInputs: [String: ONNXTensor] = [:],
                    runValues: [String: ONNXTensor] = [:], training: Bool = false, batchSize: Int? = nil,
                    parameters: ParameterDictionary? = nil) {
            self.inputShapes = inputShapes
            self.constantInputs = constantInputs
            self.runValues = runValues
            self.training = training
            self.batchSize = batchSize
            self.parameters = parameters
        }
    }

    /// An imported model: the graph (inputs a run must feed in `graph.inputsWithoutData`), its parameters by
    /// ONNX initializer name, and notes on what the import decided (parameters stored transposed, ...).
    public struct Result {
        public var graph: GraphFile
        public var parameters: ParameterDictionary
        public var notes: [String]
    }

    /// Every ONNX operator type Kiln imports (some only when their inputs are known at import time, such as
    /// Shape chains and Range).
    public static var supportedOperators: Set<String> { ONNXGraphBuilder.supported.union(ONNXGraphBuilder.foldable) }

    public static func importGraph(_ model: ONNXModel, options: Options = Options()) throws -> Result {
        var b = ONNXGraphBuilder(opset: model.opsetVersion)
        b.runValues = options.runValues
        b.training = options.training
        b.shared = options.parameters
        let graph = model.proto.graph
        // Initializers first: a graph input of the same name is then a default value, not a fed input.
        for t in graph.initializer {
            let place = "initializer '\(t.name)'"
            guard !t.name.isEmpty else { throw ONNXError.at(place, "has no name") }
            guard b.values[t.name] == nil else { throw ONNXError.at(place, "is given twice") }
            b.values[t.name] = .constant(try ONNXTensor(proto: t, place: place), initializer: true)
        }
        for (k, _) in options.inputShapes where !graph.input.contains(where: { $0.name == k }) {
            throw KilnError.invalidGraphFile("ONNX: a shape is given for '\(k)', which is not an input of the model")
        }
        for (k, _) in options.constantInputs where !graph.input.contains(where: { $0.name == k }) {
            throw KilnError.invalidGraphFile("ONNX: a value is given for '\(k)', which is not an input of the model")
        }
        var fed: [String] = []
        for i in graph.input where b.values[i.name] == nil {
            let place = "input '\(i.name)'"
            if let c = options.constantInputs[i.name] {
                b.values[i.name] = .constant(c, initializer: false)
                continue
            }
            guard case .tensorType(let t)? = i.type.value else { throw ONNXError.at(place, "is not a tensor") }
            var shape: [Int] = []
            let given = options.inputShapes[i.name]
            if let g = given, g.count != t.shape.dim.count {
                throw ONNXError.at(place, "has \(t.shape.dim.count) dimensions, the shape given has \(g.count)")
            }
            for (k, d) in t.shape.dim.enumerated() {
                if case .dimValue(let v)? = d.value {
                    guard v >= 0, v <= Int64(Int32.max) else { throw ONNXError.at(place, "dimension \(v) is out of range") }
                    if let g = given, g[k] != Int(v) {
                        throw ONNXError.at(place, "dimension \(k) is \(v), the shape given says \(g[k])")
                    }
                    shape.append(Int(v))
                } else {
                    shape.append(given?[k] ?? (k == 0 ? options.batchSize ?? 1 : 1))
                }
            }
            let dtype: DType
            switch ONNXDataType(rawValue: t.elemType) {
            // 8-bit inputs are quantized codes (a QDQ model's), which Kiln holds as floats; wider integers are
            // shapes and indices.
            case .float?, .double?, .float16?, .int8?, .uint8?: dtype = .float32
            case .int64?, .int32?, .int16?, .uint16?, .bool?: dtype = .int32
            default: throw ONNXError.at(place, "element type \(ONNXDataType.describe(t.elemType)) is not supported")
            }
            let v: Variable
            do {
                try b.reserve(Shapes.count(shape, context: place), place: place)
                v = try Variable(shape: shape, dtype: dtype, needGrad: false, name: i.name)
            } catch let e as KilnError {
                throw ONNXError.at(place, "\(e)")
            }
            v.isInput = true
            b.values[i.name] = .variable(v)
            try b.claim(i.name)
            fed.append(i.name)
        }
        for (k, node) in graph.node.enumerated() {
            try b.importNode(node, index: k)
        }
        var outputs: [Variable] = []
        for o in graph.output {
            b.nodeName = o.name
            b.place = "output '\(o.name)'"
            var v = try b.variable(o.name)
            // Outputs are reported by name: another value passed through is copied under the output's name.
            // (A folded constant is its own leaf, already so named.)
            if v.name != o.name {
                v = try b.emit1("Identity", [:], [v], suffix: "output")
                b.names.remove(v.name)
                v.name = o.name
            }
            outputs.append(v)
        }
        guard !outputs.isEmpty else { throw KilnError.invalidGraphFile("ONNX: the graph has no outputs") }
        // Inputs nothing reads (Dropout's ratio in inference) are not part of the graph.
        let read = Set(GraphCollector.nodes(from: outputs).flatMap { $0.inputs.map(ObjectIdentifier.init) })
            .union(outputs.map(ObjectIdentifier.init))
        let file = try GraphFile(outputs: outputs, inputsWithoutData: fed.filter { n in
            if case .variable(let v)? = b.values[n] { return read.contains(ObjectIdentifier(v)) }
            return false
        })
        var params = ParameterDictionary()
        for v in file.leaves where v.isParameter { params[v.name] = v }
        return Result(graph: file, parameters: params, notes: b.notes)
    }
}

/// A value while importing: known now (folded), or computed by the graph.
enum ONNXValue {
    case constant(ONNXTensor, initializer: Bool)
    case variable(Variable)
    /// An optional output no Kiln function computes (MaxPool's indices, Dropout's mask): using it is an error.
    case unavailable(String)
}

/// The state of one import: every value by ONNX name, and the Kiln functions made so far.
struct ONNXGraphBuilder {
    let opset: Int
    var values: [String: ONNXValue] = [:]
    /// Constants already turned into graph leaves, so each initializer is one parameter however often used.
    var leaves: [String: Variable] = [:]
    var names: Set<String> = []
    /// Values given for fed inputs, for operators that need an argument known (`known`).
    var runValues: [String: ONNXTensor] = [:]
    /// Integer constants made float leaves (`floatVariable`), by ONNX name.
    var floatLeaves: [String: Variable] = [:]
    /// Scales and zero points of quantizers as constant leaves, by ONNX name and shape (`quantizerLeaf`).
    var quantizerLeaves: [String: Variable] = [:]
    /// Bytes of the leaves made so far: inputs are allocated as they are declared, so their total is checked
    /// against the memory budget first (a few bytes of protobuf can declare terabytes).
    var leafBytes = 0

    mutating func reserve(_ elements: Int, place p: String) throws {
        let (bytes, o1) = elements.multipliedReportingOverflow(by: 4)
        let (total, o2) = leafBytes.addingReportingOverflow(bytes)
        let budget = Context.current.memoryBudget ?? Int.max
        guard !o1, !o2, total <= budget else {
            throw ONNXError.at(p, "the model's inputs and constants would take more than the memory budget of \(budget) bytes (Context.memoryBudget; --max-memory)")
        }
        leafBytes = total
    }
    /// Whether the graph trains (`ONNXImporter.Options.training`).
    var training = false
    /// Parameters to reuse by name and shape (`ONNXImporter.Options.parameters`).
    var shared: ParameterDictionary?

    /// A parameter of the shared dictionary with this name and shape, when one is given.
    func sharedParameter(_ name: String, _ shape: [Int]) -> Variable? {
        guard let v = shared?[name], v.shape == shape else { return nil }
        return v
    }
    var notes: [String] = []
    /// The node being imported ("node 'conv1' (Conv)"), for errors.
    var place = ""
    var nodeName = ""

    init(opset: Int) { self.opset = opset }

    mutating func claim(_ name: String) throws {
        guard names.insert(name).inserted else { throw ONNXError.at(place, "the value name '\(name)' is used twice") }
    }

    /// A fresh name for a value Kiln adds (a reshape for broadcasting): the node's name and a suffix.
    mutating func freshName(_ suffix: String) -> String {
        var n = "\(nodeName)/\(suffix)"
        var k = 1
        while names.contains(n) {
            k += 1
            n = "\(nodeName)/\(suffix)_\(k)"
        }
        names.insert(n)
        return n
    }

    func value(_ name: String, place p: String? = nil) throws -> ONNXValue {
        switch values[name] {
        case nil: throw ONNXError.at(p ?? place, "reads '\(name)', which no earlier node, initializer or input gives")
        case .unavailable(let why)?: throw ONNXError.at(p ?? place, "reads '\(name)', \(why)")
        case let v?: return v
        }
    }

    func constant(_ name: String) throws -> ONNXTensor? {
        if case .constant(let t, _) = try value(name) { return t }
        return nil
    }

    /// A constant, or the value a run feeds to an input: for arguments an operator needs known.
    func known(_ name: String) throws -> ONNXTensor? {
        if let t = try constant(name) { return t }
        if case .variable(let v)? = values[name], v.isInput, let t = runValues[name] { return t }
        return nil
    }

    func shape(_ name: String) throws -> [Int] {
        switch try value(name) {
        case .constant(let t, _): return t.shape
        case .variable(let v): return v.shape
        case .unavailable: return []
        }
    }

    /// The value as a graph variable: a constant becomes a leaf (an initializer a parameter under its ONNX
    /// name with a gradient; a Constant node's value a fixed parameter).
    mutating func variable(_ name: String, place p: String? = nil) throws -> Variable {
        switch try value(name, place: p) {
        case .variable(let v): return v
        case .constant(let t, let isInitializer):
            if let v = leaves[name] { return v }
            let v = try leaf(t, name: name, trainable: isInitializer)
            leaves[name] = v
            try claim(name)
            return v
        case .unavailable: throw ONNXError.at(p ?? place, "reads '\(name)'")
        }
    }

    /// The value as a float32 graph variable, for operators that compute in float: integer constants
    /// (ONNX int64 data given as input values or initializers) become float leaves, exact up to 2^24.
    mutating func floatVariable(_ name: String) throws -> Variable {
        if case .constant(let t, _)? = values[name], t.isInteger {
            if let v = floatLeaves[name] { return v }
            let f = try t.ints(place).map { v -> Float in
                guard Swift.abs(v) <= 1 << 24 else { throw ONNXError.at(place, "'\(name)' holds \(v), which float32 does not hold exactly") }
                return Float(v)
            }
            let taken = names.contains(name)
            let n = taken ? freshName("float") : name
            let v = try leaf(ONNXTensor(shape: t.shape, floats: f), name: n, trainable: false)
            if !taken { try claim(name) }
            floatLeaves[name] = v
            return v
        }
        let v = try variable(name)
        guard v.dtype == .float32 else {
            throw ONNXError.at(place, "'\(name)' is a computed integer tensor; Kiln computes this operator in float32 only")
        }
        return v
    }

    /// A leaf holding `t`: float32, or int32 for integer values (which must fit).
    mutating func leaf(_ t: ONNXTensor, name: String, trainable: Bool) throws -> Variable {
        if trainable, let v = sharedParameter(name, t.shape) { return v }
        try reserve(t.count, place: place)
        let v: Variable
        switch t.values {
        case .floats(let f):
            v = try Variable(shape: t.shape, dtype: .float32, needGrad: trainable, name: name)
            try v.data.setFloats(f, name: name)
        case .ints(let i):
            v = try Variable(shape: t.shape, dtype: .int32, needGrad: false, name: name)
            try v.data.setInt32s(try i.map {
                guard let x = Int32(exactly: $0) else { throw ONNXError.at(place, "'\(name)' holds \($0), beyond int32's range") }
                return x
            })
        }
        v.isParameter = true
        return v
    }

    /// Applies one Kiln function (by nnabla's type name and graph-file arguments) and returns its outputs.
    mutating func emit(_ type: String, _ args: [String: ArgValue] = [:], _ inputs: [Variable], suffix: String? = nil) throws -> [Variable] {
        do {
            let f = try FunctionRegistry.make(type: type, arguments: args)
            let name = suffix.map { "\(nodeName)/\($0)" } ?? nodeName
            return try apply(f, inputs, name: name)
        } catch let e as KilnError {
            throw ONNXError.at(place, "\(e)")
        }
    }

    mutating func emit1(_ type: String, _ args: [String: ArgValue] = [:], _ inputs: [Variable], suffix: String? = nil) throws -> Variable {
        let out = try emit(type, args, inputs, suffix: suffix)
        guard let y = out.first else { throw ONNXError.at(place, "\(type) produced no output") }
        if suffix != nil { y.name = freshName(suffix ?? "") }
        return y
    }

    /// `x` reshaped (a Reshape function, or a new shape for a constant leaf not yet used).
    mutating func reshape(_ x: Variable, _ shape: [Int]) throws -> Variable {
        if x.shape == shape { return x }
        return try emit1("Reshape", ["shape": .ints(shape)], [x], suffix: "reshape")
    }

    mutating func importNode(_ node: Onnx_NodeProto, index: Int) throws {
        nodeName = node.name.isEmpty ? "\(node.opType)_\(index)" : node.name
        place = "node '\(nodeName)' (\(node.opType))"
        guard node.domain.isEmpty || node.domain == "ai.onnx" else {
            throw ONNXError.at(place, "operator domain '\(node.domain)' is not supported (only the default ai.onnx)")
        }
        let attrs = try ONNXAttributes(node, place: place)
        let inputs = node.input
        let results: [ONNXValue]
        if let folded = try fold(node.opType, inputs, attrs) {
            results = folded.map { .constant($0, initializer: false) }
        } else {
            results = try importOperator(node.opType, inputs, attrs, outputCount: node.output.count)
        }
        for (k, name) in node.output.enumerated() where !name.isEmpty {
            guard values[name] == nil else { throw ONNXError.at(place, "writes '\(name)', which already has a value") }
            if k < results.count {
                // A new variable takes the ONNX name; one passed through unchanged (Identity, inference
                // Dropout) keeps its own, and the ONNX name refers to it.
                if case .variable(let v) = results[k], v.name.isEmpty || v.name.hasPrefix("\(nodeName)/") {
                    names.remove(v.name)
                    v.name = name
                    try claim(name)
                }
                values[name] = results[k]
            } else {
                values[name] = .unavailable("output \(k) of \(place), which Kiln does not compute")
            }
        }
    }
}
