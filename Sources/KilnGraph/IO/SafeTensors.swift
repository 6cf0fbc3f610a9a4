import Foundation
import KilnCore

/// The safetensors format (https://github.com/huggingface/safetensors): an 8-byte little-endian header
/// length N, N bytes of JSON header `{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__"?:
/// {string: string}}`, then the tensors' little-endian bytes (offsets relative to the end of the header).
///
/// Kiln writes F32, F16 and I32 (its dtypes) and reads F32, F16, I32 and I64 (converted to int32, each value
/// checked for range). Reading validates everything a hostile file could get wrong before allocating a
/// tensor, and fails with `KilnError.invalidData` naming the file and the problem.
public enum SafeTensors {
    /// Headers longer than this are rejected (the limit of the reference implementation).
    public static let maxHeaderBytes = 100_000_000

    /// Writes `tensors` (sorted by name in header and data) and `metadata` atomically to `path`. Names must
    /// be unique, non-empty and not "__metadata__".
    public static func write(_ tensors: [(String, NDArray)], metadata: [String: String] = [:], to path: String) throws {
        try AtomicFile.write(try encode(tensors, metadata: metadata), to: path)
    }

    /// The bytes of a safetensors file holding `tensors` and `metadata`.
    public static func encode(_ tensors: [(String, NDArray)], metadata: [String: String] = [:]) throws -> [UInt8] {
        let sorted = tensors.sorted { $0.0 < $1.0 }
        for (i, (name, _)) in sorted.enumerated() {
            guard !name.isEmpty, name != "__metadata__" else {
                throw KilnError.invalidData("safetensors: invalid tensor name '\(name)'")
            }
            if i > 0, sorted[i - 1].0 == name { throw KilnError.invalidData("safetensors: duplicate tensor name '\(name)'") }
        }
        var members: [(String, JSON)] = []
        if !metadata.isEmpty {
            members.append(("__metadata__", .object(metadata.sorted { $0.key < $1.key }.map { ($0.key, .string($0.value)) })))
        }
        var offset = 0
        for (name, a) in sorted {
            let bytes = a.type.byteCount
            members.append((name, .object([
                ("dtype", .string(code(a.dtype))),
                ("shape", .array(a.shape.map { .int($0) })),
                ("data_offsets", .array([.int(offset), .int(offset + bytes)])),
            ])))
            offset += bytes
        }
        var header = Array(JSON.object(members).serialized().utf8)
        while header.count % 8 != 0 { header.append(UInt8(ascii: " ")) }
        guard header.count <= maxHeaderBytes else {
            throw KilnError.invalidData("safetensors: header of \(header.count) bytes exceeds \(maxHeaderBytes)")
        }
        var out = [UInt8]()
        out.reserveCapacity(8 + header.count + offset)
        var n = UInt64(header.count).littleEndian
        withUnsafeBytes(of: &n) { out.append(contentsOf: $0) }
        out.append(contentsOf: header)
        for (_, a) in sorted {
            out.append(contentsOf: UnsafeRawBufferPointer(start: a.raw, count: a.type.byteCount))
        }
        return out
    }

    /// Reads a safetensors file. Tensors come back sorted by name.
    public static func read(path: String) throws -> (tensors: [(String, NDArray)], metadata: [String: String]) {
        let data = try FileBytes.read(path: path, limit: Context.current.memoryBudget, what: "safetensors file")
        do {
            return try decode(data)
        } catch KilnError.invalidData(let reason) {
            throw KilnError.invalidData("\(path): \(reason)")
        }
    }

