import KilnCore

/// A JSON value, parsed by a small strict parser that keeps integers apart from floats and limits nesting
/// depth and size, so hostile graph files fail with an error instead of exhausting the stack.
///
/// JSON has no literal for NaN or the infinities. Kiln writes them as the strings "NaN", "Infinity" and
/// "-Infinity" (in tensor data: graph files, `kiln run`'s tensor files) and reads those strings back as
/// tensor values (`tensorValue`), so non-finite values survive a round trip instead of becoming null.
public enum JSON: Equatable, Sendable {
    case null
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case array([JSON])
    /// An array of numbers held as one buffer of doubles (8 bytes an item instead of a `JSON` value each):
    /// what the parser makes of an array whose items are all numbers (tensor data), and what tensors are
    /// written as. It is the same JSON as the `.array` of those numbers: `array` returns that, and `==`
    /// compares the two forms by value.
    case numbers(Numbers)
    case object([(String, JSON)])

    /// The items of a `.numbers` array, and how they read and write: `integers` (every item was an integer
    /// literal, exactly representable; they read back as `.int`), `float32` (float32 values, written as the
    /// shortest decimal that reads back to the same float32) or `float64` (doubles as parsed).
    public struct Numbers: Equatable, Sendable {
        public enum Kind: Sendable { case integers, float32, float64 }
        public var values: [Double]
        public var kind: Kind
        public init(_ values: [Double], kind: Kind) {
            self.values = values
            self.kind = kind
        }

        /// The items as JSON values, as the parser would have made them one by one.
        public var items: [JSON] {
            switch kind {
            case .integers: return values.map { .int(Int($0)) }
            case .float32: return values.map { JSON.float(Float($0)) }
            case .float64: return values.map { .double($0) }
            }
        }
    }

    public static func == (a: JSON, b: JSON) -> Bool {
        switch (a, b) {
        case (.null, .null): return true
        case let (.bool(x), .bool(y)): return x == y
        case let (.int(x), .int(y)): return x == y
        case let (.double(x), .double(y)): return x == y
        case let (.string(x), .string(y)): return x == y
        case let (.array(x), .array(y)): return x == y
        case let (.numbers(x), .numbers(y)) where x.kind == y.kind: return x.values == y.values
        case let (.numbers(x), .numbers(y)): return x.items == y.items
        case let (.numbers(x), .array(y)): return x.items == y
        case let (.array(x), .numbers(y)): return x == y.items
        case let (.object(x), .object(y)):
            return x.count == y.count && zip(x, y).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        default: return false
        }
    }

    public subscript(key: String) -> JSON? {
        if case .object(let members) = self { return members.first { $0.0 == key }?.1 }
        return nil
    }

    public var array: [JSON]? {
        switch self {
        case .array(let a): return a
        case .numbers(let n): return n.items
        default: return nil
        }
    }

    /// How many items an array (of either form) holds; nil for anything else.
    public var count: Int? {
        switch self {
        case .array(let a): return a.count
        case .numbers(let n): return n.values.count
        default: return nil
        }
    }

    /// Tensor data as `.numbers` when every value is finite (JSON has no numbers for the others), else as an
    /// array of `float` values.
    public static func float32s(_ values: [Float]) -> JSON {
        guard values.allSatisfy({ $0.isFinite }) else { return .array(values.map { JSON.float($0) }) }
        return .numbers(Numbers(values.map { Double($0) }, kind: .float32))
    }
    public var string: String? { if case .string(let s) = self { return s }; return nil }
    public var bool: Bool? { if case .bool(let b) = self { return b }; return nil }
    public var int: Int? {
        switch self {
        case .int(let i): return i
        case .double(let d) where d.rounded() == d && abs(d) < 9e15: return Int(d)
        default: return nil
        }
    }
    public var double: Double? {
        switch self {
        case .int(let i): return Double(i)
        case .double(let d): return d
        default: return nil
        }
    }
    public var objectMembers: [(String, JSON)]? { if case .object(let m) = self { return m }; return nil }

    /// The strings that stand for the non-finite values JSON numbers cannot write.
    public static let nanString = "NaN", infinityString = "Infinity", negativeInfinityString = "-Infinity"

