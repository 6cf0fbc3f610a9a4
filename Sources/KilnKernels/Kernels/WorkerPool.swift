import CKilnKernels
import Dispatch
import Glibc
import Synchronization

/// Kiln's own worker threads for parallel regions, so that running a plan on several threads allocates
/// nothing.
///
/// Why not `DispatchQueue.concurrentPerform`: libdispatch allocates on every call (about five blocks per
/// region on this toolchain), and plans must not allocate while they run. The pool's threads are created once
/// (the first region that needs them) and then wait on a condition variable; a region hands them a loop and
/// part indices under a mutex, which allocates nothing.
///
/// Contract: `run(parts, threads:, loop)` calls `loop(p, slot)` once for every `p` in `0..<parts` on at most
/// `threads` threads (the caller and `threads - 1` workers), and returns when all have finished. Parts are
/// claimed one at a time by whichever thread is free, so a thread the machine slows down (another tenant on
/// its core) takes fewer parts instead of holding up the region. `slot` numbers the threads of the region
/// (`0..<threads`, the caller 0): what a thread may use exclusively, a workspace slice say. The loop is a value
/// (`ParallelSlotPart`): workers reach it through a pointer to the caller's copy and a capture-free function
/// made for its type, so a region allocates nothing. The pool serves one region at a time: when it is busy
/// (another thread's region, or a region nested inside a part) `run` returns false without running anything,
/// and the caller runs the region another way.
///
/// Hand-offs spin before they sleep. A plan's steps follow each other within microseconds, and waking a thread
/// from a condition variable takes tens of them: on a ResNet-20 at batch 1 (steps of 30-70 µs) two threads were
/// slower than one. So a worker that finished a region watches for the next one for `spinNanoseconds` before it
/// waits on the condition variable, and the caller watches its region's last parts finish the same way. The
/// mutex still guards every shared field; `published` and `remaining` are atomic copies of `generation` and
/// `unfinished` that the spinning threads read without it.
@usableFromInline
final class WorkerPool: @unchecked Sendable {
    @usableFromInline static let shared = WorkerPool()
    /// Threads beyond this are never created.
    @usableFromInline static let maximumWorkers = 63

    private var mutex = pthread_mutex_t()
    private var wake = pthread_cond_t()
    private var finished = pthread_cond_t()
    /// Held by the thread running a region, for the whole region.
    private var region = pthread_mutex_t()
    private var workers = 0
    private var generation = 0
    /// The running region's loop: a pointer to the caller's value, and a function that runs one part of it.
    private var context: UnsafeRawPointer?
    private var invoke: ((UnsafeRawPointer, Int, Int) -> Void)?
    private var parts = 0
    private var nextPart = 0
    private var unfinished = 0
    /// Threads that joined the region so far (their slots), and how many may.
    private var joined = 0
    private var joinLimit = 0
    /// `generation` and `unfinished`, written under the mutex whenever those change, read by spinning threads.
    private let published = Atomic<Int>(0)
    private let remaining = Atomic<Int>(0)
    /// How long a thread spins for the next region (or for its region's end) before it sleeps.
    static let spinNanoseconds: UInt64 = 100_000

    private init() {
        pthread_mutex_init(&mutex, nil)
        pthread_mutex_init(&region, nil)
        pthread_cond_init(&wake, nil)
        pthread_cond_init(&finished, nil)
    }

    /// Generic and inlinable so that it is specialised in the caller's module, where the loop's type is
    /// known: `invoke` is made there, a capture-free function that runs one part of that very type, and the
    /// region itself (`run(parts:threads:context:invoke:)`) knows only a pointer and that function.
    @inlinable
    func run<L: ParallelSlotPart>(_ parts: Int, threads: Int, _ loop: L) -> Bool {
        let threads = min(threads, parts, WorkerPool.maximumWorkers + 1)
        guard threads > 1 else {
            for p in 0..<parts { loop(p, slot: 0) }
            return true
        }
        // Reaching the loop through `any ParallelSlotPart.Type` would run the unspecialised generic body,
        // three times slower. The function captures nothing: no allocation.
        return withUnsafePointer(to: loop) { pointer in
            run(parts: parts, threads: threads, context: UnsafeRawPointer(pointer),
                invoke: { context, part, slot in context.assumingMemoryBound(to: L.self).pointee(part, slot: slot) })
        }
    }

