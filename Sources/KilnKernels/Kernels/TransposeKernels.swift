/// A copy between two strided views of one logical shape: the single kernel behind Transpose, Concatenate,
/// Split and Slice (forward and backward).
///
/// `dst[Σ i_d * dstStrides[d]] = src[Σ i_d * srcStrides[d]]` (or `+=`) for every index `i` of `shape`.
/// Strides are in elements and may be negative (slices with negative steps); the caller offsets the base
/// pointers. The plan is computed once: size-1 dimensions are dropped, dimensions that stay adjacent in both
/// views are merged, and then either
/// - rows: an inner loop over one dimension (the one contiguous in the destination, else in the source), or
/// - tiles: when one dimension is contiguous in the source and another in the destination (a real transpose),
///   32x32 blocks over those two, so both sides are read and written a cache line at a time;
/// with the remaining dimensions enumerated by dividing an item number (no index arrays at run time, so a
/// kernel that runs a plan does not allocate). Items are spread over the threads for large copies.
public final class StridedCopy {
    /// Total elements (0: nothing to do).
    public let count: Int
    private let outerShape: [Int]
    private let outerSrc: [Int]
    private let outerDst: [Int]
    private let outerCount: Int
    private let tiled: Bool
    // rows: length, source stride, destination stride
    private let rowLength: Int, rowSrc: Int, rowDst: Int
    // tiles: dimension A (source-contiguous) and B (destination-contiguous)
    private let lengthA: Int, srcA: Int, dstA: Int
    private let lengthB: Int, srcB: Int, dstB: Int
    private let tilesA: Int
    private static let tile = 32

    public init(shape: [Int], src: [Int], dst: [Int]) {
        var n = 1
        for d in shape { n *= d }
        count = n
        // Drop size-1 dimensions, then merge from the innermost outwards.
        var dims: [(n: Int, s: Int, d: Int)] = []
        for i in shape.indices where shape[i] != 1 { dims.append((shape[i], src[i], dst[i])) }
        var merged: [(n: Int, s: Int, d: Int)] = []
        for dim in dims.reversed() {
            if let last = merged.last, dim.s == last.s * last.n, dim.d == last.d * last.n {
                merged[merged.count - 1] = (dim.n * last.n, last.s, last.d)
            } else {
                merged.append(dim)
            }
        }
        merged.reverse()
        if merged.isEmpty { merged = [(1, 1, 1)] }

        let b = merged.lastIndex { $0.d == 1 }
        let a = merged.lastIndex { $0.s == 1 }
        var inner: [Int]
        if let a, let b, a != b, merged[a].n >= 8, merged[b].n >= 8 {
            tiled = true
            inner = [a, b]
            (lengthA, srcA, dstA) = merged[a]
            (lengthB, srcB, dstB) = merged[b]
            tilesA = (lengthA + Self.tile - 1) / Self.tile
            (rowLength, rowSrc, rowDst) = (0, 0, 0)
        } else {
            tiled = false
            let r = b ?? a ?? (merged.count - 1)
            inner = [r]
            (rowLength, rowSrc, rowDst) = merged[r]
            (lengthA, srcA, dstA, lengthB, srcB, dstB, tilesA) = (0, 0, 0, 0, 0, 0, 0)
        }
        var os: [Int] = [], ss: [Int] = [], ds: [Int] = []
        for i in merged.indices where !inner.contains(i) {
            os.append(merged[i].n); ss.append(merged[i].s); ds.append(merged[i].d)
        }
        outerShape = os
        outerSrc = ss
        outerDst = ds
        outerCount = os.reduce(1, *)
    }

    /// `dst = src` over the views, bit for bit (any 4-byte element type).
    public func copy(_ src: UnsafeRawPointer, _ dst: UnsafeMutableRawPointer) {
        run(src.assumingMemoryBound(to: UInt32.self), dst.assumingMemoryBound(to: UInt32.self), CopyBits())
    }

    /// `dst += src` over the views.
    public func add(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>) {
        run(src, dst, AddFloats())
    }

    /// `copy` or `add` as `accumulate` says.
    public func store(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>, accumulate: Bool) {
        if accumulate { add(src, dst) } else { copy(src, dst) }
    }

    @inline(__always)
    fileprivate func offsets(_ item: Int) -> (Int, Int) {
        var rem = item, so = 0, dof = 0
        var d = outerShape.count - 1
        while d >= 0 {
            let n = outerShape[d]
            let i = rem % n
            rem /= n
            so += i * outerSrc[d]
            dof += i * outerDst[d]
            d -= 1
        }
        return (so, dof)
    }

    @inline(__always)
    private func run<Op: ElementStore>(_ src: UnsafePointer<Op.Element>, _ dst: UnsafeMutablePointer<Op.Element>, _ op: Op) {
        if count == 0 { return }
        if tiled {
            Threads.items(outerCount * tilesA, workPerItem: Self.tile * lengthB,
                          Tiles(copy: self, src: src, dst: dst, op: op))
        } else {
            Threads.items(outerCount, workPerItem: rowLength, Rows(copy: self, src: src, dst: dst, op: op))
        }
    }

    /// One item: a 32-wide band of dimension A, walked in 32x32 tiles along dimension B.
    private struct Tiles<Op: ElementStore>: ParallelItem {
        let copy: StridedCopy, src: UnsafePointer<Op.Element>, dst: UnsafeMutablePointer<Op.Element>, op: Op
        @inline(__always) func callAsFunction(_ item: Int) {
            let c = copy, t = StridedCopy.tile
            let (so, dof) = c.offsets(item / c.tilesA)
            let a0 = (item % c.tilesA) * t
            let a1 = min(a0 + t, c.lengthA)
            let s = src + so, d = dst + dof
            var b0 = 0
            while b0 < c.lengthB {
                let b1 = min(b0 + t, c.lengthB)
                for a in a0..<a1 {
                    let sa = s + a * c.srcA, da = d + a * c.dstA
                    for b in b0..<b1 { op(&da[b * c.dstB], sa[b * c.srcB]) }
                }
                b0 = b1
            }
        }
    }

    /// One item: one row along the inner dimension.
    private struct Rows<Op: ElementStore>: ParallelItem {
        let copy: StridedCopy, src: UnsafePointer<Op.Element>, dst: UnsafeMutablePointer<Op.Element>, op: Op
        @inline(__always) func callAsFunction(_ item: Int) {
            let len = copy.rowLength, ss = copy.rowSrc, ds = copy.rowDst
            let (so, dof) = copy.offsets(item)
            let s = src + so, d = dst + dof
            if ss == 1 && ds == 1 {
                for j in 0..<len { op(&d[j], s[j]) }
            } else {
                for j in 0..<len { op(&d[j * ds], s[j * ss]) }
            }
        }
    }
}

/// How `StridedCopy` stores one element: a copy or an addition.
protocol ElementStore {
    associatedtype Element
    func callAsFunction(_ d: inout Element, _ s: Element)
}

private struct CopyBits: ElementStore {
    @inline(__always) func callAsFunction(_ d: inout UInt32, _ s: UInt32) { d = s }
}

private struct AddFloats: ElementStore {
    @inline(__always) func callAsFunction(_ d: inout Float, _ s: Float) { d += s }
}

