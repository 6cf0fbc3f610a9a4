import KilnCore

/// Sums over a set of axes, planned once per shape.
///
/// The input shape is coalesced (size-1 dimensions dropped, neighbouring kept or reduced dimensions merged).
/// When the reduced axes form one block the input is `outer x reduced x inner` and both directions are plain
/// contiguous loops (row sums when `inner == 1`, column sums otherwise); other axis sets use a general
/// strided loop.
public struct ReducePlan {
    enum Kind { case copy, blocks, general }
    let kind: Kind
    let inCount: Int
    let outCount: Int
    /// Elements summed into each output (the product of the reduced dimensions).
    public let reducedCount: Int
    let outer: Int, reduced: Int, inner: Int
    /// General case: operands (x or dx, y or dy) over the input shape.
    let loop: StridedLoop

    /// `axes` are normalised (non-negative, in range, unique) axes of `shape`.
    public init(shape: [Int], axes: [Int]) {
        inCount = shape.reduce(1, *)
        var keep = shape
        for a in axes { keep[a] = 1 }
        outCount = keep.reduce(1, *)
        reducedCount = axes.reduce(1) { $0 * shape[$1] }
        // Coalesce into alternating blocks of kept / reduced dimensions.
        var blocks: [(size: Int, reduced: Bool)] = []
        let isReduced = Set(axes)
        for d in shape.indices where shape[d] != 1 {
            let r = isReduced.contains(d)
            if let last = blocks.last, last.reduced == r {
                blocks[blocks.count - 1].size *= shape[d]
            } else {
                blocks.append((shape[d], r))
            }
        }
        let reducedBlocks = blocks.filter { $0.reduced }.count
        loop = StridedLoop(shape: shape, strides: [Shapes.strides(shape), Broadcast.strides(keep, in: shape)])
        if reducedBlocks == 0 {
            kind = .copy
            outer = outCount; reduced = 1; inner = 1
        } else if reducedBlocks == 1 {
            kind = .blocks
            let r = blocks.firstIndex { $0.reduced }!
            outer = blocks[..<r].reduce(1) { $0 * $1.size }
            reduced = blocks[r].size
            inner = blocks[(r + 1)...].reduce(1) { $0 * $1.size }
        } else {
            kind = .general
            outer = 0; reduced = 0; inner = 0
        }
    }

    /// `y = scale * sum(x)` over the reduced axes.
    public func forward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, scale: Float) {
        if outCount == 0 { return }
        if inCount == 0 {
            y.update(repeating: 0 * scale, count: outCount)
            return
        }
        switch kind {
        case .copy:
            if scale == 1 {
                Elementwise.store(outCount, x, y, accumulate: false)
            } else {
                Elementwise.map(outCount, x, y, Scaled(factor: scale))
            }
        case .blocks:
            let outer = outer, r = reduced, inner = inner
            if inner == 1 {
                Threads.items(outer, workPerItem: r, RowSums(x: x, y: y, r: r, scale: scale))
                return
            }
            if outer == 1 {
                Threads.chunks(inner, minimumWork: max(2, Threads.minimumWork / r),
                               ColumnSums(x: x, y: y, r: r, inner: inner, scale: scale))
            } else {
                Threads.items(outer, workPerItem: r * inner,
                              BlockColumnSums(x: x, y: y, r: r, inner: inner, scale: scale))
            }
        case .general:
            y.update(repeating: 0, count: outCount)
            let n = loop.inner, ix = loop.i0, iy = loop.i1
            loop.rows(0, loop.outer) { o0, o1, _ in
                let px = x + o0, py = y + o1
                if iy == 0 {
                    py[0] += Reduce.sum(px, n, stride: ix)
                } else {
                    for i in 0..<n { py[i * iy] += px[i * ix] }
                }
            }
            if scale != 1 { for i in 0..<outCount { y[i] *= scale } }
        }
    }

    /// Column sums of an `r x inner` block, columns `s..<e`: `y[i] = scale * sum_k x[k, i]` (r >= 1).
    @inline(__always)
    static func columns(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ r: Int, _ inner: Int,
                        _ s: Int, _ e: Int, _ scale: Float) {
        for i in s..<e { y[i] = x[i] }
        var k = 1
        while k < r {
            let xk = x + k * inner
            for i in s..<e { y[i] += xk[i] }
            k += 1
        }
        if scale != 1 { for i in s..<e { y[i] *= scale } }
    }

    /// `dx (+)= scale * dy` broadcast back over the reduced axes.
    public func backward(_ dy: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>, scale: Float,
                         accumulate: Bool) {
        if inCount == 0 { return }
        switch kind {
        case .copy:
            if accumulate {
                Threads.chunks(inCount, AddScaledGradient(dy: dy, dx: dx, scale: scale))
            } else {
                Elementwise.map(inCount, dy, dx, Scaled(factor: scale))
            }
        case .blocks:
            let r = reduced, inner = inner
            Threads.chunks(outer * r, minimumWork: max(2, Threads.minimumWork / max(inner, 1)),
                           BroadcastRowsBack(dy: dy, dx: dx, r: r, inner: inner, scale: scale, accumulate: accumulate))
        case .general:
            let n = loop.inner, ix = loop.i0, iy = loop.i1
            let loop = loop
            Threads.chunks(loop.outer, minimumWork: loop.minimumRows,
                           BroadcastGeneralBack(loop: loop, dy: dy, dx: dx, n: n, ix: ix, iy: iy, scale: scale,
                                                accumulate: accumulate))
        }
    }
}

