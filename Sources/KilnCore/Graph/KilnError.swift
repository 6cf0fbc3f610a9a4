/// Every error Kiln throws. Each case names the place (a function, a file, a parameter) and the cause,
/// so a user can fix the input without reading Kiln's source.
public enum KilnError: Error, CustomStringConvertible, Equatable {
    /// A function was given inputs or arguments it cannot accept.
    case invalidFunction(function: String, reason: String)
    /// A shape is malformed (negative dimension, overflow, wrong rank).
    case invalidShape(String)
    /// Data handed to a variable does not match its shape or dtype.
    case invalidData(String)
    /// A graph file or its JSON could not be read.
    case invalidGraphFile(String)
    /// A parameter file or parameter lookup failed.
    case invalidParameters(String)
    /// A plan could not be built or run.
    case planFailed(String)
    /// A file could not be read or written.
    case io(String)
    /// A dataset is missing or malformed.
    case dataset(String)

    public var description: String {
        switch self {
        case let .invalidFunction(function, reason): return "\(function): \(reason)"
        case let .invalidShape(s): return "invalid shape: \(s)"
        case let .invalidData(s): return "invalid data: \(s)"
        case let .invalidGraphFile(s): return "graph file: \(s)"
        case let .invalidParameters(s): return "parameters: \(s)"
        case let .planFailed(s): return "plan: \(s)"
        case let .io(s): return "i/o: \(s)"
        case let .dataset(s): return "dataset: \(s)"
        }
    }
}
