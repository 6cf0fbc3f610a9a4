import CKilnKernels
@testable import KilnKernels

/// Runs `body` on the generic kernel path with one thread, then on the AVX2 path with one thread, on the AVX-512
/// path where the CPU has it, and on the widest path with two threads, restoring the automatic choice after each:
/// the results, for tests that every sum keeps its order whatever the path and thread count (call only where the
/// CPU has AVX2 and FMA). `avx512` is nil on a CPU without AVX-512.
func onEveryKernelPath<T>(_ body: () throws -> T) rethrows -> (generic: T, avx2: T, avx512: T?, twoThreads: T) {
    func run(_ path: String, _ threads: Int) throws -> T {
        kiln_tile_force_path(path)
        defer { kiln_tile_force_path(nil) }
        return try Threads.with(threads) { try body() }
    }
    let wide = CPUFeatures.current.hasAVX512
    return (try run("generic", 1), try run("avx2+fma", 1), wide ? try run("avx512", 1) : nil,
            try run(wide ? "avx512" : "avx2+fma", 2))
}
