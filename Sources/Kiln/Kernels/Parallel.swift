import Dispatch
import CBLAS

/// How many threads kernels use. Work is split only above `minimumWork` elements: waking idle threads costs
/// about 5 us on this kind of machine, which small tensors cannot repay.
public enum Threads {
    nonisolated(unsafe) private static var _count = 1

    /// Threads for Kiln's kernels. Defaults to 1; `kiln` sets it from `--threads`. OpenBLAS itself stays on
    /// one thread: convolutions split their samples over Kiln's threads instead (the zoo's products are too
    /// thin for OpenBLAS to split well, and two thread pools spinning on two cores slow each other down).
    public static var count: Int {
        get { override ?? _count }
        set {
            _count = max(1, newValue)
            openblas_set_num_threads(1)
        }
    }

    @TaskLocal static var override: Int?

    /// Runs `body` with `n` threads for the current task only (tests running in parallel must not change the
    /// process-wide count under each other).
    public static func with<T>(_ n: Int, _ body: () throws -> T) rethrows -> T {
        openblas_set_num_threads(1)
        return try $override.withValue(max(1, n)) { try body() }
    }

    /// Runs `body(part)` for `part` in `0..<parts` on separate threads (inline when `parts` is 1): on Kiln's
    /// worker pool, which allocates nothing, or on libdispatch when the pool is serving another region.
    @inline(__always)
    public static func parts(_ parts: Int, _ body: (Int) -> Void) {
        if parts <= 1 { body(0); return }
        if !WorkerPool.shared.run(parts, body) { DispatchQueue.concurrentPerform(iterations: parts, execute: body) }
    }

    public static let minimumWork = 1 << 17

    /// Runs `body(start, end)` over `0..<n` split into contiguous chunks, in parallel when `n` is large.
    @inline(__always)
    public static func chunks(_ n: Int, minimumWork: Int = Threads.minimumWork, _ body: (Int, Int) -> Void) {
        let t = count
        if t <= 1 || n < minimumWork {
            body(0, n)
            return
        }
        let parts = min(t, (n + minimumWork / 2 - 1) / (minimumWork / 2))
        let size = (n + parts - 1) / parts
        Threads.parts(parts) { p in
            let s = p * size
            let e = min(n, s + size)
            if s < e { body(s, e) }
        }
    }

    /// Runs `body(i)` for `i` in `0..<n` items (each of `workPerItem` elements), in parallel when worth it.
    @inline(__always)
    public static func items(_ n: Int, workPerItem: Int, _ body: (Int) -> Void) {
        let t = count
        if t <= 1 || n < 2 || n * workPerItem < Threads.minimumWork {
            for i in 0..<n { body(i) }
            return
        }
        let parts = min(t, n)
        Threads.parts(parts) { p in
            var i = p
            while i < n { body(i); i += parts }
        }
    }
}
