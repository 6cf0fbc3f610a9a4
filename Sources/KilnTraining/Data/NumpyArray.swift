import Foundation
import KilnCore
import KilnGraph
import ZIPFoundation

/// An array read from NumPy's `.npy` format (`numpy.save`), or from one member of an `.npz` archive
/// (`numpy.savez`, `savez_compressed`): its shape and its values as Double (every integer type up to 64 bits
/// and float16/32/64, little- or big-endian, C order).
///
/// The header is parsed as the small Python dict literal NumPy writes and nothing more; the data must be
/// exactly as long as the shape says, and the shape's size is checked before anything is allocated.
public struct NumpyArray {
    public var shape: [Int]
    public var values: [Double]
    /// The element type as NumPy spells it ("<f4", "|u1", ...).
    public var descr: String

    public var count: Int { values.count }

    /// Reads an `.npy` file (at most `Context.current.memoryBudget` bytes).
    public static func read(path: String) throws -> NumpyArray {
        try parse(FileBytes.read(path: path, limit: Context.current.memoryBudget, what: "NumPy file"), name: path)
    }

    /// Every array of an `.npz` archive, by name (without the ".npy" NumPy appends).
    public static func readArchive(path: String) throws -> [String: NumpyArray] {
        let limit = Context.current.memoryBudget ?? Int.max
        let archive: Archive
        do { archive = try Archive(url: URL(fileURLWithPath: path), accessMode: .read) } catch {
            throw KilnError.io("\(path): not a readable .npz (zip) archive: \(error)")
        }
        var arrays: [String: NumpyArray] = [:]
        var total = 0
        for entry in archive where entry.type == .file {
            let name = entry.path.hasSuffix(".npy") ? String(entry.path.dropLast(4)) : entry.path
            // The declared size bounds what is accepted, and the budget bounds the declared size: a member
            // that inflates past what it declared is refused as it is read.
            let declared = Int(clamping: entry.uncompressedSize)
            total = total &+ declared
            guard declared >= 0, total <= limit else {
                throw KilnError.io("\(path): member \(entry.path) declares \(entry.uncompressedSize) bytes, beyond the memory budget of \(limit) bytes")
            }
            var bytes: [UInt8] = []
            bytes.reserveCapacity(declared)
            do {
                _ = try archive.extract(entry) { chunk in
                    guard bytes.count + chunk.count <= declared else { throw KilnError.io("inflates past its declared size") }
                    bytes.append(contentsOf: chunk)
                }
            } catch {
                throw KilnError.io("\(path): member \(entry.path): \(error)")
            }
            arrays[name] = try parse(bytes, name: "\(path):\(entry.path)")
        }
        return arrays
    }

    /// An `.npy` image in memory.
    public static func parse(_ bytes: [UInt8], name: String) throws -> NumpyArray {
        func fail(_ why: String) -> KilnError { .io("\(name): not a NumPy array file: \(why)") }
        let magic: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]
        guard bytes.count >= 10, Array(bytes[0..<6]) == magic else { throw fail("no \\x93NUMPY magic") }
        let major = bytes[6]
        let headerLength: Int, headerStart: Int
        switch major {
        case 1:
            headerLength = Int(bytes[8]) | Int(bytes[9]) << 8
            headerStart = 10
        case 2, 3:
            guard bytes.count >= 12 else { throw fail("truncated header length") }
            headerLength = Int(bytes[8]) | Int(bytes[9]) << 8 | Int(bytes[10]) << 16 | Int(bytes[11]) << 24
            headerStart = 12
        default:
            throw fail("format version \(major) (1 to 3 are known)")
        }
        guard headerLength <= bytes.count - headerStart else { throw fail("header of \(headerLength) bytes runs past the end") }
        let header = String(decoding: bytes[headerStart..<(headerStart + headerLength)], as: UTF8.self)
        let fields = try NumpyHeader.parse(header, fail: fail)
        guard let descr = fields.descr else { throw fail("no 'descr' in the header") }
        guard let shape = fields.shape else { throw fail("no 'shape' in the header") }
        guard fields.fortranOrder == false else { throw fail("Fortran-ordered arrays are not read; save with C order") }
        let count = try Shapes.count(shape, context: "\(name): shape")
        guard let type = NumpyHeader.ElementType(descr) else {
            throw fail("element type '\(descr)' (integers, floats of 16, 32 or 64 bits and bool are read)")
        }
        let dataStart = headerStart + headerLength
        let needed = try (CheckedInt(count) * type.size).get("\(name): \(count) elements of \(type.size) bytes")
        guard bytes.count - dataStart == needed else {
            throw fail("shape \(shape) of \(descr) needs \(needed) data bytes, the file has \(bytes.count - dataStart)")
        }
        var values = [Double](repeating: 0, count: count)
        bytes.withUnsafeBufferPointer { buffer in
            let base = buffer.baseAddress! + dataStart
            for i in 0..<count { values[i] = type.value(at: base + i * type.size) }
        }
        return NumpyArray(shape: shape, values: values, descr: descr)
    }
}

