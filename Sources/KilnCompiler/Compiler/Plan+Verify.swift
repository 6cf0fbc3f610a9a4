import KilnCore

/// Checks a plan's memory layout from first principles.
///
/// Re-derives every lifetime from the steps and checks that the recorded ones (`lifetimes`, what the
/// executable and placement used) agree, that every activation is written before it is read, then, from the
/// derived ones: transient
/// buffers alive at the same step never overlap, offsets are aligned, every transient buffer fits in the
/// arena, the arena is at least the lower bound, and buffers outside the arena have no offset.
extension Plan {
    public func verify() throws {
        func fail(_ s: String) -> KilnError { .planFailed("verify: \(s)") }
        let lifetimes = Liveness.lifetimes(self)
        guard lifetimes == self.lifetimes else {
            let wrong = zip(lifetimes, self.lifetimes).first { $0 != $1 }
            throw fail("recorded lifetimes differ from the steps'\(wrong.map { " (buffer \(buffers[$0.0.buffer].name): \($0.1.first)...\($0.1.last) recorded, \($0.0.first)...\($0.0.last) derived)" } ?? " (\(self.lifetimes.count) recorded, \(lifetimes.count) derived)")")
        }
        try verifyAliases(lifetimes)
        try verifyGradientBuckets()
        // Every activation a step reads was written by an earlier step (a pass that moves functions between
        // steps must keep each value's producer first).
        var written = Set<Int>()
        for step in steps {
            for b in step.inputs where buffers[b].kind == .activation && !written.contains(b) {
                throw fail("step '\(step.node)' (\(step.function)) reads \(buffers[b].name) before any step writes it")
            }
            written.formUnion(step.outputs)
        }
        for l in lifetimes {
            let b = buffers[l.buffer]
            guard let off = b.offset else { throw fail("transient buffer \(b.name) has no offset") }
            guard off % Plan.alignment == 0 else { throw fail("\(b.name) at \(off) is not \(Plan.alignment)-aligned") }
            guard off >= 0, off + b.bytes <= arenaBytes else { throw fail("\(b.name) [\(off), \(off + b.bytes)) exceeds the arena of \(arenaBytes)") }
            guard b.bytes >= b.storedByteCount else { throw fail("\(b.name) has \(b.bytes) bytes for \(b.type)") }
        }
        for b in buffers where !b.kind.isTransient {
            guard b.offset == nil else { throw fail("persistent buffer \(b.name) was placed in the arena") }
        }
        // What a user or the outside world sees keeps nnabla's layout.
        for b in buffers where b.layout != nil && b.kind != .activation {
            throw fail("\(b.kind.rawValue) \(b.name) is stored \(b.layout.map { "in \($0)" } ?? "")")
        }
        // Sweep over steps with the address ranges of the memory alive so far in a segment tree: a group of
        // in-place buffers is one piece of memory. O(n log n), so long plans verify quickly.
        let storage = Liveness.storage(self, lifetimes: lifetimes)
        var coords = Set<Int>()
        for g in storage { if let o = buffers[g.buffer].offset { coords.insert(o); coords.insert(o + g.bytes) } }
        let axis = coords.sorted()
        var index = [Int: Int](minimumCapacity: axis.count)
        for (i, c) in axis.enumerated() { index[c] = i }
        var tree = CoverageTree(size: max(axis.count - 1, 1))
        let byFirst = storage.indices.sorted { (storage[$0].first, $0) < (storage[$1].first, $1) }
        let byLast = storage.indices.sorted { (storage[$0].last, $0) < (storage[$1].last, $1) }
        var expired = 0
        for g in byFirst {
            let life = storage[g]
            while expired < byLast.count, storage[byLast[expired]].last < life.first {
                let e = storage[byLast[expired]]
                if let o = buffers[e.buffer].offset, let a = index[o], let b = index[o + e.bytes] { tree.add(a, b, -1) }
                expired += 1
            }
            guard let o = buffers[life.buffer].offset, let a = index[o], let b = index[o + life.bytes] else { continue }
            if tree.maximum(a, b) > 0 {
                let other = storage.first { x in
                    x.buffer != life.buffer && x.overlaps(life)
                        && (buffers[x.buffer].offset.map { $0 < o + life.bytes && o < $0 + x.bytes } ?? false)
                }
                throw fail("\(buffers[life.buffer].name) overlaps \(other.map { buffers[$0.buffer].name } ?? "another buffer") in memory while both are alive")
            }
            tree.add(a, b, 1)
        }
        let lb = Liveness.lowerBound(storage, steps: steps.count)
        guard lb == lowerBoundBytes else { throw fail("recorded lower bound \(lowerBoundBytes) differs from \(lb)") }
        guard arenaBytes >= lb else { throw fail("arena \(arenaBytes) is below the lower bound \(lb)") }
        for (i, s) in steps.enumerated() {
            for id in s.touched + s.staged.map(\.buffer) where id < 0 || id >= buffers.count {
                throw fail("step \(i) names buffer \(id), which does not exist")
            }
        }
        try verifyStaging()
    }

