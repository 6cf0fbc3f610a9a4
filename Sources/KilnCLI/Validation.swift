import ArgumentParser
import Foundation
import Kiln

/// Checks of command-line values, each naming the option that is wrong and the value it got. Numeric
/// options are declared with `parsing: .unconditional`, so that `--batch-size -1` reaches these checks
/// ("--batch-size must be positive, got -1") instead of reading `-1` as an option.
enum Check {
    static func positive(_ value: Int, _ option: String) throws {
        guard value > 0 else { throw ValidationError("\(option) must be positive, got \(value)") }
    }

    static func notNegative(_ value: Int, _ option: String) throws {
        guard value >= 0 else { throw ValidationError("\(option) must not be negative, got \(value)") }
    }

    /// A positive finite number (NaN, the infinities, zero and negative numbers are refused).
    static func positiveFinite(_ value: Float, _ option: String) throws {
        guard value.isFinite, value > 0 else { throw ValidationError("\(option) must be a positive finite number, got \(value)") }
    }

    /// A MODEL argument: a zoo model, or (with `files`) a graph file. A name that is no zoo model and does
    /// not look like a path (no "/" or ".") or an existing file is an unknown model, listing the models; a
    /// path that cannot be read is left to the loader's i/o error.
    static func model(_ model: String, files: Bool) throws {
        if Zoo(rawValue: model) != nil { return }
        if files && (model.contains("/") || model.contains(".") || FileManager.default.fileExists(atPath: model)) { return }
        throw ValidationError("unknown model '\(model)'; the zoo models are \(Zoo.names.joined(separator: ", "))"
                              + (files ? ", or give a graph file (.json, .onnx, .nnp)" : ""))
    }
}
