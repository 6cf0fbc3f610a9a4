import KilnCore
import KilnGraph
import KilnKernels

/// Fixed-point-quantized layers onto integer kernels, and quantizers' outputs into 8-bit codes.
///
/// Contract: runs on `Fusion`'s steps, for inference plans with clear_buffer, fusion, float precision and
/// `integerKernels` on; otherwise returns them unchanged. Changes no value: every output equals the float steps'
/// wherever the float product's sums are exact, and is the exact integer sum otherwise.
///
/// - A value lies on a **grid** when it is the output of a FixedPointQuantize with quantize on, n <= 8 and a
///   power-of-two delta (codes in [0, 255] or [-127, 127]), or of a DequantizeLinear of a QuantizeLinear's
///   output with the same per-tensor scale and integer zero point (a QDQ pair: any positive scale), or of a
///   MaxPooling, ReLU or Reshape of such a value.
/// - A **quantized layer** is a 2-D Convolution (channels first) or an Affine whose x lies on a grid and whose
///   weight lies on a grid of codes within [-127, 127] (a quantizer's output as above, or the DequantizeLinear of
///   constant codes with zero point 0 and one scale, or one per output map, that the layer alone reads), with
///   depth small enough that 32-bit sums cannot overflow. Its step (with Fusion's BatchNormalization, Add2 and
///   ReLU/ReLU6, and for an Affine a ReLU/ReLU6 after it) also takes the quantizer reading its output when that
///   quantizer is eligible and the only reader: it becomes one `QuantizedLayer` step. When that quantizer's
///   output goes only to an Add2 with another value of its shape, then (through a ReLU, optionally) only to an
///   eligible quantizer, the step takes those too (a QDQ model's residual block: the product's value put on the
///   first grid, the other value added, the sum quantized), so the sum's output may take the other value's memory.
/// - An **Add2 of two grid values** of one shape (a ReLU after it, optionally) whose sum an eligible quantizer alone
///   reads becomes one `QuantizedAdd2` step: operands read as codes or floats, the sum computed as the float steps
///   compute it (a QDQ model's residual additions).
/// - QDQ scales, zero points and weight scales are **compiled in**: they must be constant leaves (no parent, no
///   gradient, not fed inputs), as an imported model's are. Each step that compiled them reads them too and
///   stops the run with an error if they changed since.
/// - A grid value is **stored as codes** (a quarter of the bytes) when it is made by an eligible quantizer
///   (alone, as a `QuantizeToCodes` step, or ending a quantized layer or Add2) or by a MaxPooling of codes, is
///   neither a root nor persistent, and every reader takes codes: a quantized layer (as x or the residual), a
///   quantized Add2, or a MaxPooling (channels first), which then pools the codes (`QuantizedMaxPooling`, codes
///   or floats out). Others stay float32.
/// - A Convolution or Affine whose weight comes from a FixedPointQuantize or DequantizeLinear but which cannot be
///   quantized stays float32, with a note on the plan saying why.
enum Quantization {
    typealias Key = GraphCollector.ValueKey

    struct Result {
        var steps: [Fusion.Step]
        var codes: [Key: QuantizedCodes]
        var notes: [String]
    }

    /// A grid, with the constants a QDQ pair's grid was compiled from.
    struct Grid {
        var codes: QuantizedCodes
        var constants: [Constant] = []

        /// The largest code magnitude on the grid.
        var maxCode: Int { max(-codes.minCode, codes.maxCode) }
    }

    /// A leaf whose values a step compiled in.
    struct Constant {
        let variable: Variable
        let values: [Float]
    }

    /// The grid of a quantizer the integer kernels can take, or why not.
    static func grid(of q: FixedPointQuantize) -> Swift.Result<Grid, Reason> {
        guard q.quantize else { return .failure(Reason("its quantizer has quantize=false")) }
        guard q.n >= (q.sign ? 2 : 1), q.n <= 8 else { return .failure(Reason("its quantizer has n=\(q.n) bits (8 at most)")) }
        let d = Float(q.delta)
        guard d.isNormal, d > 0, d.significandBitPattern == 0 else {
            return .failure(Reason("its quantizer's delta \(q.delta) is not a power of two"))
        }
        let maxCode = (1 << (q.sign ? q.n - 1 : q.n)) - 1
        let codes = QuantizedCodes(signed: q.sign, step: d, minCode: q.sign ? -maxCode : 0, maxCode: maxCode)
        return .success(Grid(codes: codes))
    }

