import KilnCore

/// Loops over an N-d index space shared by up to three operands that each have their own strides (0 along the
/// dimensions an operand is broadcast over). Built once when a kernel is made; running it does not allocate.
///
/// The space is coalesced first: size-1 dimensions are dropped and neighbouring dimensions that every operand
/// walks contiguously are merged, so `(N, C, H, W) + (1, C, 1, 1)` becomes `N*C` rows of `H*W`, where the
/// second operand is constant along each row. The innermost merged dimension is the row (`inner` elements,
/// operand strides `i0/i1/i2`); the others are enumerated by row index (`outer` rows, offsets computed by
/// division over `dims`).
public struct StridedLoop {
    /// Elements in the whole space.
    public let count: Int
    /// Length of a row (the innermost merged dimension); 0 when the space is empty.
    public let inner: Int
    /// Number of rows.
    public let outer: Int
    /// Sizes of the outer merged dimensions, outermost first.
    public let dims: [Int]
    /// Per operand, the stride of each outer dimension.
    public let s0: [Int], s1: [Int], s2: [Int]
    /// Per operand, the stride along a row (0 or the element stride).
    public let i0: Int, i1: Int, i2: Int

    /// `shape` is the iteration space; `strides[k]` the element strides of operand k (1 to 3 operands) in it.
    public init(shape: [Int], strides: [[Int]]) {
        var ops = strides
        while ops.count < 3 { ops.append([Int](repeating: 0, count: shape.count)) }
        let total = shape.reduce(1, *)
        count = total
        // Keep the dimensions larger than 1, then merge neighbours walked contiguously by every operand.
        var sizes: [Int] = []
        var st: [[Int]] = [[], [], []]
        for d in shape.indices where shape[d] != 1 {
            if let last = sizes.last,
               (0..<3).allSatisfy({ st[$0].last! == ops[$0][d] * shape[d] }) {
                sizes[sizes.count - 1] = last * shape[d]
                for k in 0..<3 { st[k][st[k].count - 1] = ops[k][d] }
            } else {
                sizes.append(shape[d])
                for k in 0..<3 { st[k].append(ops[k][d]) }
            }
        }
        if total == 0 {
            inner = 0; outer = 0; dims = []
            s0 = []; s1 = []; s2 = []
            i0 = 0; i1 = 0; i2 = 0
            return
        }
        if sizes.isEmpty {
            sizes = [1]
            st = [[0], [0], [0]]
        }
        inner = sizes.last!
        outer = total / inner
        dims = Array(sizes.dropLast())
        s0 = Array(st[0].dropLast()); s1 = Array(st[1].dropLast()); s2 = Array(st[2].dropLast())
        i0 = st[0].last!; i1 = st[1].last!; i2 = st[2].last!
    }

    /// Calls `body(o0, o1, o2)` with each operand's offset at the start of rows `start..<end`.
    @inlinable @inline(__always)
    public func rows(_ start: Int, _ end: Int, _ body: (Int, Int, Int) -> Void) {
        let nd = dims.count
        dims.withUnsafeBufferPointer { dp in
            s0.withUnsafeBufferPointer { p0 in
                s1.withUnsafeBufferPointer { p1 in
                    s2.withUnsafeBufferPointer { p2 in
                        for k in start..<end {
                            var r = k, o0 = 0, o1 = 0, o2 = 0
                            var d = nd - 1
                            while d >= 0 {
                                let q = r / dp[d]
                                let i = r - q * dp[d]
                                r = q
                                o0 += i * p0[d]; o1 += i * p1[d]; o2 += i * p2[d]
                                d -= 1
                            }
                            body(o0, o1, o2)
                        }
                    }
                }
            }
        }
    }

    /// Threads' minimum row count for a parallel split, so that each part gets enough elements.
    @inlinable public var minimumRows: Int { max(2, Threads.minimumWork / max(inner, 1)) }
}

/// Broadcasting element-wise kernels built on `StridedLoop`.
public enum Broadcast {
    /// Row-major strides of `shape` with 0 where the operand has size 1 and the output does not.
    public static func strides(_ operand: [Int], in output: [Int]) -> [Int] {
        var s = Shapes.strides(operand)
        for d in operand.indices where operand[d] == 1 && output[d] != 1 { s[d] = 0 }
        return s
    }

    /// numpy's broadcast of two shapes of the same rank; nil when a dimension pair is incompatible.
    public static func shape(_ a: [Int], _ b: [Int]) -> [Int]? {
        guard a.count == b.count else { return nil }
        var out = a
        for d in a.indices {
            if a[d] == b[d] { continue }
            if a[d] == 1 { out[d] = b[d] } else if b[d] == 1 { out[d] = a[d] } else { return nil }
        }
        return out
    }

    /// `out[i] = op(a[ia], b[ib])` over a loop whose operands are (out, a, b); `out` is contiguous.
    @inlinable @inline(__always)
    package static func binary<Op: BinaryFloatOp>(_ loop: StridedLoop, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
                                          _ out: UnsafeMutablePointer<Float>, _ op: Op) {
        Threads.chunks(loop.outer, minimumWork: loop.minimumRows, BinaryRows(loop: loop, a: a, b: b, out: out, op: op))
    }

