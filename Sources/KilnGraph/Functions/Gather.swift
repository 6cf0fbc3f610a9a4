import KilnCore
import KilnKernels

/// nnabla's Gather with `batch_dims` 0: `y[d0.., i.., d(axis+1)..] = x[d0.., idx[i..], d(axis+1)..]`, the
/// output shape `x.shape[:axis] + indices.shape + x.shape[axis+1:]`. Negative indices count from the end;
/// one outside the axis is an error when the plan runs. The gradient goes to x (added where indices repeat).
public struct Gather: Function {
    public static let typeName = "Gather"
    public var axis: Int
    public var batchDims: Int

    public init(axis: Int = 0, batchDims: Int = 0) {
        self.axis = axis
        self.batchDims = batchDims
    }

    public init(arguments a: inout ArgReader) throws {
        self.init(axis: try a.int("axis", default: 0), batchDims: try a.int("batch_dims", default: 0))
    }

    public var arguments: [(String, ArgValue)] { [("axis", .int(axis)), ("batch_dims", .int(batchDims))] }

    public func propagatesGradient(toInput index: Int, inputCount: Int) -> Bool { index == 0 }
    public func backwardReads(inputCount: Int, outputCount: Int) -> (inputs: [Bool], outputs: [Bool]) { ([false, true], [false]) }

    public func outputTypes(_ inputs: [TensorType]) throws -> [TensorType] {
        try Check.count(inputs, 2, Self.typeName)
        try Check.float(inputs[0], Self.typeName, "x")
        guard inputs[1].dtype == .int32 else { throw error("indices must be int32, got \(inputs[1])") }
        guard batchDims == 0 else { throw error("batch_dims \(batchDims) is not supported (only 0)") }
        let x = inputs[0].shape
        guard axis >= 0, axis < x.count else { throw error("axis \(axis) is out of range for x \(x)") }
        return [TensorType(Array(x[..<axis]) + inputs[1].shape + Array(x[(axis + 1)...]), .float32)]
    }

    func geometry(_ x: [Int], _ indices: Int) -> (outer: Int, n: Int, inner: Int, count: Int) {
        (x[..<axis].reduce(1, *), x[axis], x[(axis + 1)...].reduce(1, *), indices)
    }

    @inline(__always)
    static func index(_ raw: Int32, _ n: Int) throws -> Int {
        let i = Int(raw)
        guard i >= -n, i < n else {
            throw KilnError.invalidData("Gather: index \(raw) is outside an axis of size \(n)")
        }
        return i < 0 ? i + n : i
    }

    public func makeForward(_ b: ForwardBinding) throws -> Kernel {
        let g = geometry(b.inputs[0].shape, b.inputs[1].count)
        let x = b.inputs[0].f, idx = b.inputs[1].i32, y = b.outputs[0].f
        return {
            for o in 0..<g.outer {
                for k in 0..<g.count {
                    let i = try Self.index(idx[k], g.n)
                    (y + (o * g.count + k) * g.inner).update(from: x + (o * g.n + i) * g.inner, count: g.inner)
                }
            }
        }
    }

    public func makeBackward(_ b: BackwardBinding) throws -> Kernel {
        guard let dx = b.inputGrads[0]?.f else { return {} }
        guard let idx = b.inputs[1]?.i32 else { throw error("backward needs the indices") }
        let g = geometry(b.inputTypes[0].shape, b.inputTypes[1].count)
        let dy = b.outputGrads[0].f, n = b.inputTypes[0].count, acc = b.accumulate[0]
        return {
            if !acc { dx.update(repeating: 0, count: n) }
            for o in 0..<g.outer {
                for k in 0..<g.count {
                    let i = try Self.index(idx[k], g.n)
                    let src = dy + (o * g.count + k) * g.inner, dst = dx + (o * g.n + i) * g.inner
                    for j in 0..<g.inner { dst[j] += src[j] }
                }
            }
        }
    }
}

public extension F {
    /// nnabla's `F.gather(x, indices, axis, batch_dims)` (batch_dims 0).
    static func gather(_ x: Variable, _ indices: Variable, axis: Int = 0, batchDims: Int = 0) throws -> Variable {
        try apply1(Gather(axis: axis, batchDims: batchDims), [x, indices])
    }
}