    /// The values of a leaf the pass may compile in: no parent, no gradient, not a fed input, float32.
    static func constant(_ v: Variable, _ role: String) -> Swift.Result<Constant, Reason> {
        guard v.parent == nil, !v.needGrad, !v.isInput, v.dtype == .float32 else {
            return .failure(Reason("its \(role) '\(v.name)' is not a constant (a leaf without gradient that is not an input)"))
        }
        return .success(Constant(variable: v, values: v.d))
    }

    /// The grid of a DequantizeLinear reading a QuantizeLinear's output with the same scale and zero point, one
    /// of each (per tensor); nil when `dq` is not such a pair's second half.
    static func linearGrid(_ dq: FunctionNode) -> Swift.Result<Grid, Reason>? {
        guard dq.function is DequantizeLinear, let qn = dq.inputs[0].parent, let q = qn.function as? QuantizeLinear else {
            return nil
        }
        return Swift.Result(catching: {
            let scale = try constant(qn.inputs[1], "scale").get(), zero = try constant(qn.inputs[2], "zero point").get()
            let scale2 = try constant(dq.inputs[1], "scale").get(), zero2 = try constant(dq.inputs[2], "zero point").get()
            guard scale.values.count == 1, zero.values.count == 1 else {
                throw Reason("its QuantizeLinear has \(scale.values.count) scales (one per tensor is supported)")
            }
            guard scale.values == scale2.values, zero.values == zero2.values else {
                throw Reason("its QuantizeLinear and DequantizeLinear have different scales or zero points")
            }
            let s = scale.values[0], z = zero.values[0], (lo, hi) = q.range
            guard s.isNormal, s > 0 else { throw Reason("its scale \(s) is not a positive normal number") }
            // DequantizeLinear subtracts the zero point as given, QuantizeLinear its rounded and saturated value:
            // they agree for an integer in range.
            guard z == z.rounded(), z >= Float(lo), z <= Float(hi) else {
                throw Reason("its zero point \(z) is not an integer code in [\(lo), \(hi)]")
            }
            let codes = QuantizedCodes(signed: q.signed, step: s, zeroPoint: Int(z), minCode: lo, maxCode: hi,
                                       halfToEven: q.halfToEven)
            return Grid(codes: codes, constants: [scale, zero, scale2, zero2])
        }).mapError { $0 as? Reason ?? Reason("\($0)") }
    }

    /// A weight given as the DequantizeLinear of constant codes with zero point 0: the node, a step per output
    /// (one repeated, or one per output map) and the scale and zero point compiled in, or why not; nil when `w`
    /// is no such value.
    struct DequantizedWeight {
        let node: FunctionNode
        let steps: [Float]
        let constants: [Constant]
    }

    static func dequantizedWeight(_ w: Variable, outputs: Int, affine: Bool) -> Swift.Result<DequantizedWeight, Reason>? {
        guard let dq = w.parent, dq.function is DequantizeLinear else { return nil }
        return Swift.Result(catching: {
            let codes = try constant(dq.inputs[0], "weight codes").get()
            let scale = try constant(dq.inputs[1], "weight scale").get(), zero = try constant(dq.inputs[2], "weight zero point").get()
            guard zero.values.allSatisfy({ $0 == 0 }) else { throw Reason("its weight has a zero point other than 0") }
            if let bad = codes.values.first(where: { $0 != $0.rounded() || abs($0) > 127 }) {
                throw Reason("its weight holds \(bad), not an integer code in [-127, 127]")
            }
            // A scale per output: an affine's weight is (inputs, outputs), a convolution's (maps, ...).
            let shape = scale.variable.shape
            let perOutput = affine ? w.shape.count == 2 && shape.first == 1 && shape.last == outputs
                                   : shape.first == outputs && shape.dropFirst().allSatisfy { $0 == 1 }
            let steps: [Float]
            if scale.values.count == 1 { steps = [Float](repeating: scale.values[0], count: outputs) }
            else if perOutput { steps = scale.values }
            else { throw Reason("its weight scale of shape \(shape) is neither one value nor one per output") }
            guard steps.allSatisfy({ $0.isNormal && $0 > 0 }) else { throw Reason("its weight scales are not all positive normal numbers") }
            return DequantizedWeight(node: dq, steps: steps, constants: [scale, zero])
        }).mapError { $0 as? Reason ?? Reason("\($0)") }
    }

