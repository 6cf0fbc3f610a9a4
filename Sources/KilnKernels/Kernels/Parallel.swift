import Dispatch
#if canImport(Glibc)
import Glibc
#endif

/// How many threads kernels use. Work is split only above `minimumWork` elements: waking idle threads costs
/// about 5 us on this kind of machine, which small tensors cannot repay.
///
/// The count belongs to whoever runs the kernels, not to the process: an `Executable` runs (and a plan is
/// compiled) inside `Threads.with(plan's count)`, which sets it for the calling thread only. Kernels called
/// outside any `with` use one thread. OpenBLAS itself stays on one thread: convolutions split their samples
/// over Kiln's threads instead (the zoo's products are too thin for OpenBLAS to split well, and two thread
/// pools spinning on two cores slow each other down).
public enum Threads {
    /// The calling thread's count, 0 meaning unset (1). A POSIX thread-specific value, not a task-local one:
    /// setting it allocates nothing, so an executable can set it on every run.
    private static let key: pthread_key_t = {
        var k = pthread_key_t()
        pthread_key_create(&k, nil)
        return k
    }()

    /// Threads for Kiln's kernels on the calling thread.
    public static var count: Int {
        let raw = Int(bitPattern: pthread_getspecific(key))
        return raw > 0 ? raw : 1
    }

    /// Runs `body` with kernels on the calling thread using `n` threads, then restores the previous count.
    @inline(__always)
    public static func with<T>(_ n: Int, _ body: () throws -> T) rethrows -> T {
        let previous = pthread_getspecific(key)
        pthread_setspecific(key, UnsafeRawPointer(bitPattern: max(1, n)))
        defer { pthread_setspecific(key, previous) }
        return try body()
    }

    /// Runs `loop(part)` for every `part` in `0..<parts`, on up to `count` threads (inline when one): on Kiln's
    /// worker pool, which allocates nothing, or on libdispatch when the pool is serving another region. Parts
    /// are claimed by whichever thread is free.
    @inlinable @inline(__always)
    package static func parts<L: ParallelPart>(_ parts: Int, _ loop: L) {
        claims(parts, threads: count, PartsIgnoringSlot(loop: loop))
    }

    /// Runs `loop(part, slot:)` for every `part` in `0..<parts` on up to `threads` threads; `slot` (in
    /// `0..<threads`) numbers the thread running it, for state a thread uses alone (a workspace slice).
    @inlinable @inline(__always)
    package static func claims<L: ParallelSlotPart>(_ parts: Int, threads: Int, _ loop: L) {
        if parts <= 0 { return }
        if threads <= 1 || parts == 1 {
            for p in 0..<parts { loop(p, slot: 0) }
            return
        }
        if !WorkerPool.shared.run(parts, threads: threads, loop) {
            // libdispatch runs each part on some thread; one slot per part keeps slots exclusive.
            let shared = SharedLoop(loop: loop)
            DispatchQueue.concurrentPerform(iterations: min(parts, threads)) { slot in
                let loop = shared.loop
                var p = slot
                while p < parts { loop(p, slot: slot); p += min(parts, threads) }
            }
        }
    }

    public static let minimumWork = 1 << 17

    /// Parts per thread for loops that split freely (chunks, items): enough that a thread slowed by another
    /// tenant hands its share to the others, few enough that claiming (a mutex) costs nothing measurable.
    @usableFromInline static let partsPerThread = 4

    /// Runs `loop(start, end)` over `0..<n` split into contiguous chunks, in parallel when `n` is large.
    @inlinable @inline(__always)
    package static func chunks<L: ParallelChunk>(_ n: Int, minimumWork: Int = Threads.minimumWork, _ loop: L) {
        let t = count
        if t <= 1 || n < minimumWork {
            loop(0, n)
            return
        }
        let parts = min(t * partsPerThread, (n + minimumWork / 2 - 1) / (minimumWork / 2))
        claims(parts, threads: t, ChunkParts(loop: loop, n: n, size: (n + parts - 1) / parts))
    }

    /// Runs `loop(i)` for every element index `i` in `0..<n`, in contiguous chunks on several threads when `n`
    /// is large (the loop inlines into each chunk's `for`, so element-wise bodies vectorise).
    @inlinable @inline(__always)
    package static func elements<L: ParallelElement>(_ n: Int, _ loop: L) {
        chunks(n, ElementChunks(loop: loop))
    }

