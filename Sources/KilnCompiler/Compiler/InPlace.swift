/// In-place decisions: which buffers take over the memory of another.
///
/// Contract: output 0 of a forward step may share the memory of input k (the function's
/// `forwardInPlaceInput`) when both are transient, have the same byte size and dtype, and input k is last
/// used by this step; likewise a backward step's first input gradient may share its first output gradient
/// (`backwardInPlace`) when that gradient dies there and the input gradient is overwritten, not added to. A
/// group of buffers sharing memory forms a chain of lifetimes that touch only at the hand-over step, and is
/// placed as one buffer. Nothing is shared when clear_buffer is off.
enum InPlace {
    /// The pipeline's in-place pass: needs the plan's lifetimes; sets its aliases.
    static let pass: Pipeline.MemoryPass = { l in
        l.plan.aliases = decide(l.plan, l.bindings, lifetimes: l.plan.lifetimes)
    }

    static func decide(_ plan: Plan, _ bindings: PlanBindings, lifetimes: [BufferLifetime]) -> [Int: Int] {
        guard plan.options.clearBuffer else { return [:] }
        var last = [Int: Int](), first = [Int: Int]()
        for l in lifetimes { last[l.buffer] = l.last; first[l.buffer] = l.first }
        var representative = [Int: Int]()
        func root(_ b: Int) -> Int {
            var r = b
            while let n = representative[r], n != r { r = n }
            return r
        }
        // The last step at which any member of a group is used.
        var groupLast = [Int: Int]()
        func compatible(_ a: Int, _ b: Int) -> Bool {
            let x = plan.buffers[a], y = plan.buffers[b]
            return x.kind.isTransient && y.kind.isTransient && x.kind != .workspace && y.kind != .workspace
                && x.bytes == y.bytes && x.type.dtype == y.type.dtype && (x.codes == nil) == (y.codes == nil)
                && x.layout == y.layout
        }
        for (s, step) in plan.steps.enumerated() {
            let slots = bindings.steps[s]
            guard let node = slots.node else { continue }
            var from: Int? = nil, to: Int? = nil
            switch step.kind {
            case .forward, .recompute:
                guard let k = (slots.fused ?? node.function).forwardInPlaceInput, k < slots.inputData.count,
                      let input = slots.inputData[k], let output = slots.outputData.first ?? nil else { continue }
                // The input must not also feed another slot of the same step.
                guard slots.inputData.filter({ $0 == input }).count == 1 else { continue }
                from = input; to = output
            case .backward:
                guard (slots.fused ?? node.function).backwardInPlace, let dy = slots.outputGrads.first,
                      let dx = slots.inputGrads.first ?? nil, slots.accumulate.first == false else { continue }
                guard slots.inputGrads.filter({ $0 == dx }).count == 1 else { continue }
                from = dy; to = dx
            default: continue
            }
            guard let a = from, let b = to, a != b, compatible(a, b) else { continue }
            let ra = root(a)
            guard (groupLast[ra] ?? last[a] ?? -1) == s, last[a] == s, first[b] == s, representative[b] == nil else { continue }
            representative[b] = ra
            groupLast[ra] = last[b] ?? s
        }
        var out = [Int: Int]()
        for b in representative.keys { out[b] = root(b) }
        return out
    }
}
