import KilnCore
import KilnGraph

/// Half-precision plans: every activation and gradient holds float16 values, kernels compute in float32.
///
/// Every kernel of Kiln is written for float32. Rather than a second set of kernels, a value is kept in one
/// of two forms, chosen per buffer (per group of buffers sharing memory in place):
/// - **float16 storage** for values that wait in the arena across steps that do not touch them (what
///   backward reads from forward): half the bytes. A step touching such values gets a float32 staging
///   buffer alive during that step only: float16 inputs are widened into it before the kernel runs and its
///   outputs narrowed back into the arena afterwards.
/// - **float32 storage, rounded** for values only alive while the steps that touch them run (a value
///   passed straight to the next function): after each step writing it, its values are rounded to float16
///   in place. Storing them as float16 would cost more (a float32 staging copy at every step touching it
///   on top of the float16 value) than it saves.
/// Either way a consumer reads exactly the float16 value, so results do not depend on the choice (tested
/// bit for bit against storing everything as float16), sums inside a kernel keep float32 accuracy, and a
/// value beyond float16's range becomes an infinity, which dynamic loss scaling detects.
///
/// Parameters, their gradients, solver state, inputs and requested outputs stay float32 and unrounded: the
/// solver updates float32 master weights, and a loss is read at full precision.
enum HalfStorage {
    /// The pipeline's half-precision pass (precision half only): after the in-place decisions, so buffers
    /// sharing memory keep one storage and share staging. Its steps change (staging, rounding), so the
    /// lifetimes are derived again.
    static let pass: Pipeline.MemoryPass = { l in
        guard l.plan.options.precision == .half else { return }
        apply(&l.plan, lifetimes: l.plan.lifetimes, everywhere: l.plan.options.halfStorageEverywhere)
        l.plan.lifetimes = Liveness.lifetimes(l.plan)
    }

    /// Lowers a plan whose in-place decisions are made to half precision: chooses the storage of every
    /// activation and gradient, narrows, stages and rounds. `everywhere` stores every value as float16 (for
    /// tests: the results must not change).
    static func apply(_ plan: inout Plan, lifetimes: [BufferLifetime], everywhere: Bool = false) {
        let stored = everywhere ? Set(plan.buffers.indices.filter { isHalfValue(plan.buffers[$0]) })
                                : storedAsHalf(plan, lifetimes: lifetimes)
        plan = lowered(plan, storing: stored)
    }

    static func lowered(_ plan: Plan, storing stored: Set<Int>) -> Plan {
        var plan = plan
        for i in stored {
            plan.buffers[i].type.dtype = .float16
            plan.buffers[i].bytes = PlanBuilder.rounded(plan.buffers[i].type.byteCount)
        }
        addStaging(&plan)
        addRounding(&plan)
        return plan
    }

    /// Bytes alive after each step once `stored` are float16 (with their staging).
    static func liveBytes(_ plan: Plan, storing stored: Set<Int>) -> [Int] {
        let p = lowered(plan, storing: stored)
        let lifetimes = Liveness.lifetimes(p)
        return Liveness.liveBytes(Liveness.storage(p, lifetimes: lifetimes), steps: p.steps.count)
    }

    /// Values that hold float16 numbers in a half plan: intermediate float32 activations and gradients.
    static func isHalfValue(_ b: PlanBuffer) -> Bool {
        (b.kind == .activation || b.kind == .gradient) && b.type.dtype == .float32
    }

