import Foundation
import KilnCore
import KilnGraph

/// Reads RFC 4180 CSV text into records. Each record carries the (1-based) line it starts on, so errors can
/// point into the file. Fields are separated by commas; records by `\n`, `\r\n` or `\r`; a field in double
/// quotes may hold commas, line breaks and `""` (one quote). Blank lines are skipped (as nnabla's
/// `load_csv`; Python's `csv` module yields them as empty rows). An unterminated quoted field, or text
/// after a closing quote, is an error. A stray quote inside an unquoted field is kept literally, as
/// Python's `csv` module does.
enum CSVReader {
    struct Record {
        var line: Int
        var fields: [String]
    }

    static func parse(_ text: String, file: String) throws -> [Record] {
        var records: [Record] = []
        var fields: [String] = []
        var field: [UInt8] = []
        var line = 1, recordLine = 1
        var inQuotes = false, wasQuoted = false, afterQuote = false
        var bytes = Array(text.utf8)
        // A UTF-8 byte order mark (nnabla opens CSV files as utf-8-sig).
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { bytes.removeFirst(3) }

        func endField() {
            fields.append(String(decoding: field, as: UTF8.self))
            field.removeAll(keepingCapacity: true)
            wasQuoted = false
            afterQuote = false
        }
        func endRecord() {
            // A line with nothing on it (no field, no quotes) is blank.
            let blank = fields.isEmpty && field.isEmpty && !wasQuoted
            if blank {
                field.removeAll(keepingCapacity: true)
            } else {
                endField()
                records.append(Record(line: recordLine, fields: fields))
            }
            fields = []
        }

        var i = 0
        let n = bytes.count
        while i < n {
            let c = bytes[i]
            if inQuotes {
                if c == UInt8(ascii: "\"") {
                    if i + 1 < n && bytes[i + 1] == UInt8(ascii: "\"") {
                        field.append(c)
                        i += 2
                        continue
                    }
                    inQuotes = false
                    afterQuote = true
                } else {
                    if c == UInt8(ascii: "\n") || (c == UInt8(ascii: "\r") && !(i + 1 < n && bytes[i + 1] == UInt8(ascii: "\n"))) {
                        line += 1
                    }
                    field.append(c)
                }
                i += 1
                continue
            }
            switch c {
            case UInt8(ascii: ","):
                endField()
            case UInt8(ascii: "\n"), UInt8(ascii: "\r"):
                if c == UInt8(ascii: "\r") && i + 1 < n && bytes[i + 1] == UInt8(ascii: "\n") { i += 1 }
                endRecord()
                line += 1
                recordLine = line
            case UInt8(ascii: "\""):
                if field.isEmpty && !wasQuoted {
                    inQuotes = true
                    wasQuoted = true
                } else if afterQuote {
                    throw KilnError.dataset("\(file): line \(line), field \(fields.count + 1): text after a closing quote")
                } else {
                    field.append(c)
                }
            default:
                if afterQuote {
                    throw KilnError.dataset("\(file): line \(line), field \(fields.count + 1): text after a closing quote")
                }
                field.append(c)
            }
            i += 1
        }
        if inQuotes {
            throw KilnError.dataset("\(file): the quoted field starting in the record at line \(recordLine) is not closed")
        }
        endRecord()
        return records
    }

    /// Python's `float()` on the numbers a CSV holds: surrounding white space, a sign, digits with an
    /// optional point and exponent, or inf/infinity/nan. Nil for anything else (nnabla then takes the cell
    /// as a file name).
    static func number(_ s: String) -> Float? {
        let t = s.trimmingCharacters(in: .whitespaces)
        guard !t.isEmpty else { return nil }
        var body = Substring(t)
        if body.first == "+" || body.first == "-" { body = body.dropFirst() }
        switch body.lowercased() {
        case "inf", "infinity", "nan": return Float(t.lowercased())
        default: break
        }
        guard body.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == "." || $0 == "e" || $0 == "E" || $0 == "+" || $0 == "-") }),
              let v = Double(t) else { return nil }
        return Float(v)
    }
}

