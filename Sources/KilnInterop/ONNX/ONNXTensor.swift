import Foundation
import KilnCore
import KilnGraph

/// A tensor whose value is known when a model is imported: an initializer, a Constant node, a value given
/// for a shape-determining input, or a shape computation folded from those. Integers stay Int64 (ONNX's
/// shape type; Slice's "to the end" is Int64.max), everything else is Float.
public struct ONNXTensor: Equatable, Sendable {
    public enum Values: Equatable, Sendable {
        case floats([Float])
        case ints([Int64])
    }

    public var shape: [Int]
    public var values: Values
    /// The ONNX element type read (TensorProto numbering; 0 when made here): QuantizeLinear saturates to its
    /// zero point's type.
    public var elementType: Int32 = 0

    public init(shape: [Int], floats: [Float]) {
        self.shape = shape
        values = .floats(floats)
    }

    public init(shape: [Int], ints: [Int64]) {
        self.shape = shape
        values = .ints(ints)
    }

    public var count: Int { switch values { case .floats(let f): return f.count; case .ints(let i): return i.count } }
    public var isInteger: Bool { if case .ints = values { return true }; return false }

    /// The values as Float (integers converted).
    public var floats: [Float] {
        switch values {
        case .floats(let f): return f
        case .ints(let i): return i.map { Float($0) }
        }
    }

    /// The values as integers; float values must be integers within Int64's range.
    func ints(_ place: String) throws -> [Int64] {
        switch values {
        case .ints(let i): return i
        case .floats(let f):
            return try f.map {
                guard let v = Int64(exactly: $0) else { throw ONNXError.at(place, "value \($0) is not an integer") }
                return v
            }
        }
    }

    /// The values as Int, for shapes, axes and pads: each must fit `range`.
    func indices(_ place: String, in range: ClosedRange<Int64> = -(Int64(1) << 40)...(Int64(1) << 40)) throws -> [Int] {
        try ints(place).map {
            guard range.contains($0) else { throw ONNXError.at(place, "value \($0) is outside \(range)") }
            return Int($0)
        }
    }

    /// The same values under another shape of the same count.
    func reshaped(_ s: [Int]) -> ONNXTensor {
        var t = self
        t.shape = s
        return t
    }

    /// Element `i` of the values, as the same kind.
    func element(_ i: Int) -> Values {
        switch values {
        case .floats(let f): return .floats([f[i]])
        case .ints(let v): return .ints([v[i]])
        }
    }

    /// The elements at `positions`, in order, under `shape`.
    func gathered(_ positions: [Int], shape: [Int]) -> ONNXTensor {
        switch values {
        case .floats(let f): return ONNXTensor(shape: shape, floats: positions.map { f[$0] })
        case .ints(let v): return ONNXTensor(shape: shape, ints: positions.map { v[$0] })
        }
    }
}

/// ONNX's element types, as TensorProto numbers them.
enum ONNXDataType: Int32 {
    case float = 1, uint8 = 2, int8 = 3, uint16 = 4, int16 = 5, int32 = 6, int64 = 7, string = 8, bool = 9
    case float16 = 10, double = 11, uint32 = 12, uint64 = 13, complex64 = 14, complex128 = 15, bfloat16 = 16

    var name: String { String(describing: self) }

    /// Bytes per element in `raw_data`; nil for types Kiln does not read.
    var rawSize: Int? {
        switch self {
        case .float, .int32, .uint32: return 4
        case .int64, .uint64, .double: return 8
        case .int16, .uint16, .float16, .bfloat16: return 2
        case .int8, .uint8, .bool: return 1
        case .string, .complex64, .complex128: return nil
        }
    }

    static func describe(_ raw: Int32) -> String { ONNXDataType(rawValue: raw)?.name ?? "type \(raw)" }
}

