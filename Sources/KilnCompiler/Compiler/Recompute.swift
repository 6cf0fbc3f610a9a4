import KilnCore
import KilnGraph

/// Which forward values a training plan runs again in backward instead of keeping them (rematerialisation).
///
/// Backward reads many forward values: a ResNet block keeps its convolutions' outputs for BatchNormalization's
/// backward, the ReLU outputs for ReLU's backward and the next convolution's weight gradient, and its output
/// for the next block. Most of these are one cheap pass (BN, Add2, ReLU) away from values backward keeps
/// anyway. With `CompileOptions.recompute` on, such a value dies after its last forward reader, and a
/// `recompute` step rebuilds it in backward just before its first backward reader; only convolution and
/// other costly outputs stay alive between the phases.
///
/// Contract: a value is recomputable when its node has one output, `isCheapToRecompute`, and each of its
/// inputs is outside the arena (a parameter, an input, a requested output), kept for backward, or
/// recomputable itself, none of them is changed in place by another node's forward (BN running statistics
/// read elsewhere), and rebuilding it takes at most `maximumSteps` steps. Recomputable values backward
/// reads are dropped; a recomputable value backward does not read (a BN output under a ReLU) is only an
/// intermediate of a recomputation. A ReLU over a BN, or over an Add2 of a BN and another value, whose
/// intermediates nothing else needs is rebuilt in one `FusedNormalization` step. Results are bit-identical:
/// the same operations run on the same values, and BatchNormalization leaves its running statistics alone
/// when it recomputes.
struct Recompute {
    typealias Key = GraphCollector.ValueKey

    /// Whether a recomputed value serves every later backward reader (`shareAll`), or only the values
    /// backward reads directly are shared and the intermediates of a recomputation die with it (`shareRead`,
    /// which recomputes a chain of blocks again for each reader but keeps fewer values alive at once).
    enum Sharing: CaseIterable { case shareAll, shareRead }

    /// Values rebuilt in backward, with the node that makes each.
    var recomputable: [Key: FunctionNode] = [:]
    var sharing = Sharing.shareAll
    /// The values backward reads (the others are only intermediates of a rebuild).
    var backwardReads = Set<Key>()
    /// Whether a BN, Add2 and ReLU rebuilt one after another may be one step (`FusedNormalization`): in float32
    /// plans only, since half precision rounds the value between the Add2 and the ReLU (between BN and ReLU
    /// rounding commutes with the clamp, so that pair fuses in both).
    var fuseResidual = true

    static var none: Recompute { Recompute() }

    /// The most steps one value's recomputation may take. A chain of cheap functions with nothing kept along it
    /// (the blocks of a ResNet stage, a stack of activations) keeps every value that would take more, and
    /// starts again from it: the extra work per value stays bounded, and so does the depth of `recomputed`.
    static let maximumSteps = 16

    /// The recomputable values of the forward schedule `nodes`, given the values backward reads and whether
    /// a value's forward buffer is in the arena.
    static func decide(_ nodes: [FunctionNode], backwardReads: Set<Key>, isTransient: (Key) -> Bool) -> Recompute {
        var r = Recompute()
        r.backwardReads = backwardReads
        // Values forward changes in place (BN running statistics), with the node changing each: read again in
        // backward they would hold their updated values.
        var changedBy: [Key: Set<ObjectIdentifier>] = [:]
        for n in nodes {
            for (i, v) in n.inputs.enumerated() where n.function.mutatesInput(i) {
                changedBy[Key(v), default: []].insert(ObjectIdentifier(n))
            }
        }
        // The values each recomputable value's rebuilding makes, itself included.
        var rebuilds: [Key: Set<Key>] = [:]
        for n in nodes where n.function.isCheapToRecompute && n.outputTypes.count == 1 {
            let key = Key.output(node: ObjectIdentifier(n), index: 0)
            guard isTransient(key) else { continue }
            var made: Set<Key> = [key]
            let available = n.inputs.allSatisfy { u in
                let k = Key(u)
                // A node's own running statistics do not enter its output (it recomputes without them).
                if let c = changedBy[k], c != [ObjectIdentifier(n)] { return false }
                if let m = rebuilds[k] { made.formUnion(m); return true }
                return !isTransient(k) || backwardReads.contains(k)
            }
            guard available, made.count <= maximumSteps else { continue }
            r.recomputable[key] = n
            rebuilds[key] = made
        }
        return r
    }
}

