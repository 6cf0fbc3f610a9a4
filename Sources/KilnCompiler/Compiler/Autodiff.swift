import KilnCore
import KilnGraph

/// Where gradients flow: which values require one and which nodes get a backward step.
struct GradientFlow {
    typealias Key = GraphCollector.ValueKey
    private var requires = [Key: Bool]()
    /// Nodes that get a backward step: some input wants a gradient and some output received one.
    private(set) var runsBackward = Set<ObjectIdentifier>()

    init(_ nodes: [FunctionNode], roots: [Variable]) {
        for n in nodes {
            let r = n.function.isDifferentiable && n.inputs.indices.contains { i in
                requiresGradient(n.inputs[i]) && n.function.propagatesGradient(toInput: i, inputCount: n.inputs.count)
            }
            for i in n.outputTypes.indices { requires[.output(node: ObjectIdentifier(n), index: i)] = r }
        }
        var defined = Set(roots.filter { requiresGradient($0) }.map { Key($0) })
        for n in nodes.reversed() {
            let want = wants(n)
            let outKeys = n.outputTypes.indices.map { Key.output(node: ObjectIdentifier(n), index: $0) }
            guard want.contains(true), outKeys.contains(where: { defined.contains($0) }) else { continue }
            runsBackward.insert(ObjectIdentifier(n))
            for (i, v) in n.inputs.enumerated() where want[i] { defined.insert(Key(v)) }
        }
    }

    func requiresGradient(_ v: Variable) -> Bool {
        if let r = requires[Key(v)] { return r }
        return v.parent == nil ? v.needGrad : false
    }

    /// Per input of `n`: whether its backward step computes that input's gradient.
    func wants(_ n: FunctionNode) -> [Bool] {
        n.inputs.enumerated().map { i, v in
            n.function.isDifferentiable && requiresGradient(v)
                && n.function.propagatesGradient(toInput: i, inputCount: n.inputs.count)
        }
    }

    /// The forward values the backward steps read.
    func backwardReads(_ nodes: [FunctionNode]) -> Set<Key> {
        var keys = Set<Key>()
        for n in nodes where runsBackward.contains(ObjectIdentifier(n)) {
            let reads = n.function.backwardReads(inputCount: n.inputs.count, outputCount: n.outputTypes.count)
            for (i, v) in n.inputs.enumerated() where reads.inputs[i] { keys.insert(Key(v)) }
            for i in n.outputTypes.indices where reads.outputs[i] { keys.insert(.output(node: ObjectIdentifier(n), index: i)) }
        }
        return keys
    }
}

/// Backward steps for a training plan.
///
/// Contract: walks the forward schedule in reverse. A value gets a gradient when a gradient can reach it
/// (a leaf with `needGrad`, or the output of a differentiable function with such an input). The first
/// contribution to an intermediate gradient overwrites it and later ones add; parameter gradients always
/// add, as nnabla's `.g` does (solvers zero them). Roots are seeded; an output gradient no consumer wrote
/// is zeroed before it is read. A node none of whose outputs received a gradient is skipped. Where a backward
/// step reads a value `Rematerialization` chose to rebuild, the rebuild steps are emitted just before it
/// (`backwardData`). It may not change forward steps or their buffers.
enum Autodiff {
    /// The training plans to choose from: backward appended to `forward`, keeping every value backward reads,
    /// then (with recomputation on, which needs clear_buffer) with each way of sharing rebuilt values that
    /// `Rematerialization.decide` offers, from the fewest steps to the most.
    static func candidates(_ forward: PlanBuilder, _ order: [FunctionNode]) throws -> [PlanBuilder] {
        let sharings: [Recompute.Sharing?] = forward.options.recompute && forward.options.clearBuffer
            ? [nil] + Recompute.Sharing.allCases.map(Optional.some) : [nil]
        return try sharings.map { sharing in
            var candidate = forward
            if let sharing { candidate.recompute = Rematerialization.decide(candidate, order, sharing: sharing) }
            try candidate.addBackward(order)
            return candidate
        }
    }
}

