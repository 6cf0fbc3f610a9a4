import Foundation
import KilnCore
#if canImport(Glibc)
import Glibc
#endif

/// OpenBLAS, loaded by Kiln at first use with the kernel set chosen from the CPU's features.
///
/// Why Kiln loads it itself: OpenBLAS picks its kernels once, when it is loaded, from a table of CPU models it
/// knows. A CPU newer than the distribution's OpenBLAS (Debian's 0.3.21 on a 2023 Xeon) falls back to the SSE3
/// "Prescott" kernels, 5-6 times slower than the AVX2 or AVX-512 ones the CPU runs (measured: 12 against 80
/// GFLOP/s for a 512^3 sgemm on one core). OpenBLAS reads its choice from the environment variable
/// `OPENBLAS_CORETYPE` when it loads, so Kiln sets that variable from the CPU's features before loading the
/// library with `dlopen` (a library linked at build time would be loaded, and would have chosen, before any of
/// Kiln's code ran): AVX-512 (F, BW, DQ, VL) selects "SkylakeX", AVX2 with FMA "Haswell", anything older is left
/// to OpenBLAS. A value the user set is kept. On a Zen 2/3 machine the Haswell kernels measured the same as or
/// faster than OpenBLAS's own "Zen" choice (91 against 89 GFLOP/s at 512^3; 67 against 63 at 16x4096x144).
///
/// Kiln also sets `OPENBLAS_NUM_THREADS=1` before loading, whatever the environment says: Kiln splits work over
/// its own threads and runs OpenBLAS on one, but OpenBLAS starts its thread pool at load time from that variable
/// (or the CPU count), and an idle pool thread spins in `sched_yield` for a while after start-up and after each
/// call it took part in. On a 2-core machine that thread took the second core from Kiln's worker: half of the
/// 2-thread runs of LeNet inference at batch 256 ran at 1-thread speed (4.2 against 2.2 ms, Xeon family 6
/// model 207), with a third of their time in the kernel.
///
/// Loading never traps: when the library is missing, `require()` throws a clear error (compiling a plan calls
/// it), and products fall back to Kiln's Swift kernel.
public enum OpenBLAS {
    typealias SgemmFunction = @convention(c) (Int32, Int32, Int32, Int32, Int32, Int32, Float, UnsafePointer<Float>?,
                                              Int32, UnsafePointer<Float>?, Int32, Float, UnsafeMutablePointer<Float>?, Int32) -> Void
    typealias SetThreadsFunction = @convention(c) (Int32) -> Void
    typealias NameFunction = @convention(c) () -> UnsafeMutablePointer<CChar>?

    /// The loaded library's entry point.
    struct Library: @unchecked Sendable {        // a function pointer into a library never unloaded
        let sgemm: SgemmFunction
    }

    /// How the kernel set was decided, for `kiln --version` and benchmark reports.
    public struct Report: Sendable {
        /// What OpenBLAS runs ("Haswell", "SkylakeX", "Prescott", ...).
        public var core: String
        /// Its build line ("OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH ...").
        public var config: String
        /// Where the choice came from: "chosen by Kiln from the CPU's features", "set by OPENBLAS_CORETYPE",
        /// or "chosen by OpenBLAS".
        public var source: String
    }

    /// The library names tried, in order (Debian's runtime package, libopenblas0, provides the first).
    static let names = ["libopenblas.so.0", "libopenblas.so"]

    /// The kernel set Kiln asks for on a CPU with `features`: nil leaves the choice to OpenBLAS.
    public static func coreType(for features: CPUFeatures) -> String? {
        if features.hasAVX512 { return "SkylakeX" }
        if features.hasAVX2 { return "Haswell" }
        return nil
    }

    private static let state: (library: Library?, report: Report?, error: String?) = load()

    private static func load() -> (Library?, Report?, String?) {
        var source = "chosen by OpenBLAS"
        if let user = ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"], !user.isEmpty {
            source = "set by OPENBLAS_CORETYPE"
        } else if let core = coreType(for: CPUFeatures.current) {
            setenv("OPENBLAS_CORETYPE", core, 1)
            source = "chosen by Kiln from the CPU's features (\(CPUFeatures.current.vectorPath))"
        }
        // No pool of OpenBLAS's own (see above): a value the user set would only add idle threads.
        setenv("OPENBLAS_NUM_THREADS", "1", 1)
        var handle: UnsafeMutableRawPointer?
        for name in names where handle == nil { handle = dlopen(name, RTLD_NOW | RTLD_GLOBAL) }
        guard let handle else {
            return (nil, nil, "cannot load OpenBLAS (\(names.joined(separator: " or "))): install it with: sudo apt-get install -y libopenblas0")
        }
        guard let sgemm = dlsym(handle, "cblas_sgemm"), let threads = dlsym(handle, "openblas_set_num_threads") else {
            return (nil, nil, "the OpenBLAS library found has no cblas_sgemm or openblas_set_num_threads")
        }
        // OpenBLAS stays on one thread: Kiln splits work over its own threads (see `Threads`).
        unsafeBitCast(threads, to: SetThreadsFunction.self)(1)
        func text(_ symbol: String) -> String {
            guard let f = dlsym(handle, symbol), let s = unsafeBitCast(f, to: NameFunction.self)() else { return "unknown" }
            return String(cString: s).trimmingCharacters(in: .whitespaces)
        }
        return (Library(sgemm: unsafeBitCast(sgemm, to: SgemmFunction.self)),
                Report(core: text("openblas_get_corename"), config: text("openblas_get_config"), source: source), nil)
    }

    /// The loaded library, nil when it could not be loaded.
    static var library: Library? { state.library }

    /// Loads OpenBLAS if it is not yet, and throws a clear error when it cannot be.
    public static func require() throws {
        if let error = state.error { throw KilnError.planFailed(error) }
    }

    /// What was loaded and why (nil when nothing could be).
    public static var report: Report? { state.report }
}