    /// Parses the bytes of a safetensors file.
    public static func decode(_ bytes: [UInt8]) throws -> (tensors: [(String, NDArray)], metadata: [String: String]) {
        func fail(_ s: String) -> KilnError { .invalidData("safetensors: \(s)") }
        guard bytes.count >= 8 else { throw fail("file of \(bytes.count) bytes is shorter than the 8-byte header length") }
        var n: UInt64 = 0
        for i in 0..<8 { n |= UInt64(bytes[i]) << (8 * UInt64(i)) }
        guard n <= UInt64(maxHeaderBytes) else { throw fail("header length \(n) exceeds \(maxHeaderBytes) bytes") }
        let headerLength = Int(n)
        guard headerLength <= bytes.count - 8 else {
            throw fail("header length \(headerLength) runs past the end of the file (\(bytes.count) bytes)")
        }
        let json: JSON
        do { json = try JSON.parse(Array(bytes[8..<(8 + headerLength)])) } catch let e as KilnError {
            throw fail("bad header JSON: \(e)")
        }
        guard let members = json.objectMembers else { throw fail("the header is not a JSON object") }
        let dataStart = 8 + headerLength
        let dataLength = bytes.count - dataStart

        struct Entry { let name: String; let code: String; let shape: [Int]; let begin: Int; let end: Int }
        var entries: [Entry] = []
        var metadata: [String: String] = [:]
        var seen = Set<String>()
        for (name, value) in members {
            guard seen.insert(name).inserted else { throw fail("duplicate header key '\(name)'") }
            if name == "__metadata__" {
                guard let m = value.objectMembers else { throw fail("__metadata__ is not an object") }
                for (k, v) in m {
                    guard let s = v.string else { throw fail("__metadata__['\(k)'] is not a string") }
                    metadata[k] = s
                }
                continue
            }
            guard value.objectMembers != nil else { throw fail("tensor '\(name)' is not an object") }
            guard let code = value["dtype"]?.string else { throw fail("tensor '\(name)' has no string dtype") }
            guard let size = elementSize(code) else { throw fail("tensor '\(name)' has unsupported dtype '\(code)'") }
            guard let dims = value["shape"]?.array else { throw fail("tensor '\(name)' has no shape array") }
            var shape: [Int] = []
            for d in dims {
                guard case .int(let i) = d else { throw fail("tensor '\(name)' has a non-integer dimension in its shape") }
                shape.append(i)
            }
            let count: Int
            do { count = try Shapes.count(shape, context: "tensor '\(name)' shape") } catch let e as KilnError {
                throw fail("\(e)")
            }
            guard let offs = value["data_offsets"]?.array, offs.count == 2,
                  case .int(let begin) = offs[0], case .int(let end) = offs[1] else {
                throw fail("tensor '\(name)' needs data_offsets [begin, end] of two integers")
            }
            guard begin >= 0, begin <= end, end <= dataLength else {
                throw fail("tensor '\(name)' data_offsets [\(begin), \(end)] are outside the \(dataLength) data bytes")
            }
            // count <= Shapes.maxElements <= 2^40, so count * 8 cannot overflow.
            guard end - begin == count * size else {
                throw fail("tensor '\(name)' of shape \(shape) and dtype \(code) needs \(count * size) bytes, its offsets span \(end - begin)")
            }
            entries.append(Entry(name: name, code: code, shape: shape, begin: begin, end: end))
        }

        // The data must be exactly the tensors, back to back, with no gaps or overlaps.
        let byOffset = entries.sorted { ($0.begin, $0.end) < ($1.begin, $1.end) }
        var position = 0
        for e in byOffset {
            guard e.begin == position else {
                throw e.begin < position
                    ? fail("tensor '\(e.name)' data_offsets [\(e.begin), \(e.end)] overlap another tensor")
                    : fail("gap before tensor '\(e.name)' (data_offsets [\(e.begin), \(e.end)], expected to start at \(position))")
            }
            position = e.end
        }
        guard position == dataLength else {
            throw fail("the tensors cover \(position) data bytes but the file holds \(dataLength)")
        }

        var tensors: [(String, NDArray)] = []
        tensors.reserveCapacity(entries.count)
        try bytes.withUnsafeBytes { buf in
            let base = buf.baseAddress! + dataStart
            for e in entries.sorted(by: { $0.name < $1.name }) {
                let src = base + e.begin
                switch e.code {
                case "I64":
                    let a = try NDArray(shape: e.shape, dtype: .int32)
                    let count = a.count
                    for i in 0..<count {
                        var v: Int64 = 0
                        memcpy(&v, src + 8 * i, 8)
                        v = Int64(littleEndian: v)
                        guard let x = Int32(exactly: v) else {
                            throw fail("tensor '\(e.name)' (I64) value \(v) at index \(i) does not fit in int32")
                        }
                        a.int32s[i] = x
                    }
                    tensors.append((e.name, a))
                default:
                    let a = try NDArray(shape: e.shape, dtype: dtype(e.code))
                    a.raw.copyMemory(from: src, byteCount: e.end - e.begin)
                    tensors.append((e.name, a))
                }
            }
        }
        return (tensors, metadata)
    }

    static func code(_ d: DType) -> String {
        switch d {
        case .float32: return "F32"
        case .float16: return "F16"
        case .int32: return "I32"
        }
    }

    static func dtype(_ code: String) -> DType {
        switch code {
        case "F16": return .float16
        case "I32", "I64": return .int32
        default: return .float32
        }
    }

    static func elementSize(_ code: String) -> Int? {
        switch code {
        case "F32", "I32": return 4
        case "F16": return 2
        case "I64": return 8
        default: return nil
        }
    }
}