extension PlanBuilder {
    mutating func addBackward(_ nodes: [FunctionNode]) throws {
        let flow = GradientFlow(nodes, roots: roots)
        let req = flow.requiresGradient

        // Seeds: the gradient of each root that requires one.
        var defined = Set<Key>()
        for r in roots where req(r) {
            let key = Key(r)
            guard !defined.contains(key) else { continue }
            let g = newBuffer("grad:\(variableName(r))", .outputGradient, TensorType(r.shape, .float32))
            bindings.externals[g] = .grad(r)
            gradBuffer[key] = g
            defined.insert(key)
            steps.append(PlanStep(kind: .seed, function: "Seed", node: variableName(r), inputs: [], outputs: [g],
                                  accumulate: [false], workspace: nil))
            bindings.steps.append(.init(node: nil))
            bindings.seeds.append(g)
        }

        // Nodes whose backward a fused chain's step does (the BN and Add2 of `fusedNormalizations`).
        var done = Set<ObjectIdentifier>()
        for n in nodes.reversed() where flow.runsBackward.contains(ObjectIdentifier(n)) && !done.contains(ObjectIdentifier(n)) {
            let nid = ObjectIdentifier(n)
            let f = n.function
            let displayName = nodeName(n)
            let wants = flow.wants(n)
            let outKeys = n.outputTypes.indices.map { Key.output(node: nid, index: $0) }

            // Output gradients; zero the ones nobody produced.
            var outGrads: [Int] = []
            let outVars = n.outputs
            for (i, key) in outKeys.enumerated() {
                if let g = gradBuffer[key], defined.contains(key) { outGrads.append(g); continue }
                let g = newBuffer("grad:\(outVars[i].map { variableName($0) } ?? "\(displayName):\(i)")", .gradient,
                                  TensorType(n.outputTypes[i].shape, .float32))
                gradBuffer[key] = g
                defined.insert(key)
                steps.append(PlanStep(kind: .zero, function: "Zero", node: displayName, inputs: [], outputs: [g],
                                      accumulate: [false], workspace: nil))
                bindings.steps.append(.init(node: nil))
                outGrads.append(g)
            }

            if let (chain, fused) = fusedNormalizations[nid] {
                try addFusedBackward(chain, fused, flow: flow, dy: outGrads[0], defined: &defined)
                for m in chain { done.insert(ObjectIdentifier(m)) }
                continue
            }

            let reads = f.backwardReads(inputCount: n.inputs.count, outputCount: n.outputTypes.count)
            var slots = PlanBindings.StepSlots(node: n)
            for (i, v) in n.inputs.enumerated() { slots.inputData.append(reads.inputs[i] ? backwardData(Key(v)) : nil) }
            for (i, k) in outKeys.enumerated() { slots.outputData.append(reads.outputs[i] ? backwardData(k) : nil) }
            slots.outputGrads = outGrads
            var written: [Int] = []
            var accumulate: [Bool] = []
            for (i, v) in n.inputs.enumerated() {
                guard wants[i] else { slots.inputGrads.append(nil); slots.accumulate.append(false); continue }
                let (g, acc) = inputGradient(v, defined: &defined)
                slots.inputGrads.append(g)
                slots.accumulate.append(acc)
                if !written.contains(g) { written.append(g); accumulate.append(acc) }
            }
            let tb = TypeBinding(inputs: n.inputs.map { $0.type }, outputs: n.outputTypes)
            appendBackward(slots, function: n.typeName, workspaceBytes: f.backwardWorkspace(tb), written: written,
                           accumulate: accumulate)
        }
    }

