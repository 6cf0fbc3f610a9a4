import Foundation
import KilnCore

/// Monitor files read back: the lines nnabla's monitors write, `index value` for a series
/// (`*.series.txt`) and `index elapsed iterations total` for a timer (`*.timer.txt`).
///
/// A resumed training run reads its monitor files to keep the lines written before its checkpoint, and
/// tools read them to draw curves. Since the files may come from anywhere, the reader checks everything:
/// the file's size against ``maxBytes`` before reading, every index a non-negative integer that fits an
/// `Int` and grows from line to line, every value a number (`nan` and `inf` included, as Python's `{:g}`
/// writes them), and the same number of fields on every line. Errors name the file and the line.
public enum MonitorLog {
    /// One line: its index and its values.
    public struct Record: Equatable, Sendable {
        public var index: Int
        public var values: [Double]
        public init(index: Int, values: [Double]) {
            self.index = index
            self.values = values
        }
    }

    /// The largest monitor file read (a series written every iteration for 10^7 iterations is ~150 MB).
    public static let maxBytes = 1 << 28

    /// The most values a line may hold after its index (a timer line has three).
    public static let maxValues = 16

    public static func read(path: String) throws -> [Record] {
        let bytes = try FileBytes.read(path: path, limit: maxBytes, what: "monitor file")
        return try parse(bytes, name: path)
    }

    public static func parse(_ bytes: [UInt8], name: String) throws -> [Record] {
        try parseLines(bytes, name: name).map(\.record)
    }

    /// Each record with the line it was read from.
    static func parseLines(_ bytes: [UInt8], name: String) throws -> [(record: Record, line: ArraySlice<UInt8>)] {
        guard bytes.count <= maxBytes else {
            throw KilnError.invalidData("\(name): \(bytes.count) bytes, more than a monitor file may hold (\(maxBytes))")
        }
        var records: [(record: Record, line: ArraySlice<UInt8>)] = []
        var fieldCount: Int?
        var lineNumber = 0
        for line in bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            lineNumber += 1
            let fields = line.split(whereSeparator: { $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") || $0 == UInt8(ascii: "\r") })
            if fields.isEmpty { continue }
            let place = "\(name):\(lineNumber)"
            guard fields.count >= 2, fields.count <= maxValues + 1 else {
                throw KilnError.invalidData("\(place): a monitor line holds an index and 1 to \(maxValues) values, this one has \(fields.count) field(s)")
            }
            if let n = fieldCount, n != fields.count {
                throw KilnError.invalidData("\(place): \(fields.count) fields where earlier lines have \(n)")
            }
            fieldCount = fields.count
            let indexText = String(decoding: fields[0], as: UTF8.self)
            guard fields[0].allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
                  let index = Int(indexText) else {
                throw KilnError.invalidData("\(place): the index '\(indexText.prefix(40))' is not a non-negative integer that fits 64 bits")
            }
            if let previous = records.last?.record, index <= previous.index {
                throw KilnError.invalidData("\(place): index \(index) does not follow \(previous.index)")
            }
            var values: [Double] = []
            for f in fields.dropFirst() {
                let text = String(decoding: f, as: UTF8.self)
                guard let v = number(text) else {
                    throw KilnError.invalidData("\(place): '\(text.prefix(40))' is not a number")
                }
                values.append(v)
            }
            records.append((Record(index: index, values: values), line))
        }
        return records
    }

    /// A value as Python prints floats: decimal or exponent notation, `nan`, `inf`, `-inf`.
    static func number(_ text: String) -> Double? {
        switch text.lowercased() {
        case "nan", "-nan": return .nan
        case "inf", "+inf", "infinity": return .infinity
        case "-inf", "-infinity": return -.infinity
        default: break
        }
        // Double(String) also takes hexadecimal floats and "nan(...)" payloads; a monitor file holds neither.
        guard text.utf8.allSatisfy({ ($0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9"))
                                     || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "e") || $0 == UInt8(ascii: "E")
                                     || $0 == UInt8(ascii: "+") || $0 == UInt8(ascii: "-") }) else { return nil }
        return Double(text)
    }

    /// The lines of a monitor file whose index is below `index`, byte for byte, and the last such index: what
    /// a resumed run keeps. The whole file is checked first.
    static func lines(_ bytes: [UInt8], before index: Int, name: String) throws -> ([UInt8], Int?) {
        var kept: [UInt8] = []
        var last: Int?
        for (record, line) in try parseLines(bytes, name: name) where record.index < index {
            kept += line
            kept.append(UInt8(ascii: "\n"))
            last = record.index
        }
        return (kept, last)
    }
}