/// nnabla's `CsvDataSource`: a dataset described by a CSV file whose header names the variables.
///
/// Header cells are `NAME[__INDEX][:LABEL]` (nnabla's rule: split once at the first ":", then once at the
/// first "__"). Columns sharing a NAME with an `__INDEX` form one vector variable, its elements in column
/// order; a NAME without index is a variable of its own. Variables come in the order of their first
/// column. Columns whose header starts with "#" are comments and ignored. A cell holds a number, or (for a
/// variable without index) the path of a `.csv` file holding a tensor (its rows, as nnabla's `load_csv`:
/// a file of R rows of C numbers is an R x C tensor), relative to this CSV's directory. A number is a
/// variable of shape [1]. Every row must give each variable the same shape.
///
/// Everything is read and checked when the source is made (nnabla's memory cache), so malformed data is
/// reported at once, naming the file, line, row and column.
public final class CSVDataSource {
    /// Variable names in order.
    public let variables: [String]
    /// The `:LABEL` part of each variable's first column (nil when absent).
    public let labels: [String?]
    /// The shape of one sample of each variable.
    public let shapes: [[Int]]
    /// The number of samples (data rows).
    public let size: Int
    /// Per variable, every sample's values one after the other.
    private let values: [[Float]]
    private let counts: [Int]

    public init(path: String) throws {
        let data = try FileBytes.read(path: path, limit: Context.current.memoryBudget, what: "CSV dataset")
        guard let text = String(validating: data, as: UTF8.self) else {
            throw KilnError.dataset("\(path) is not UTF-8 text")
        }
        let records = try CSVReader.parse(text, file: path)
        guard let header = records.first else { throw KilnError.dataset("\(path) is empty (no header row)") }
        let rows = records.dropFirst()
        guard !rows.isEmpty else { throw KilnError.dataset("\(path) has a header but no data rows") }

        // Columns: (variable index, indexed?) for each kept column; nil for comment columns.
        var names: [String] = [], labels: [String?] = [], indexed: [Bool] = []
        var columns: [(variable: Int, indexed: Bool)?] = []
        for (c, cell) in header.fields.enumerated() {
            guard !cell.isEmpty else {
                throw KilnError.dataset("\(path): header column \(c + 1) is empty (expected NAME[__INDEX][:LABEL])")
            }
            if cell.hasPrefix("#") { columns.append(nil); continue }
            let (withIndex, label): (Substring, String?)
            if let colon = cell.firstIndex(of: ":") {
                withIndex = cell[..<colon]
                label = String(cell[cell.index(after: colon)...])
            } else {
                withIndex = Substring(cell)
                label = nil
            }
            let name: String, isIndexed: Bool
            if let r = withIndex.range(of: "__") {
                name = String(withIndex[..<r.lowerBound])
                isIndexed = true
            } else {
                name = String(withIndex)
                isIndexed = false
            }
            guard !name.isEmpty else {
                throw KilnError.dataset("\(path): header column \(c + 1) '\(cell)' has no variable name")
            }
            if let v = names.firstIndex(of: name) {
                guard isIndexed && indexed[v] else {
                    throw KilnError.dataset("\(path): header column \(c + 1) '\(cell)' repeats variable '\(name)'"
                        + (isIndexed != indexed[v] ? " (with and without __INDEX)" : ""))
                }
                columns.append((v, true))
            } else {
                names.append(name)
                labels.append(label)
                indexed.append(isIndexed)
                columns.append((names.count - 1, isIndexed))
            }
        }
        guard !names.isEmpty else { throw KilnError.dataset("\(path): the header names no variable (only comment columns)") }

        let directory = URL(fileURLWithPath: path).deletingLastPathComponent()
        var tensorCache: [String: (shape: [Int], values: [Float])] = [:]
        var shapes = [[Int]?](repeating: nil, count: names.count)
        var values = [[Float]](repeating: [], count: names.count)

        for (r, record) in rows.enumerated() {
            func place(_ c: Int) -> String {
                "\(path): line \(record.line) (data row \(r + 1)), column \(c + 1) '\(header.fields[c])'"
            }
            guard record.fields.count == header.fields.count else {
                throw KilnError.dataset("\(path): line \(record.line) (data row \(r + 1)) has \(record.fields.count) fields, the header has \(header.fields.count)")
            }
            var sample = [[Float]](repeating: [], count: names.count)
            var sampleShape = [[Int]](repeating: [], count: names.count)
            var firstColumn = [Int](repeating: 0, count: names.count)
            for (c, cell) in record.fields.enumerated() {
                guard let col = columns[c] else { continue }
                if sample[col.variable].isEmpty && sampleShape[col.variable].isEmpty { firstColumn[col.variable] = c }
                if let x = CSVReader.number(cell) {
                    sample[col.variable].append(x)
                    sampleShape[col.variable] = [sample[col.variable].count]
                    continue
                }
                if col.indexed {
                    throw KilnError.dataset("\(place(c)): '\(cell)' is not a number (an __INDEX column holds one number per cell)")
                }
                let t = try Self.tensor(cell, relativeTo: directory, cache: &tensorCache, at: place(c))
                sample[col.variable] = t.values
                sampleShape[col.variable] = t.shape
            }
            for v in names.indices {
                if let s = shapes[v] {
                    guard s == sampleShape[v] else {
                        throw KilnError.dataset("\(place(firstColumn[v])): variable '\(names[v])' has shape \(sampleShape[v]) here but \(s) in the first data row")
                    }
                } else {
                    shapes[v] = sampleShape[v]
                }
                values[v].append(contentsOf: sample[v])
            }
        }
        self.variables = names
        self.labels = labels
        self.shapes = shapes.map { $0 ?? [] }
        self.size = rows.count
        self.values = values
        self.counts = self.shapes.map { $0.reduce(1, *) }
    }

