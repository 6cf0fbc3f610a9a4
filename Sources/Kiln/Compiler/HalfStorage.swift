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

    /// The largest total of bytes alive at one step once `stored` are float16 (with their staging).
    static func peak(_ plan: Plan, storing stored: Set<Int>) -> Int {
        let p = lowered(plan, storing: stored)
        let lifetimes = Liveness.lifetimes(p)
        return Liveness.lowerBound(Liveness.storage(p, lifetimes: lifetimes), steps: p.steps.count)
    }

    /// Values that hold float16 numbers in a half plan: intermediate float32 activations and gradients.
    static func isHalfValue(_ b: PlanBuffer) -> Bool {
        (b.kind == .activation || b.kind == .gradient) && b.type.dtype == .float32
    }

    /// The buffers worth storing as float16: those of groups (buffers sharing memory in place, which must keep
    /// one dtype) alive at some step that touches none of them.
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
        var chosen = Set<Int>()
        var candidates: [(group: Int, buffers: [Int], bytes: Int)] = []
        for (g, bs) in members where bs.allSatisfy({ isHalfValue(plan.buffers[$0]) }) {
            guard let f = first[g], let l = last[g] else { continue }
            if (touching[g]?.count ?? 0) < l - f + 1 {
                chosen.formUnion(bs)
                candidates.append((g, bs, plan.buffers[g].bytes))
            }
        }
        // A waiting value still costs a staging copy where it is used; where that use is the plan's peak
        // (LeNet's first layer: one large value read by one step) float32 storage can be smaller overall.
        // Give such values back to float32, largest first, while the peak does not grow.
        var best = peak(plan, storing: chosen)
        for c in candidates.sorted(by: { ($0.bytes, $0.group) > ($1.bytes, $1.group) }) {
            let trial = chosen.subtracting(c.buffers)
            let p = peak(plan, storing: trial)
            if p < best { best = p; chosen = trial }
        }
        return chosen
    }

    /// Gives each function step that touches float16 values a staging buffer. Buffers that share memory in
    /// place (`plan.aliases`) share their staging region too, so an in-place kernel stays in place.
    static func addStaging(_ plan: inout Plan) {
        for s in plan.steps.indices {
            let step = plan.steps[s]
            guard step.kind == .forward || step.kind == .backward else { continue }
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
            let name = step.kind == .backward ? "\(step.node):backward-staging" : "\(step.node):staging"
            plan.buffers.append(PlanBuffer(id: id, name: name, kind: .workspace,
                                           type: TensorType([bytes / DType.float32.byteSize], .float32),
                                           bytes: bytes, offset: nil))
            plan.steps[s].staging = id
            plan.steps[s].staged = staged
        }
    }

    /// Marks the float32-stored half values each function step writes, to be rounded to float16 after it.
    static func addRounding(_ plan: inout Plan) {
        for s in plan.steps.indices where plan.steps[s].kind == .forward || plan.steps[s].kind == .backward {
            var seen = Set<Int>()
            plan.steps[s].rounded = plan.steps[s].outputs.filter { isHalfValue(plan.buffers[$0]) && seen.insert($0).inserted }
        }
    }
}
