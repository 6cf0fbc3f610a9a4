/// Where each transient buffer goes in the arena.
///
/// Contract: consumes only lifetimes (`[BufferLifetime]`), returns an offset per buffer such that buffers
/// alive at the same step never overlap and every offset is `Plan.alignment`-aligned. Several algorithms
/// run and the smallest arena wins; ties go to the earlier algorithm in the list, so results are stable.
public protocol PlacementAlgorithm: Sendable {
    var name: String { get }
    /// Algorithms whose cost grows quadratically with the number of buffers alive at once skip plans with
    /// more buffers than this (nil: always run).
    var maxBuffers: Int? { get }
    /// Offsets by buffer id, and the arena size they need.
    func place(_ lifetimes: [BufferLifetime]) -> (offsets: [Int: Int], arenaBytes: Int)
}

public enum MemoryPlanner {
    public static let algorithms: [any PlacementAlgorithm] = [GreedyBySize(), GreedyByBreadth(), HeapSimulation()]

    /// Runs every algorithm and keeps the smallest arena.
    public static func bestOf(_ lifetimes: [BufferLifetime],
                              algorithms: [any PlacementAlgorithm] = MemoryPlanner.algorithms)
        -> (offsets: [Int: Int], arenaBytes: Int, algorithm: String) {
        var best: (offsets: [Int: Int], arenaBytes: Int, algorithm: String)? = nil
        for a in algorithms where a.maxBuffers.map({ lifetimes.count <= $0 }) ?? true {
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
    public let maxBuffers: Int? = 8192
    public init() {}
    public func place(_ lifetimes: [BufferLifetime]) -> (offsets: [Int: Int], arenaBytes: Int) {
        MemoryPlanner.placeInOrder(lifetimes.sorted {
            ($0.bytes, $1.first, $1.buffer) > ($1.bytes, $0.first, $0.buffer)
        })
    }
}

/// A heap allocator that replays the plan: at each step it allocates the buffers born there (largest first)
/// from the best-fitting free block, or at the top of the arena, then frees the buffers that die there,
/// merging neighbouring free blocks. Its cost depends on the number of free blocks, not on how many buffers
/// are alive, so it stays fast on long training plans where every forward value lives until backward.
public struct HeapSimulation: PlacementAlgorithm {
    public let name = "heap-simulation"
    public let maxBuffers: Int? = nil
    public init() {}

    public func place(_ lifetimes: [BufferLifetime]) -> (offsets: [Int: Int], arenaBytes: Int) {
        guard let steps = lifetimes.map({ $0.last }).max().map({ $0 + 1 }) else { return ([:], 0) }
        var born = [[Int]](repeating: [], count: steps), dies = [[Int]](repeating: [], count: steps)
        for (i, l) in lifetimes.enumerated() { born[l.first].append(i); dies[l.last].append(i) }
        var free: [(offset: Int, bytes: Int)] = []   // sorted by offset, never adjacent, all below `top`
        var top = 0, peak = 0
        var offsets = [Int: Int](minimumCapacity: lifetimes.count)
        var at = [Int](repeating: 0, count: lifetimes.count)
        for s in 0..<steps {
            let order = born[s].sorted { (lifetimes[$0].bytes, lifetimes[$1].buffer) > (lifetimes[$1].bytes, lifetimes[$0].buffer) }
            for i in order {
                let need = lifetimes[i].bytes
                var best = -1
                for (k, f) in free.enumerated() where f.bytes >= need && (best < 0 || f.bytes < free[best].bytes) { best = k }
                let off: Int
                if best >= 0 {
                    off = free[best].offset
                    if free[best].bytes == need { free.remove(at: best) } else { free[best] = (off + need, free[best].bytes - need) }
                } else if let last = free.last, last.offset + last.bytes == top {
                    off = last.offset
                    free.removeLast()
                    top = off + need
                } else {
                    off = top
                    top += need
                }
                peak = max(peak, top)
                at[i] = off
                offsets[lifetimes[i].buffer] = off
            }
            for i in dies[s] {
                var block = (offset: at[i], bytes: lifetimes[i].bytes)
                var lo = 0, hi = free.count
                while lo < hi { let m = (lo + hi) / 2; if free[m].offset < block.offset { lo = m + 1 } else { hi = m } }
                if lo < free.count, block.offset + block.bytes == free[lo].offset {
                    block.bytes += free[lo].bytes
                    free.remove(at: lo)
                }
                if lo > 0, free[lo - 1].offset + free[lo - 1].bytes == block.offset {
                    block = (free[lo - 1].offset, free[lo - 1].bytes + block.bytes)
                    free.remove(at: lo - 1)
                    lo -= 1
                }
                if block.offset + block.bytes == top { top = block.offset } else { free.insert(block, at: lo) }
            }
        }
        return (offsets, peak)
    }
}

/// Steps in order of decreasing live bytes; at each, the buffers alive there, largest first (TFLite's
/// "greedy by breadth"): the busiest moments are laid out first.
public struct GreedyByBreadth: PlacementAlgorithm {
    public let name = "greedy-by-breadth"
    public let maxBuffers: Int? = 8192
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
