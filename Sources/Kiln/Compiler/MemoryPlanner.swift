/// Where each transient buffer goes in the arena.
///
/// Contract: consumes only lifetimes (`[BufferLifetime]`), returns an offset per buffer such that buffers
/// alive at the same step never overlap and every offset is `Plan.alignment`-aligned. Several algorithms
/// run and the smallest arena wins; ties go to the earlier algorithm in the list, so results are stable.
public protocol PlacementAlgorithm {
    var name: String { get }
    /// Offsets by buffer id, and the arena size they need.
    func place(_ lifetimes: [BufferLifetime]) -> (offsets: [Int: Int], arenaBytes: Int)
}

public enum MemoryPlanner {
    public static let algorithms: [any PlacementAlgorithm] = [GreedyBySize(), GreedyByBreadth(), GreedyByLifetime()]

    /// Runs every algorithm and keeps the smallest arena.
    public static func bestOf(_ lifetimes: [BufferLifetime],
                              algorithms: [any PlacementAlgorithm] = MemoryPlanner.algorithms)
        -> (offsets: [Int: Int], arenaBytes: Int, algorithm: String) {
        var best: (offsets: [Int: Int], arenaBytes: Int, algorithm: String)? = nil
        for a in algorithms {
            let r = a.place(lifetimes)
            if best == nil || r.arenaBytes < best!.arenaBytes { best = (r.offsets, r.arenaBytes, a.name) }
        }
        return best ?? ([:], 0, "none")
    }

    /// The lowest aligned offset at which `b` fits between already placed buffers that overlap it in time,
    /// choosing the smallest gap that fits (best fit); `placed` must be sorted by offset.
    static func bestFit(_ b: BufferLifetime, among placed: [(offset: Int, life: BufferLifetime)]) -> Int {
        var cursor = 0
        var bestOffset: Int? = nil
        var bestGap = Int.max
        for p in placed where p.life.overlaps(b) {
            if p.offset > cursor {
                let gap = p.offset - cursor
                if gap >= b.bytes && gap < bestGap { bestGap = gap; bestOffset = cursor }
            }
            cursor = max(cursor, p.offset + p.life.bytes)
        }
        return bestOffset ?? cursor
    }

    static func insertSorted(_ item: (offset: Int, life: BufferLifetime), into placed: inout [(offset: Int, life: BufferLifetime)]) {
        var lo = 0, hi = placed.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if placed[mid].offset <= item.offset { lo = mid + 1 } else { hi = mid }
        }
        placed.insert(item, at: lo)
    }

    static func placeInOrder(_ order: [BufferLifetime]) -> (offsets: [Int: Int], arenaBytes: Int) {
        var placed: [(offset: Int, life: BufferLifetime)] = []
        var offsets: [Int: Int] = [:]
        var arena = 0
        for b in order {
            let off = bestFit(b, among: placed)
            offsets[b.buffer] = off
            arena = max(arena, off + b.bytes)
            insertSorted((off, b), into: &placed)
        }
        return (offsets, arena)
    }
}

/// Largest buffers first, each into the best-fitting gap (TFLite's arena planner strategy).
public struct GreedyBySize: PlacementAlgorithm {
    public let name = "greedy-by-size"
    public init() {}
    public func place(_ lifetimes: [BufferLifetime]) -> (offsets: [Int: Int], arenaBytes: Int) {
        MemoryPlanner.placeInOrder(lifetimes.sorted {
            ($0.bytes, $1.first, $1.buffer) > ($1.bytes, $0.first, $0.buffer)
        })
    }
}

/// Buffers in order of the step they are born, longest-lived first among equals (a heap allocator that
/// knows the future).
public struct GreedyByLifetime: PlacementAlgorithm {
    public let name = "greedy-by-lifetime"
    public init() {}
    public func place(_ lifetimes: [BufferLifetime]) -> (offsets: [Int: Int], arenaBytes: Int) {
        MemoryPlanner.placeInOrder(lifetimes.sorted {
            ($0.first, $1.last - $1.first, $1.bytes, $0.buffer) < ($1.first, $0.last - $0.first, $0.bytes, $1.buffer)
        })
    }
}

/// Steps in order of decreasing live bytes; at each, the buffers alive there, largest first (TFLite's
/// "greedy by breadth"): the busiest moments are laid out first.
public struct GreedyByBreadth: PlacementAlgorithm {
    public let name = "greedy-by-breadth"
    public init() {}
    public func place(_ lifetimes: [BufferLifetime]) -> (offsets: [Int: Int], arenaBytes: Int) {
        guard let steps = lifetimes.map({ $0.last }).max().map({ $0 + 1 }) else { return ([:], 0) }
        var live = [[Int]](repeating: [], count: steps)
        for (i, l) in lifetimes.enumerated() { for s in l.first...l.last { live[s].append(i) } }
        var load = [Int](repeating: 0, count: steps)
        for s in 0..<steps { load[s] = live[s].reduce(0) { $0 + lifetimes[$1].bytes } }
        let stepOrder = (0..<steps).sorted { (load[$0], $1) > (load[$1], $0) }
        var done = [Bool](repeating: false, count: lifetimes.count)
        var order: [BufferLifetime] = []
        order.reserveCapacity(lifetimes.count)
        for s in stepOrder {
            let here = live[s].filter { !done[$0] }.sorted {
                (lifetimes[$0].bytes, lifetimes[$1].buffer) > (lifetimes[$1].bytes, lifetimes[$0].buffer)
            }
            for i in here { done[i] = true; order.append(lifetimes[i]) }
        }
        return MemoryPlanner.placeInOrder(order)
    }
}
