import CKilnKernels
@testable import KilnKernels

/// Runs `body` on the generic kernel path with one thread, then on the AVX2 path with one thread and with two,
/// restoring the automatic choice after each: the three results, for tests that every sum keeps its order
/// whatever the path and thread count (call only where the CPU has AVX2 and FMA).
func onGenericAndAVX2Paths<T>(_ body: () throws -> T) rethrows -> (generic: T, avx2: T, twoThreads: T) {
    func run(_ path: String, _ threads: Int) throws -> T {
        kiln_tile_force_path(path)
        defer { kiln_tile_force_path(nil) }
        return try Threads.with(threads) { try body() }
    }
    return (try run("generic", 1), try run("avx2+fma", 1), try run("avx2+fma", 2))
}
