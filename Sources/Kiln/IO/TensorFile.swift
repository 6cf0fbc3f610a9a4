import Foundation
import KilnCore
import KilnGraph

/// Named tensors as JSON (`{"x": {"shape": [...], "data": [...]}}`), the input and output format of
/// `kiln run`.
public enum TensorFile {
    public struct Entry {
        public var shape: [Int]
        public var data: [Float]
    }

    public static func read(path: String) throws -> [(String, Entry)] {
        guard let bytes = FileManager.default.contents(atPath: path) else { throw KilnError.io("cannot read \(path)") }
        let json: JSON
        do { json = try JSON.parse([UInt8](bytes)) } catch let e as KilnError { throw KilnError.invalidData("\(path): \(e)") }
        guard let members = json.objectMembers else { throw KilnError.invalidData("\(path): expected an object of tensors") }
        return try members.map { name, t in
            guard let shape = t["shape"]?.array?.compactMap({ $0.int }), shape.count == t["shape"]?.array?.count else {
                throw KilnError.invalidData("\(path): tensor '\(name)' needs an integer \"shape\" array")
            }
            let count = try Shapes.count(shape, context: "tensor '\(name)'")
            guard let data = t["data"]?.array else { throw KilnError.invalidData("\(path): tensor '\(name)' needs a \"data\" array") }
            guard data.count == count else {
                throw KilnError.invalidData("\(path): tensor '\(name)' has \(data.count) values for shape \(shape) (\(count))")
            }
            var values = [Float](repeating: 0, count: count)
            for (i, x) in data.enumerated() {
                guard let d = x.double else { throw KilnError.invalidData("\(path): tensor '\(name)' data[\(i)] is not a number") }
                values[i] = Float(d)
            }
            return (name, Entry(shape: shape, data: values))
        }
    }

    public static func json(_ entries: [(String, Entry)]) -> JSON {
        .object(entries.map { name, e in
            (name, .object([("shape", .array(e.shape.map { .int($0) })), ("data", .array(e.data.map { JSON.float($0) }))]))
        })
    }
}
