/// ReLU, LeakyReLU, ELU, Sigmoid, Tanh, Softmax, LogSoftmax, Identity.
public enum ActivationFunctions {
    public static let all: [any Function.Type] = [ReLU.self]
}

/// `y = max(x, 0)`. Backward uses the output (`y > 0`), so the gradient at exactly 0 is 0, as in nnabla.
public struct ReLU: Function {
    public static let typeName = "ReLU"
    public var inplace: Bool

    public init(inplace: Bool = false) { self.inplace = inplace }
    public init(arguments a: inout ArgReader) throws { inplace = try a.bool("inplace", default: false) }
    public var arguments: [(String, ArgValue)] { [("inplace", .bool(inplace))] }

    public func outputTypes(_ inputs: [TensorType]) throws -> [TensorType] {
        try Check.count(inputs, 1, Self.typeName)
        try Check.float(inputs[0], Self.typeName, "x")
        return [inputs[0]]
    }

    public func backwardReads(inputCount: Int, outputCount: Int) -> (inputs: [Bool], outputs: [Bool]) {
        ([false], [true])
    }

    public func makeForward(_ b: ForwardBinding) throws -> Kernel {
        let x = b.inputs[0].f, y = b.outputs[0].f, n = b.inputs[0].count
        return { Elementwise.map(n, x, y) { max($0, 0) } }
    }

    public func makeBackward(_ b: BackwardBinding) throws -> Kernel {
        guard let dx = b.inputGrads[0]?.f, let y = b.outputs[0]?.f else { return {} }
        let dy = b.outputGrads[0].f, n = b.outputGrads[0].count, acc = b.accumulate[0]
        return { Elementwise.zip(n, y, dy, dx, accumulate: acc) { $0 > 0 ? $1 : 0 } }
    }
}

public extension F {
    /// nnabla's `F.relu`.
    static func relu(_ x: Variable, inplace: Bool = false) throws -> Variable {
        try apply1(ReLU(inplace: inplace), [x])
    }
}