extension ONNXTensor {
    /// Reads a TensorProto. Every count is checked against the dims before anything is allocated, so a few
    /// bytes cannot claim gigabytes; data stored outside the file (external_data) is refused.
    init(proto t: Onnx_TensorProto, place: String) throws {
        self = try ONNXTensor.decode(t, place: place)
        elementType = t.dataType
    }

    private static func decode(_ t: Onnx_TensorProto, place: String) throws -> ONNXTensor {
        guard let type = ONNXDataType(rawValue: t.dataType) else {
            throw ONNXError.at(place, "unknown element type \(t.dataType)")
        }
        var shape: [Int] = []
        for d in t.dims {
            guard d >= 0, d <= Int64(Int32.max) else { throw ONNXError.at(place, "dimension \(d) is out of range") }
            shape.append(Int(d))
        }
        let count: Int
        do { count = try Shapes.count(shape, context: place) } catch { throw ONNXError.at(place, "shape \(shape) holds too many elements") }
        if t.dataLocation == .external || !t.externalData.isEmpty {
            throw ONNXError.at(place, "the tensor's data is stored in an external file, which Kiln does not read")
        }
        func checkCount(_ n: Int, _ field: String) throws {
            guard n == count else { throw ONNXError.at(place, "\(field) holds \(n) values, shape \(shape) needs \(count)") }
        }
        if !t.rawData.isEmpty {
            guard let size = type.rawSize else { throw ONNXError.at(place, "element type \(type.name) is not supported") }
            try checkCount(t.rawData.count / size, "raw_data")
            guard t.rawData.count % size == 0 else { throw ONNXError.at(place, "raw_data's length \(t.rawData.count) is not a multiple of \(size)") }
            return try ONNXTensor.decodeRaw(t.rawData, type: type, shape: shape, place: place)
        }
        switch type {
        case .float:
            try checkCount(t.floatData.count, "float_data")
            return ONNXTensor(shape: shape, floats: t.floatData)
        case .double:
            try checkCount(t.doubleData.count, "double_data")
            return ONNXTensor(shape: shape, floats: t.doubleData.map { Float($0) })
        case .float16, .bfloat16:
            try checkCount(t.int32Data.count, "int32_data")
            return ONNXTensor(shape: shape, floats: t.int32Data.map { ONNXTensor.halfToFloat(UInt16(truncatingIfNeeded: $0), bfloat: type == .bfloat16) })
        case .int64:
            try checkCount(t.int64Data.count, "int64_data")
            return ONNXTensor(shape: shape, ints: t.int64Data)
        case .int32, .int16, .int8, .uint16, .uint8, .bool:
            try checkCount(t.int32Data.count, "int32_data")
            return ONNXTensor(shape: shape, ints: t.int32Data.map { Int64($0) })
        case .uint32, .uint64:
            try checkCount(t.uint64Data.count, "uint64_data")
            return ONNXTensor(shape: shape, ints: try t.uint64Data.map {
                guard let v = Int64(exactly: $0) else { throw ONNXError.at(place, "value \($0) does not fit int64") }
                return v
            })
        case .string, .complex64, .complex128:
            throw ONNXError.at(place, "element type \(type.name) is not supported")
        }
    }

