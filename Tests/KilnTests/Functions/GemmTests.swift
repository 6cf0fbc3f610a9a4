import Testing
@testable import Kiln
@testable import KilnKernels

/// Both paths of `Gemm.sgemm` (the small Swift kernel and OpenBLAS) against a naive triple loop, for every
/// transpose combination, padded leading dimensions, alpha and beta; sizes cover the small kernel's 4x16 blocks
/// with leftover rows and columns, and the 2x4 dot-product tiles (odd rows, columns not a multiple of 4,
/// K not a multiple of 8).
struct GemmTests {
    static func naive(_ tA: Bool, _ tB: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float, _ a: [Float], _ lda: Int,
                      _ b: [Float], _ ldb: Int, _ beta: Float, _ c: [Float], _ ldc: Int) -> [Float] {
        var out = c
        for i in 0..<m {
            for j in 0..<n {
                var s: Double = 0
                for p in 0..<k {
                    let av = tA ? a[p * lda + i] : a[i * lda + p]
                    let bv = tB ? b[j * ldb + p] : b[p * ldb + j]
                    s += Double(av) * Double(bv)
                }
                out[i * ldc + j] = alpha * Float(s) + (beta == 0 ? 0 : beta * c[i * ldc + j])
            }
        }
        return out
    }

    @Test(arguments: [(3, 5, 4), (17, 9, 31), (19, 41, 23), (6, 64, 25), (25, 16, 576), (130, 90, 100)])
    func matchesNaiveProduct(_ dims: (Int, Int, Int)) {
        let (m, n, k) = dims
        var rng = SplitMix64(seed: UInt64(m * 1000 + n))
        for tA in [false, true] {
            for tB in [false, true] {
                for (alpha, beta) in [(Float(1), Float(0)), (0.5, 1), (2, -0.5)] {
                    let lda = (tA ? m : k) + 2, ldb = (tB ? k : n) + 1, ldc = n + 3
                    let a = (0..<((tA ? k : m) * lda)).map { _ in Float.random(in: -1...1, using: &rng) }
                    let b = (0..<((tB ? n : k) * ldb)).map { _ in Float.random(in: -1...1, using: &rng) }
                    var c = (0..<(m * ldc)).map { _ in Float.random(in: -1...1, using: &rng) }
                    let expected = Self.naive(tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
                    a.withUnsafeBufferPointer { ap in
                        b.withUnsafeBufferPointer { bp in
                            c.withUnsafeMutableBufferPointer { cp in
                                Gemm.sgemm(transA: tA, transB: tB, m: m, n: n, k: k, alpha: alpha, a: ap.baseAddress!, lda: lda,
                                           b: bp.baseAddress!, ldb: ldb, beta: beta, c: cp.baseAddress!, ldc: ldc)
                            }
                        }
                    }
                    // Only the m x n block is written; padding columns keep their values.
                    #expect(mismatch(c, expected, rtol: 1e-4, atol: 1e-4) == nil, "\(dims) tA \(tA) tB \(tB) alpha \(alpha) beta \(beta)")
                }
            }
        }
    }

    /// `segmentedNT` (K in pieces that are not adjacent: a chunk's dY rows read in place) against the naive
    /// product of the gathered rows, with odd M, N not a multiple of 4 and beta 0 or 1; for even M also bit for
    /// bit against `Gemm.small` over the gathered rows, which is the sum it replaces.
    @Test(arguments: [(2, 4, 3, 8), (5, 7, 2, 16), (32, 64, 8, 64), (16, 32, 2, 256)])
    func segmentedProductMatchesTheGatheredOne(_ dims: (Int, Int, Int, Int)) {
        let (m, n, segments, length) = dims
        var rng = SplitMix64(seed: UInt64(m * 100 + n * 10 + segments))
        let k = segments * length
        // A: m rows of k, contiguous (the im2col columns). B: segment s of row j at s*bSegment + j*ldb.
        let a = (0..<(m * k)).map { _ in Float.random(in: -1...1, using: &rng) }
        let ldb = length + 3, bSegment = n * ldb + 5
        let b = (0..<(segments * bSegment)).map { _ in Float.random(in: -1...1, using: &rng) }
        var gathered = [Float](repeating: 0, count: n * k)
        for j in 0..<n { for s in 0..<segments { for p in 0..<length { gathered[j * k + s * length + p] = b[s * bSegment + j * ldb + p] } } }
        for beta in [Float(0), 1] {
            let start = (0..<(m * n)).map { _ in Float.random(in: -1...1, using: &rng) }
            let expected = Self.naive(false, true, m, n, k, 1, a, k, gathered, k, beta, start, n)
            var c = start, reference = start
            a.withUnsafeBufferPointer { ap in
                b.withUnsafeBufferPointer { bp in
                    c.withUnsafeMutableBufferPointer { cp in
                        Gemm.segmentedNT(m: m, n: n, segments: segments, length: length, a: ap.baseAddress!, lda: k,
                                         aSegment: length, b: bp.baseAddress!, ldb: ldb, bSegment: bSegment, beta: beta,
                                         c: cp.baseAddress!, ldc: n)
                    }
                }
                gathered.withUnsafeBufferPointer { gp in
                    reference.withUnsafeMutableBufferPointer { rp in
                        Gemm.small(transA: false, transB: true, m: m, n: n, k: k, alpha: 1, a: ap.baseAddress!, lda: k,
                                   b: gp.baseAddress!, ldb: k, beta: beta, c: rp.baseAddress!, ldc: n)
                    }
                }
            }
            #expect(mismatch(c, expected, rtol: 1e-4, atol: 1e-4) == nil, "\(dims) beta \(beta)")
            if m % 2 == 0 { #expect(c == reference, "\(dims) beta \(beta): not the bits of the gathered product") }
        }
    }
}
