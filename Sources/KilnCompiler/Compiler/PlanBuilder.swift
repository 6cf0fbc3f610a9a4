import KilnCore
import KilnGraph

/// Buffers and steps of a graph being lowered: what `Lowering` and `Autodiff` append to.
struct PlanBuilder {
    typealias Key = GraphCollector.ValueKey

    let mode: PlanMode
    let options: CompileOptions
    let roots: [Variable]
    let rootKeys: Set<Key>
    var buffers: [PlanBuffer] = []
    var steps: [PlanStep] = []
    /// Steps `0..<forwardStepCount` are the forward phase (set by `Lowering.forward`).
    var forwardStepCount = 0
    var bindings = PlanBindings()
    var dataBuffer: [Key: Int] = [:]
    var gradBuffer: [Key: Int] = [:]
    /// Values backward rebuilds rather than keeps, and the buffers they were rebuilt into (`Recompute`).
    var recompute = Recompute.none
    var recomputedBuffer: [Key: Int] = [:]
    /// Unique display names of nodes ("ReLU", "ReLU_2", ...) in schedule order.
    var nodeNames: [ObjectIdentifier: String] = [:]
    /// Values held as 8-bit codes (`Quantization`), and the notes of the passes before lowering.
    var codes: [Key: QuantizedCodes] = [:]
    /// Values stored with zero borders around their planes (`Layout`).
    var layouts: [Key: PaddedPlanes] = [:]
    /// Training chains the forward runs as one `FusedNormalization` step (`TrainingFusion`), by their last node
    /// (the ReLU): backward gives each one step too.
    var fusedNormalizations: [ObjectIdentifier: (chain: [FunctionNode], fused: FusedNormalization)] = [:]
    var notes: [String] = []
    var nameCounts: [String: Int] = [:]

    init(mode: PlanMode, options: CompileOptions, roots: [Variable]) {
        self.mode = mode
        self.options = options
        self.roots = roots
        self.rootKeys = Set(roots.map { Key($0) })
    }

    static func rounded(_ bytes: Int) -> Int {
        (max(bytes, 1) + Plan.alignment - 1) / Plan.alignment * Plan.alignment
    }

    mutating func newBuffer(_ name: String, _ kind: BufferKind, _ type: TensorType) -> Int {
        let id = buffers.count
        buffers.append(PlanBuffer(id: id, name: name, kind: kind, type: type,
                                  bytes: PlanBuilder.rounded(type.byteCount), offset: nil))
        return id
    }

    /// The buffer holding a variable's value, created on first sight.
    mutating func data(of v: Variable?, node: FunctionNode?, index: Int, type: TensorType) -> Int {
        let key: Key = v.map { Key($0) } ?? .output(node: ObjectIdentifier(node!), index: index)
        if let b = dataBuffer[key] { return b }
        let name = v.map { variableName($0) } ?? "\(nodeName(node!)):\(index)"
        let id: Int
        if let v, v.parent == nil {
            let isParameter = v.needGrad || v.isParameter || Parameters.get(v.name) === v
            id = newBuffer(name, isParameter ? .parameter : .input, type)
            bindings.externals[id] = .data(v)
        } else if let v, v.persistent || rootKeys.contains(key) {
            id = newBuffer(name, .output, type)
            bindings.externals[id] = .data(v)
        } else {
            id = newBuffer(name, .activation, type)
            if let c = codes[key] {
                buffers[id].codes = c
                buffers[id].bytes = PlanBuilder.rounded(buffers[id].storedByteCount)
            }
            if let layout = layouts[key] {
                buffers[id].layout = layout
                buffers[id].bytes = PlanBuilder.rounded(buffers[id].storedByteCount)
            }
            if let v { bindings.arenaVariables.append((id, WeakVariable(value: v), false)) }
        }
        dataBuffer[key] = id
        return id
    }

    mutating func nodeName(_ n: FunctionNode) -> String {
        if let s = nodeNames[ObjectIdentifier(n)] { return s }
        let k = (nameCounts[n.name] ?? 0) + 1
        nameCounts[n.name] = k
        let s = k == 1 ? n.name : "\(n.name)_\(k)"
        nodeNames[ObjectIdentifier(n)] = s
        return s
    }

