import Foundation
import KilnCore
import KilnGraph

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

    public static func json(_ entries: [(String, Entry)]) -> JSON {
        .object(entries.map { name, e in
            (name, .object([("shape", .array(e.shape.map { .int($0) })), ("data", JSON.float32s(e.data))]))
        })
    }
}
