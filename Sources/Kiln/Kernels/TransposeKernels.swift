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
        run(src.assumingMemoryBound(to: UInt32.self), dst.assumingMemoryBound(to: UInt32.self)) { $0 = $1 }
    }

    /// `dst += src` over the views.
    public func add(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>) {
        run(src, dst) { $0 += $1 }
    }

    /// `copy` or `add` as `accumulate` says.
    public func store(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>, accumulate: Bool) {
        if accumulate { add(src, dst) } else { copy(src, dst) }
    }

    @inline(__always)
    private func offsets(_ item: Int) -> (Int, Int) {
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
    private func run<T>(_ src: UnsafePointer<T>, _ dst: UnsafeMutablePointer<T>, _ op: (inout T, T) -> Void) {
        if count == 0 { return }
        if tiled {
            let t = Self.tile
            Threads.items(outerCount * tilesA, workPerItem: t * lengthB) { item in
                let (so, dof) = offsets(item / tilesA)
                let a0 = (item % tilesA) * t
                let a1 = min(a0 + t, lengthA)
                let s = src + so, d = dst + dof
                var b0 = 0
                while b0 < lengthB {
                    let b1 = min(b0 + t, lengthB)
                    for a in a0..<a1 {
                        let sa = s + a * srcA, da = d + a * dstA
                        for b in b0..<b1 { op(&da[b * dstB], sa[b * srcB]) }
                    }
                    b0 = b1
                }
            }
        } else {
            let len = rowLength, ss = rowSrc, ds = rowDst
            Threads.items(outerCount, workPerItem: len) { item in
                let (so, dof) = offsets(item)
                let s = src + so, d = dst + dof
                if ss == 1 && ds == 1 {
                    for j in 0..<len { op(&d[j], s[j]) }
                } else {
                    for j in 0..<len { op(&d[j * ds], s[j * ss]) }
                }
            }
        }
    }
}
