import Foundation
import KilnCore

/// The `kiln-graph/1` JSON format (see docs/ARCHITECTURE.md and the DESIGN contract): variables, functions
/// with nnabla's type and argument names, and the requested outputs.
///
/// Loading checks everything before anything can run: the format tag, unique names, shapes (against the
/// inferred ones), data lengths, function types and arguments, dangling or duplicate producers and cycles.
public struct GraphFile {
    public static let format = "kiln-graph/1"

    /// The loaded graph: every named variable, and the outputs in file order.
    public var variables: [String: Variable]
    public var outputs: [Variable]
    /// Leaf variables in file order (inputs and parameters).
    public var leaves: [Variable]
    public var functions: [FunctionNode]
    /// The input variables the file gives no data for, in file order: what a run must feed (an input with
    /// data in the file runs on that data unless fed).
    public var inputsWithoutData: [String] = []

    /// Loads a graph file. A parameter whose data holds NaN or an infinity is an error unless
    /// `allowNonFinite` (inputs' data may hold them). Parameters the file gives no data for are initialised
    /// as nnabla would, unless `initializeParameters` is false (they then hold zeros): what only looks at
    /// the graph's structure, such as `kiln plan` and `kiln view`, skips that work.
    public static func load(path: String, allowNonFinite: Bool = false, initializeParameters: Bool = true) throws -> GraphFile {
        // The file's bytes live only while they are parsed.
        let json: JSON
        do {
            json = try JSON.parse(try FileBytes.read(path: path, limit: Context.current.memoryBudget, what: "graph file"))
        } catch KilnError.invalidGraphFile(let message) {
            throw KilnError.invalidGraphFile("\(path): \(message)")
        }
        do { return try load(json: json, allowNonFinite: allowNonFinite, initializeParameters: initializeParameters) } catch KilnError.invalidGraphFile(let message) {
            throw KilnError.invalidGraphFile("\(path): \(message)")
        } catch let e as KilnError {
            throw KilnError.invalidGraphFile("\(path): \(e)")
        }
    }

    public static func load(bytes: [UInt8], allowNonFinite: Bool = false, initializeParameters: Bool = true) throws -> GraphFile {
        try load(json: JSON.parse(bytes), allowNonFinite: allowNonFinite, initializeParameters: initializeParameters)
    }

