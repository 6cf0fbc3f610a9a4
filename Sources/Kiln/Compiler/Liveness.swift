/// When each transient buffer is alive.
///
/// Contract: from the steps alone, a buffer is alive from the first step that touches it to the last one.
/// With `clearBuffer` off nothing is ever freed (lifetimes run to the end); with `clearNoNeedGrad` off,
/// forward values survive the whole forward phase. Buffers outside the arena are not listed.
public struct BufferLifetime: Hashable, Sendable {
    public var buffer: Int
    public var bytes: Int
    public var first: Int
    public var last: Int

    public func overlaps(_ o: BufferLifetime) -> Bool { first <= o.last && o.first <= last }
}

public enum Liveness {
    public static func lifetimes(_ plan: Plan) -> [BufferLifetime] {
        var first = [Int: Int](), last = [Int: Int]()
        for (s, step) in plan.steps.enumerated() {
            for b in step.inputs + step.outputs + (step.workspace.map { [$0] } ?? []) {
                if first[b] == nil { first[b] = s }
                last[b] = s
            }
        }
        let end = max(plan.steps.count - 1, 0)
        var out: [BufferLifetime] = []
        for buf in plan.buffers where buf.kind.isTransient {
            guard let f = first[buf.id], var l = last[buf.id] else { continue }
            if !plan.options.clearBuffer { l = end }
            if plan.mode == .training && !plan.options.clearNoNeedGrad && buf.kind == .activation && f < plan.forwardStepCount {
                l = max(l, plan.forwardStepCount - 1)
            }
            out.append(BufferLifetime(buffer: buf.id, bytes: buf.bytes, first: f, last: l))
        }
        return out
    }

    /// Lifetimes of memory: buffers that share memory in place (`plan.aliases`) merged into one lifetime
    /// under their representative.
    public static func storage(_ plan: Plan) -> [BufferLifetime] {
        let each = lifetimes(plan)
        guard !plan.aliases.isEmpty else { return each }
        var merged = [Int: BufferLifetime]()
        var order: [Int] = []
        for l in each {
            let r = plan.aliases[l.buffer] ?? l.buffer
            if var m = merged[r] {
                m.first = min(m.first, l.first)
                m.last = max(m.last, l.last)
                m.bytes = max(m.bytes, l.bytes)
                merged[r] = m
            } else {
                merged[r] = BufferLifetime(buffer: r, bytes: l.bytes, first: l.first, last: l.last)
                order.append(r)
            }
        }
        return order.compactMap { merged[$0] }
    }

    /// The largest total of bytes alive at one step.
    public static func lowerBound(_ lifetimes: [BufferLifetime], steps: Int) -> Int {
        guard steps > 0 else { return 0 }
        var delta = [Int](repeating: 0, count: steps + 1)
        for l in lifetimes { delta[l.first] += l.bytes; delta[l.last + 1] -= l.bytes }
        var live = 0, peak = 0
        for s in 0..<steps { live += delta[s]; peak = max(peak, live) }
        return peak
    }

    /// Live bytes after each step (for dumps).
    public static func liveBytes(_ lifetimes: [BufferLifetime], steps: Int) -> [Int] {
        var delta = [Int](repeating: 0, count: steps + 1)
        for l in lifetimes { delta[l.first] += l.bytes; delta[l.last + 1] -= l.bytes }
        var live = 0
        return (0..<steps).map { live += delta[$0]; return live }
    }
}
