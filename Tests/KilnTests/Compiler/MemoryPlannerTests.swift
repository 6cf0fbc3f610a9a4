import Testing
@testable import Kiln
@testable import KilnCompiler

/// Placement algorithms checked by re-deriving overlaps, never by comparing offsets with constants.
struct MemoryPlannerTests {
    static func randomLifetimes(seed: UInt64, count: Int) -> [BufferLifetime] {
        var rng = SplitMix64(seed: seed)
        return (0..<count).map { i in
            let first = Int.random(in: 0..<40, using: &rng)
            let last = first + Int.random(in: 0..<12, using: &rng)
            return BufferLifetime(buffer: i, bytes: 64 * Int.random(in: 1...50, using: &rng), first: first, last: last)
        }
    }

    static func assertValid(_ ls: [BufferLifetime], _ offsets: [Int: Int], _ arena: Int) {
        for a in ls {
            guard let oa = offsets[a.buffer] else { Issue.record("buffer \(a.buffer) not placed"); return }
            #expect(oa % Plan.alignment == 0)
            #expect(oa + a.bytes <= arena)
            for b in ls where b.buffer > a.buffer && a.overlaps(b) {
                let ob = offsets[b.buffer]!
                #expect(oa + a.bytes <= ob || ob + b.bytes <= oa, "buffers \(a.buffer) and \(b.buffer) collide")
            }
        }
    }

    @Test(arguments: 0..<20)
    func everyAlgorithmProducesAValidLayout(seed: Int) {
        let ls = Self.randomLifetimes(seed: UInt64(seed), count: 60)
        let lb = Liveness.lowerBound(ls, steps: 60)
        for a in MemoryPlanner.algorithms {
            let r = a.place(ls)
            Self.assertValid(ls, r.offsets, r.arenaBytes)
            #expect(r.arenaBytes >= lb, "\(a.name) beat the lower bound")
        }
        let best = MemoryPlanner.bestOf(ls)
        #expect(best.arenaBytes == MemoryPlanner.algorithms.map { $0.place(ls).arenaBytes }.min())
    }

    @Test func disjointLifetimesShareMemory() {
        let ls = [BufferLifetime(buffer: 0, bytes: 640, first: 0, last: 1),
                  BufferLifetime(buffer: 1, bytes: 640, first: 2, last: 3)]
        #expect(MemoryPlanner.bestOf(ls).arenaBytes == 640)
    }

    @Test func lowerBoundIsThePeakOfLiveBytes() {
        let ls = [BufferLifetime(buffer: 0, bytes: 100, first: 0, last: 2),
                  BufferLifetime(buffer: 1, bytes: 50, first: 1, last: 1),
                  BufferLifetime(buffer: 2, bytes: 70, first: 2, last: 3)]
        // Step 1: 150, step 2: 170, step 3: 70.
        #expect(Liveness.lowerBound(ls, steps: 4) == 170)
        #expect(Liveness.liveBytes(ls, steps: 4) == [100, 150, 170, 70])
    }
}