    /// A value of tensor data: a number as written (exact, before any rounding to the tensor's dtype), or
    /// NaN and the infinities from their strings; nil for anything else.
    public var tensorValue: Double? {
        switch self {
        case .int(let i): return Double(i)
        case .double(let d): return d
        case .string(JSON.nanString): return .nan
        case .string(JSON.infinityString): return .infinity
        case .string(JSON.negativeInfinityString): return -.infinity
        default: return nil
        }
    }

    /// Tensor data (an array of `tensorValue`s) for a float32 or int32 tensor: a finite number beyond
    /// float32's range (1e39, which would silently become infinity) is an error, as is anything not a value.
    /// `place` names the tensor in errors ("x.json: tensor 'x'"), followed by the index.
    public static func tensorValues(_ data: JSON, place: String, fail: (String) -> KilnError) throws -> [Double] {
        switch data {
        case .numbers(let n):
            if let i = n.values.firstIndex(where: { $0.isFinite && !Float($0).isFinite }) {
                throw fail("\(place) data[\(i)] is \(n.values[i]), beyond float32's range (largest magnitude \(Float.greatestFiniteMagnitude))")
            }
            return n.values
        case .array(let items): return try tensorValues(items, place: place, fail: fail)
        default: throw fail("\(place) data must be an array")
        }
    }

    public static func tensorValues(_ items: [JSON], place: String, fail: (String) -> KilnError) throws -> [Double] {
        var values = [Double](repeating: 0, count: items.count)
        for (i, x) in items.enumerated() {
            guard let d = x.tensorValue else {
                throw fail("\(place) data[\(i)] is \(x.serialized()), not a number or \"\(nanString)\", \"\(infinityString)\", \"\(negativeInfinityString)\"")
            }
            guard !d.isFinite || Float(d).isFinite else {
                throw fail("\(place) data[\(i)] is \(d), beyond float32's range (largest magnitude \(Float.greatestFiniteMagnitude))")
            }
            values[i] = d
        }
        return values
    }

    /// Parses a complete JSON document.
    public static func parse(_ bytes: [UInt8], maxDepth: Int = 64) throws -> JSON {
        var p = JSONParser(bytes: bytes, maxDepth: maxDepth)
        p.skipSpace()
        let v = try p.value(depth: 0)
        p.skipSpace()
        guard p.pos == bytes.count else { throw p.fail("unexpected data after the document") }
        return v
    }

    public static func parse(_ text: String) throws -> JSON { try parse(Array(text.utf8)) }
}

struct JSONParser {
    let bytes: [UInt8]
    let maxDepth: Int
    var pos = 0

    init(bytes: [UInt8], maxDepth: Int) {
        self.bytes = bytes
        self.maxDepth = maxDepth
    }

    func fail(_ msg: String) -> KilnError {
        var line = 1, col = 1
        for b in bytes[0..<min(pos, bytes.count)] { if b == 10 { line += 1; col = 1 } else { col += 1 } }
        return .invalidGraphFile("JSON line \(line) column \(col): \(msg)")
    }

    mutating func skipSpace() {
        while pos < bytes.count, [9, 10, 13, 32].contains(bytes[pos]) { pos += 1 }
    }

    mutating func value(depth: Int) throws -> JSON {
        guard depth < maxDepth else { throw fail("nesting deeper than \(maxDepth)") }
        guard pos < bytes.count else { throw fail("unexpected end of input") }
        switch bytes[pos] {
        case UInt8(ascii: "{"): return try object(depth: depth)
        case UInt8(ascii: "["): return try array(depth: depth)
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .null
        default: return try number()
        }
    }

    mutating func literal(_ word: String) throws {
        let w = Array(word.utf8)
        guard pos + w.count <= bytes.count, Array(bytes[pos..<pos + w.count]) == w else { throw fail("invalid literal") }
        pos += w.count
    }

