import KilnCore

/// A function argument as it appears in a graph file (nnabla's argument names and value kinds).
public enum ArgValue: Equatable, Sendable, CustomStringConvertible {
    case int(Int)
    case double(Double)
    case bool(Bool)
    case string(String)
    case ints([Int])
    case doubles([Double])

    public var description: String {
        switch self {
        case .int(let v): return String(v)
        case .double(let v): return String(v)
        case .bool(let v): return String(v)
        case .string(let v): return "\"\(v)\""
        case .ints(let v): return "[" + v.map(String.init).joined(separator: ",") + "]"
        case .doubles(let v): return "[" + v.map { String($0) }.joined(separator: ",") + "]"
        }
    }
}

/// Reads the arguments of one function from a graph file, applying nnabla's defaults for absent ones and
/// rejecting unknown names and wrong kinds with an error that names the function and the argument.
public struct ArgReader {
    public let function: String
    private let values: [String: ArgValue]
    private var used: Set<String> = []

    public init(function: String, values: [String: ArgValue]) {
        self.function = function
        self.values = values
    }

    private func fail(_ name: String, _ expected: String) -> KilnError {
        .invalidFunction(function: function, reason: "argument '\(name)' must be \(expected), got \(values[name].map { "\($0)" } ?? "nothing")")
    }

    public mutating func int(_ name: String, default d: Int) throws -> Int {
        try intOrNil(name) ?? d
    }

    public mutating func intOrNil(_ name: String) throws -> Int? {
        used.insert(name)
        guard let v = values[name] else { return nil }
        switch v {
        case .int(let i): return i
        case .double(let x) where x.rounded() == x && abs(x) < 1e15: return Int(x)
        default: throw fail(name, "an integer")
        }
    }

    public mutating func double(_ name: String, default d: Double) throws -> Double {
        used.insert(name)
        guard let v = values[name] else { return d }
        switch v {
        case .int(let i): return Double(i)
        case .double(let x): return x
        default: throw fail(name, "a number")
        }
    }

    public mutating func bool(_ name: String, default d: Bool) throws -> Bool {
        used.insert(name)
        guard let v = values[name] else { return d }
        switch v {
        case .bool(let b): return b
        case .int(let i) where i == 0 || i == 1: return i == 1
        default: throw fail(name, "true or false")
        }
    }

    public mutating func string(_ name: String, default d: String) throws -> String {
        used.insert(name)
        guard let v = values[name] else { return d }
        if case .string(let s) = v { return s }
        throw fail(name, "a string")
    }

    public mutating func ints(_ name: String, default d: [Int]) throws -> [Int] {
        try intsOrNil(name) ?? d
    }

    public mutating func intsOrNil(_ name: String) throws -> [Int]? {
        used.insert(name)
        guard let v = values[name] else { return nil }
        switch v {
        case .ints(let a): return a
        case .int(let i): return [i]
        case .doubles(let a) where a.allSatisfy({ $0.rounded() == $0 && abs($0) < 1e15 }): return a.map { Int($0) }
        default: throw fail(name, "a list of integers")
        }
    }

    /// Throws if the file named an argument this function does not have.
    public func finish() throws {
        let unknown = Set(values.keys).subtracting(used).sorted()
        if !unknown.isEmpty {
            throw KilnError.invalidFunction(function: function, reason: "unknown argument(s) \(unknown.joined(separator: ", "))")
        }
    }
}