    struct Reason: Error {
        let text: String
        init(_ text: String) { self.text = text }
    }

    /// Largest product depth whose 32-bit sums cannot overflow: 255 * 127 per term.
    static let maximumDepth = Int(Int32.max) / (255 * 127)

    /// One quantized layer being formed.
    struct Layer {
        /// The product's chain (Fusion's step, an Affine's ReLU), then what its epilogue absorbs after it.
        var chain: [FunctionNode]
        var tail: [FunctionNode]
        var product: QuantizedLayer.Product
        var input: Grid
        var weight: Grid
        var output: Grid?
        var fused: FusedConvolution?
        var activation: ConvEpilogue.Activation
        /// A QDQ residual block's first quantizer (its grid) and the Add2's other operand.
        var snap: Grid?
        var sumResidual: Variable?
        /// The node making the weight when this layer is its only reader: a FixedPointQuantize the layer runs on the
        /// float weight itself, or the DequantizeLinear whose codes the layer reads.
        var weightSource: FunctionNode?
        /// Per output, the weight's step (a DequantizeLinear weight; the layer then reads codes on a grid of 1).
        var weightSteps: [Float]?
        /// What the layer compiled in: read again, after its other inputs.
        var constants: [Constant]

        var nodes: [FunctionNode] { chain + tail }
        var hasResidual: Bool { fused?.residual == true || sumResidual != nil }
        /// The chain's inputs (the weight's source for an absorbed one), then a residual block's other operand.
        var baseInputs: [Variable] {
            var v = Fusion.externalInputs(chain)
            if let q = weightSource { v[1] = q.inputs[0] }
            if let r = sumResidual { v.append(r) }
            return v
        }
        /// What the step reads.
        var inputs: [Variable] { baseInputs + constants.map { $0.variable } }
    }

    /// A quantizer's grid and its nodes (one FixedPointQuantize, or a QuantizeLinear and its DequantizeLinear),
    /// by its first node.
    struct Quantizer {
        var grid: Grid
        var nodes: [FunctionNode]
    }

    /// An Add2 of two grid values (with a ReLU after it, optionally) whose sum a quantizer alone reads.
    struct Sum {
        var nodes: [FunctionNode]
        var left: Grid, right: Grid
        var relu: Bool
        var output: Grid
        var constants: [Constant]

        var inputs: [Variable] { Array(nodes[0].inputs.prefix(2)) + constants.map { $0.variable } }
    }