/// The dict literal of an `.npy` header: `{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }`.
enum NumpyHeader {
    struct Fields {
        var descr: String?
        var fortranOrder: Bool?
        var shape: [Int]?
    }

    static func parse(_ text: String, fail: (String) -> KilnError) throws -> Fields {
        var fields = Fields()
        var s = Substring(text)
        func skipSpace() { while let c = s.first, c == " " || c == "\n" || c == "\t" { s.removeFirst() } }
        func expect(_ c: Character) throws {
            skipSpace()
            guard s.first == c else { throw fail("expected '\(c)' in the header") }
            s.removeFirst()
        }
        func string() throws -> String {
            skipSpace()
            guard let q = s.first, q == "'" || q == "\"" else { throw fail("expected a quoted string in the header") }
            s.removeFirst()
            guard let end = s.firstIndex(of: q) else { throw fail("unterminated string in the header") }
            let value = String(s[..<end])
            s = s[s.index(after: end)...]
            return value
        }
        try expect("{")
        while true {
            skipSpace()
            if s.first == "}" { break }
            let key = try string()
            try expect(":")
            skipSpace()
            switch key {
            case "descr": fields.descr = try string()
            case "fortran_order":
                if s.hasPrefix("False") { fields.fortranOrder = false; s = s.dropFirst(5) }
                else if s.hasPrefix("True") { fields.fortranOrder = true; s = s.dropFirst(4) }
                else { throw fail("fortran_order is neither True nor False") }
            case "shape":
                try expect("(")
                var shape: [Int] = []
                while true {
                    skipSpace()
                    if s.first == ")" { s.removeFirst(); break }
                    let digits = s.prefix { $0.isASCII && $0.isNumber }
                    guard !digits.isEmpty, digits.count <= 18, let n = Int(digits) else { throw fail("a dimension of the shape is not a number") }
                    shape.append(n)
                    s = s.dropFirst(digits.count)
                    skipSpace()
                    if s.first == "," { s.removeFirst() }
                    guard shape.count <= 32 else { throw fail("more than 32 dimensions") }
                }
                fields.shape = shape
            default:
                throw fail("unknown header key '\(key)'")
            }
            skipSpace()
            if s.first == "," { s.removeFirst() }
        }
        return fields
    }

    /// An element type: byte order, kind and size.
    struct ElementType {
        enum Kind { case signed, unsigned, float, bool }
        let kind: Kind
        let size: Int
        let bigEndian: Bool

        init?(_ descr: String) {
            guard descr.count >= 3, let order = descr.first, "<>|=".contains(order),
                  let size = Int(descr.dropFirst(2)) else { return nil }
            let code = descr[descr.index(after: descr.startIndex)]
            switch (code, size) {
            case ("i", 1), ("i", 2), ("i", 4), ("i", 8): kind = .signed
            case ("u", 1), ("u", 2), ("u", 4), ("u", 8): kind = .unsigned
            case ("f", 2), ("f", 4), ("f", 8): kind = .float
            case ("b", 1): kind = .bool
            default: return nil
            }
            self.size = size
            bigEndian = order == ">"
        }

        func value(at p: UnsafePointer<UInt8>) -> Double {
            var bits: UInt64 = 0
            for k in 0..<size {
                let byte = UInt64(p[bigEndian ? size - 1 - k : k])
                bits |= byte << (8 * UInt64(k))
            }
            switch kind {
            case .bool: return bits != 0 ? 1 : 0
            case .unsigned: return Double(bits)
            case .signed:
                let shift = UInt64(64 - 8 * size)
                return Double(Int64(bitPattern: bits << shift) >> Int64(shift))
            case .float:
                switch size {
                case 2: return Double(Float16(bitPattern: UInt16(truncatingIfNeeded: bits)))
                case 4: return Double(Float(bitPattern: UInt32(truncatingIfNeeded: bits)))
                default: return Double(bitPattern: bits)
                }
            }
        }
    }
}