    mutating func variableName(_ v: Variable) -> String {
        if !v.name.isEmpty { return v.name }
        if let p = v.parent {
            let n = nodeName(p)
            return p.outputTypes.count > 1 ? "\(n):\(v.outputIndex)" : n
        }
        return "v\(v.sequence)"
    }

    mutating func addForward(_ n: FunctionNode) throws {
        let displayName = nodeName(n)
        let ins = n.inputs.map { data(of: $0, node: nil, index: 0, type: $0.type) }
        let outVars = n.outputs
        let outs = n.outputTypes.indices.map { i in data(of: outVars[i], node: n, index: i, type: n.outputTypes[i]) }
        let tb = TypeBinding(inputs: n.inputs.map { $0.type }, outputs: n.outputTypes)
        let wsBytes = n.function.forwardWorkspace(tb)
        let ws = wsBytes > 0 ? newBuffer("\(displayName):workspace", .workspace, TensorType([wsBytes], .float32)) : nil
        if let ws { buffers[ws].type = TensorType([(wsBytes + 3) / 4], .float32); buffers[ws].bytes = PlanBuilder.rounded(wsBytes) }
        // Inputs a function writes (BN running statistics) are outputs of the step too.
        var written = outs
        for (i, b) in ins.enumerated() where n.function.mutatesInput(i) {
            written.append(b)
            // A leaf a function updates (BN running statistics) is state of the model, not a fed input.
            if buffers[b].kind == .input { buffers[b].kind = .parameter }
        }
        steps.append(PlanStep(kind: .forward, function: n.typeName, node: displayName, inputs: ins, outputs: written,
                              accumulate: written.map { _ in false }, workspace: ws))
        bindings.steps.append(.init(node: n, inputData: ins, outputData: outs))
    }

    /// One step for a chain the Fusion pass joined: the inputs of every node in the chain except the values
    /// passed along it, the outputs of the last node.
    mutating func addFused(_ chain: [FunctionNode], _ fused: any FusedFunction, inputs: [Variable]? = nil) throws {
        let displayName = chain.map { nodeName($0) }[0]
        let inVars = inputs ?? Fusion.externalInputs(chain)
        let ins = inVars.map { data(of: $0, node: nil, index: 0, type: $0.type) }
        let last = chain[chain.count - 1]
        let outs = [data(of: last.outputs[0], node: last, index: 0, type: last.outputTypes[0])]
        let tb = TypeBinding(inputs: inVars.map { $0.type }, outputs: [last.outputTypes[0]])
        let wsBytes = fused.forwardWorkspace(tb)
        let ws = wsBytes > 0 ? newBuffer("\(displayName):workspace", .workspace, TensorType([(wsBytes + 3) / 4], .float32)) : nil
        if let ws { buffers[ws].bytes = PlanBuilder.rounded(wsBytes) }
        // Inputs the fused function writes (a training BN's running statistics) are outputs of the step too.
        var written = outs
        for (i, b) in ins.enumerated() where fused.mutatesInput(i) {
            written.append(b)
            if buffers[b].kind == .input { buffers[b].kind = .parameter }
        }
        steps.append(PlanStep(kind: .forward, function: fused.stepName, node: displayName, inputs: ins, outputs: written,
                              accumulate: written.map { _ in false }, workspace: ws))
        bindings.steps.append(.init(node: chain[0], inputData: ins, outputData: outs, fused: fused))
        if let normalization = fused as? FusedNormalization {
            fusedNormalizations[ObjectIdentifier(last)] = (chain, normalization)
        }
    }

    /// The plan as lowered, before any memory decision: no lifetimes, offsets or figures yet.
    func finished() -> Lowered {
        var plan = Plan(mode: mode, options: options, buffers: buffers, steps: steps,
                        forwardStepCount: forwardStepCount, arenaBytes: 0, lowerBoundBytes: 0, naiveBytes: 0,
                        persistentBytes: 0, placementAlgorithm: "none")
        plan.notes = notes
        return Lowered(plan: plan, bindings: bindings)
    }
}
