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

        for n in nodes.reversed() where flow.runsBackward.contains(ObjectIdentifier(n)) {
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

            let reads = f.backwardReads(inputCount: n.inputs.count, outputCount: n.outputTypes.count)
            var slots = PlanBindings.StepSlots(node: n)
            for (i, v) in n.inputs.enumerated() { slots.inputData.append(reads.inputs[i] ? backwardData(Key(v)) : nil) }
            for (i, k) in outKeys.enumerated() { slots.outputData.append(reads.outputs[i] ? backwardData(k) : nil) }
            slots.outputGrads = outGrads
            var written: [Int] = []
            var accumulate: [Bool] = []
            for (i, v) in n.inputs.enumerated() {
                guard wants[i] else { slots.inputGrads.append(nil); slots.accumulate.append(false); continue }
                let key = Key(v)
                let acc: Bool
                if let g = gradBuffer[key], defined.contains(key) {
                    acc = true
                    slots.inputGrads.append(g)
                } else {
                    let g: Int
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
                    slots.inputGrads.append(g)
                }
                slots.accumulate.append(acc)
                if let g = slots.inputGrads.last!, !written.contains(g) { written.append(g); accumulate.append(acc) }
            }
            let tb = TypeBinding(inputs: n.inputs.map { $0.type }, outputs: n.outputTypes)
            let wsBytes = f.backwardWorkspace(tb)
            var ws: Int? = nil
            if wsBytes > 0 {
                let w = newBuffer("\(displayName):backward-workspace", .workspace, TensorType([(wsBytes + 3) / 4], .float32))
                buffers[w].bytes = PlanBuilder.rounded(wsBytes)
                ws = w
            }
            let readsList = (slots.inputData + slots.outputData).compactMap { $0 } + outGrads
            var uniqueReads: [Int] = []
            for r in readsList where !uniqueReads.contains(r) { uniqueReads.append(r) }
            steps.append(PlanStep(kind: .backward, function: n.typeName, node: displayName, inputs: uniqueReads,
                                  outputs: written, accumulate: accumulate, workspace: ws))
            bindings.steps.append(slots)
        }
    }
}