/// The rematerialisation pass: decides, for a lowered forward phase, which values backward rebuilds
/// (`Recompute`, above), and chooses among the candidate plans once their memory is planned.
///
/// Contract: `decide` reads the forward plan and the schedule and changes nothing; `Autodiff` then emits
/// each rebuild just before the first backward step reading the value. `choose` takes the candidates in
/// `Autodiff.candidates` order (fewest steps first) and keeps a later one only for an arena at least 5%
/// smaller: a second pass of cheap functions is worth that much memory, not less.
enum Rematerialization {
    static func decide(_ forward: PlanBuilder, _ order: [FunctionNode], sharing: Recompute.Sharing) -> Recompute {
        let flow = GradientFlow(order, roots: forward.roots)
        let buffers = forward.buffers, dataBuffer = forward.dataBuffer
        // A value with no forward buffer lives only inside a fused training step (`TrainingFusion`): nothing
        // keeps it, so backward rebuilds it like any transient value.
        var r = Recompute.decide(order, backwardReads: flow.backwardReads(order)) { key in
            dataBuffer[key].map { buffers[$0].kind == .activation } ?? true
        }
        r.sharing = sharing
        r.fuseResidual = forward.options.precision == .float
        return r
    }

    static func choose(_ candidates: [Lowered]) throws -> Lowered {
        var best: Lowered? = nil
        for lowered in candidates {
            if let kept = best, Double(lowered.plan.arenaBytes) > 0.95 * Double(kept.plan.arenaBytes) { continue }
            best = lowered
        }
        guard let best else { throw KilnError.planFailed("no plan was lowered") }
        return best
    }
}

/// Emitting rebuilds while `Autodiff` lowers backward: where a backward step reads a value `Rematerialization`
/// chose to rebuild, the steps that rebuild it come first.
extension PlanBuilder {

    /// The buffer backward reads for forward value `key`: the forward one, or a recomputed copy.
    mutating func backwardData(_ key: Key) -> Int? {
        guard recompute.recomputable[key] != nil else { return dataBuffer[key] }
        return recomputed(key, read: true)
    }

    /// Emits the steps that rebuild `key` (and whatever of its inputs is not kept) and returns its buffer.
    /// `read`: backward reads the value itself, rather than it being an intermediate of another recomputation.
    mutating func recomputed(_ key: Key, read: Bool) -> Int? {
        if let b = recomputedBuffer[key] { return b }
        guard let n = recompute.recomputable[key] else { return dataBuffer[key] }
        if let chain = fusibleChain(n) { return recomputedFused(key, n, chain, read: read) }
        guard let ins = inputsForRebuild(n.inputs) else { return nil }
        let displayName = nodeName(n)
        let out = newBuffer("\(n.outputs[0].map { variableName($0) } ?? displayName):recomputed", .activation,
                            n.outputTypes[0])
        let tb = TypeBinding(inputs: n.inputs.map { $0.type }, outputs: n.outputTypes)
        let wsBytes = n.function.forwardWorkspace(tb)
        var ws: Int? = nil
        if wsBytes > 0 {
            let w = newBuffer("\(displayName):recompute-workspace", .workspace, TensorType([(wsBytes + 3) / 4], .float32))
            buffers[w].bytes = PlanBuilder.rounded(wsBytes)
            ws = w
        }
        steps.append(PlanStep(kind: .recompute, function: n.typeName, node: displayName, inputs: ins, outputs: [out],
                              accumulate: [false], workspace: ws))
        bindings.steps.append(.init(node: n, inputData: ins, outputData: [out]))
        if read || recompute.sharing == .shareAll { recomputedBuffer[key] = out }
        return out
    }