    mutating func object(depth: Int) throws -> JSON {
        pos += 1
        var members: [(String, JSON)] = []
        skipSpace()
        if pos < bytes.count, bytes[pos] == UInt8(ascii: "}") { pos += 1; return .object(members) }
        while true {
            skipSpace()
            guard pos < bytes.count, bytes[pos] == UInt8(ascii: "\"") else { throw fail("expected a member name") }
            let key = try string()
            skipSpace()
            guard pos < bytes.count, bytes[pos] == UInt8(ascii: ":") else { throw fail("expected ':'") }
            pos += 1
            skipSpace()
            members.append((key, try value(depth: depth + 1)))
            skipSpace()
            guard pos < bytes.count else { throw fail("unterminated object") }
            if bytes[pos] == UInt8(ascii: ",") { pos += 1; continue }
            if bytes[pos] == UInt8(ascii: "}") { pos += 1; return .object(members) }
            throw fail("expected ',' or '}'")
        }
    }

    /// An array; while its items are numbers they are gathered as doubles (`.numbers`), and the first item
    /// that is not (or an integer a double cannot hold exactly) turns it into an `.array` of JSON values.
    mutating func array(depth: Int) throws -> JSON {
        pos += 1
        var numbers: [Double] = []
        var integers = true
        var items: [JSON]? = nil
        skipSpace()
        if pos < bytes.count, bytes[pos] == UInt8(ascii: "]") { pos += 1; return .array([]) }
        while true {
            skipSpace()
            let item = try value(depth: depth + 1)
            if items == nil {
                switch item {
                case .int(let i) where i >= -(1 << 53) && i <= 1 << 53: numbers.append(Double(i))    // (abs(Int.min) traps)
                case .double(let d): numbers.append(d); integers = false
                default:
                    items = numbers.indices.map { k in integers ? .int(Int(numbers[k])) : .double(numbers[k]) }
                    numbers = []
                }
            }
            if items != nil { items?.append(item) }
            skipSpace()
            guard pos < bytes.count else { throw fail("unterminated array") }
            if bytes[pos] == UInt8(ascii: ",") { pos += 1; continue }
            if bytes[pos] == UInt8(ascii: "]") {
                pos += 1
                if let items { return .array(items) }
                return .numbers(JSON.Numbers(numbers, kind: integers ? .integers : .float64))
            }
            throw fail("expected ',' or ']'")
        }
    }

    mutating func string() throws -> String {
        pos += 1
        var out: [UInt8] = []
        while pos < bytes.count {
            let b = bytes[pos]
            pos += 1
            if b == UInt8(ascii: "\"") {
                guard let s = String(validating: out, as: UTF8.self) else { throw fail("invalid UTF-8 in string") }
                return s
            }
            if b < 0x20 { throw fail("control character in string") }
            if b != UInt8(ascii: "\\") { out.append(b); continue }
            guard pos < bytes.count else { break }
            let e = bytes[pos]
            pos += 1
            switch e {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(e)
            case UInt8(ascii: "b"): out.append(8)
            case UInt8(ascii: "f"): out.append(12)
            case UInt8(ascii: "n"): out.append(10)
            case UInt8(ascii: "r"): out.append(13)
            case UInt8(ascii: "t"): out.append(9)
            case UInt8(ascii: "u"):
                var code = try hex4()
                if (0xD800..<0xDC00).contains(code), pos + 1 < bytes.count, bytes[pos] == UInt8(ascii: "\\"),
                   bytes[pos + 1] == UInt8(ascii: "u") {
                    pos += 2
                    let low = try hex4()
                    guard (0xDC00..<0xE000).contains(low) else { throw fail("invalid surrogate pair") }
                    code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                }
                guard let scalar = Unicode.Scalar(code) else { throw fail("invalid \\u escape") }
                out.append(contentsOf: Array(String(Character(scalar)).utf8))
            default: throw fail("invalid escape")
            }
        }
        throw fail("unterminated string")
    }

    mutating func hex4() throws -> UInt32 {
        guard pos + 4 <= bytes.count else { throw fail("truncated \\u escape") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let c = bytes[pos]
            pos += 1
            let d: UInt32
            switch c {
            case 48...57: d = UInt32(c - 48)
            case 65...70: d = UInt32(c - 55)
            case 97...102: d = UInt32(c - 87)
            default: throw fail("invalid hex digit")
            }
            v = v * 16 + d
        }
        return v
    }

