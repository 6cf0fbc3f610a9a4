import KilnCore

/// Embed.
public enum EmbeddingFunctions {
    public static let all: [any Function.Type] = [Embed.self]
}

/// nnabla's Embed: `y[i..., :] = W[x[i...], :]` for int32 indices `x` of any shape and `W (n_inputs, *feat)`;
/// the output is `x.shape + W.shape[1:]`. Only W gets a gradient (rows of repeated indices accumulate). An index
/// outside `0..<n_inputs` is an error thrown when the kernel runs.
public struct Embed: Function {
    public static let typeName = "Embed"

    public init() {}
    public init(arguments a: inout ArgReader) throws {}
    public var arguments: [(String, ArgValue)] { [] }

    public func outputTypes(_ inputs: [TensorType]) throws -> [TensorType] {
        try Check.count(inputs, 2, Self.typeName)
        try Check.int(inputs[0], Self.typeName, "x (indices)")
        try Check.float(inputs[1], Self.typeName, "W")
        guard inputs[1].rank >= 1 else { throw error("W \(inputs[1]) must have at least 1 dim (n_inputs, ...)") }
        return [TensorType(inputs[0].shape + inputs[1].shape.dropFirst())]
    }

    public func propagatesGradient(toInput index: Int, inputCount: Int) -> Bool { index == 1 }

    public func backwardReads(inputCount: Int, outputCount: Int) -> (inputs: [Bool], outputs: [Bool]) {
        ([true, false], [false])
    }

    /// The error for an index outside the table (built only when it happens).
    func outOfRange(_ index: Int32, at position: Int, rows: Int) -> KilnError {
        error("index \(index) at position \(position) of x is out of range for W with \(rows) rows")
    }

    public func makeForward(_ b: ForwardBinding) throws -> Kernel {
        let x = b.inputs[0].i32, w = b.inputs[1].f, y = b.outputs[0].f
        let n = b.inputs[0].count, rows = b.inputs[1].shape[0]
        let row = Shapes.product(b.inputs[1].shape, 1..<b.inputs[1].type.rank)
        return {
            for i in 0..<n {
                let k = x[i]
                guard k >= 0 && Int(k) < rows else { throw outOfRange(k, at: i, rows: rows) }
                (y + i * row).update(from: w + Int(k) * row, count: row)
            }
        }
    }

    public func makeBackward(_ b: BackwardBinding) throws -> Kernel {
        guard let dw = b.inputGrads[1]?.f else { return {} }
        guard let x = b.inputs[0]?.i32 else { throw error("backward needs the indices x") }
        let dy = b.outputGrads[0].f, acc = b.accumulate[1]
        let n = b.inputTypes[0].count, rows = b.inputTypes[1].shape[0], total = b.inputTypes[1].count
        let row = Shapes.product(b.inputTypes[1].shape, 1..<b.inputTypes[1].rank)
        return {
            // Check every index before touching dW, so an error leaves the gradient as it was.
            for i in 0..<n where x[i] < 0 || Int(x[i]) >= rows { throw outOfRange(x[i], at: i, rows: rows) }
            if !acc { dw.update(repeating: 0, count: total) }
            for i in 0..<n {
                let dst = dw + Int(x[i]) * row, src = dy + i * row
                for j in 0..<row { dst[j] += src[j] }
            }
        }
    }
}

public extension F {
    /// nnabla's `F.embed(x0, w)`: rows of `w` picked by the int32 indices `x0`.
    static func embed(_ x: Variable, _ w: Variable) throws -> Variable {
        try apply1(Embed(), [x, w])
    }
}
