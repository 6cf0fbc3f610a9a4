import Foundation
import KilnCore
import KilnGraph
import KilnTraining

/// Named tensors as JSON (`{"x": {"shape": [...], "data": [...]}}`), the input and output format of
/// `kiln run`. NaN and the infinities are written as the strings "NaN", "Infinity" and "-Infinity" (JSON
/// has no numbers for them) and read back; a finite number beyond float32's range is an error naming the
/// file, the tensor and the index.
public enum TensorFile {
    public struct Entry {
        public var shape: [Int]
        /// The values as float32. Setting them forgets `written`.
        public var data: [Float] { didSet { written = nil } }
        /// The numbers as the file wrote them, for entries `read` from a file: `GraphRunner` feeds these, so
        /// that an int32 input is exact beyond float32's 2^24 and 1.5 is an error rather than 1.5 rounded.
        public var written: [Double]? = nil

        public init(shape: [Int], data: [Float]) {
            self.shape = shape
            self.data = data
        }
    }

    public static func read(path: String) throws -> [(String, Entry)] {
        let bytes = try FileBytes.read(path: path, limit: Context.current.memoryBudget, what: "tensor file")
        let json: JSON
        do { json = try JSON.parse(bytes) } catch KilnError.invalidGraphFile(let m) {
            throw KilnError.invalidData("\(path): \(m)")        // the JSON parser reports as for graph files
        } catch let e as KilnError { throw KilnError.invalidData("\(path): \(e)") }
        guard let members = json.objectMembers else { throw KilnError.invalidData("\(path): expected an object of tensors") }
        return try members.map { name, t in
            guard let tm = t.objectMembers else { throw KilnError.invalidData("\(path): tensor '\(name)' must be an object with \"shape\" and \"data\"") }
            for (k, _) in tm where k != "shape" && k != "data" {
                throw KilnError.invalidData("\(path): tensor '\(name)': unknown member \"\(k)\" (a tensor has \"shape\" and \"data\")")
            }
            guard let shape = t["shape"]?.array?.compactMap({ $0.int }), shape.count == t["shape"]?.array?.count else {
                throw KilnError.invalidData("\(path): tensor '\(name)' needs an integer \"shape\" array")
            }
            let count = try Shapes.count(shape, context: "tensor '\(name)'")
            guard let data = t["data"], let dataCount = data.count else {
                throw KilnError.invalidData("\(path): tensor '\(name)' needs a \"data\" array")
            }
            guard dataCount == count else {
                throw KilnError.invalidData("\(path): tensor '\(name)' has \(dataCount) values for shape \(shape) (\(count))")
            }
            let written = try JSON.tensorValues(data, place: "\(path): tensor '\(name)'") { KilnError.invalidData($0) }
            var entry = Entry(shape: shape, data: written.map { Float($0) })
            entry.written = written
            return (name, entry)
        }
    }

    /// Reads named tensors by the file's extension: `.safetensors` (every tensor by name), `.npy` (one
    /// array, named by the file's stem: `x.npy` is input `x`), else the JSON format above.
    public static func readAny(path: String) throws -> [(String, Entry)] {
        switch (path as NSString).pathExtension.lowercased() {
        case "safetensors":
            return try SafeTensors.read(path: path).tensors.map { name, a in
                var e = Entry(shape: a.shape, data: a.toFloats())
                if a.dtype == .int32 { e.written = try a.toInt32s().map { Double($0) } }
                return (name, e)
            }
        case "npy":
            let a = try NumpyArray.read(path: path)
            let name = ((path as NSString).lastPathComponent as NSString).deletingPathExtension
            var e = Entry(shape: a.shape, data: a.values.map { Float($0) })
            e.written = a.values
            return [(name, e)]
        default:
            return try read(path: path)
        }
    }

    /// Writes named tensors atomically by the file's extension: `.safetensors`, `.npy` (exactly one tensor,
    /// float32), else JSON.
    public static func write(_ entries: [(String, Entry)], to path: String) throws {
        switch (path as NSString).pathExtension.lowercased() {
        case "safetensors":
            try SafeTensors.write(try entries.map { ($0.0, try NDArray(shape: $0.1.shape, floats: $0.1.data)) }, to: path)
        case "npy":
            guard entries.count == 1, let e = entries.first?.1 else {
                throw KilnError.invalidData("\(path): an .npy file holds one array; there are \(entries.count) outputs (use .safetensors or .json)")
            }
            try AtomicFile.write(npy(e), to: path)
        default:
            try AtomicFile.write(json(entries).serialized() + "\n", to: path)
        }
    }

    /// A little-endian float32 `.npy` (format 1.0) image.
    static func npy(_ e: Entry) -> [UInt8] {
        let shape = e.shape.count == 1 ? "(\(e.shape[0]),)" : "(" + e.shape.map(String.init).joined(separator: ", ") + ")"
        var header = "{'descr': '<f4', 'fortran_order': False, 'shape': \(shape), }"
        // Magic, version and header length take 10 bytes; the header ends in a newline, padded to 64.
        while (10 + header.utf8.count + 1) % 64 != 0 { header += " " }
        header += "\n"
        var out: [UInt8] = [0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(header.utf8.count & 0xff), UInt8(header.utf8.count >> 8)]
        out += Array(header.utf8)
        out.reserveCapacity(out.count + 4 * e.data.count)
        for v in e.data { withUnsafeBytes(of: v.bitPattern.littleEndian) { out.append(contentsOf: $0) } }
        return out
    }

    public static func json(_ entries: [(String, Entry)]) -> JSON {
        .object(entries.map { name, e in
            (name, .object([("shape", .array(e.shape.map { .int($0) })), ("data", JSON.float32s(e.data))]))
        })
    }
}