/// Contiguous reductions.
public enum Reduce {
    /// Sum of `n` contiguous floats, with 16 partial sums (vectorised, and more accurate than one running sum).
    @inline(__always)
    public static func sum(_ p: UnsafePointer<Float>, _ n: Int) -> Float {
        let raw = UnsafeRawPointer(p)
        var a0 = SIMD8<Float>(), a1 = SIMD8<Float>()
        var i = 0
        while i + 16 <= n {
            a0 += raw.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
            a1 += raw.loadUnaligned(fromByteOffset: (i + 8) * 4, as: SIMD8<Float>.self)
            i += 16
        }
        var s = (a0 + a1).sum()
        while i < n { s += p[i]; i += 1 }
        return s
    }

    /// Sum of `n` floats `stride` apart.
    @inline(__always)
    public static func sum(_ p: UnsafePointer<Float>, _ n: Int, stride: Int) -> Float {
        if stride == 1 { return sum(p, n) }
        var s: Float = 0
        for i in 0..<n { s += p[i * stride] }
        return s
    }

    /// Largest of `n` floats `stride` apart (n >= 1).
    @inline(__always)
    public static func max(_ p: UnsafePointer<Float>, _ n: Int, stride: Int = 1) -> Float {
        var m = p[0]
        for i in 1..<Swift.max(n, 1) { let v = p[i * stride]; if v > m { m = v } }
        return m
    }
}

/// `y[o] = scale * sum(row o)` for rows of `r` contiguous values.
struct RowSums: ParallelItem {
    let x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, r: Int, scale: Float
    @inline(__always) func callAsFunction(_ o: Int) {
        y[o] = Reduce.sum(x + o * r, r) * scale
    }
}

/// Column sums of one `r x inner` block over a range of columns.
struct ColumnSums: ParallelChunk {
    let x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, r: Int, inner: Int, scale: Float
    @inline(__always) func callAsFunction(_ s: Int, _ e: Int) {
        ReducePlan.columns(x, y, r, inner, s, e, scale)
    }
}

/// Column sums of each `r x inner` block, one block per item.
struct BlockColumnSums: ParallelItem {
    let x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, r: Int, inner: Int, scale: Float
    @inline(__always) func callAsFunction(_ o: Int) {
        ReducePlan.columns(x + o * r * inner, y + o * inner, r, inner, 0, inner, scale)
    }
}

/// `dx += dy * scale`.
struct AddScaledGradient: ParallelChunk {
    let dy: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>, scale: Float
    @inline(__always) func callAsFunction(_ s: Int, _ e: Int) {
        for i in s..<e { dx[i] += dy[i] * scale }
    }
}

/// `dx (+)= scale * dy` for rows `s..<e` of the reduced blocks, each row from its block's `dy` row.
struct BroadcastRowsBack: ParallelChunk {
    let dy: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>, r: Int, inner: Int, scale: Float, accumulate: Bool
    @inline(__always) func callAsFunction(_ s: Int, _ e: Int) {
        for row in s..<e {
            let src = dy + (row / r) * inner, dst = dx + row * inner
            if accumulate {
                for i in 0..<inner { dst[i] += src[i] * scale }
            } else {
                for i in 0..<inner { dst[i] = src[i] * scale }
            }
        }
    }
}

/// `dx (+)= scale * dy` over the general layout, rows `s..<e` of the loop.
struct BroadcastGeneralBack: ParallelChunk {
    let loop: StridedLoop, dy: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>, n: Int, ix: Int, iy: Int
    let scale: Float, accumulate: Bool
    @inline(__always) func callAsFunction(_ s: Int, _ e: Int) {
        loop.rows(s, e) { o0, o1, _ in
            let px = dx + o0, py = dy + o1
            if accumulate {
                for i in 0..<n { px[i * ix] += py[i * iy] * scale }
            } else {
                for i in 0..<n { px[i * ix] = py[i * iy] * scale }
            }
        }
    }
}
