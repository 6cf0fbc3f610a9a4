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
    /// The pipeline's liveness pass: the lowered plan's lifetimes.
    static let pass: Pipeline.MemoryPass = { l in l.plan.lifetimes = lifetimes(l.plan) }

    public static func lifetimes(_ plan: Plan) -> [BufferLifetime] {
        var first = [Int: Int](), last = [Int: Int]()
        for (s, step) in plan.steps.enumerated() {
            for b in step.touched {
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

    /// One thing that happens to memory at a step, in the XLA heap simulator's vocabulary.
    public enum Event: Hashable, Sendable, CustomStringConvertible {
        /// Memory for a buffer is taken (it is first written at this step).
        case alloc(step: Int, buffer: String)
        /// A buffer takes over the memory of another one that dies at this step (in place).
        case share(step: Int, buffer: String, from: String)
        /// A buffer's memory is free after this step.
        case free(step: Int, buffer: String)

        public var description: String {
            switch self {
            case let .alloc(s, b): return "\(s) alloc \(b)"
            case let .share(s, b, f): return "\(s) share \(b) <- \(f)"
            case let .free(s, b): return "\(s) free \(b)"
            }
        }
    }

    /// The memory events of a plan in step order (allocations and shares of a step before its frees), for
    /// tests and for reading a plan's lifetimes as a story.
    public static func events(_ plan: Plan) -> [Event] {
        let each = lifetimes(plan)
        let group = { (b: Int) -> Int in plan.aliases[b] ?? b }
        var members = [Int: [BufferLifetime]]()
        for l in each { members[group(l.buffer), default: []].append(l) }
        var starts = [[Event]](repeating: [], count: plan.steps.count)
        var frees = [[Event]](repeating: [], count: plan.steps.count)
        for l in each {
            let name = plan.buffers[l.buffer].name
            let others = members[group(l.buffer)]?.filter { $0.buffer != l.buffer } ?? []
            if let from = others.first(where: { $0.last == l.first }) {
                starts[l.first].append(.share(step: l.first, buffer: name, from: plan.buffers[from.buffer].name))
            } else {
                starts[l.first].append(.alloc(step: l.first, buffer: name))
            }
            // Memory handed over to a successor is not freed.
            if !others.contains(where: { $0.first == l.last }) {
                frees[l.last].append(.free(step: l.last, buffer: name))
            }
        }
        return (0..<plan.steps.count).flatMap { starts[$0] + frees[$0] }
    }

    /// Lifetimes of memory: buffers that share memory in place (`plan.aliases`) merged into one lifetime
    /// under their representative.
    public static func storage(_ plan: Plan, lifetimes each: [BufferLifetime]? = nil) -> [BufferLifetime] {
        let each = each ?? lifetimes(plan)
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