    /// The buffers worth storing as float16: those of groups (buffers sharing memory in place, which must keep
    /// one dtype) alive at some step that touches none of them, except where the staging copies of a value
    /// make the plan's peak (LeNet's first layer: one large value read by one step): such values are given
    /// back to float32 while that lowers the peak.
    static func storedAsHalf(_ plan: Plan, lifetimes: [BufferLifetime]) -> Set<Int> {
        var touching = [Int: Set<Int>]()
        for (s, step) in plan.steps.enumerated() {
            for b in step.inputs + step.outputs { touching[plan.aliases[b] ?? b, default: []].insert(s) }
        }
        var members = [Int: [Int]](), first = [Int: Int](), last = [Int: Int]()
        for l in lifetimes {
            let g = plan.aliases[l.buffer] ?? l.buffer
            members[g, default: []].append(l.buffer)
            first[g] = min(first[g] ?? l.first, l.first)
            last[g] = max(last[g] ?? l.last, l.last)
        }
        struct Candidate { var buffers: [Int]; var first: Int; var last: Int; var touching: Set<Int>; var gain: Int; var staging: Int }
        var chosen = Set<Int>()
        var candidates: [Candidate] = []
        for (g, bs) in members.sorted(by: { $0.key < $1.key }) where bs.allSatisfy({ isHalfValue(plan.buffers[$0]) }) {
            guard let f = first[g], let l = last[g], let t = touching[g], t.count < l - f + 1 else { continue }
            chosen.formUnion(bs)
            let count = plan.buffers[g].type.count
            let full = PlanBuilder.rounded(count * DType.float32.byteSize)
            candidates.append(Candidate(buffers: bs, first: f, last: l, touching: t,
                                        gain: full - PlanBuilder.rounded(count * DType.float16.byteSize), staging: full))
        }
        guard !candidates.isEmpty else { return chosen }
        // Giving a value back to float32 adds `gain` bytes over its life and removes its staging copy at the
        // steps using it, so it can only lower the peak if it is used at a peak step. Estimate each such
        // candidate's new peak from the live bytes (prefix and suffix maxima for the steps outside its life),
        // take the best, and repeat.
        var live = liveBytes(plan, storing: chosen)
        var active = [Bool](repeating: true, count: candidates.count)
        for _ in 0..<candidates.count {
            let n = live.count
            guard let peak = live.max(), n > 0 else { break }
            var prefix = [Int](repeating: 0, count: n + 1), suffix = [Int](repeating: 0, count: n + 1)
            for s in 0..<n { prefix[s + 1] = max(prefix[s], live[s]) }
            for s in stride(from: n - 1, through: 0, by: -1) { suffix[s] = max(suffix[s + 1], live[s]) }
            var best: (index: Int, peak: Int)? = nil
            for (i, c) in candidates.enumerated() where active[i] && c.touching.contains(where: { live[$0] == peak }) {
                var p = max(prefix[c.first], suffix[c.last + 1])
                for s in c.first...c.last { p = max(p, live[s] + c.gain - (c.touching.contains(s) ? c.staging : 0)) }
                if p < peak && p < (best?.peak ?? Int.max) { best = (i, p) }
            }
            guard let b = best else { break }
            let c = candidates[b.index]
            active[b.index] = false
            chosen.subtract(c.buffers)
            for s in c.first...c.last { live[s] += c.gain - (c.touching.contains(s) ? c.staging : 0) }
        }
        return chosen
    }

    /// Gives each function step that touches float16 values a staging buffer. Buffers that share memory in
    /// place (`plan.aliases`) share their staging region too, so an in-place kernel stays in place.
    static func addStaging(_ plan: inout Plan) {
        for s in plan.steps.indices {
            let step = plan.steps[s]
            guard step.kind.runsFunction else { continue }
            let added = Set(zip(step.outputs, step.accumulate).filter { $0.1 }.map { $0.0 })
            var regionOf: [Int: Int] = [:]
            var staged: [StagedValue] = []
            var bytes = 0
            for b in step.inputs + step.outputs where plan.buffers[b].type.dtype == .float16 {
                guard !staged.contains(where: { $0.buffer == b }) else { continue }
                let group = plan.aliases[b] ?? b
                let offset: Int
                if let o = regionOf[group] { offset = o } else {
                    offset = bytes
                    regionOf[group] = offset
                    bytes += PlanBuilder.rounded(plan.buffers[b].type.count * DType.float32.byteSize)
                }
                staged.append(StagedValue(buffer: b, offset: offset,
                                          load: step.inputs.contains(b) || added.contains(b),
                                          store: step.outputs.contains(b)))
            }
            guard !staged.isEmpty else { continue }
            let id = plan.buffers.count
            let name = step.kind == .forward ? "\(step.node):staging" : "\(step.node):\(step.kind.rawValue)-staging"
            plan.buffers.append(PlanBuffer(id: id, name: name, kind: .workspace,
                                           type: TensorType([bytes / DType.float32.byteSize], .float32),
                                           bytes: bytes, offset: nil))
            plan.steps[s].staging = id
            plan.steps[s].staged = staged
        }
    }

    /// Marks the float32-stored half values each function step writes, to be rounded to float16 after it.
    static func addRounding(_ plan: inout Plan) {
        for s in plan.steps.indices where plan.steps[s].kind.runsFunction {
            var seen = Set<Int>()
            plan.steps[s].rounded = plan.steps[s].outputs.filter { isHalfValue(plan.buffers[$0]) && seen.insert($0).inserted }
        }
    }
}
