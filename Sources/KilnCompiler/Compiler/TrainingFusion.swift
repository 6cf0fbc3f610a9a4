import KilnGraph

/// Joins, in training plans, a training-mode BatchNormalization with the ReLU after it, and a residual Add2
/// between them, into one `FusedNormalization` step; `Autodiff` then gives the chain one backward step too.
///
/// Contract: only in float32 training plans with clear_buffer, clear_no_need_grad and fusion on (otherwise every
/// value must stay readable, and half precision rounds each stored value, which the fused step would skip). A
/// BatchNormalization with batch_stat and without output_stat over one channel axis, followed by a ReLU, or by an
/// Add2 whose two inputs have the output's shape and then a ReLU. Each link must be the only reader of the value
/// before it, no intermediate value may be a root or persistent, and no backward step may read one (BN's backward
/// reads x, ReLU's its output, Add2's nothing). The step takes the ReLU's place in the schedule, where every input
/// exists; no node scheduled between the BN and the ReLU may read or write the BN's running statistics or change
/// an input of the chain in place. Forward values, running statistics and gradients are bit-identical to the
/// separate steps'.
enum TrainingFusion {
    static func steps(_ order: [FunctionNode], options: CompileOptions, roots: [Variable]) -> [Fusion.Step] {
        guard options.clearBuffer, options.clearNoNeedGrad, options.fusion, options.precision == .float else {
            return order.map { Fusion.Step(nodes: [$0], fused: nil) }
        }
        let readers = Readers(order, roots: roots)
        let position = Dictionary(uniqueKeysWithValues: order.enumerated().map { (ObjectIdentifier($1), $0) })
        var claimed = Set<ObjectIdentifier>()
        var chainEndingAt: [ObjectIdentifier: Fusion.Step] = [:]
        for n in order {
            guard let bn = n.function as? BatchNormalization, let chain = chain(from: n, bn, readers),
                  chain.allSatisfy({ !claimed.contains(ObjectIdentifier($0)) }),
                  let first = position[ObjectIdentifier(n)], let last = position[ObjectIdentifier(chain[chain.count - 1])],
                  undisturbed(chain, bn, between: order[(first + 1)..<last]) else { continue }
            for m in chain { claimed.insert(ObjectIdentifier(m)) }
            let fused = FusedNormalization(normalization: bn, residual: chain.count == 3)
            chainEndingAt[ObjectIdentifier(chain[chain.count - 1])] = Fusion.Step(nodes: chain, fused: fused)
        }
        var steps: [Fusion.Step] = []
        for n in order {
            if let step = chainEndingAt[ObjectIdentifier(n)] { steps.append(step) }
            else if !claimed.contains(ObjectIdentifier(n)) { steps.append(Fusion.Step(nodes: [n], fused: nil)) }
        }
        return steps
    }

    /// BN node `n`, then an optional Add2, then a ReLU, if they form a chain the contract allows.
    private static func chain(from n: FunctionNode, _ bn: BatchNormalization, _ readers: Readers) -> [FunctionNode]? {
        guard bn.batchStat, !bn.outputStat, n.outputTypes.count == 1,
              (try? bn.channelAxis(rank: n.inputs[0].type.rank)) != nil, !readsOutput(n),
              var next = readers.onlyReader(of: n) else { return nil }
        var chain = [n]
        if next.function is Add2 {
            guard next.inputs.count == 2, next.inputs.allSatisfy({ $0.type == next.outputTypes[0] }),
                  let own = next.inputs.firstIndex(where: { $0.parent === n }), !readsInput(next, own), !readsOutput(next),
                  let after = readers.onlyReader(of: next) else { return nil }
            chain.append(next)
            next = after
        }
        guard next.function is ReLU, next.inputs[0].parent === chain[chain.count - 1], !readsInput(next, 0) else {
            return nil
        }
        return chain + [next]
    }

    /// Whether moving the BN's work to the ReLU's place is invisible to the nodes scheduled between them.
    private static func undisturbed(_ chain: [FunctionNode], _ bn: BatchNormalization,
                                    between: ArraySlice<FunctionNode>) -> Bool {
        let statistics = [chain[0].inputs[bn.meanIndex], chain[0].inputs[bn.varianceIndex]]
        let inputs = Fusion.externalInputs(chain)
        for m in between {
            if m.inputs.contains(where: { v in statistics.contains { $0 === v } }) { return false }
            for (i, v) in m.inputs.enumerated() where m.function.mutatesInput(i) && inputs.contains(where: { $0 === v }) {
                return false
            }
        }
        return true
    }

    private static func readsInput(_ n: FunctionNode, _ i: Int) -> Bool {
        n.function.backwardReads(inputCount: n.inputs.count, outputCount: n.outputTypes.count).inputs[i]
    }

    private static func readsOutput(_ n: FunctionNode) -> Bool {
        n.function.backwardReads(inputCount: n.inputs.count, outputCount: n.outputTypes.count).outputs.contains(true)
    }
}
