import KilnGraph
import KilnKernels

/// Joins a convolution with the per-map element-wise functions after it into one step (an epilogue).
///
/// Contract: only in inference plans with clear_buffer on (training needs the intermediate values for
/// backward; without clear_buffer every value must stay readable). A Convolution (channels first) followed
/// by at least one of, in this order: a BatchNormalization in test mode over the convolution's
/// map axis whose other inputs are leaves; an Add2 whose other operand has the output's shape and exists
/// before the convolution runs; a ReLU or ReLU6; a 2-D MaxPooling or AveragePooling (channels first) where the
/// direct kernel runs the product (`ConvolutionEngine.poolsInEpilogue`), then a ReLU or ReLU6. Each link must be
/// the only reader of the value before it, and no intermediate value may be a root or persistent (the
/// Quantization pass splits a pooling off again where it quantizes the convolution). The chain becomes one
/// `FusedConvolution` step at the
/// convolution's place in the schedule. Results are bit-identical to the separate steps. The one change of
/// order: a FixedPointQuantize making the Add2's other operand, scheduled after the convolution but with its
/// input made before, runs just before the chain (a quantized projection shortcut).
enum Fusion {
    typealias Key = GraphCollector.ValueKey

    /// One step of the fused schedule: a node alone, or a chain with the function that runs it.
    struct Step {
        var nodes: [FunctionNode]
        var fused: (any FusedFunction)?
        /// The step's inputs when they are not the chain's external inputs (a quantized layer that absorbed its
        /// weight's quantizer reads the float weight).
        var inputs: [Variable]? = nil

        /// What the step reads.
        var readValues: [Variable] { inputs ?? Fusion.externalInputs(nodes) }
    }

