/// Half-precision plans: activations and their gradients live in the arena as float16, kernels compute in
/// float32.
///
/// Every kernel of Kiln is written for float32. Rather than a second set of kernels, a step that touches
/// float16 values gets a float32 staging buffer alive during that step only: its float16 inputs are widened
/// into it before the kernel runs and its outputs narrowed back into the arena afterwards. Values are thus
/// rounded to float16 after every function, as storage in half precision does, while sums inside a kernel
/// keep float32 accuracy. The arena holds the float16 values plus the largest staging buffer alive at a step,
/// which the planner places like any other workspace.
///
/// Parameters, their gradients, solver state, inputs and requested outputs stay float32: the solver updates
/// float32 master weights, and a loss is read at full precision.
enum HalfStorage {
    /// Activations and gradients kept in the arena switch to float16 storage.
    static func narrowTransients(_ plan: inout Plan) {
        for i in plan.buffers.indices {
            let b = plan.buffers[i]
            guard b.kind == .activation || b.kind == .gradient, b.type.dtype == .float32 else { continue }
            plan.buffers[i].type.dtype = .float16
            plan.buffers[i].bytes = PlanBuilder.rounded(plan.buffers[i].type.byteCount)
        }
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
}