    /// Runs `loop(i)` for `i` in `0..<n` items (each of `workPerItem` elements), in parallel when worth it.
    @inlinable @inline(__always)
    package static func items<L: ParallelItem>(_ n: Int, workPerItem: Int, _ loop: L) {
        let t = count
        if t <= 1 || n < 2 || n * workPerItem < Threads.minimumWork {
            for i in 0..<n { loop(i) }
            return
        }
        let parts = min(n, t * partsPerThread)
        claims(parts, threads: t, ItemParts(loop: loop, n: n, parts: parts))
    }
}

// Parallel loop bodies are values of their own types, never closures. A region hands its body to other threads,
// so the body must sit in memory they can reach: a closure can get there only through
// `withoutActuallyEscaping`, which allocates a context on every call, and plans must not allocate while they
// run. A value is passed by a pointer to the caller's stack for the region's duration. Fields hold what the
// loop reads and writes (pointers, sizes, an operation value).

/// The body of `Threads.parts`: called once per part.
@usableFromInline package protocol ParallelPart: SendableMetatype { func callAsFunction(_ part: Int) }

/// The body of `Threads.claims`: called once per part, with the slot of the thread running it.
@usableFromInline package protocol ParallelSlotPart: SendableMetatype { func callAsFunction(_ part: Int, slot: Int) }

/// The body of `Threads.chunks`: called once per contiguous range `start..<end`.
@usableFromInline package protocol ParallelChunk: SendableMetatype { func callAsFunction(_ start: Int, _ end: Int) }

/// The body of `Threads.items`: called once per item.
@usableFromInline package protocol ParallelItem: SendableMetatype { func callAsFunction(_ item: Int) }

/// The body of `Threads.elements`: called once per element index.
@usableFromInline package protocol ParallelElement: SendableMetatype { func callAsFunction(_ i: Int) }

/// A loop value handed to libdispatch's threads. Parallel loops hold pointers, which Swift cannot prove
/// Sendable; what makes sharing them safe is the loops' own contract: parts write disjoint memory, and the
/// region returns only after every part has finished.
@usableFromInline struct SharedLoop<L>: @unchecked Sendable {
    @usableFromInline let loop: L
    @inlinable init(loop: L) { self.loop = loop }
}

/// `Threads.parts` as claims.
@usableFromInline struct PartsIgnoringSlot<L: ParallelPart>: ParallelSlotPart {
    @usableFromInline let loop: L
    @inlinable init(loop: L) { self.loop = loop }
    @inlinable @inline(__always) package func callAsFunction(_ part: Int, slot: Int) { loop(part) }
}

/// `Threads.chunks` as parts: part `p` covers `p*size ..< min(n, (p+1)*size)`.
@usableFromInline struct ChunkParts<L: ParallelChunk>: ParallelSlotPart {
    @usableFromInline let loop: L, n: Int, size: Int
    @inlinable init(loop: L, n: Int, size: Int) { self.loop = loop; self.n = n; self.size = size }
    @inlinable @inline(__always) package func callAsFunction(_ part: Int, slot: Int) {
        let s = part * size, e = min(n, s + size)
        if s < e { loop(s, e) }
    }
}

/// `Threads.items` as parts: part `p` takes items `p, p + parts, ...`.
@usableFromInline struct ItemParts<L: ParallelItem>: ParallelSlotPart {
    @usableFromInline let loop: L, n: Int, parts: Int
    @inlinable init(loop: L, n: Int, parts: Int) { self.loop = loop; self.n = n; self.parts = parts }
    @inlinable @inline(__always) package func callAsFunction(_ part: Int, slot: Int) {
        var i = part
        while i < n { loop(i); i += parts }
    }
}

/// `Threads.elements` as chunks.
@usableFromInline struct ElementChunks<L: ParallelElement>: ParallelChunk {
    @usableFromInline let loop: L
    @inlinable init(loop: L) { self.loop = loop }
    @inlinable @inline(__always) package func callAsFunction(_ start: Int, _ end: Int) {
        for i in start..<end { loop(i) }
    }
}