    /// The tensor in a referenced `.csv` file (nnabla's `load_csv`): R non-blank rows of C numbers.
    static func tensor(_ cell: String, relativeTo directory: URL,
                       cache: inout [String: (shape: [Int], values: [Float])], at place: String)
        throws -> (shape: [Int], values: [Float]) {
        let name = cell.replacingOccurrences(of: "\\", with: "/")
        guard !name.trimmingCharacters(in: .whitespaces).isEmpty else {
            throw KilnError.dataset("\(place): the cell is empty (expected a number or a .csv file name)")
        }
        let url = name.hasPrefix("/") ? URL(fileURLWithPath: name) : directory.appendingPathComponent(name)
        let file = url.standardizedFileURL.path
        if let t = cache[file] { return t }
        guard url.pathExtension.lowercased() == "csv" else {
            throw KilnError.dataset("\(place): '\(cell)' is neither a number nor a .csv file (only .csv tensors are supported)")
        }
        let data: [UInt8]
        do { data = try FileBytes.read(path: file, limit: Context.current.memoryBudget, what: "CSV tensor") } catch let e as KilnError {
            throw KilnError.dataset("\(place): the referenced file: \(e)")
        }
        guard let text = String(validating: data, as: UTF8.self) else {
            throw KilnError.dataset("\(place): the referenced file \(file) is not UTF-8 text")
        }
        let records: [CSVReader.Record]
        do { records = try CSVReader.parse(text, file: file) } catch let e as KilnError {
            throw KilnError.dataset("\(place): \(e.description)")
        }
        guard let first = records.first else {
            throw KilnError.dataset("\(place): the referenced file \(file) holds no values")
        }
        var values: [Float] = []
        values.reserveCapacity(records.count * first.fields.count)
        for rec in records {
            guard rec.fields.count == first.fields.count else {
                throw KilnError.dataset("\(place): \(file) line \(rec.line) has \(rec.fields.count) values, line \(first.line) has \(first.fields.count)")
            }
            for (k, f) in rec.fields.enumerated() {
                guard let x = CSVReader.number(f) else {
                    throw KilnError.dataset("\(place): \(file) line \(rec.line), column \(k + 1): '\(f)' is not a number")
                }
                values.append(x)
            }
        }
        let t = (shape: [records.count, first.fields.count], values: values)
        cache[file] = t
        return t
    }

    /// Sample `i`: one array per variable.
    public func sample(_ i: Int) throws -> [[Float]] {
        guard i >= 0 && i < size else { throw KilnError.dataset("sample \(i) is out of range 0..<\(size)") }
        return values.indices.map { v in Array(values[v][(i * counts[v])..<((i + 1) * counts[v])]) }
    }
}

/// nnabla's `data_iterator_csv_dataset`: batches of the CSV dataset at `path` (see `CSVDataSource`), one
/// array per variable in header order. Cells are taken as they are (nnabla's `normalize` divides only
/// images by 255; CSV tensors are never normalised).
public func dataIteratorCSVDataset(path: String, batchSize: Int, shuffle: Bool = false,
                                   seed: UInt32 = 313) throws -> DataIterator {
    let source = try CSVDataSource(path: path)
    return try DataIterator(size: source.size, batchSize: batchSize, shuffle: shuffle, seed: seed,
                            sampleShapes: source.shapes, load: source.sample)
}