    public static func load(json root: JSON, allowNonFinite: Bool = false, initializeParameters: Bool = true) throws -> GraphFile {
        func fail(_ s: String) -> KilnError { .invalidGraphFile(s) }
        guard root.objectMembers != nil else { throw fail("the document must be a JSON object") }
        guard root["format"]?.string == format else {
            throw fail("\"format\" must be \"\(format)\", got \(root["format"].map { $0.serialized() } ?? "nothing")")
        }
        let known: Set<String> = ["format", "variables", "functions", "outputs"]
        for (k, _) in root.objectMembers ?? [] where !known.contains(k) { throw fail("unknown top-level member \"\(k)\"") }
        guard let vars = root["variables"]?.array else { throw fail("\"variables\" must be an array") }
        guard let funcs = root["functions"]?.array else { throw fail("\"functions\" must be an array") }
        guard let outs = root["outputs"]?.array else { throw fail("\"outputs\" must be an array of names") }

        struct Declared { var shape: [Int]; var dtype: DType; var kind: String; var needGrad: Bool; var data: JSON? }
        var declared: [String: Declared] = [:]
        var order: [String] = []
        for (i, v) in vars.enumerated() {
            guard let name = v["name"]?.string, !name.isEmpty else { throw fail("variables[\(i)] has no \"name\"") }
            guard declared[name] == nil else { throw fail("variable '\(name)' is declared twice") }
            for (k, _) in v.objectMembers ?? [] where !["name", "shape", "kind", "dtype", "need_grad", "data"].contains(k) {
                throw fail("variable '\(name)': unknown member \"\(k)\"")
            }
            guard let shapeJSON = v["shape"]?.array else { throw fail("variable '\(name)' has no \"shape\" array") }
            var shape: [Int] = []
            for d in shapeJSON {
                guard let n = d.int, n >= 0 else { throw fail("variable '\(name)': shape entries must be non-negative integers") }
                shape.append(n)
            }
            do { _ = try Shapes.count(shape, context: "variable '\(name)'") } catch let e as KilnError { throw fail("\(e)") }
            // Optional members must still have the right type when present ("dtype": 5 is not float32).
            for member in ["dtype", "kind"] where v[member] != nil && v[member]?.string == nil {
                throw fail("variable '\(name)': \(member) must be a string, got \(v[member].map { $0.serialized() } ?? "")")
            }
            let dtypeName = v["dtype"]?.string ?? "float32"
            guard let dtype = DType(rawValue: dtypeName) else { throw fail("variable '\(name)': unknown dtype '\(dtypeName)'") }
            let kind = v["kind"]?.string ?? "buffer"
            guard ["input", "parameter", "buffer"].contains(kind) else {
                throw fail("variable '\(name)': kind must be input, parameter or buffer, got '\(kind)'")
            }
            if let ng = v["need_grad"], ng.bool == nil { throw fail("variable '\(name)': need_grad must be true or false") }
            let needGrad = v["need_grad"]?.bool ?? (kind == "parameter")
            var data: JSON? = nil
            if let d = v["data"] {
                guard kind != "buffer" else { throw fail("variable '\(name)': a buffer cannot carry data") }
                guard d.count != nil else { throw fail("variable '\(name)': data must be an array of numbers (NaN and the infinities as \"NaN\", \"Infinity\", \"-Infinity\")") }
                data = d
            }
            declared[name] = Declared(shape: shape, dtype: dtype, kind: kind, needGrad: needGrad, data: data)
            order.append(name)
        }

        // Inputs and parameters are allocated as they are made, data or not: their total must fit the memory
        // budget before the first one is (a few bytes of JSON can declare terabytes).
        var leafBytes = CheckedInt(0)
        for name in order {
            guard let d = declared[name], d.kind != "buffer" else { continue }
            leafBytes = leafBytes + CheckedInt(try Shapes.count(d.shape, context: "variable '\(name)'")) * d.dtype.byteSize
        }
        let totalLeafBytes = try leafBytes.get("the total size of the file's inputs and parameters")
        if let budget = Context.current.memoryBudget, totalLeafBytes > budget {
            throw fail("the inputs and parameters declared take \(totalLeafBytes) bytes, above the memory budget of \(budget) bytes (Context.memoryBudget; `--max-memory` on the command line)")
        }
        var variables: [String: Variable] = [:]
        var leaves: [Variable] = []
        var uninitialized: [Variable] = []
        var inputsWithoutData: [String] = []
        for name in order {
            guard let d = declared[name], d.kind != "buffer" else { continue }
            let v = try Variable(shape: d.shape, dtype: d.dtype, needGrad: d.needGrad, name: name)
            if let data = d.data {
                guard data.count == v.size else {
                    throw fail("variable '\(name)': data has \(data.count ?? 0) values, shape \(d.shape) needs \(v.size)")
                }
                // Converted from the file's doubles: int32 data stays exact beyond float32's 2^24, and a value
                // the dtype cannot hold (1.5 or 1e30 for int32) is an error naming the variable and index.
                let values = try JSON.tensorValues(data, place: "variable '\(name)'", fail: fail)
                do { try v.data.setValues(values, name: "variable '\(name)'") } catch KilnError.invalidData(let m) { throw fail(m) }
                if d.kind == "parameter" && !allowNonFinite, let m = ParameterFile.nonFiniteMessage(name, v.data) { throw fail(m) }
            } else if d.kind == "parameter" {
                uninitialized.append(v)
            } else if d.kind == "input" {
                inputsWithoutData.append(name)
            }
            if d.kind == "parameter" { v.isParameter = true }
            if d.kind == "input" { v.isInput = true }
            variables[name] = v
            leaves.append(v)
        }

        // Functions must come after their inputs' producers; we resolve them in a topological order.
        struct PendingFunction { var index: Int; var name: String; var type: String; var inputs: [String]; var outputs: [String]; var args: [String: ArgValue] }
        var pending: [PendingFunction] = []
        var producedBy: [String: Int] = [:]
        for (i, f) in funcs.enumerated() {
            if let n = f["name"], n.string == nil { throw fail("functions[\(i)]: name must be a string, got \(n.serialized())") }
            let fname = f["name"]?.string ?? "functions[\(i)]"
            guard let type = f["type"]?.string else { throw fail("function '\(fname)' has no \"type\"") }
            for (k, _) in f.objectMembers ?? [] where !["name", "type", "inputs", "outputs", "args"].contains(k) {
                throw fail("function '\(fname)': unknown member \"\(k)\"")
            }
            guard let ins = f["inputs"]?.array?.map({ $0.string }), !ins.contains(nil) else {
                throw fail("function '\(fname)' (\(type)): \"inputs\" must be an array of names")
            }
            guard let os = f["outputs"]?.array?.map({ $0.string }), !os.contains(nil), !os.isEmpty else {
                throw fail("function '\(fname)' (\(type)): \"outputs\" must be a non-empty array of names")
            }
            var args: [String: ArgValue] = [:]
            if let a = f["args"] {
                guard let members = a.objectMembers else { throw fail("function '\(fname)' (\(type)): \"args\" must be an object") }
                for (k, v) in members { args[k] = try argValue(v, function: fname, type: type, arg: k) }
            }
            for o in os.compactMap({ $0 }) {
                if let other = producedBy[o] { throw fail("variable '\(o)' is produced by both '\(pending[other].name)' and '\(fname)'") }
                if let d = declared[o], d.kind != "buffer" { throw fail("function '\(fname)' writes '\(o)', which is declared as \(d.kind)") }
                producedBy[o] = pending.count
            }
            pending.append(PendingFunction(index: i, name: fname, type: type, inputs: ins.compactMap { $0 },
                                           outputs: os.compactMap { $0 }, args: args))
        }
        for p in pending {
            for n in p.inputs where variables[n] == nil && producedBy[n] == nil {
                throw fail("function '\(p.name)' (\(p.type)): input '\(n)' is neither declared as input/parameter nor produced by a function")
            }
        }
        // Kahn's algorithm, linear in the file's size whatever order it lists functions in: a function is
        // ready once every input it reads from another function has been made; ready functions are made in
        // file order of becoming ready.
        var missing = [Int](repeating: 0, count: pending.count)
        var readers: [String: [Int]] = [:]
        for (i, p) in pending.enumerated() {
            for n in p.inputs where variables[n] == nil {
                missing[i] += 1
                readers[n, default: []].append(i)
            }
        }
        var ready = pending.indices.filter { missing[$0] == 0 }
        var next = 0
        var done = [Bool](repeating: false, count: pending.count)
        var nodes: [FunctionNode] = []
        while next < ready.count {
            let i = ready[next]
            next += 1
            let p = pending[i]
            let fn: any Function
            do { fn = try FunctionRegistry.make(type: p.type, arguments: p.args) } catch let e as KilnError {
                throw fail("function '\(p.name)': \(e)")
            }
            let outVars: [Variable]
            do { outVars = try apply(fn, p.inputs.compactMap { variables[$0] }, name: p.name) } catch let e as KilnError {
                throw fail("function '\(p.name)': \(e)")
            }
            guard outVars.count == p.outputs.count else {
                throw fail("function '\(p.name)' (\(p.type)) produces \(outVars.count) output(s), the file names \(p.outputs.count)")
            }
            for (o, v) in zip(p.outputs, outVars) {
                if let d = declared[o] {
                    guard d.shape == v.shape else {
                        throw fail("function '\(p.name)' (\(p.type)): output '\(o)' is declared \(d.shape) but is \(v.shape)")
                    }
                }
                v.name = o
                variables[o] = v
            }
            if let node = outVars.first?.parent { nodes.append(node) }
            done[i] = true
            for o in p.outputs {
                for r in readers[o] ?? [] {
                    missing[r] -= 1
                    if missing[r] == 0 { ready.append(r) }
                }
            }
        }
        if let i = done.firstIndex(of: false) { throw fail("function '\(pending[i].name)' is part of a cycle") }

        var outputs: [Variable] = []
        for o in outs {
            guard let n = o.string else { throw fail("\"outputs\" must hold names") }
            guard let v = variables[n] else { throw fail("output '\(n)' is not a variable of the graph") }
            outputs.append(v)
        }
        guard !outputs.isEmpty else { throw fail("\"outputs\" is empty") }
        if initializeParameters { ParameterInitializer.initializeDefaults(uninitialized, consumers: nodes) }
        return GraphFile(variables: variables, outputs: outputs, leaves: leaves, functions: nodes,
                         inputsWithoutData: inputsWithoutData)
    }

