import KilnCore

/// nnabla's `nnabla.functions`: each static method adds one function to the graph and returns its outputs.
/// Shapes are checked here; nothing runs until `forward`.
public enum F {}

/// Argument checks shared by functions' shape rules.
public enum Check {
    public static func count(_ inputs: [TensorType], _ n: Int, _ f: String) throws {
        guard inputs.count == n else {
            throw KilnError.invalidFunction(function: f, reason: "takes \(n) input(s), got \(inputs.count)")
        }
    }

    public static func count(_ inputs: [TensorType], in range: ClosedRange<Int>, _ f: String) throws {
        guard range.contains(inputs.count) else {
            throw KilnError.invalidFunction(function: f, reason: "takes \(range.lowerBound)...\(range.upperBound) inputs, got \(inputs.count)")
        }
    }

    public static func float(_ t: TensorType, _ f: String, _ what: String) throws {
        guard t.dtype == .float32 else {
            throw KilnError.invalidFunction(function: f, reason: "\(what) must be float32, got \(t)")
        }
    }

    public static func int(_ t: TensorType, _ f: String, _ what: String) throws {
        guard t.dtype == .int32 else {
            throw KilnError.invalidFunction(function: f, reason: "\(what) must be an int32 tensor, got \(t)")
        }
    }

    public static func sameShape(_ a: TensorType, _ b: TensorType, _ f: String) throws {
        guard a.shape == b.shape else {
            throw KilnError.invalidFunction(function: f, reason: "input shapes differ: \(a.shape) vs \(b.shape)")
        }
    }

    public static func channelFirst(_ channelLast: Bool, _ f: String) throws {
        if channelLast {
            throw KilnError.invalidFunction(function: f, reason: "channel_last=true is not supported (Kiln is channels-first)")
        }
    }
}
