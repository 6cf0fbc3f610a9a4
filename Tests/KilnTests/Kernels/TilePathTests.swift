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
        #expect(MemoryLayout<Tile2x4>.size == 64 * MemoryLayout<Float>.size)
    }

    @Test func genericPathMatchesFusedReference() throws { try check("generic") }

    @Test(.enabled(if: CPUFeatures.current.hasAVX2, "this CPU has no AVX2 and FMA"))
    func avx2PathMatchesFusedReference() throws { try check("avx2+fma") }

    /// The AVX-512 level keeps these tiles on AVX2 (only the direct convolution widens), with the same bits.
    @Test(.enabled(if: CPUFeatures.current.hasAVX512, "this CPU has no AVX-512 (F, BW, DQ, VL)"))
    func avx512PathMatchesFusedReference() throws { try check("avx512") }

    func check(_ path: String) throws {
        kiln_tile_force_path(path)
        defer { kiln_tile_force_path(nil) }
        #expect(KernelPaths.tiles == path)
        try checkDotTile(path)
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

    /// The dot-product tile, added to twice (the second time onto what the first left): lane l of entry (r, c)
    /// is the in-order fused chain over positions l, l + 8, ... of both calls' rows.
    func checkDotTile(_ path: String) throws {
        var g = SystemRandomNumberGenerator()
        let count = 40, rows = (0..<6).map { _ in (0..<(2 * count)).map { _ in Float.random(in: -1...1, using: &g) } }
        var t = Tile2x4()
        for half in 0..<2 {
            let p = rows.map { r in UnsafeMutablePointer<Float>.allocate(capacity: count) }
            defer { p.forEach { $0.deallocate() } }
            for (i, r) in rows.enumerated() { p[i].initialize(from: Array(r[(half * count)..<((half + 1) * count)]), count: count) }
            t.add(UnsafeRawPointer(p[0]), UnsafeRawPointer(p[1]), UnsafeRawPointer(p[2]), UnsafeRawPointer(p[3]),
                  UnsafeRawPointer(p[4]), UnsafeRawPointer(p[5]), bytes: count * 4)
        }
        let got = withUnsafeBytes(of: t) { Array($0.bindMemory(to: Float.self)) }
        for e in 0..<8 {
            let x = rows[e / 4], y = rows[2 + e % 4]
            for l in 0..<8 {
                var s: Float = 0
                for half in 0..<2 { for off in stride(from: l, to: count, by: 8) { s = s.addingProduct(x[half * count + off], y[half * count + off]) } }
                #expect(got[e * 8 + l].bitPattern == s.bitPattern, "\(path) entry \(e) lane \(l)")
            }
        }
    }
}
