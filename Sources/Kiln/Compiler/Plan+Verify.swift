/// Checks a plan's memory layout from first principles.
///
/// Re-derives every lifetime from the steps (not from what the planner recorded) and checks: transient
/// buffers alive at the same step never overlap, offsets are aligned, every transient buffer fits in the
/// arena, the arena is at least the lower bound, and buffers outside the arena have no offset.
extension Plan {
    public func verify() throws {
        func fail(_ s: String) -> KilnError { .planFailed("verify: \(s)") }
        let lifetimes = Liveness.lifetimes(self)
        try verifyAliases(lifetimes)
        let group = { (b: Int) -> Int in self.aliases[b] ?? b }
        var placed: [(off: Int, life: BufferLifetime)] = []
        for l in lifetimes {
            let b = buffers[l.buffer]
            guard let off = b.offset else { throw fail("transient buffer \(b.name) has no offset") }
            guard off % Plan.alignment == 0 else { throw fail("\(b.name) at \(off) is not \(Plan.alignment)-aligned") }
            guard off >= 0, off + b.bytes <= arenaBytes else { throw fail("\(b.name) [\(off), \(off + b.bytes)) exceeds the arena of \(arenaBytes)") }
            guard b.bytes >= b.type.byteCount else { throw fail("\(b.name) has \(b.bytes) bytes for \(b.type)") }
            placed.append((off, l))
        }
        for b in buffers where !b.kind.isTransient {
            guard b.offset == nil else { throw fail("persistent buffer \(b.name) was placed in the arena") }
        }
        // Sweep by first step; compare with buffers still alive.
        placed.sort { $0.life.first < $1.life.first }
        var active: [(off: Int, life: BufferLifetime)] = []
        for p in placed {
            active.removeAll { $0.life.last < p.life.first }
            for a in active where a.off < p.off + p.life.bytes && p.off < a.off + a.life.bytes
                && group(a.life.buffer) != group(p.life.buffer) {
                throw fail("\(buffers[a.life.buffer].name) and \(buffers[p.life.buffer].name) overlap in memory while both are alive")
            }
            active.append(p)
        }
        let lb = Liveness.lowerBound(Liveness.storage(self), steps: steps.count)
        guard lb == lowerBoundBytes else { throw fail("recorded lower bound \(lowerBoundBytes) differs from \(lb)") }
        guard arenaBytes >= lb else { throw fail("arena \(arenaBytes) is below the lower bound \(lb)") }
        for (i, s) in steps.enumerated() {
            for id in s.inputs + s.outputs + (s.workspace.map { [$0] } ?? []) where id < 0 || id >= buffers.count {
                throw fail("step \(i) names buffer \(id), which does not exist")
            }
        }
    }

    /// Buffers sharing memory must sit at the same offset, have the same size, and hand over the memory at
    /// one step: each member's life ends exactly where the next one's begins.
    func verifyAliases(_ lifetimes: [BufferLifetime]) throws {
        guard !aliases.isEmpty else { return }
        func fail(_ s: String) -> KilnError { .planFailed("verify: \(s)") }
        var byBuffer = [Int: BufferLifetime]()
        for l in lifetimes { byBuffer[l.buffer] = l }
        var members = [Int: [BufferLifetime]]()
        for (b, r) in aliases {
            guard let lb = byBuffer[b], let lr = byBuffer[r] else { throw fail("in-place buffer \(b) is not transient") }
            guard buffers[b].offset == buffers[r].offset, buffers[b].bytes == buffers[r].bytes else {
                throw fail("\(buffers[b].name) shares memory with \(buffers[r].name) but not its place or size")
            }
            members[r, default: [lr]].append(lb)
        }
        for (_, ms) in members {
            let chain = ms.sorted { $0.first < $1.first }
            for (x, y) in zip(chain, chain.dropFirst()) where x.last != y.first {
                throw fail("\(buffers[x.buffer].name) and \(buffers[y.buffer].name) share memory without handing it over at one step")
            }
        }
    }
}
