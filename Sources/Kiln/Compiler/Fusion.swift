/// Joins a convolution with the per-map element-wise functions after it into one step (an epilogue).
///
/// Contract: only in inference plans with clear_buffer on (training needs the intermediate values for
/// backward; without clear_buffer every value must stay readable). A Convolution (channels first) whose
/// output is read by exactly one function, a BatchNormalization in test mode over the convolution's map
/// axis whose other inputs are leaves, and optionally a ReLU that is the only reader of the normalised
/// value, become one `FusedConvolution` step at the convolution's place in the schedule (a Convolution
/// followed directly by a ReLU is joined the same way). Intermediate values that are roots or persistent
/// are never fused away. Results are bit-identical to the separate steps.
enum Fusion {
    typealias Key = GraphCollector.ValueKey

    /// One step of the fused schedule: a node alone, or a chain with the function that runs it.
    struct Step {
        var nodes: [FunctionNode]
        var fused: FusedConvolution?
    }

    static func steps(_ order: [FunctionNode], mode: PlanMode, options: CompileOptions, roots: [Variable]) -> [Step] {
        guard mode == .inference, options.clearBuffer, options.fusion else {
            return order.map { Step(nodes: [$0], fused: nil) }
        }
        // Readers of every value (a function reading a value twice counts twice).
        var readers: [Key: [FunctionNode]] = [:]
        for n in order { for v in n.inputs { readers[Key(v), default: []].append(n) } }
        let rootKeys = Set(roots.map { Key($0) })
        func onlyReader(of n: FunctionNode) -> FunctionNode? {
            let key = Key.output(node: ObjectIdentifier(n), index: 0)
            guard n.outputTypes.count == 1, !rootKeys.contains(key), n.outputs[0]?.persistent != true,
                  let r = readers[key], r.count == 1 else { return nil }
            return r[0]
        }

        var absorbed = Set<ObjectIdentifier>()
        var chains: [ObjectIdentifier: Step] = [:]
        for n in order {
            guard let conv = n.function as? Convolution, !conv.channelLast else { continue }
            var chain = [n]
            var bn: BatchNormalization?
            var relu = false
            if let next = onlyReader(of: n), let f = next.function as? BatchNormalization, !f.batchStat,
               next.inputs[0].parent === n, next.inputs.dropFirst().allSatisfy({ $0.parent == nil }),
               (try? f.channelAxis(rank: next.inputs[0].type.rank)) == conv.baseAxis {
                bn = f
                chain.append(next)
            }
            if let last = chain.last, let next = onlyReader(of: last), next.function is ReLU {
                relu = true
                chain.append(next)
            }
            guard chain.count > 1 else { continue }
            let fused = FusedConvolution(convolution: conv, convolutionInputs: n.inputs.count,
                                         batchNormalization: bn, relu: relu)
            chains[ObjectIdentifier(n)] = Step(nodes: chain, fused: fused)
            for m in chain.dropFirst() { absorbed.insert(ObjectIdentifier(m)) }
        }
        return order.compactMap { n in
            if absorbed.contains(ObjectIdentifier(n)) { return nil }
            return chains[ObjectIdentifier(n)] ?? Step(nodes: [n], fused: nil)
        }
    }
}