    /// The buffers of `vars` for a rebuild: kept ones as they are, the others rebuilt, those taking the longest
    /// rebuild first so that the short ones are not held meanwhile (Sethi-Ullman order: in a chain of ResNet
    /// blocks, the previous block's output before this block's BN).
    mutating func inputsForRebuild(_ vars: [Variable]) -> [Int]? {
        var ins = [Int?](repeating: nil, count: vars.count)
        for i in vars.indices.sorted(by: { recomputeSteps(Key(vars[$0])) > recomputeSteps(Key(vars[$1])) }) {
            let k = Key(vars[i])
            ins[i] = recompute.recomputable[k] != nil ? recomputed(k, read: false) : dataBuffer[k]
        }
        return ins as? [Int]
    }

    /// A ReLU over a training-mode BN's output, or over an Add2 of such an output and a same-shaped value,
    /// whose intermediate values nothing else needs (not read by backward, not already rebuilt): the BN node and
    /// the Add2's other operand, if any.
    func fusibleChain(_ relu: FunctionNode) -> (normalization: FunctionNode, residual: Variable?)? {
        func intermediate(_ v: Variable) -> FunctionNode? {
            let k = Key(v)
            guard let p = recompute.recomputable[k], !recompute.backwardReads.contains(k), recomputedBuffer[k] == nil
            else { return nil }
            return p
        }
        func trainingNormalization(_ n: FunctionNode) -> Bool {
            (n.function as? BatchNormalization).map { $0.batchStat && !$0.outputStat } ?? false
        }
        guard relu.function is ReLU, let p = intermediate(relu.inputs[0]) else { return nil }
        if trainingNormalization(p) { return (p, nil) }
        guard recompute.fuseResidual, p.function is Add2, p.inputs.allSatisfy({ $0.type == p.outputTypes[0] }) else {
            return nil
        }
        for j in 0..<2 {
            if let bn = intermediate(p.inputs[j]), trainingNormalization(bn) { return (bn, p.inputs[1 - j]) }
        }
        return nil
    }

    /// Emits one `FusedNormalization` step rebuilding the ReLU output `key` of `chain`.
    mutating func recomputedFused(_ key: Key, _ relu: FunctionNode,
                                  _ chain: (normalization: FunctionNode, residual: Variable?), read: Bool) -> Int? {
        let bn = chain.normalization
        guard let f = bn.function as? BatchNormalization else { return nil }
        guard let ins = inputsForRebuild(bn.inputs + (chain.residual.map { [$0] } ?? [])) else { return nil }
        let fused = FusedNormalization(normalization: f, residual: chain.residual != nil)
        let out = newBuffer("\(relu.outputs[0].map { variableName($0) } ?? nodeName(relu)):recomputed", .activation,
                            relu.outputTypes[0])
        steps.append(PlanStep(kind: .recompute, function: fused.stepName, node: nodeName(bn), inputs: ins, outputs: [out],
                              accumulate: [false], workspace: nil))
        bindings.steps.append(.init(node: bn, inputData: ins, outputData: [out], fused: fused))
        if read || recompute.sharing == .shareAll { recomputedBuffer[key] = out }
        return out
    }

    /// How many steps rebuilding `key` takes now (0 for a value at hand): the distinct values to rebuild.
    func recomputeSteps(_ key: Key) -> Int {
        var seen = Set<Key>()
        var stack = [key]
        while let k = stack.popLast() {
            guard recomputedBuffer[k] == nil, let n = recompute.recomputable[k], seen.insert(k).inserted else { continue }
            stack.append(contentsOf: n.inputs.map { Key($0) })
        }
        return seen.count
    }
}
