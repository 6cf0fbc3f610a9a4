import CBLAS

/// Row-major single-precision matrix products through OpenBLAS.
public enum Gemm {
    /// `C = alpha * op(A) * op(B) + beta * C` with row-major matrices; op(A) is MxK, op(B) is KxN.
    /// `lda`, `ldb`, `ldc` default to the tight leading dimensions.
    @inline(__always)
    public static func sgemm(transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
                             alpha: Float = 1, a: UnsafePointer<Float>, lda: Int? = nil,
                             b: UnsafePointer<Float>, ldb: Int? = nil,
                             beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int? = nil) {
        if m == 0 || n == 0 { return }
        if k == 0 {
            // BLAS leaves C untouched for k == 0 only when beta == 1; make the result well defined.
            if beta == 0 { for i in 0..<m { (c + i * (ldc ?? n)).update(repeating: 0, count: n) } }
            return
        }
        cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), alpha,
                    a, Int32(lda ?? (transA ? m : k)),
                    b, Int32(ldb ?? (transB ? k : n)),
                    beta, c, Int32(ldc ?? n))
    }
}
