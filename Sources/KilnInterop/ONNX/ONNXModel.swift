import Foundation
import KilnCore
import KilnGraph
import SwiftProtobuf

/// An ONNX model file, decoded and checked, before any node is mapped to Kiln functions.
///
/// Decoding is bounded: the file must fit the memory budget (`Context.memoryBudget`), nesting is limited by
/// the protobuf decoder, and every tensor's data is checked against its dims when it is read.
public struct ONNXModel {
    let proto: Onnx_ModelProto
    /// The version of the default ("ai.onnx") operator set the model imports.
    public let opsetVersion: Int
    /// What an export decided (a quantizer written as float arithmetic, and why).
    public var notes: [String] = []

    /// Reads an ONNX file. Errors name the file and the cause.
    public static func load(path: String) throws -> ONNXModel {
        let bytes = try FileBytes.read(path: path, limit: Context.current.memoryBudget, what: "ONNX model")
        do { return try ONNXModel(bytes: bytes) } catch KilnError.invalidGraphFile(let m) {
            throw KilnError.invalidGraphFile("\(path): \(m)")
        }
    }

    public init(bytes: [UInt8]) throws {
        var options = BinaryDecodingOptions()
        options.messageDepthLimit = 64
        let model: Onnx_ModelProto
        do { model = try Onnx_ModelProto(serializedBytes: bytes, options: options) } catch {
            throw KilnError.invalidGraphFile("not an ONNX model (the protobuf does not decode: \(error))")
        }
        try self.init(proto: model)
    }

    init(proto model: Onnx_ModelProto) throws {
        guard model.hasGraph else { throw KilnError.invalidGraphFile("not an ONNX model: it has no graph") }
        var opset: Int?
        for o in model.opsetImport where o.domain.isEmpty || o.domain == "ai.onnx" {
            guard (1...1000).contains(o.version) else {
                throw KilnError.invalidGraphFile("ONNX opset_import: version \(o.version) is out of range")
            }
            opset = Int(o.version)
        }
        // IR version 3 made opset_import required; older files mean opset 1. A graph of other domains' nodes
        // only (training operators) needs no default opset to be read; importing it fails on its operators.
        let usesDefault = model.graph.node.contains { $0.domain.isEmpty || $0.domain == "ai.onnx" }
        opset = opset ?? (model.opsetImport.isEmpty && model.irVersion < 3 || !usesDefault ? 1 : nil)
        guard let version = opset else {
            throw KilnError.invalidGraphFile("ONNX model imports no version of the default operator set (ai.onnx)")
        }
        proto = model
        opsetVersion = version
    }

    /// The producer named in the file ("pytorch 2.1", "kiln 0.9"), for messages.
    public var producer: String {
        [proto.producerName, proto.producerVersion].filter { !$0.isEmpty }.joined(separator: " ")
    }

    /// The graph's inputs a run must feed: declared inputs that no initializer gives a value for, with their
    /// element type and dims (nil for a symbolic dimension such as a batch size).
    public var inputs: [(name: String, elementType: String, shape: [Int?])] {
        let initialized = Set(proto.graph.initializer.map { $0.name })
        return proto.graph.input.filter { !initialized.contains($0.name) }.map { i in
            let t = i.type.tensorType
            let dims: [Int?] = t.shape.dim.map { d in
                if case .dimValue(let v)? = d.value, v >= 0, v <= Int64(Int32.max) { return Int(v) }
                return nil
            }
            return (i.name, ONNXDataType.describe(t.elemType), dims)
        }
    }

    /// The graph's outputs with their element types, in file order.
    public var outputs: [(name: String, elementType: String)] {
        proto.graph.output.map { ($0.name, ONNXDataType.describe($0.type.tensorType.elemType)) }
    }

    /// The operator types the graph uses, with how often, sorted by name.
    public var operatorCounts: [(op: String, count: Int)] {
        var c: [String: Int] = [:]
        for n in proto.graph.node { c[n.opType, default: 0] += 1 }
        return c.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
    }

    /// Serialises the model.
    public func serializedBytes() throws -> [UInt8] { try proto.serializedBytes() }
}

/// One node's attributes, read with ONNX's defaults; an attribute of the wrong kind is an error naming the
/// node and the attribute.
struct ONNXAttributes {
    let place: String
    private var byName: [String: Onnx_AttributeProto] = [:]

    init(_ node: Onnx_NodeProto, place: String) throws {
        self.place = place
        for a in node.attribute {
            guard byName[a.name] == nil else { throw ONNXError.at(place, "attribute '\(a.name)' is given twice") }
            guard a.refAttrName.isEmpty else { throw ONNXError.at(place, "attribute '\(a.name)' refers to a function's attribute") }
            byName[a.name] = a
        }
    }

    /// No attributes: the defaults, for operators Kiln adds while importing another.
    init(place: String) { self.place = place }

    func has(_ name: String) -> Bool { byName[name] != nil }
    var names: [String] { byName.keys.sorted() }

    private func get(_ name: String, _ type: Onnx_AttributeProto.AttributeType) throws -> Onnx_AttributeProto? {
        guard let a = byName[name] else { return nil }
        // IR version 1 files leave `type` unset; the field used says it.
        guard a.type == type || a.type == .undefined else {
            throw ONNXError.at(place, "attribute '\(name)' must be \(type), got \(a.type)")
        }
        return a
    }

    func int(_ name: String) throws -> Int? {
        guard let a = try get(name, .int) else { return nil }
        guard abs(a.i) <= Int64(1) << 40 || a.i == Int64.max || a.i == Int64.min else {
            throw ONNXError.at(place, "attribute '\(name)' = \(a.i) is out of range")
        }
        return a.i == Int64.max ? Int(1) << 40 : a.i == Int64.min ? -(Int(1) << 40) : Int(a.i)
    }

    func int(_ name: String, default d: Int) throws -> Int { try int(name) ?? d }

    func ints(_ name: String) throws -> [Int]? {
        guard let a = try get(name, .ints) else { return nil }
        return a.ints.map {
            // Slice's ends use Int64.max for "to the end": clamp the extremes, refuse what no shape reaches.
            if $0 >= Int64(1) << 40 { return Int(1) << 40 }
            if $0 <= -(Int64(1) << 40) { return -(Int(1) << 40) }
            return Int($0)
        } as [Int]
    }

    func float(_ name: String) throws -> Float? {
        guard let a = try get(name, .float) else { return nil }
        return a.f
    }

    func float(_ name: String, default d: Float) throws -> Float { try float(name) ?? d }

    func floats(_ name: String) throws -> [Float]? { try get(name, .floats)?.floats }

    func string(_ name: String) throws -> String? {
        guard let a = try get(name, .string) else { return nil }
        guard let s = String(data: a.s, encoding: .utf8) else { throw ONNXError.at(place, "attribute '\(name)' is not UTF-8") }
        return s
    }

    func tensor(_ name: String) throws -> ONNXTensor? {
        guard let a = try get(name, .tensor) else { return nil }
        return try ONNXTensor(proto: a.t, place: "\(place) attribute '\(name)'")
    }
}
