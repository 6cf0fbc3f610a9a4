import CKilnKernels
import Foundation

/// The register tiles of the Swift matrix kernels, one definition for every kernel that walks them (`Gemm`'s
/// products, `StridedPointwiseData`): the loops that fill them decide the order of every sum, so kernels that
/// must give the same bits share them. Plain structs of SIMD values, kept in registers once inlined; no array
/// (plans must not allocate while they run).
struct Tile4x16 {
    typealias V = SIMD8<Float>
    /// Row r's 16 columns, as two 8-wide halves: c00 and c01 for row 0, c10 and c11 for row 1, and so on.
    var c00 = V(), c01 = V(), c10 = V(), c11 = V(), c20 = V(), c21 = V(), c30 = V(), c31 = V()

    /// `sum over p < k of A[r, p] * B[p, 0..<16]` for rows `r < rows` (`rows <= 4`; rows past it repeat the
    /// last one): element (r, p) of A at `a + r*rowStep + p*kStep`, row p of B at `b + p*ldb`. One fused
    /// multiply-add per element and step, p in order.
    ///
    /// The loop is `kiln_tile4x16` (CKilnKernels), which runs an AVX2+FMA path where the CPU has one: in Swift,
    /// `addProduct` built without FMA enabled becomes a libm call per lane. The sums are the same bits either
    /// way (each is a chain of fused multiply-adds in order of p).
    @inline(__always)
    init(rows: Int, k: Int, a: UnsafePointer<Float>, rowStep: Int, kStep: Int, b: UnsafePointer<Float>, ldb: Int) {
        withUnsafeMutableBytes(of: &self) { out in
            kiln_tile4x16(rows, k, a, rowStep, kStep, b, ldb, out.baseAddress?.assumingMemoryBound(to: Float.self))
        }
    }


}

/// Two rows of A against four rows of B, each entry an 8-lane partial dot product (`Gemm`'s dot-product
/// tiles): lane j of entry (r, c) sums the positions congruent to j modulo 8, in order.
struct Tile2x4 {
    typealias V = SIMD8<Float>
    var s00 = V(), s01 = V(), s02 = V(), s03 = V(), s10 = V(), s11 = V(), s12 = V(), s13 = V()

    /// Adds the products of the first `bytes / 4` floats (a multiple of 8) of rows `a0`, `a1` and `b0`-`b3`.
    @inline(__always)
    mutating func add(_ a0: UnsafeRawPointer, _ a1: UnsafeRawPointer, _ b0: UnsafeRawPointer, _ b1: UnsafeRawPointer,
                      _ b2: UnsafeRawPointer, _ b3: UnsafeRawPointer, bytes: Int) {
        // `kiln_tile2x4_add` (CKilnKernels): the same fused multiply-adds, on the AVX2+FMA path where the CPU has it.
        func floats(_ p: UnsafeRawPointer) -> UnsafePointer<Float> { p.assumingMemoryBound(to: Float.self) }
        withUnsafeMutableBytes(of: &self) { acc in
            kiln_tile2x4_add(acc.baseAddress?.assumingMemoryBound(to: Float.self), floats(a0), floats(a1),
                             floats(b0), floats(b1), floats(b2), floats(b3), bytes / 4)
        }
    }
}

/// The code paths Kiln's own kernels chose on this CPU, for reports (`kiln --version`).
public enum KernelPaths {
    /// Kiln's float kernels: "avx512" (the direct convolution's tiles in AVX-512, the other kernels in AVX2),
    /// "avx2+fma" or "generic".
    public static var tiles: String { String(cString: kiln_tile_path()) }
    /// How that path was chosen: the widest the CPU has, or capped by the environment variable KILN_KERNEL_PATH
    /// (which takes "generic", "avx2" or "avx512"; another value is ignored, and said so here).
    public static var tilesSource: String {
        guard let cap = ProcessInfo.processInfo.environment["KILN_KERNEL_PATH"], !cap.isEmpty else {
            return "the widest this CPU runs"
        }
        if kiln_tile_level_named(cap) < 0 {
            return "the widest this CPU runs; KILN_KERNEL_PATH=\(cap) is not generic, avx2 or avx512 and was ignored"
        }
        return "KILN_KERNEL_PATH=\(cap), capped at the widest this CPU runs"
    }
    /// The integer products of quantized plans: "avx512-vnni", "avx-vnni", "avx2" or "generic".
    public static var integerPath: String { String(cString: kiln_q8_path_name(kiln_q8_current_path())) }
}
