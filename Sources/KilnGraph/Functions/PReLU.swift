import KilnCore
import KilnKernels

/// nnabla's PReLU: `y = x` where x > 0, else `w * x`, with one slope per channel (`weight` of shape [C],
/// C the size of axis `base_axis`) or one shared slope (shape []). As in nnabla, x = 0 takes the slope side.
public struct PReLU: Function {
    public static let typeName = "PReLU"
    public var baseAxis: Int

    public init(baseAxis: Int = 1) { self.baseAxis = baseAxis }
    public init(arguments a: inout ArgReader) throws { baseAxis = try a.int("base_axis", default: 1) }
    public var arguments: [(String, ArgValue)] { [("base_axis", .int(baseAxis))] }

    public func outputTypes(_ inputs: [TensorType]) throws -> [TensorType] {
        try Check.count(inputs, 2, Self.typeName)
        try Check.float(inputs[0], Self.typeName, "x")
        try Check.float(inputs[1], Self.typeName, "weight")
        let x = inputs[0].shape, w = inputs[1].shape
        if w.isEmpty || w == [1] { return [inputs[0]] }
        guard baseAxis >= 0, baseAxis < x.count else { throw error("base_axis \(baseAxis) is out of range for x \(x)") }
        guard w == [x[baseAxis]] else { throw error("weight \(w) must be [] or [\(x[baseAxis])] (axis \(baseAxis) of x \(x))") }
        return [inputs[0]]
    }

    /// Elements per channel step (inner) and channels (1 for a shared slope).
    func layout(_ x: [Int], _ w: [Int]) -> (channels: Int, inner: Int) {
        if w.isEmpty || w == [1] { return (1, x.reduce(1, *)) }
        return (x[baseAxis], x[(baseAxis + 1)...].reduce(1, *))
    }

    public func makeForward(_ b: ForwardBinding) throws -> Kernel {
        let (c, inner) = layout(b.inputs[0].shape, b.inputs[1].shape)
        let x = b.inputs[0].f, w = b.inputs[1].f, y = b.outputs[0].f, n = b.inputs[0].count
        return {
            for i in 0..<n {
                let v = x[i]
                y[i] = v > 0 ? v : w[(i / inner) % c] * v
            }
        }
    }

    public func makeBackward(_ b: BackwardBinding) throws -> Kernel {
        let dx = b.inputGrads[0]?.f, dw = b.inputGrads[1]?.f
        if dx == nil && dw == nil { return {} }
        guard let x = b.inputs[0]?.f, let w = b.inputs[1]?.f else { throw error("backward needs x and weight") }
        let (c, inner) = layout(b.inputTypes[0].shape, b.inputTypes[1].shape)
        let dy = b.outputGrads[0].f, n = b.inputTypes[0].count, accX = b.accumulate[0], accW = b.accumulate[1]
        return {
            if let dw, !accW { dw.update(repeating: 0, count: c) }
            for i in 0..<n {
                let v = x[i], g = dy[i], k = (i / inner) % c
                if let dx {
                    let d = v > 0 ? g : w[k] * g
                    dx[i] = accX ? dx[i] + d : d
                }
                if let dw, v <= 0 { dw[k] += g * v }
            }
        }
    }
}

public extension F {
    /// nnabla's `F.prelu(x0, x1, base_axis)`: `x1` holds the slopes, one per channel or one shared.
    static func prelu(_ x0: Variable, _ x1: Variable, baseAxis: Int = 1) throws -> Variable {
        try apply1(PReLU(baseAxis: baseAxis), [x0, x1])
    }
}