    static func argValue(_ v: JSON, function: String, type: String, arg: String) throws -> ArgValue {
        switch v {
        case .bool(let b): return .bool(b)
        case .int(let i): return .int(i)
        case .double(let d): return .double(d)
        case .string(let s): return .string(s)
        case .array(let a):
            if a.allSatisfy({ if case .int = $0 { return true }; return false }) { return .ints(a.compactMap { $0.int }) }
            if a.allSatisfy({ $0.double != nil }) { return .doubles(a.compactMap { $0.double }) }
        case .numbers(let n):
            return n.kind == .integers ? .ints(n.values.map { Int($0) }) : .doubles(n.values)
        default: break
        }
        throw KilnError.invalidGraphFile("function '\(function)' (\(type)): argument '\(arg)' has an unsupported value \(v.serialized())")
    }

    /// Serialises the graph behind `outputs` (parameter and input values included, except for the leaves in
    /// `withoutData`).
    public static func save(_ outputs: [Variable], includeData: Bool = true, withoutData: [Variable] = []) -> JSON {
        let dataless = Set(withoutData.map(ObjectIdentifier.init))
        let nodes = GraphCollector.nodes(from: outputs)
        var names: [ObjectIdentifier: String] = [:]
        var used = Set<String>()
        func name(_ v: Variable, fallback: String) -> String {
            if let n = names[ObjectIdentifier(v)] { return n }
            var base = v.name.isEmpty ? fallback : v.name
            if used.contains(base) { var k = 1; while used.contains("\(base)_\(k)") { k += 1 }; base = "\(base)_\(k)" }
            used.insert(base)
            names[ObjectIdentifier(v)] = base
            return base
        }
        var variablesJSON: [JSON] = []
        var seenLeaves = Set<ObjectIdentifier>()
        var functionsJSON: [JSON] = []
        var functionNames = Set<String>()
        func leafJSON(_ v: Variable) {
            guard seenLeaves.insert(ObjectIdentifier(v)).inserted else { return }
            var m: [(String, JSON)] = [
                ("name", .string(name(v, fallback: "x\(v.sequence)"))), ("shape", .array(v.shape.map { .int($0) })),
                // A leaf made in Swift with need_grad is a weight unless a graph file declared it an input.
                ("kind", .string(v.isParameter || (v.needGrad && !v.isInput) ? "parameter" : "input")),
                ("dtype", .string(v.dtype.rawValue)),
                ("need_grad", .bool(v.needGrad)),
            ]
            if includeData && !dataless.contains(ObjectIdentifier(v)) { m.append(("data", JSON.float32s(v.d))) }
            variablesJSON.append(.object(m))
        }
        for r in outputs where r.parent == nil { leafJSON(r) }
        for (k, n) in nodes.enumerated() {
            for v in n.inputs where v.parent == nil { leafJSON(v) }
            let ins = n.inputs.map { name($0, fallback: "v\($0.sequence)") }
            let outVars = n.outputs
            var outNames: [String] = []
            for i in n.outputTypes.indices {
                let nm: String
                if let v = outVars[i] { nm = name(v, fallback: "\(n.name)_\(k)_\(i)") } else {
                    nm = "\(n.name)_\(k)_\(i)"
                    used.insert(nm)
                }
                outNames.append(nm)
                variablesJSON.append(.object([("name", .string(nm)), ("shape", .array(n.outputTypes[i].shape.map { .int($0) })),
                                              ("kind", .string("buffer")), ("dtype", .string(n.outputTypes[i].dtype.rawValue))]))
            }
            var fname = n.name
            if functionNames.contains(fname) { var j = 1; while functionNames.contains("\(n.name)_\(j)") { j += 1 }; fname = "\(n.name)_\(j)" }
            functionNames.insert(fname)
            functionsJSON.append(.object([
                ("name", .string(fname)), ("type", .string(n.typeName)),
                ("inputs", .array(ins.map { .string($0) })), ("outputs", .array(outNames.map { .string($0) })),
                ("args", .object(n.function.arguments.map { ($0.0, json($0.1)) })),
            ]))
        }
        return .object([
            ("format", .string(format)), ("variables", .array(variablesJSON)), ("functions", .array(functionsJSON)),
            ("outputs", .array(outputs.map { .string(name($0, fallback: "y")) })),
        ])
    }

