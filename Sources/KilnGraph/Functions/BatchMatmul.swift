import KilnCore
import KilnKernels

/// nnabla's BatchMatmul: `y[b] = op(a[b]) op(b[b])` over the leading (batch) dimensions, op transposing the
/// last two axes when `transpose_a` / `transpose_b`. Both inputs have rank 3 or more and the same batch
/// dimensions.
public struct BatchMatmul: Function {
    public static let typeName = "BatchMatmul"
    public var transposeA: Bool
    public var transposeB: Bool

    public init(transposeA: Bool = false, transposeB: Bool = false) {
        self.transposeA = transposeA
        self.transposeB = transposeB
    }

    public init(arguments a: inout ArgReader) throws {
        self.init(transposeA: try a.bool("transpose_a", default: false), transposeB: try a.bool("transpose_b", default: false))
    }

    public var arguments: [(String, ArgValue)] { [("transpose_a", .bool(transposeA)), ("transpose_b", .bool(transposeB))] }

    /// Batch count and the product's M, N, K.
    func geometry(_ a: [Int], _ b: [Int]) throws -> (batch: Int, m: Int, n: Int, k: Int) {
        guard a.count >= 3, b.count == a.count else { throw error("a \(a) and b \(b) must have the same rank, 3 or more") }
        guard a.dropLast(2) == b.dropLast(2) else { throw error("a \(a) and b \(b) must have the same batch dimensions") }
        let r = a.count
        let m = transposeA ? a[r - 1] : a[r - 2], ka = transposeA ? a[r - 2] : a[r - 1]
        let kb = transposeB ? b[r - 1] : b[r - 2], n = transposeB ? b[r - 2] : b[r - 1]
        guard ka == kb else { throw error("the inner dimensions of a \(a) and b \(b) differ (\(ka) and \(kb))") }
        return (a.dropLast(2).reduce(1, *), m, n, ka)
    }

    public func outputTypes(_ inputs: [TensorType]) throws -> [TensorType] {
        try Check.count(inputs, 2, Self.typeName)
        try Check.float(inputs[0], Self.typeName, "a")
        try Check.float(inputs[1], Self.typeName, "b")
        let g = try geometry(inputs[0].shape, inputs[1].shape)
        return [TensorType(Array(inputs[0].shape.dropLast(2)) + [g.m, g.n], .float32)]
    }

    public func makeForward(_ bind: ForwardBinding) throws -> Kernel {
        let g = try geometry(bind.inputs[0].shape, bind.inputs[1].shape)
        let a = bind.inputs[0].f, b = bind.inputs[1].f, y = bind.outputs[0].f, ta = transposeA, tb = transposeB
        return {
            for i in 0..<g.batch {
                Gemm.sgemm(transA: ta, transB: tb, m: g.m, n: g.n, k: g.k, a: a + i * g.m * g.k, b: b + i * g.k * g.n,
                           c: y + i * g.m * g.n)
            }
        }
    }

    public func makeBackward(_ bind: BackwardBinding) throws -> Kernel {
        let da = bind.inputGrads[0]?.f, db = bind.inputGrads[1]?.f
        if da == nil && db == nil { return {} }
        guard let a = bind.inputs[0]?.f, let b = bind.inputs[1]?.f else { throw error("backward needs a and b") }
        let g = try geometry(bind.inputTypes[0].shape, bind.inputTypes[1].shape)
        let dy = bind.outputGrads[0].f, ta = transposeA, tb = transposeB
        let betaA: Float = bind.accumulate[0] ? 1 : 0, betaB: Float = bind.accumulate[1] ? 1 : 0
        return {
            for i in 0..<g.batch {
                let ai = a + i * g.m * g.k, bi = b + i * g.k * g.n, dyi = dy + i * g.m * g.n
                // y = A B with A = op(a), B = op(b): dA = dy B^T, dB = A^T dy, transposed back where op was.
                if let da {
                    let d = da + i * g.m * g.k
                    if ta { Gemm.sgemm(transA: tb, transB: true, m: g.k, n: g.m, k: g.n, a: bi, b: dyi, beta: betaA, c: d) }
                    else { Gemm.sgemm(transA: false, transB: !tb, m: g.m, n: g.k, k: g.n, a: dyi, b: bi, beta: betaA, c: d) }
                }
                if let db {
                    let d = db + i * g.k * g.n
                    if tb { Gemm.sgemm(transA: true, transB: ta, m: g.n, n: g.k, k: g.m, a: dyi, b: ai, beta: betaB, c: d) }
                    else { Gemm.sgemm(transA: !ta, transB: false, m: g.k, n: g.n, k: g.m, a: ai, b: dyi, beta: betaB, c: d) }
                }
            }
        }
    }
}

public extension F {
    /// nnabla's `F.batch_matmul(a, b, transpose_a, transpose_b)`.
    static func batchMatmul(_ a: Variable, _ b: Variable, transposeA: Bool = false, transposeB: Bool = false) throws -> Variable {
        try apply1(BatchMatmul(transposeA: transposeA, transposeB: transposeB), [a, b])
    }
}