    @usableFromInline internal struct BinaryRows<Op: BinaryFloatOp>: ParallelChunk {
        @usableFromInline let loop: StridedLoop, a: UnsafePointer<Float>, b: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>, op: Op

        @inlinable init(loop: StridedLoop, a: UnsafePointer<Float>, b: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>, op: Op) {
            self.loop = loop; self.a = a; self.b = b; self.out = out; self.op = op
        }

        @inlinable @inline(__always) package func callAsFunction(_ s: Int, _ e: Int) {
            let n = loop.inner, ia = loop.i1, ib = loop.i2
            loop.rows(s, e) { o0, o1, o2 in
                let y = out + o0, pa = a + o1, pb = b + o2
                if ia == 1 && ib == 1 {
                    for i in 0..<n { y[i] = op(pa[i], pb[i]) }
                } else if ia == 1 && ib == 0 {
                    let bv = pb[0]
                    for i in 0..<n { y[i] = op(pa[i], bv) }
                } else if ia == 0 && ib == 1 {
                    let av = pa[0]
                    for i in 0..<n { y[i] = op(av, pb[i]) }
                } else {
                    for i in 0..<n { y[i] = op(pa[i * ia], pb[i * ib]) }
                }
            }
        }
    }

    /// Gradient of a broadcast operand: `g[ig] (+)= sum of op(dy[i], a[ia], b[ib])` over the loop (operands
    /// dy, a, b), where `g` is laid out like operand `which` (1 = a, 2 = b). Overwrite mode zeroes `g`
    /// (`gCount` elements) first. Runs serially: different rows add into the same gradient elements.
    @inline(__always)
    public static func reduce(_ loop: StridedLoop, dy: UnsafePointer<Float>, _ a: UnsafePointer<Float>,
                              _ b: UnsafePointer<Float>, into g: UnsafeMutablePointer<Float>, gCount: Int,
                              which: Int, accumulate: Bool, _ op: (Float, Float, Float) -> Float) {
        if !accumulate { g.update(repeating: 0, count: gCount) }
        let n = loop.inner, id = loop.i0, ia = loop.i1, ib = loop.i2
        let ig = which == 1 ? ia : ib
        loop.rows(0, loop.outer) { o0, o1, o2 in
            let pd = dy + o0, pa = a + o1, pb = b + o2
            let pg = g + (which == 1 ? o1 : o2)
            if ig == 0 {
                var acc: Float = 0
                for i in 0..<n { acc += op(pd[i * id], pa[i * ia], pb[i * ib]) }
                pg[0] += acc
            } else {
                for i in 0..<n { pg[i * ig] += op(pd[i * id], pa[i * ia], pb[i * ib]) }
            }
        }
    }

    /// Gradient of an operand that has the loop's full (output) shape: `g[i] (+)= op(dy[i], a[ia], b[ib])`
    /// over a loop whose operands are (dy, a, b). Rows write disjoint elements, so this runs in parallel.
    @inlinable @inline(__always)
    package static func gradient<Op: TernaryFloatOp>(_ loop: StridedLoop, _ dy: UnsafePointer<Float>, _ a: UnsafePointer<Float>,
                                             _ b: UnsafePointer<Float>, into g: UnsafeMutablePointer<Float>,
                                             accumulate: Bool, _ op: Op) {
        Threads.chunks(loop.outer, minimumWork: loop.minimumRows,
                       GradientRows(loop: loop, dy: dy, a: a, b: b, g: g, accumulate: accumulate, op: op))
    }

    @usableFromInline internal struct GradientRows<Op: TernaryFloatOp>: ParallelChunk {
        @usableFromInline let loop: StridedLoop, dy: UnsafePointer<Float>, a: UnsafePointer<Float>, b: UnsafePointer<Float>
        @usableFromInline let g: UnsafeMutablePointer<Float>, accumulate: Bool, op: Op

        @inlinable init(loop: StridedLoop, dy: UnsafePointer<Float>, a: UnsafePointer<Float>, b: UnsafePointer<Float>, g: UnsafeMutablePointer<Float>, accumulate: Bool, op: Op) {
            self.loop = loop; self.dy = dy; self.a = a; self.b = b; self.g = g; self.accumulate = accumulate; self.op = op
        }

        @inlinable @inline(__always) package func callAsFunction(_ s: Int, _ e: Int) {
            let n = loop.inner, ia = loop.i1, ib = loop.i2
            loop.rows(s, e) { o0, o1, o2 in
                let pd = dy + o0, pg = g + o0, pa = a + o1, pb = b + o2
                if accumulate {
                    for i in 0..<n { pg[i] += op(pd[i], pa[i * ia], pb[i * ib]) }
                } else {
                    for i in 0..<n { pg[i] = op(pd[i], pa[i * ia], pb[i * ib]) }
                }
            }
        }
    }
}
