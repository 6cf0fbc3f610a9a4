import Dispatch
import Glibc

/// Kiln's own worker threads for parallel regions, so that running a plan on several threads allocates
/// nothing.
///
/// Why not `DispatchQueue.concurrentPerform`: libdispatch allocates on every call (about five blocks per
/// region on this toolchain), and plans must not allocate while they run. The pool's threads are created once
/// (the first region that needs them) and then wait on a condition variable; a region hands them a loop and
/// part indices under a mutex, which allocates nothing.
///
/// Contract: `run(parts, loop)` calls `loop(p)` once for every `p` in `0..<parts`, part 0 on the calling
/// thread, and returns when all have finished. The loop is a value (`ParallelPart`): workers reach it through a
/// pointer to the caller's copy and a capture-free function made for its type, so a region allocates nothing. It serves one region at a time: when the pool is busy (another
/// thread's region, or a region nested inside a part) it returns false without running anything, and the
/// caller runs the region another way.
final class WorkerPool: @unchecked Sendable {
    static let shared = WorkerPool()
    /// Threads beyond this are never created; regions with more parts leave the rest to the caller's loop.
    static let maximumWorkers = 63

    private var mutex = pthread_mutex_t()
    private var wake = pthread_cond_t()
    private var finished = pthread_cond_t()
    /// Held by the thread running a region, for the whole region.
    private var region = pthread_mutex_t()
    private var workers = 0
    private var generation = 0
    /// The running region's loop: a pointer to the caller's value, and a function that runs one part of it.
    private var context: UnsafeRawPointer?
    private var invoke: ((UnsafeRawPointer, Int) -> Void)?
    private var parts = 0
    private var nextPart = 0
    private var unfinished = 0

    private init() {
        pthread_mutex_init(&mutex, nil)
        pthread_mutex_init(&region, nil)
        pthread_cond_init(&wake, nil)
        pthread_cond_init(&finished, nil)
    }

    func run<L: ParallelPart>(_ parts: Int, _ loop: L) -> Bool {
        guard parts > 1 else {
            if parts == 1 { loop(0) }
            return true
        }
        guard pthread_mutex_trylock(&region) == 0 else { return false }
        defer { pthread_mutex_unlock(&region) }
        if workers < min(parts - 1, WorkerPool.maximumWorkers) && !startWorkers(min(parts - 1, WorkerPool.maximumWorkers)) {
            return false
        }
        withUnsafePointer(to: loop) { pointer in
            pthread_mutex_lock(&mutex)
            context = UnsafeRawPointer(pointer)
            // Made here, where L is known, so the loop is specialised and inlined into it (reaching it through
            // `any ParallelPart.Type` would run the unspecialised generic body, three times slower). It captures
            // nothing: no allocation.
            invoke = { context, part in context.assumingMemoryBound(to: L.self).pointee(part) }
            self.parts = parts
            nextPart = 1
            unfinished = parts - 1
            generation &+= 1
            pthread_cond_broadcast(&wake)
            pthread_mutex_unlock(&mutex)
            loop(0)
            // Take parts no worker has started yet, then wait for the ones in flight.
            pthread_mutex_lock(&mutex)
            runClaimedParts()
            while unfinished > 0 { pthread_cond_wait(&finished, &mutex) }
            context = nil
            invoke = nil
            pthread_mutex_unlock(&mutex)
        }
        return true
    }

    /// Runs parts while any is unclaimed. Called and returns with `mutex` held. The loop's pointer is only
    /// used before the part counts as finished: the caller's value lives until `run` returns.
    private func runClaimedParts() {
        while nextPart < parts {
            let p = nextPart
            nextPart += 1
            let context = self.context, invoke = self.invoke
            pthread_mutex_unlock(&mutex)
            if let context, let invoke { invoke(context, p) }
            pthread_mutex_lock(&mutex)
            unfinished -= 1
            if unfinished == 0 { pthread_cond_signal(&finished) }
        }
    }

    private func workerLoop() {
        pthread_mutex_lock(&mutex)
        var seen = generation
        while true {
            while generation == seen { pthread_cond_wait(&wake, &mutex) }
            seen = generation
            runClaimedParts()
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