    static func apply(_ steps: [Fusion.Step], order: [FunctionNode], mode: PlanMode, options: CompileOptions,
                      roots: [Variable]) -> Result {
        guard mode == .inference, options.clearBuffer, options.fusion, options.integerKernels,
              options.precision == .float else {
            return Result(steps: steps, codes: [:], notes: [])
        }
        let readers = Readers(order, roots: roots)
        // Grids of every value, in schedule order.
        var grids: [Key: Grid] = [:]
        var quantizers: [ObjectIdentifier: Quantizer] = [:]
        var linearFailures: [Key: Reason] = [:]
        var notes: [String] = []
        for n in order where n.outputTypes.count == 1 {
            let out = Key.output(node: ObjectIdentifier(n), index: 0)
            if let q = n.function as? FixedPointQuantize {
                if case .success(let g) = grid(of: q) {
                    grids[out] = g
                    quantizers[ObjectIdentifier(n)] = Quantizer(grid: g, nodes: [n])
                }
            } else if let found = linearGrid(n) {
                switch found {
                case .success(let g):
                    grids[out] = g
                    // The pair runs as one quantizer when the DequantizeLinear alone reads the QuantizeLinear.
                    if let qn = n.inputs[0].parent, readers.onlyReader(of: qn) === n {
                        quantizers[ObjectIdentifier(qn)] = Quantizer(grid: g, nodes: [qn, n])
                    }
                case .failure(let r): linearFailures[out] = r
                }
            } else if n.function is MaxPooling || n.function is ReLU || n.function is Reshape,
                      let g = n.inputs.first.flatMap({ grids[Key($0)] }) {
                grids[out] = g
            }
        }

        // A convolution this pass may quantize gives its pooling back (Fusion joins a pooling only to float
        // products): the pooling then runs on its own, on the layer's codes where the layer writes codes.
        let steps = steps.flatMap { step -> [Fusion.Step] in
            guard let f = step.fused as? FusedConvolution, f.pooling != nil, step.nodes[0].inputs.count > 1 else { return [step] }
            let w = step.nodes[0].inputs[1]
            guard grids[Key(w)] != nil || w.parent?.function is DequantizeLinear else { return [step] }
            let pool = step.nodes.count - (f.pooledActivation == .none ? 1 : 2)
            let head = Array(step.nodes[..<pool])
            return [Fusion.Step(nodes: head, fused: head.count > 1 ? f.withoutPooling : nil, inputs: step.inputs)]
                + step.nodes[pool...].map { Fusion.Step(nodes: [$0], fused: nil) }
        }

        // Where each node runs before this pass absorbs anything: a layer may add a value only if it is made by
        // an earlier step (every node this pass moves into a layer's step was after that layer).
        var position: [ObjectIdentifier: Int] = [:]
        for (i, step) in steps.enumerated() { for n in step.nodes { position[ObjectIdentifier(n)] = i } }
        func madeBefore(_ v: Variable, _ i: Int) -> Bool {
            guard let p = v.parent else { return true }
            return (position[ObjectIdentifier(p)] ?? Int.max) < i
        }

        // Quantized layers, and the single-node steps they absorb.
        var layers: [Int: Layer] = [:]
        var absorbed = Set<ObjectIdentifier>()
        for (i, step) in steps.enumerated() {
            let head = step.nodes[0]
            let product: QuantizedLayer.Product
            if let c = head.function as? Convolution, !c.channelLast, head.inputs[0].type.rank == 4 {
                product = .convolution(c)
            } else if let a = head.function as? Affine {
                product = .affine(a)
            } else { continue }
            let x = head.inputs[0], w = head.inputs[1]
            let intended = w.parent?.function is FixedPointQuantize || w.parent?.function is DequantizeLinear
            func skip(_ why: String) {
                if intended { notes.append("\(head.typeName) '\(head.name)' runs in float32: \(why)") }
            }
            // Why a value without a grid has none: its quantizer's settings, or no quantizer at all.
            func offGrid(_ v: Variable, _ what: String, otherwise: String) -> String {
                if let q = v.parent?.function as? FixedPointQuantize, case .failure(let r) = grid(of: q) {
                    return "its \(what) is not on an 8-bit grid: \(r.text)"
                }
                if let r = linearFailures[Key(v)] { return "its \(what) is not on an 8-bit grid: \(r.text)" }
                return otherwise
            }
            let outputs = product.isAffine ? w.type.shape.dropFirst().reduce(1, *) : (w.type.shape.first ?? 0)
            // The weight: on a quantizer's grid, or the DequantizeLinear of codes.
            var weight: Grid, weightSteps: [Float]?, weightSource: FunctionNode?, constants: [Constant] = []
            if let found = dequantizedWeight(w, outputs: outputs, affine: product.isAffine) {
                guard case .success(let dw) = found else {
                    if case .failure(let r) = found { skip(r.text) }
                    continue
                }
                guard readers.onlyReader(of: dw.node) === head else {
                    skip("its weight's DequantizeLinear has other readers")
                    continue
                }
                weight = Grid(codes: QuantizedCodes(signed: true, step: 1))
                weightSteps = dw.steps
                weightSource = dw.node
                constants = dw.constants
            } else {
                guard let wg = grids[Key(w)] else {
                    skip(offGrid(w, "weight", otherwise: "its weight is not the output of a FixedPointQuantize"))
                    continue
                }
                weight = wg
                constants = wg.constants
                // The weight's quantizer runs inside the layer when nothing else reads its output (its float copy of
                // the weight then never exists).
                weightSource = w.parent.flatMap { q in
                    q.function is FixedPointQuantize && quantizers[ObjectIdentifier(q)] != nil && readers.onlyReader(of: q) === head ? q : nil
                }
            }
            guard weight.maxCode <= 127 else { skip("its weight's codes reach \(weight.maxCode) (127 at most)"); continue }
            guard let xg = grids[Key(x)] else {
                skip(offGrid(x, "input", otherwise: "its input is not quantized (no FixedPointQuantize or QuantizeLinear/DequantizeLinear, or MaxPooling/ReLU/Reshape of one, before it)"))
                continue
            }
            // Inputs per output: an affine's weight is (inputs, outputs...), a convolution's (maps, inputs per map).
            let depth = product.isAffine ? (w.type.shape.first ?? 0) : w.type.count / max(w.type.shape[0], 1)
            guard depth <= maximumDepth else {
                skip("its depth exceeds \(maximumDepth), where 32-bit sums could overflow")
                continue
            }
            var chain = step.nodes
            let fused = step.fused as? FusedConvolution
            var activation = fused?.activation ?? .none
            if product.isAffine, let next = readers.onlyReader(of: head),
               next.function is ReLU || next.function is ReLU6 {
                activation = next.function is ReLU ? .relu : .relu6
                chain.append(next)
            }
            var tail: [FunctionNode] = []
            var output: Grid?, snap: Grid?, sumResidual: Variable?
            if let last = chain.last, let next = readers.onlyReader(of: last), let q = quantizers[ObjectIdentifier(next)] {
                output = q.grid
                tail = q.nodes
                // A QDQ residual block: the quantized value plus another of its shape, a ReLU, a quantizer.
                if fused?.residual != true, activation == .none, let qLast = q.nodes.last,
                   let add = readers.onlyReader(of: qLast), add.function is Add2,
                   let mine = add.inputs.firstIndex(where: { Key($0) == Key.output(node: ObjectIdentifier(qLast), index: 0) }),
                   !absorbed.contains(ObjectIdentifier(add)) {
                    let other = add.inputs[1 - mine]
                    var sumTail = [add]
                    var sumActivation = ConvEpilogue.Activation.none
                    if let r = readers.onlyReader(of: add), r.function is ReLU {
                        sumTail.append(r)
                        sumActivation = .relu
                    }
                    if other.shape == add.inputs[mine].shape, other !== add.inputs[mine], madeBefore(other, i), let end = sumTail.last,
                       let q2n = readers.onlyReader(of: end), let q2 = quantizers[ObjectIdentifier(q2n)] {
                        snap = q.grid
                        sumResidual = other
                        output = q2.grid
                        activation = sumActivation
                        tail += sumTail + q2.nodes
                    }
                }
            }
            constants = unique(constants + xg.constants + (snap?.constants ?? []) + (output?.constants ?? []))
            layers[i] = Layer(chain: chain, tail: tail, product: product, input: xg, weight: weight, output: output,
                              fused: fused, activation: activation, snap: snap, sumResidual: sumResidual,
                              weightSource: weightSource, weightSteps: weightSteps, constants: constants)
            for n in (chain + tail).dropFirst(step.nodes.count) { absorbed.insert(ObjectIdentifier(n)) }
            if let q = weightSource { absorbed.insert(ObjectIdentifier(q)) }
        }

        // Sums of two grid values that a quantizer reads.
        var sums: [Int: Sum] = [:]
        for (i, step) in steps.enumerated() where layers[i] == nil && step.fused == nil && step.nodes.count == 1 {
            let head = step.nodes[0]
            guard head.function is Add2, !absorbed.contains(ObjectIdentifier(head)), head.inputs[0].shape == head.inputs[1].shape,
                  let left = grids[Key(head.inputs[0])], let right = grids[Key(head.inputs[1])] else { continue }
            var nodes = [head]
            if let next = readers.onlyReader(of: head), next.function is ReLU, !absorbed.contains(ObjectIdentifier(next)) { nodes.append(next) }
            guard let last = nodes.last, let next = readers.onlyReader(of: last), let q = quantizers[ObjectIdentifier(next)],
                  !absorbed.contains(ObjectIdentifier(next)) else { continue }
            nodes += q.nodes
            sums[i] = Sum(nodes: nodes, left: left, right: right, relu: nodes.count > q.nodes.count + 1, output: q.grid,
                          constants: unique(left.constants + right.constants + q.grid.constants))
            for n in nodes.dropFirst() { absorbed.insert(ObjectIdentifier(n)) }
        }

        // A MaxPooling of a grid value can pool its codes.
        func poolsCodes(_ step: Fusion.Step) -> MaxPooling? {
            guard step.nodes.count == 1, step.fused == nil, let p = step.nodes[0].function as? MaxPooling,
                  !p.channelLast, grids[Key(step.nodes[0].inputs[0])] != nil else { return nil }
            return p
        }
        // A quantizer standing alone (not absorbed by a layer), by the step of its first node.
        func standalone(_ step: Fusion.Step) -> Quantizer? {
            guard step.nodes.count == 1, step.fused == nil, !absorbed.contains(ObjectIdentifier(step.nodes[0])),
                  let q = quantizers[ObjectIdentifier(step.nodes[0])], let last = q.nodes.last,
                  last.outputs[0]?.persistent != true else { return nil }
            return q
        }
        // The steps left, and what each reads (a standalone QDQ pair's steps read as one).
        var pairSecond = Set<ObjectIdentifier>()
        for step in steps { if let q = standalone(step), q.nodes.count == 2 { pairSecond.insert(ObjectIdentifier(q.nodes[1])) } }
        // Which grid values every reader takes as codes.
        var codeReaders: [Key: Int] = [:]
        var allReaders: [Key: Int] = [:]
        for (i, step) in steps.enumerated() where !absorbed.contains(ObjectIdentifier(step.nodes[0])) {
            if pairSecond.contains(ObjectIdentifier(step.nodes[0])) { continue }
            let read = layers[i]?.inputs ?? sums[i]?.inputs ?? (standalone(step).map { [$0.nodes[0].inputs[0]] } ?? step.readValues)
            let residualAt = layers[i].flatMap { $0.hasResidual ? $0.baseInputs.count - 1 : nil }
            for (k, v) in read.enumerated() {
                allReaders[Key(v), default: 0] += 1
                if layers[i] != nil, k == 0 || k == residualAt {
                    codeReaders[Key(v), default: 0] += 1
                } else if sums[i] != nil, k < 2 {
                    codeReaders[Key(v), default: 0] += 1
                } else if k == 0, poolsCodes(step) != nil {
                    codeReaders[Key(v), default: 0] += 1
                }
            }
        }
        var codes: [Key: QuantizedCodes] = [:]
        func storedAsCodes(_ key: Key, _ g: Grid) {
            guard !readers.rootKeys.contains(key), let count = allReaders[key], count > 0, codeReaders[key] == count else { return }
            codes[key] = g.codes
        }
        func outputKey(_ n: FunctionNode) -> Key { Key.output(node: ObjectIdentifier(n), index: 0) }
        for (i, step) in steps.enumerated() {
            if let l = layers[i], let g = l.output, let last = l.nodes.last {
                storedAsCodes(outputKey(last), g)
            } else if let sum = sums[i], let last = sum.nodes.last {
                storedAsCodes(outputKey(last), sum.output)
            } else if let q = standalone(step), let last = q.nodes.last {
                storedAsCodes(outputKey(last), q.grid)
            } else if poolsCodes(step) != nil, codes[Key(step.nodes[0].inputs[0])] != nil,
                      let g = grids[Key(step.nodes[0].inputs[0])], step.nodes[0].outputs[0]?.persistent != true {
                // Codes in, codes out when its readers take them too.
                storedAsCodes(outputKey(step.nodes[0]), g)
            }
        }

        func storage(_ v: Variable, _ g: Grid?) -> QuantizedStorage {
            guard let g else { return .floats }
            return codes[Key(v)] != nil ? .codes(g.codes) : .floatsOnGrid(g.codes)
        }
        var result: [Fusion.Step] = []
        var merged = Set<ObjectIdentifier>()
        for (i, step) in steps.enumerated() {
            let head = step.nodes[0]
            if absorbed.contains(ObjectIdentifier(head)) || merged.contains(ObjectIdentifier(head)) { continue }
            if let sum = sums[i], let last = sum.nodes.last {
                let add = QuantizedAdd2(left: storage(head.inputs[0], sum.left), right: storage(head.inputs[1], sum.right),
                                        relu: sum.relu,
                                        output: codes[outputKey(last)] != nil ? .codes(sum.output.codes) : .floatsOnGrid(sum.output.codes),
                                        compiled: compiledConstants(sum.constants))
                result.append(Fusion.Step(nodes: sum.nodes, fused: add, inputs: sum.inputs))
                continue
            }
            guard let l = layers[i] else {
                if let q = standalone(step), let last = q.nodes.last, let c = codes[outputKey(last)] {
                    // The quantizer (both halves of a QDQ pair) writes codes.
                    for n in q.nodes.dropFirst() { merged.insert(ObjectIdentifier(n)) }
                    let fused = QuantizeToCodes(codes: c, quantizerArguments: q.nodes.flatMap { $0.function.arguments },
                                                compiled: compiledConstants(unique(q.grid.constants)), compiledFrom: 1)
                    result.append(Fusion.Step(nodes: q.nodes, fused: fused, inputs: [head.inputs[0]] + unique(q.grid.constants).map { $0.variable }))
                } else if let p = poolsCodes(step), let c = codes[Key(head.inputs[0])] {
                    result.append(Fusion.Step(nodes: step.nodes, fused: QuantizedMaxPooling(pooling: p, codes: c, codesOut: codes[outputKey(head)] != nil)))
                } else {
                    result.append(step)
                }
                continue
            }
            let inputs = l.inputs, base = l.baseInputs
            let residual = l.hasResidual
            let residualValue = base[base.count - 1]
            let outKey = outputKey(l.nodes[l.nodes.count - 1])
            let output: QuantizedStorage = l.output.map { codes[outKey] != nil ? .codes($0.codes) : .floatsOnGrid($0.codes) } ?? .floats
            let layer = QuantizedLayer(
                product: l.product, productInputs: head.inputs.count, batchNormalization: l.fused?.batchNormalization,
                residual: residual, snap: l.snap?.codes, activation: l.activation, input: storage(inputs[0], l.input),
                weight: l.weight.codes,
                rowScales: l.weightSteps.map { $0.map { $0 * l.input.codes.step } },
                residualStorage: residual ? (codes[Key(residualValue)].map { .codes($0) } ?? .floats) : .floats,
                output: output, compiled: compiledConstants(l.constants))
            let plain = l.weightSource == nil && l.constants.isEmpty && l.tail.count < 2
            result.append(Fusion.Step(nodes: l.nodes, fused: layer, inputs: plain ? nil : inputs))
        }
        return Result(steps: result, codes: codes, notes: notes)
    }

    /// Constants without repeats (a QDQ pair's halves usually share their scale and zero point leaves).
    static func unique(_ constants: [Constant]) -> [Constant] {
        var seen = Set<ObjectIdentifier>()
        return constants.filter { seen.insert(ObjectIdentifier($0.variable)).inserted }
    }

    static func compiledConstants(_ constants: [Constant]) -> CompiledConstants {
        CompiledConstants(names: constants.map { $0.variable.name }, values: constants.map { $0.values })
    }
}

extension QuantizedLayer.Product {
    var isAffine: Bool {
        if case .affine = self { return true }
        return false
    }
}