    private static func decodeRaw(_ data: Data, type: ONNXDataType, shape: [Int], place: String) throws -> ONNXTensor {
        // Little-endian, fixed width, as ONNX stores raw_data; read byte by byte so alignment never matters.
        let bytes = [UInt8](data)
        func word(_ i: Int, _ n: Int) -> UInt64 {
            var v: UInt64 = 0
            for k in 0..<n { v |= UInt64(bytes[i * n + k]) << (8 * UInt64(k)) }
            return v
        }
        let size = type.rawSize ?? 1
        let n = bytes.count / size
        switch type {
        case .float: return ONNXTensor(shape: shape, floats: (0..<n).map { Float(bitPattern: UInt32(word($0, 4))) })
        case .double: return ONNXTensor(shape: shape, floats: (0..<n).map { Float(Double(bitPattern: word($0, 8))) })
        case .float16, .bfloat16:
            return ONNXTensor(shape: shape, floats: (0..<n).map { halfToFloat(UInt16(word($0, 2)), bfloat: type == .bfloat16) })
        case .int64: return ONNXTensor(shape: shape, ints: (0..<n).map { Int64(bitPattern: word($0, 8)) })
        case .uint64:
            return ONNXTensor(shape: shape, ints: try (0..<n).map {
                guard let v = Int64(exactly: word($0, 8)) else { throw ONNXError.at(place, "value does not fit int64") }
                return v
            })
        case .int32: return ONNXTensor(shape: shape, ints: (0..<n).map { Int64(Int32(bitPattern: UInt32(word($0, 4)))) })
        case .uint32: return ONNXTensor(shape: shape, ints: (0..<n).map { Int64(word($0, 4)) })
        case .int16: return ONNXTensor(shape: shape, ints: (0..<n).map { Int64(Int16(bitPattern: UInt16(word($0, 2)))) })
        case .uint16: return ONNXTensor(shape: shape, ints: (0..<n).map { Int64(word($0, 2)) })
        case .int8: return ONNXTensor(shape: shape, ints: (0..<n).map { Int64(Int8(bitPattern: bytes[$0])) })
        case .uint8, .bool: return ONNXTensor(shape: shape, ints: (0..<n).map { Int64(bytes[$0]) })
        case .string, .complex64, .complex128: throw ONNXError.at(place, "element type \(type.name) is not supported")
        }
    }

    static func halfToFloat(_ bits: UInt16, bfloat: Bool) -> Float {
        bfloat ? Float(bitPattern: UInt32(bits) << 16) : Float(Float16(bitPattern: bits))
    }

    /// The TensorProto of these values: float32 or int64 in raw_data; int8 or uint8 when `elementType` says so.
    func proto(name: String) -> Onnx_TensorProto {
        var t = Onnx_TensorProto()
        t.name = name
        t.dims = shape.map { Int64($0) }
        var bytes: [UInt8] = []
        if case .ints(let v) = values, elementType == ONNXDataType.int8.rawValue || elementType == ONNXDataType.uint8.rawValue {
            t.dataType = elementType
            t.rawData = Data(v.map { UInt8(truncatingIfNeeded: $0) })
            return t
        }
        switch values {
        case .floats(let f):
            t.dataType = ONNXDataType.float.rawValue
            bytes.reserveCapacity(f.count * 4)
            for v in f { withUnsafeBytes(of: v.bitPattern.littleEndian) { bytes.append(contentsOf: $0) } }
        case .ints(let v):
            t.dataType = ONNXDataType.int64.rawValue
            bytes.reserveCapacity(v.count * 8)
            for x in v { withUnsafeBytes(of: x.littleEndian) { bytes.append(contentsOf: $0) } }
        }
        t.rawData = Data(bytes)
        return t
    }
}

/// Errors about an ONNX file, each naming the place (a node, an initializer, an input) and the cause.
enum ONNXError {
    static func at(_ place: String, _ cause: String) -> KilnError { .invalidGraphFile("ONNX \(place): \(cause)") }
}

public extension ONNXTensor {
    /// Reads one serialized TensorProto (the `.pb` files of ONNX's test data): its name and values.
    static func load(path: String) throws -> (name: String, tensor: ONNXTensor) {
        let bytes = try FileBytes.read(path: path, limit: Context.current.memoryBudget, what: "ONNX tensor")
        let t: Onnx_TensorProto
        do { t = try Onnx_TensorProto(serializedBytes: bytes) } catch {
            throw KilnError.invalidData("\(path): not an ONNX TensorProto (\(error))")
        }
        do { return (t.name, try ONNXTensor(proto: t, place: "tensor '\(t.name)'")) } catch KilnError.invalidGraphFile(let m) {
            throw KilnError.invalidData("\(path): \(m)")
        }
    }
}