    static func json(_ a: ArgValue) -> JSON {
        switch a {
        case .int(let i): return .int(i)
        case .double(let d): return .double(d)
        case .bool(let b): return .bool(b)
        case .string(let s): return .string(s)
        case .ints(let v): return .array(v.map { .int($0) })
        case .doubles(let v): return .array(v.map { .double($0) })
        }
    }
}

extension GraphFile {
    /// The graph behind `outputs`, as a loaded graph file would hold it: what an importer of another format
    /// builds (the variables are named; `inputsWithoutData` names the inputs a run must feed).
    public init(outputs: [Variable], inputsWithoutData: [String]) throws {
        let nodes = try GraphCollector.checkedNodes(from: outputs)
        var variables: [String: Variable] = [:]
        var leaves: [Variable] = []
        var seen = Set<ObjectIdentifier>()
        func add(_ v: Variable) throws {
            guard seen.insert(ObjectIdentifier(v)).inserted else { return }
            if let other = variables[v.name], other !== v {
                throw KilnError.invalidGraphFile("two variables are named '\(v.name)'")
            }
            variables[v.name] = v
            if v.parent == nil { leaves.append(v) }
        }
        for n in nodes {
            for v in n.inputs { try add(v) }
            for v in n.outputs.compactMap({ $0 }) { try add(v) }
        }
        for v in outputs { try add(v) }
        self.init(variables: variables, outputs: outputs, leaves: leaves, functions: nodes, inputsWithoutData: inputsWithoutData)
    }
}