    /// The gradient buffer of input `v` and whether this contribution adds to it: the first contribution to an
    /// intermediate's gradient overwrites a new buffer, later ones add; a leaf's gradient always adds.
    mutating func inputGradient(_ v: Variable, defined: inout Set<Key>) -> (buffer: Int, accumulate: Bool) {
        let key = Key(v)
        if let g = gradBuffer[key], defined.contains(key) { return (g, true) }
        let g: Int, acc: Bool
        if v.parent == nil {
            g = newBuffer("grad:\(variableName(v))", .parameterGradient, TensorType(v.shape, .float32))
            bindings.externals[g] = .grad(v)
            acc = true
        } else {
            g = newBuffer("grad:\(variableName(v))", .gradient, TensorType(v.shape, .float32))
            bindings.arenaVariables.append((g, WeakVariable(value: v), true))
            acc = false
        }
        gradBuffer[key] = g
        defined.insert(key)
        return (g, acc)
    }

    /// Appends a backward step for `slots`, with its workspace.
    mutating func appendBackward(_ slots: PlanBindings.StepSlots, function: String, workspaceBytes: Int, written: [Int],
                                 accumulate: [Bool]) {
        guard let n = slots.node else { return }
        let displayName = nodeName(n)
        var ws: Int? = nil
        if workspaceBytes > 0 {
            let w = newBuffer("\(displayName):backward-workspace", .workspace,
                              TensorType([(workspaceBytes + 3) / 4], .float32))
            buffers[w].bytes = PlanBuilder.rounded(workspaceBytes)
            ws = w
        }
        let readsList = (slots.inputData + slots.outputData).compactMap { $0 } + slots.outputGrads
        var uniqueReads: [Int] = []
        for r in readsList where !uniqueReads.contains(r) { uniqueReads.append(r) }
        steps.append(PlanStep(kind: .backward, function: function, node: displayName, inputs: uniqueReads,
                              outputs: written, accumulate: accumulate, workspace: ws))
        bindings.steps.append(slots)
    }

    /// One backward step for a training chain forward ran as one `FusedNormalization` step (`TrainingFusion`):
    /// the gradients the ReLU's, Add2's and BN's backward steps would write, from the ReLU output's gradient `dy`.
    /// The values between the three never exist, nor do their gradients.
    mutating func addFusedBackward(_ chain: [FunctionNode], _ fused: FusedNormalization, flow: GradientFlow, dy: Int,
                                   defined: inout Set<Key>) throws {
        let bn = chain[0], relu = chain[chain.count - 1]
        var inputs = bn.inputs, wants = flow.wants(bn)
        if chain.count == 3 {
            let add = chain[1]
            guard let other = add.inputs.indices.first(where: { add.inputs[$0].parent !== bn }) else {
                throw KilnError.planFailed("the fused chain at \(nodeName(bn)) has no residual")
            }
            inputs.append(add.inputs[other])
            wants.append(flow.wants(add)[other])
        }
        let reads = fused.backwardReads(inputCount: inputs.count, outputCount: 1)
        var slots = PlanBindings.StepSlots(node: bn)
        slots.fused = fused
        let types = TypeBinding(inputs: inputs.map { $0.type }, outputs: relu.outputTypes)
        slots.types = (types.inputs, types.outputs)
        for (i, v) in inputs.enumerated() { slots.inputData.append(reads.inputs[i] ? backwardData(Key(v)) : nil) }
        slots.outputData = [backwardData(.output(node: ObjectIdentifier(relu), index: 0))]
        slots.outputGrads = [dy]
        var written: [Int] = [], accumulate: [Bool] = []
        for (i, v) in inputs.enumerated() {
            guard wants[i] else { slots.inputGrads.append(nil); slots.accumulate.append(false); continue }
            let (g, acc) = inputGradient(v, defined: &defined)
            slots.inputGrads.append(g)
            slots.accumulate.append(acc)
            if !written.contains(g) { written.append(g); accumulate.append(acc) }
        }
        appendBackward(slots, function: fused.stepName, workspaceBytes: fused.backwardWorkspace(types), written: written,
                       accumulate: accumulate)
    }
}