    /// Buffers sharing memory must sit at the same offset, have the same size, and hand over the memory at
    /// one step: each member's life ends exactly where the next one's begins.
    /// Buckets hold parameter gradients only, each once, packed back to back, and no step writes a gradient
    /// after its bucket was declared ready (its all-reduce would race with the write).
    func verifyGradientBuckets() throws {
        guard !gradientBuckets.isEmpty else { return }
        func fail(_ s: String) -> KilnError { .planFailed("verify: \(s)") }
        var lastWrite = [Int: Int]()
        for (i, s) in steps.enumerated() { for b in s.outputs { lastWrite[b] = i } }
        var seen = Set<Int>()
        var region = 0
        for (k, bucket) in gradientBuckets.enumerated() {
            guard bucket.offset == region, bucket.buffers.count == bucket.offsets.count else {
                throw fail("gradient bucket \(k) is not packed after the one before it")
            }
            var at = 0
            for (b, off) in zip(bucket.buffers, bucket.offsets) {
                guard buffers[b].kind == .parameterGradient, seen.insert(b).inserted else {
                    throw fail("gradient bucket \(k) holds \(buffers[b].name), not a parameter gradient of its own")
                }
                guard off == at, off % Plan.alignment == 0 else { throw fail("\(buffers[b].name) is misplaced in bucket \(k)") }
                guard let w = lastWrite[b], w <= bucket.readyAfterStep else {
                    throw fail("\(buffers[b].name) is written after bucket \(k) is ready (step \(bucket.readyAfterStep))")
                }
                at += buffers[b].bytes
            }
            guard at == bucket.bytes else { throw fail("gradient bucket \(k) claims \(bucket.bytes) bytes, holds \(at)") }
            region += bucket.bytes
        }
        let written = Set(lastWrite.keys.filter { buffers[$0].kind == .parameterGradient })
        guard written == seen else { throw fail("\(written.subtracting(seen).count) parameter gradient(s) in no bucket") }
    }

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

/// Range add / range maximum over `size` elementary segments (a lazy segment tree).
struct CoverageTree {
    private var maxv: [Int]
    private var lazy: [Int]
    private let size: Int

    init(size: Int) {
        self.size = size
        maxv = [Int](repeating: 0, count: 4 * size)
        lazy = [Int](repeating: 0, count: 4 * size)
    }

    /// Adds `v` to segments `[a, b)`.
    mutating func add(_ a: Int, _ b: Int, _ v: Int) { if a < b { add(1, 0, size, a, b, v) } }

    /// The maximum over segments `[a, b)`.
    mutating func maximum(_ a: Int, _ b: Int) -> Int { a < b ? query(1, 0, size, a, b) : 0 }

    private mutating func add(_ node: Int, _ lo: Int, _ hi: Int, _ a: Int, _ b: Int, _ v: Int) {
        if b <= lo || hi <= a { return }
        if a <= lo && hi <= b { maxv[node] += v; lazy[node] += v; return }
        let mid = (lo + hi) / 2
        add(2 * node, lo, mid, a, b, v)
        add(2 * node + 1, mid, hi, a, b, v)
        maxv[node] = max(maxv[2 * node], maxv[2 * node + 1]) + lazy[node]
    }

    private mutating func query(_ node: Int, _ lo: Int, _ hi: Int, _ a: Int, _ b: Int) -> Int {
        if b <= lo || hi <= a { return Int.min / 2 }
        if a <= lo && hi <= b { return maxv[node] }
        let mid = (lo + hi) / 2
        return max(query(2 * node, lo, mid, a, b), query(2 * node + 1, mid, hi, a, b)) + lazy[node]
    }
}

extension Plan {
    /// Each staged float16 value has a float32 region inside its step's staging buffer, and regions of
    /// different values overlap only when the values share memory in place.
    func verifyStaging() throws {
        func fail(_ s: String) -> KilnError { .planFailed("verify: \(s)") }
        for (i, s) in steps.enumerated() {
            for id in s.rounded where buffers[id].type.dtype != .float32 || !s.outputs.contains(id) {
                throw fail("step \(i) rounds \(buffers[id].name), which is not a float32 value it writes")
            }
            // In a half plan every activation and gradient a function writes ends up holding float16 values.
            guard options.precision == .half, s.kind.runsFunction else { continue }
            for id in s.outputs where HalfStorage.isHalfValue(buffers[id]) && !s.rounded.contains(id) {
                throw fail("step \(i) writes \(buffers[id].name) as float32 without rounding it to float16")
            }
        }
        for (i, s) in steps.enumerated() where !s.staged.isEmpty {
            guard let st = s.staging else { throw fail("step \(i) stages values but has no staging buffer") }
            var regions: [(range: Range<Int>, group: Int)] = []
            for v in s.staged {
                let b = buffers[v.buffer]
                guard b.type.dtype == .float16 else { throw fail("step \(i) stages \(b.name), which is not float16") }
                let r = v.offset..<(v.offset + b.type.count * DType.float32.byteSize)
                guard v.offset >= 0, r.upperBound <= buffers[st].bytes else {
                    throw fail("\(b.name) does not fit in the staging buffer of step \(i)")
                }
                let group = aliases[v.buffer] ?? v.buffer
                if let clash = regions.first(where: { $0.range.overlaps(r) && $0.group != group }) {
                    throw fail("step \(i) stages \(b.name) over \(buffers[clash.group].name)")
                }
                regions.append((r, group))
            }
        }
    }
}
