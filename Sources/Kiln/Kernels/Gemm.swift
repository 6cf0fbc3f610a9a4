import CBLAS

/// Row-major single-precision matrix products: OpenBLAS for real work, a small Swift kernel for tiny
/// products (OpenBLAS 0.3.21's small-matrix path allocates on every call, which a plan run must not do, and
/// its call overhead dominates there anyway).
public enum Gemm {
    /// Products with at most this many multiply-adds run in Swift.
    public static let smallProduct = 1 << 20

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
        if m * n * k <= smallProduct {
            small(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb,
                  beta: beta, c: c, ldc: ldc)
            return
        }
        cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }

    /// The same product with plain loops: rows of C are updated as `C[i,:] += a(i,p) * B[p,:]` when B's rows
    /// are contiguous (vectorised over N), and as dot products along K when B is transposed.
    static func small(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
                      a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                      beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        for i in 0..<m {
            let row = c + i * ldc
            if beta == 0 { for j in 0..<n { row[j] = 0 } } else if beta != 1 { for j in 0..<n { row[j] *= beta } }
            if !transB {
                for p in 0..<k {
                    let av = alpha * (transA ? a[p * lda + i] : a[i * lda + p])
                    if av == 0 { continue }
                    let brow = b + p * ldb
                    for j in 0..<n { row[j] += av * brow[j] }
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
