/// Row-major single-precision matrix products: OpenBLAS for real work, a small Swift kernel for tiny
/// products (OpenBLAS 0.3.21's small-matrix path allocates on every call, which a plan run must not do, and
/// its call overhead dominates there anyway).
public enum Gemm {
    /// Products with at most this many multiply-adds run in Swift: OpenBLAS sends products up to 100^3 to its
    /// small-matrix path, which allocates.
    public static let smallProduct = 1_000_000
    /// Dot-product-shaped products (B transposed, A not: long K, small M x N, the convolutions' weight
    /// gradients) run in Swift up to this size: there the Swift kernel beats OpenBLAS's packing, which copies
    /// both long operands (ResNet-20's stage-3 projection, 32x64x512: 0.175 against 0.189 ms), while for the
    /// other forms OpenBLAS's packed kernel wins above `smallProduct` (64x512x32: 0.164 against 0.181 ms).
    public static let smallDotProduct = 1 << 20

    /// `C = alpha * op(A) * op(B) + beta * C` with row-major matrices; op(A) is MxK, op(B) is KxN.
    /// `lda`, `ldb`, `ldc` default to the tight leading dimensions.
    @inline(__always)
    public static func sgemm(transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
                             alpha: Float = 1, a: UnsafePointer<Float>, lda: Int? = nil,
                             b: UnsafePointer<Float>, ldb: Int? = nil,
                             beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int? = nil) {
        if m == 0 || n == 0 { return }
        let lda = lda ?? (transA ? m : k), ldb = ldb ?? (transB ? k : n), ldc = ldc ?? n
        if k == 0 {
            for i in 0..<m {
                let row = c + i * ldc
                if beta == 0 { for j in 0..<n { row[j] = 0 } } else if beta != 1 { for j in 0..<n { row[j] *= beta } }
            }
            return
        }
        // (Without OpenBLAS, which compiling a plan reports as an error, the Swift kernel still gives the product.)
        guard let blas = OpenBLAS.library,
              !(m * n * k <= smallProduct || (transB && !transA && m * n * k <= smallDotProduct)) else {
            small(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb,
                  beta: beta, c: c, ldc: ldc)
            return
        }
        // CBLAS's enumerations: row-major 101, no transpose 111, transpose 112.
        blas.sgemm(101, transA ? 112 : 111, transB ? 112 : 111,
                   Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }

    /// The same product in Swift. When B's rows are contiguous, C is computed in tiles of 4 rows x 16 columns
    /// held in eight 8-wide accumulators while K is walked (each loaded piece of B serves four rows, each
    /// broadcast element of A two vectors). Tiles go down a strip of 16 columns before moving right, so the
    /// strip of B (K x 16) stays in L1 for every row. Columns left over are updated as
    /// `C[i,:] += a(i,p) * B[p,:]`. When B is transposed, C's entries are dot products along K.
    static func small(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
                      a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                      beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        var done = 0
        if !transB {
            done = n - n % 16
            var j = 0
            while j < done {
                var i = 0
                while i < m {
                    tile4x16(transA: transA, rows: min(4, m - i), k: k, alpha: alpha, a: transA ? a + i : a + i * lda,
                             lda: lda, b: b + j, ldb: ldb, beta: beta, c: c + i * ldc + j, ldc: ldc)
                    i += 4
                }
                j += 16
            }
        }
        if transB && !transA {
            // C's entries are dot products of rows of A and rows of B: 2x4 blocks of them share their loads.
            var i = 0
            while i + 2 <= m {
                var j = 0
                while j < n {
                    tile2x4NT(columns: min(4, n - j), k: k, alpha: alpha, a: a + i * lda, lda: lda, b: b + j * ldb,
                              ldb: ldb, beta: beta, c: c + i * ldc + j, ldc: ldc)
                    j += 4
                }
                i += 2
            }
            if i == m { return }
        }
        if done == n { return }
        // Rows the 2x4 dot-product tiles left (the last one of an odd m).
        let firstRow = transB && !transA ? m - m % 2 : 0
        for i in firstRow..<m {
            let row = c + i * ldc
            if beta == 0 { for j in done..<n { row[j] = 0 } } else if beta != 1 { for j in done..<n { row[j] *= beta } }
            if !transB {
                for p in 0..<k {
                    // No skip for a zero: 0 * inf must stay NaN, as in the tiles and in OpenBLAS.
                    let av = alpha * (transA ? a[p * lda + i] : a[i * lda + p])
                    let brow = b + p * ldb
                    for j in done..<n { row[j] += av * brow[j] }
                }
            } else if !transA {
                let arow = a + i * lda
                for j in 0..<n { row[j] += alpha * dot(arow, b + j * ldb, k) }
            } else {
                for j in 0..<n {
                    let bcol = b + j * ldb
                    var s: Float = 0
                    for p in 0..<k { s += a[p * lda + i] * bcol[p] }
                    row[j] += alpha * s
                }
            }
        }
    }

    /// One tile: `C[0..<rows, 0..<16] = alpha * op(A) * B + beta * C` for `rows <= 4`, with `a` at the tile's
    /// first row of op(A), `b` and `c` at its first column. Rows past `rows` repeat the last one, unstored.
    @inline(__always)
    private static func tile4x16(transA: Bool, rows: Int, k: Int, alpha: Float,
                                 a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                                 beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        typealias V = SIMD8<Float>
        let t = Tile4x16(rows: rows, k: k, a: a, rowStep: transA ? 1 : lda, kStep: transA ? lda : 1, b: b, ldb: ldb)
        // A local function, not an array of accumulators: this runs inside plans, which must not allocate.
        let craw = UnsafeMutableRawPointer(c)
        @inline(__always) func store(_ r: Int, _ x0: V, _ x1: V) {
            let off = r * ldc * 4
            var v0 = x0 * alpha, v1 = x1 * alpha
            if beta != 0 {
                v0.addProduct(V(repeating: beta), craw.loadUnaligned(fromByteOffset: off, as: V.self))
                v1.addProduct(V(repeating: beta), craw.loadUnaligned(fromByteOffset: off + 32, as: V.self))
            }
            craw.storeBytes(of: v0, toByteOffset: off, as: V.self)
            craw.storeBytes(of: v1, toByteOffset: off + 32, as: V.self)
        }
        store(0, t.c00, t.c01)
        if rows > 1 { store(1, t.c10, t.c11) }
        if rows > 2 { store(2, t.c20, t.c21) }
        if rows > 3 { store(3, t.c30, t.c31) }
    }

    /// Two rows of C, up to four columns: `C[r, c] = alpha * dot(A[r, :], B[c, :]) + beta * C[r, c]` with A and
    /// B both contiguous along K. Eight 8-wide accumulators take six loads per eight FMAs (a lone dot product
    /// takes two per one). Columns past `columns` repeat the last one and are not stored.
    @inline(__always)
    private static func tile2x4NT(columns: Int, k: Int, alpha: Float, a: UnsafePointer<Float>, lda: Int,
                                  b: UnsafePointer<Float>, ldb: Int, beta: Float,
                                  c: UnsafeMutablePointer<Float>, ldc: Int) {
        typealias V = SIMD8<Float>
        let a0 = UnsafeRawPointer(a), a1 = UnsafeRawPointer(a + lda)
        let b0 = UnsafeRawPointer(b), b1 = UnsafeRawPointer(b + min(1, columns - 1) * ldb)
        let b2 = UnsafeRawPointer(b + min(2, columns - 1) * ldb), b3 = UnsafeRawPointer(b + min(3, columns - 1) * ldb)
        var t = Tile2x4()
        t.add(a0, a1, b0, b1, b2, b3, bytes: (k - k % 8) * 4)
        @inline(__always) func finish(_ r: Int, _ col: Int, _ acc: V) {
            let ar = r == 0 ? a : a + lda, bc = b + min(col, columns - 1) * ldb
            var sum = acc.sum()
            for p in (k - k % 8)..<k { sum += ar[p] * bc[p] }
            let dst = c + r * ldc + col
            dst.pointee = alpha * sum + (beta == 0 ? 0 : beta * dst.pointee)
        }
        finish(0, 0, t.s00); finish(1, 0, t.s10)
        if columns > 1 { finish(0, 1, t.s01); finish(1, 1, t.s11) }
        if columns > 2 { finish(0, 2, t.s02); finish(1, 2, t.s12) }
        if columns > 3 { finish(0, 3, t.s03); finish(1, 3, t.s13) }
    }

    /// `C = A_0 B_0^T + ... + A_(segments-1) B_(segments-1)^T + beta * C` (M x N), where segment `s` of row `i`
    /// of A is `length` floats at `a + i*lda + s*aSegment` and of row `j` of B at `b + j*ldb + s*bSegment`:
    /// a dot-product-shaped product whose K is split into pieces that are not adjacent in memory (a chunk
    /// of samples' dY rows read in place instead of gathered side by side first). `length` must be a multiple
    /// of 8; the sums are then those of `small` over the gathered rows, bit for bit (each vector lane takes
    /// the same positions in the same order), except in the last row of an odd M, which `small` sums as a
    /// lone dot product. Runs in the 2x4 tiles of `small` with the accumulators carried
    /// from one segment to the next.
    static func segmentedNT(m: Int, n: Int, segments: Int, length: Int,
                            a: UnsafePointer<Float>, lda: Int, aSegment: Int,
                            b: UnsafePointer<Float>, ldb: Int, bSegment: Int,
                            beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        var i = 0
        while i < m {
            var j = 0
            while j < n {
                segmentedTile2x4NT(rows: min(2, m - i), columns: min(4, n - j), segments: segments, length: length,
                                   a: a + i * lda, lda: lda, aSegment: aSegment, b: b + j * ldb, ldb: ldb,
                                   bSegment: bSegment, beta: beta, c: c + i * ldc + j, ldc: ldc)
                j += 4
            }
            i += 2
        }
    }

    /// `tile2x4NT` over segments, for `rows <= 2` (a second row past `rows` repeats the first, unstored).
    @inline(__always)
    private static func segmentedTile2x4NT(rows: Int, columns: Int, segments: Int, length: Int,
                                           a: UnsafePointer<Float>, lda: Int, aSegment: Int,
                                           b: UnsafePointer<Float>, ldb: Int, bSegment: Int, beta: Float,
                                           c: UnsafeMutablePointer<Float>, ldc: Int) {
        typealias V = SIMD8<Float>
        let secondRow = rows > 1 ? lda : 0
        var t = Tile2x4()
        for s in 0..<segments {
            let a0 = UnsafeRawPointer(a + s * aSegment), a1 = UnsafeRawPointer(a + s * aSegment + secondRow)
            let bs = b + s * bSegment
            t.add(a0, a1, UnsafeRawPointer(bs), UnsafeRawPointer(bs + min(1, columns - 1) * ldb),
                  UnsafeRawPointer(bs + min(2, columns - 1) * ldb), UnsafeRawPointer(bs + min(3, columns - 1) * ldb),
                  bytes: length * 4)
        }
        @inline(__always) func finish(_ r: Int, _ col: Int, _ acc: V) {
            let dst = c + r * ldc + col
            dst.pointee = acc.sum() + (beta == 0 ? 0 : beta * dst.pointee)
        }
        finish(0, 0, t.s00)
        if columns > 1 { finish(0, 1, t.s01) }
        if columns > 2 { finish(0, 2, t.s02) }
        if columns > 3 { finish(0, 3, t.s03) }
        guard rows > 1 else { return }
        finish(1, 0, t.s10)
        if columns > 1 { finish(1, 1, t.s11) }
        if columns > 2 { finish(1, 2, t.s12) }
        if columns > 3 { finish(1, 3, t.s13) }
    }

    /// A dot product with eight independent partial sums, so the loop vectorises (a single running sum
    /// cannot be reordered under IEEE rules).
    @inline(__always)
    static func dot(_ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, _ n: Int) -> Float {
        var acc0 = SIMD8<Float>(), acc1 = SIMD8<Float>()
        let rx = UnsafeRawPointer(x), ry = UnsafeRawPointer(y)
        var p = 0
        while p + 16 <= n {
            acc0 += rx.loadUnaligned(fromByteOffset: p * 4, as: SIMD8<Float>.self)
                * ry.loadUnaligned(fromByteOffset: p * 4, as: SIMD8<Float>.self)
            acc1 += rx.loadUnaligned(fromByteOffset: p * 4 + 32, as: SIMD8<Float>.self)
                * ry.loadUnaligned(fromByteOffset: p * 4 + 32, as: SIMD8<Float>.self)
            p += 16
        }
        var s = (acc0 + acc1).sum()
        while p < n { s += x[p] * y[p]; p += 1 }
        return s
    }
}
