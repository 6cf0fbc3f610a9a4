import Dispatch
import Glibc

/// Kiln's own worker threads for parallel regions, so that running a plan on several threads allocates
/// nothing.
///
/// Why not `DispatchQueue.concurrentPerform`: libdispatch allocates on every call (about five blocks per
/// region on this toolchain), and plans must not allocate while they run. The pool's threads are created once
/// (the first region that needs them) and then wait on a condition variable; a region hands them a body and
/// part indices under a mutex, which allocates nothing.
///
/// Contract: `run(parts, body)` calls `body(p)` once for every `p` in `0..<parts`, part 0 on the calling
/// thread, and returns when all have finished. It serves one region at a time: when the pool is busy (another
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
    private var body: ((Int) -> Void)?
    private var parts = 0
    private var nextPart = 0
    private var unfinished = 0

    private init() {
        pthread_mutex_init(&mutex, nil)
        pthread_mutex_init(&region, nil)
        pthread_cond_init(&wake, nil)
        pthread_cond_init(&finished, nil)
    }

    func run(_ parts: Int, _ body: (Int) -> Void) -> Bool {
        guard parts > 1 else {
            if parts == 1 { body(0) }
            return true
        }
        guard pthread_mutex_trylock(&region) == 0 else { return false }
        defer { pthread_mutex_unlock(&region) }
        if workers < min(parts - 1, WorkerPool.maximumWorkers) && !startWorkers(min(parts - 1, WorkerPool.maximumWorkers)) {
            return false
        }
        withoutActuallyEscaping(body) { body in
            pthread_mutex_lock(&mutex)
            self.body = body
            self.parts = parts
            nextPart = 1
            unfinished = parts - 1
            generation &+= 1
            pthread_cond_broadcast(&wake)
            pthread_mutex_unlock(&mutex)
            body(0)
            // Take parts no worker has started yet, then wait for the ones in flight.
            pthread_mutex_lock(&mutex)
            runClaimedParts()
            while unfinished > 0 { pthread_cond_wait(&finished, &mutex) }
            self.body = nil
            pthread_mutex_unlock(&mutex)
        }
        return true
    }

    /// Runs parts while any is unclaimed. Called and returns with `mutex` held. The reference to the body is
    /// dropped before the part counts as finished: the region's body must not outlive `run`.
    private func runClaimedParts() {
        while nextPart < parts {
            let p = nextPart
            nextPart += 1
            var task = body
            pthread_mutex_unlock(&mutex)
            task?(p)
            task = nil
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
