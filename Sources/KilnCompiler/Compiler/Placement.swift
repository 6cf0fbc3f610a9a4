import KilnCore
import KilnKernels
import KilnGraph

/// The pipeline's last pass: every transient buffer's offset in the one arena, and the plan's figures.
///
/// Contract: needs the plan's lifetimes and in-place aliases (and, in half precision, its final storage).
/// Places each group of buffers sharing memory as one piece (`Liveness.storage`) with the best of the
/// placement algorithms (`MemoryPlanner`); a buffer taking over another's memory gets that offset. Records
/// the arena, the lower bound of this schedule, the naive total (every buffer its own memory) and the bytes
/// outside the arena. Changes no step and no buffer other than offsets.
enum Placement {
    static let pass: Pipeline.MemoryPass = { l in
        var plan = l.plan
        plan.naiveBytes = plan.lifetimes.reduce(0) { $0 + $1.bytes }
        let storage = Liveness.storage(plan, lifetimes: plan.lifetimes)
        plan.lowerBoundBytes = Liveness.lowerBound(storage, steps: plan.steps.count)
        plan.persistentBytes = plan.buffers.filter { !$0.kind.isTransient }.reduce(0) { $0 + $1.type.byteCount }
        let placed = MemoryPlanner.bestOf(storage)
        for (id, off) in placed.offsets { plan.buffers[id].offset = off }
        for (b, r) in plan.aliases { plan.buffers[b].offset = placed.offsets[r] }
        plan.arenaBytes = placed.arenaBytes
        plan.placementAlgorithm = placed.algorithm
        l.plan = plan
    }
}