    static func steps(_ order: [FunctionNode], mode: PlanMode, options: CompileOptions, roots: [Variable]) -> [Step] {
        if mode == .training { return TrainingFusion.steps(order, options: options, roots: roots) }
        guard options.clearBuffer, options.fusion else {
            return order.map { Step(nodes: [$0], fused: nil) }
        }
        let readers = Readers(order, roots: roots)
        func onlyReader(of n: FunctionNode) -> FunctionNode? { readers.onlyReader(of: n) }

        let position = Dictionary(uniqueKeysWithValues: order.enumerated().map { (ObjectIdentifier($1), $0) })
        // Where an absorbed node's value now appears: at its chain's convolution.
        var absorbed: [ObjectIdentifier: Int] = [:]
        var chains: [ObjectIdentifier: Step] = [:]
        // Quantizers moved to run just before a chain that adds their output (by the chain's first node).
        var pulled: [ObjectIdentifier: [FunctionNode]] = [:], pulledNodes = Set<ObjectIdentifier>()
        func existsBefore(_ v: Variable, _ at: Int) -> Bool {
            v.parent.map { (absorbed[ObjectIdentifier($0)] ?? position[ObjectIdentifier($0)] ?? Int.max) < at } ?? true
        }
        for (at, n) in order.enumerated() {
            guard let conv = n.function as? Convolution, !conv.channelLast,
                  let geometry = try? conv.geometry(n.inputs.map { $0.type }).0 else { continue }
            var chain = [n]
            var bn: BatchNormalization?
            var residual = false
            var activation = ConvEpilogue.Activation.none
            if let next = onlyReader(of: n), let f = next.function as? BatchNormalization, !f.batchStat,
               next.inputs[0].parent === n, next.inputs.dropFirst().allSatisfy({ $0.parent == nil }),
               (try? f.channelAxis(rank: next.inputs[0].type.rank)) == conv.baseAxis {
                bn = f
                chain.append(next)
            }
            // An Add2 with a same-shaped value that exists before the convolution runs (a leaf, or made by a
            // node scheduled earlier): the residual connection of a ResNet block. A FixedPointQuantize scheduled
            // later whose input exists by then (a quantized projection shortcut) is moved to run just before.
            if let last = chain.last, let next = onlyReader(of: last), next.function is Add2,
               let other = next.inputs.first(where: { $0.parent !== last }),
               other.type == next.outputTypes[0], next.inputs.allSatisfy({ $0.type == next.outputTypes[0] }) {
                if existsBefore(other, at) {
                    residual = true
                } else if let q = other.parent, q.function is FixedPointQuantize, q.inputs.count == 1,
                          !pulledNodes.contains(ObjectIdentifier(q)), existsBefore(q.inputs[0], at) {
                    pulled[ObjectIdentifier(n), default: []].append(q)
                    pulledNodes.insert(ObjectIdentifier(q))
                    residual = true
                }
                if residual { chain.append(next) }
            }
            if let last = chain.last, let next = onlyReader(of: last), next.function is ReLU || next.function is ReLU6 {
                activation = next.function is ReLU ? .relu : .relu6
                chain.append(next)
            }
            // A 2-D pooling next (LeNet's convolution, pooling, ReLU; a stem's convolution, BN, ReLU, pooling), and a
            // ReLU or ReLU6 after it, where the direct kernel runs the product: its epilogue has each plane whole.
            var pooling: FusedPooling?
            var pooledActivation = ConvEpilogue.Activation.none
            if let last = chain.last, let next = onlyReader(of: last), next.inputs.count == 1,
               let p = FusedPooling(next.function, input: next.inputs[0].type),
               ConvolutionEngine(geometry).poolsInEpilogue {
                pooling = p
                chain.append(next)
                if let after = onlyReader(of: next), after.function is ReLU || after.function is ReLU6 {
                    pooledActivation = after.function is ReLU ? .relu : .relu6
                    chain.append(after)
                }
            }
            guard chain.count > 1 else { continue }
            let fused: any FusedFunction = FusedConvolution(convolution: conv, convolutionInputs: n.inputs.count, batchNormalization: bn,
                                         residual: residual, activation: activation, pointwise: geometry.isPointwise,
                                         pooling: pooling, pooledActivation: pooledActivation)
            chains[ObjectIdentifier(n)] = Step(nodes: chain, fused: fused)
            for m in chain.dropFirst() { absorbed[ObjectIdentifier(m)] = at }
        }
        var steps: [Step] = []
        for n in order where absorbed[ObjectIdentifier(n)] == nil && !pulledNodes.contains(ObjectIdentifier(n)) {
            for q in pulled[ObjectIdentifier(n)] ?? [] { steps.append(Step(nodes: [q], fused: nil)) }
            steps.append(chains[ObjectIdentifier(n)] ?? Step(nodes: [n], fused: nil))
        }
        return steps
    }
}

extension Fusion {
    /// The values a chain reads from outside itself: the first node's inputs, then each later node's inputs that
    /// are not the value passed along from the node before (the inputs of its fused step, in order).
    static func externalInputs(_ chain: [FunctionNode]) -> [Variable] {
        var inVars = chain[0].inputs
        for (prev, n) in zip(chain, chain.dropFirst()) { inVars += n.inputs.filter { $0.parent !== prev } }
        return inVars
    }
}

/// Who reads each value of a schedule (a function reading a value twice counts twice), for passes that join a
/// function with the one after it.
struct Readers {
    typealias Key = GraphCollector.ValueKey
    private var readers: [Key: [FunctionNode]] = [:]
    let rootKeys: Set<Key>

    init(_ order: [FunctionNode], roots: [Variable]) {
        for n in order { for v in n.inputs { readers[Key(v), default: []].append(n) } }
        rootKeys = Set(roots.map { Key($0) })
    }

    /// The one function reading `n`'s single output, if that output is neither a root nor persistent.
    func onlyReader(of n: FunctionNode) -> FunctionNode? {
        let key = Key.output(node: ObjectIdentifier(n), index: 0)
        guard n.outputTypes.count == 1, !rootKeys.contains(key), n.outputs[0]?.persistent != true,
              let r = readers[key], r.count == 1 else { return nil }
        return r[0]
    }
}