    mutating func number() throws -> JSON {
        let start = pos
        var isFloat = false
        if pos < bytes.count, bytes[pos] == UInt8(ascii: "-") { pos += 1 }
        var digits = 0
        while pos < bytes.count {
            let c = bytes[pos]
            if c >= 48 && c <= 57 { digits += 1; pos += 1; continue }
            if c == UInt8(ascii: ".") || c == UInt8(ascii: "e") || c == UInt8(ascii: "E")
                || c == UInt8(ascii: "+") || c == UInt8(ascii: "-") {
                isFloat = true
                pos += 1
                continue
            }
            break
        }
        guard digits > 0, pos - start <= 64 else { throw fail("invalid number") }
        guard let text = String(validating: bytes[start..<pos], as: UTF8.self) else { throw fail("invalid number") }
        if !isFloat, let i = Int(text) { return .int(i) }
        guard let d = Double(text), d.isFinite else { throw fail("invalid number '\(text)'") }
        return .double(d)
    }
}

extension JSON {
    /// Compact serialisation with shortest round-trip floats.
    public func serialized() -> String {
        var out = ""
        write(to: &out, flush: nil)
        return out
    }

    /// Serialises in pieces of about `chunk` bytes of UTF-8, handing each to `emit` (a file written as it is
    /// produced): a tensor's data is never held as one string.
    public func serialize(chunk: Int = 1 << 20, _ emit: (UnsafeRawBufferPointer) throws -> Void) throws {
        try withoutActuallyEscaping(emit) { emit in
            var out = ""
            out.reserveCapacity(chunk + 1024)
            func flush(_ text: inout String) throws {
                try text.withUTF8 { try emit(UnsafeRawBufferPointer($0)) }
                text.removeAll(keepingCapacity: true)
            }
            try write(to: &out) { text in if text.utf8.count >= chunk { try flush(&text) } }
            try flush(&out)
        }
    }

    func write(to out: inout String, flush: ((inout String) throws -> Void)?) rethrows {
        switch self {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .int(let i): out += String(i)
        case .double(let d): out += JSON.format(d)
        case .string(let s): JSON.writeString(s, to: &out)
        case .array(let a):
            out += "["
            for (i, v) in a.enumerated() {
                if i > 0 { out += ", " }
                try v.write(to: &out, flush: flush)
                try flush?(&out)
            }
            out += "]"
        case .numbers(let n):
            out += "["
            for (i, v) in n.values.enumerated() {
                if i > 0 { out += ", " }
                switch n.kind {
                case .integers: out += String(Int(v))
                case .float32: out += JSON.format(float32: Float(v))
                case .float64: out += JSON.format(v)
                }
                if i & 63 == 63 { try flush?(&out) }
            }
            out += "]"
        case .object(let m):
            out += "{"
            for (i, (k, v)) in m.enumerated() {
                if i > 0 { out += ", " }
                JSON.writeString(k, to: &out)
                out += ": "
                try v.write(to: &out, flush: flush)
                try flush?(&out)
            }
            out += "}"
        }
    }

    static func format(float32 f: Float) -> String {
        guard f.isFinite else { return format(Double(f)) }
        if f == f.rounded(), abs(f) < 1e15 { return String(Int(f)) }
        return format(Double(String(f)) ?? Double(f))
    }

    static func format(_ d: Double) -> String {
        guard d.isFinite else {
            var s = ""
            writeString(d.isNaN ? nanString : d > 0 ? infinityString : negativeInfinityString, to: &s)
            return s
        }
        if d == d.rounded(), abs(d) < 1e15 { return String(Int(d)) + (d == 0 && d.sign == .minus ? ".0" : "") }
        return String(d)
    }

    /// A float32 as the shortest decimal that reads back to the same float32; NaN and the infinities as the
    /// strings "NaN", "Infinity" and "-Infinity" (JSON has no numbers for them).
    public static func float(_ f: Float) -> JSON {
        guard f.isFinite else { return .string(f.isNaN ? nanString : f > 0 ? infinityString : negativeInfinityString) }
        if f == f.rounded(), abs(f) < 1e15 { return .int(Int(f)) }
        return .double(Double(String(f)) ?? Double(f))
    }

    static func writeString(_ s: String, to out: inout String) {
        out += "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 { out += "\\u00" + String(u.value >> 4, radix: 16) + String(u.value & 15, radix: 16) } else { out.unicodeScalars.append(u) }
            }
        }
        out += "\""
    }
}
