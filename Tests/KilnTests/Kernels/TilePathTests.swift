import CKilnKernels
import Foundation
import Testing
@testable import KilnKernels

/// Every code path of the 4x16 tile gives the same bits as a naive chain of fused multiply-adds, for full and
/// partial tiles, both strides of A; the Swift struct holds the C function's 64 floats in order.
@Suite(.serialized)
struct TilePathTests {
    @Test func theStructIsTheCArray() {
        #expect(MemoryLayout<Tile4x16>.size == 64 * MemoryLayout<Float>.size)
    }

    @Test func genericPathMatchesFusedReference() throws { try check("generic") }

    @Test(.enabled(if: CPUFeatures.current.hasAVX2, "this CPU has no AVX2 and FMA"))
    func avx2PathMatchesFusedReference() throws { try check("avx2+fma") }

    func check(_ path: String) throws {
        kiln_tile_force_path(path)
        defer { kiln_tile_force_path(nil) }
        #expect(KernelPaths.tiles == path)
        var g = SystemRandomNumberGenerator()
        for (rows, k, transA) in [(4, 37, false), (3, 1, true), (1, 64, false), (2, 0, true), (4, 200, true)] {
            let lda = 211, ldb = 19
            let a = (0..<(4 * lda + 250 * lda)).map { _ in Float.random(in: -1...1, using: &g) }
            let b = (0..<(max(k, 1) * ldb + 16)).map { _ in Float.random(in: -1...1, using: &g) }
            let rowStep = transA ? 1 : lda, kStep = transA ? lda : 1
            let t = a.withUnsafeBufferPointer { ap in b.withUnsafeBufferPointer { bp in
                Tile4x16(rows: rows, k: k, a: ap.baseAddress!, rowStep: rowStep, kStep: kStep, b: bp.baseAddress!, ldb: ldb)
            } }
            let got = withUnsafeBytes(of: t) { Array($0.bindMemory(to: Float.self)) }
            for r in 0..<4 {
                let row = min(r, rows - 1)
                for j in 0..<16 {
                    var acc: Float = 0
                    for p in 0..<k { acc = acc.addingProduct(a[row * rowStep + p * kStep], b[p * ldb + j]) }
                    #expect(got[r * 16 + j].bitPattern == acc.bitPattern, "\(path) rows \(rows) k \(k) (\(r), \(j))")
                }
            }
        }
    }
}
