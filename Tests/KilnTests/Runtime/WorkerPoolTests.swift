import Dispatch
import Foundation
import Testing
@testable import Kiln
@testable import KilnKernels

/// The worker pool behind Threads.parts: every part runs exactly once, regions started from several threads
/// at once and regions nested inside a part still complete (the busy pool hands them to libdispatch).
struct WorkerPoolTests {
    /// Counts how often each part ran; parts write their own slots only.
    final class Counts: @unchecked Sendable {
        let slots: UnsafeMutablePointer<Int>
        let count: Int
        init(_ count: Int) {
            self.count = count
            slots = .allocate(capacity: count)
            slots.initialize(repeating: 0, count: count)
        }
        deinit { slots.deallocate() }
        var values: [Int] { (0..<count).map { slots[$0] } }
    }

    /// Adds one to slot `base + part`.
    struct Count: ParallelPart {
        let counts: Counts, base: Int
        func callAsFunction(_ part: Int) { counts.slots[base + part] += 1 }
    }

    /// A region inside each part.
    struct Nested: ParallelPart {
        let counts: Counts, caller: Int, parts: Int
        func callAsFunction(_ part: Int) {
            Threads.parts(parts, Count(counts: counts, base: (caller * parts + part) * parts))
        }
    }

    @Test(arguments: [2, 3, 4, 7])
    func everyPartRunsOnce(parts: Int) {
        let counts = Counts(parts)
        // On two threads: with the default one, regions run inline and never reach the pool.
        Threads.with(2) { for _ in 0..<500 { Threads.parts(parts, Count(counts: counts, base: 0)) } }
        #expect(counts.values == [Int](repeating: 500, count: parts))
    }

    /// Regions further apart than the workers spin (`spinNanoseconds`) find them asleep on the condition
    /// variable, regions close together find them spinning: both hand-offs run every part once, alternately.
    @Test func regionsAfterSpinningAndAfterSleepingBothRun() {
        let parts = 4, rounds = 40
        let counts = Counts(parts)
        for round in 0..<rounds {
            if round % 2 == 0 { usleep(UInt32(3 * WorkerPool.spinNanoseconds / 1000)) }
            Threads.with(2) { Threads.parts(parts, Count(counts: counts, base: 0)) }
        }
        #expect(counts.values == [Int](repeating: rounds, count: parts))
    }

    @Test func concurrentAndNestedRegionsComplete() {
        let callers = 4, parts = 3, rounds = 200
        let counts = Counts(callers * parts * parts)
        DispatchQueue.concurrentPerform(iterations: callers) { caller in
            Threads.with(2) {
                for _ in 0..<rounds {
                    // A region inside a part: the pool is busy (or serving another caller), so it falls back.
                    Threads.parts(parts, Nested(counts: counts, caller: caller, parts: parts))
                }
            }
        }
        #expect(counts.values == [Int](repeating: rounds, count: callers * parts * parts))
    }
}