    @usableFromInline
    func run(parts: Int, threads: Int, context loop: UnsafeRawPointer,
             invoke run: @escaping (UnsafeRawPointer, Int, Int) -> Void) -> Bool {
        guard pthread_mutex_trylock(&region) == 0 else { return false }
        defer { pthread_mutex_unlock(&region) }
        if workers < threads - 1 && !startWorkers(threads - 1) { return false }
        pthread_mutex_lock(&mutex)
        context = loop
        invoke = run
        self.parts = parts
        nextPart = 0
        unfinished = parts
        joined = 1
        joinLimit = threads
        remaining.store(parts, ordering: .releasing)
        generation &+= 1
        published.store(generation, ordering: .releasing)
        pthread_cond_broadcast(&wake)
        runClaimedParts(slot: 0)
        if unfinished > 0 {
            pthread_mutex_unlock(&mutex)
            spin { self.remaining.load(ordering: .acquiring) > 0 }
            pthread_mutex_lock(&mutex)
            while unfinished > 0 { pthread_cond_wait(&finished, &mutex) }
        }
        context = nil
        invoke = nil
        pthread_mutex_unlock(&mutex)
        return true
    }

    /// Runs parts while any is unclaimed. Called and returns with `mutex` held. The loop's pointer is only
    /// used before the part counts as finished: the caller's value lives until `run` returns.
    private func runClaimedParts(slot: Int) {
        while nextPart < parts {
            let p = nextPart
            nextPart += 1
            let context = self.context, invoke = self.invoke
            pthread_mutex_unlock(&mutex)
            if let context, let invoke { invoke(context, p, slot) }
            pthread_mutex_lock(&mutex)
            unfinished -= 1
            remaining.store(unfinished, ordering: .releasing)
            if unfinished == 0 { pthread_cond_signal(&finished) }
        }
    }

    private func workerLoop() {
        pthread_mutex_lock(&mutex)
        var seen = generation
        while true {
            if generation == seen {
                pthread_mutex_unlock(&mutex)
                spin { self.published.load(ordering: .acquiring) == seen }
                pthread_mutex_lock(&mutex)
            }
            while generation == seen { pthread_cond_wait(&wake, &mutex) }
            seen = generation
            // Threads beyond the region's limit sit it out (the pool may hold more from an earlier region).
            guard joined < joinLimit else { continue }
            let slot = joined
            joined += 1
            runClaimedParts(slot: slot)
        }
    }

    /// Spins while `waiting()` holds, for at most `spinNanoseconds` (the clock is read every 64 turns).
    private func spin(while waiting: () -> Bool) {
        let deadline = DispatchTime.now().uptimeNanoseconds + WorkerPool.spinNanoseconds
        var turns = 0
        while waiting() {
            kiln_cpu_relax()
            turns += 1
            if turns & 63 == 0 && DispatchTime.now().uptimeNanoseconds > deadline { return }
        }
    }

    /// Starts threads until there are `count`; false if the system refuses one (the region then runs
    /// another way). Called with `region` held.
    private func startWorkers(_ count: Int) -> Bool {
        while workers < count {
            var attributes = pthread_attr_t()
            pthread_attr_init(&attributes)
            pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
            var thread = pthread_t()
            let context = Unmanaged.passRetained(self).toOpaque()
            let status = pthread_create(&thread, &attributes, { context in
                let pool = Unmanaged<WorkerPool>.fromOpaque(context!).takeRetainedValue()
                pool.workerLoop()
                return nil
            }, context)
            pthread_attr_destroy(&attributes)
            guard status == 0 else {
                Unmanaged<WorkerPool>.fromOpaque(context).release()
                return false
            }
            workers += 1
        }
        return true
    }
}
