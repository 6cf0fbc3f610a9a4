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
///   power-of-two delta (codes in [0, 255] or [-127, 127]), or of a MaxPooling, ReLU or Reshape of such a value.
/// - A **quantized layer** is a 2-D Convolution (channels first) or an Affine whose x lies on a grid and whose
///   weight lies on a grid of codes within [-127, 127], with depth small enough that 32-bit sums cannot
///   overflow. Its step (with Fusion's BatchNormalization, Add2 and ReLU/ReLU6, and for an Affine a ReLU/ReLU6
///   after it) also takes the FixedPointQuantize reading its output when that quantizer is eligible and the only
///   reader: it becomes one `QuantizedLayer` step.
/// - A grid value is **stored as codes** (a quarter of the bytes) when it is made by an eligible quantizer
///   (alone, as a `QuantizeToCodes` step, or ending a quantized layer) or by a MaxPooling of codes, is neither a
///   root nor persistent, and every reader takes codes: a quantized layer (as x or the residual) or a MaxPooling
///   (channels first), which then pools the codes (`QuantizedMaxPooling`, codes or floats out). Others stay
///   float32.
/// - A Convolution or Affine whose weight comes from a FixedPointQuantize but which cannot be quantized stays
///   float32, with a note on the plan saying why.
enum Quantization {
    typealias Key = GraphCollector.ValueKey

    struct Result {
        var steps: [Fusion.Step]
        var codes: [Key: QuantizedCodes]
        var notes: [String]
    }

    /// A grid and the largest code magnitude on it.
    struct Grid {
        var codes: QuantizedCodes
        var maxCode: Int
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
        return .success(Grid(codes: QuantizedCodes(signed: q.sign, step: d), maxCode: maxCode))
    }

    struct Reason: Error {
        let text: String
        init(_ text: String) { self.text = text }
    }

    /// Largest product depth whose 32-bit sums cannot overflow: 255 * 127 per term.
    static let maximumDepth = Int(Int32.max) / (255 * 127)

    /// One quantized layer being formed.
    struct Layer {
        var nodes: [FunctionNode]
        var product: QuantizedLayer.Product
        var input: Grid
        var weight: Grid
        var output: Grid?
        var fused: FusedConvolution?
        var activation: ConvEpilogue.Activation
        /// The weight's quantizer, when this layer is its only reader: the layer quantizes the float weight itself.
        var weightQuantizer: FunctionNode?

        /// What the step reads: the chain's inputs, with the float weight for an absorbed quantizer.
        var inputs: [Variable] {
            var v = Fusion.externalInputs(nodes)
            if let q = weightQuantizer { v[1] = q.inputs[0] }
            return v
        }
    }

    static func apply(_ steps: [Fusion.Step], order: [FunctionNode], mode: PlanMode, options: CompileOptions,
                      roots: [Variable]) -> Result {
        guard mode == .inference, options.clearBuffer, options.fusion, options.integerKernels,
              options.precision == .float else {
            return Result(steps: steps, codes: [:], notes: [])
        }
        // Grids of every value, in schedule order.
        var grids: [Key: Grid] = [:]
        var quantizerGrid: [ObjectIdentifier: Grid] = [:]
        var notes: [String] = []
        for n in order where n.outputTypes.count == 1 {
            let out = Key.output(node: ObjectIdentifier(n), index: 0)
            if let q = n.function as? FixedPointQuantize {
                if case .success(let g) = grid(of: q) {
                    grids[out] = g
                    quantizerGrid[ObjectIdentifier(n)] = g
                }
            } else if n.function is MaxPooling || n.function is ReLU || n.function is Reshape,
                      let g = n.inputs.first.flatMap({ grids[Key($0)] }) {
                grids[out] = g
            }
        }
        let readers = Readers(order, roots: roots)

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
            let intended = w.parent?.function is FixedPointQuantize
            func skip(_ why: String) {
                if intended { notes.append("\(head.typeName) '\(head.name)' runs in float32: \(why)") }
            }
            // Why a value without a grid has none: its quantizer's settings, or no quantizer at all.
            func offGrid(_ v: Variable, _ what: String, otherwise: String) -> String {
                if let q = v.parent?.function as? FixedPointQuantize, case .failure(let r) = grid(of: q) {
                    return "its \(what) is not on an 8-bit grid: \(r.text)"
                }
                return otherwise
            }
            guard let wg = grids[Key(w)] else {
                skip(offGrid(w, "weight", otherwise: "its weight is not the output of a FixedPointQuantize"))
                continue
            }
            guard wg.maxCode <= 127 else { skip("its weight's codes reach \(wg.maxCode) (127 at most)"); continue }
            guard let xg = grids[Key(x)] else {
                skip(offGrid(x, "input", otherwise: "its input is not quantized (no FixedPointQuantize, or MaxPooling/ReLU/Reshape of one, before it)"))
                continue
            }
            // Inputs per output: an affine's weight is (inputs, outputs...), a convolution's (maps, inputs per map).
            let depth = product.isAffine ? (w.type.shape.first ?? 0) : w.type.count / max(w.type.shape[0], 1)
            guard depth <= maximumDepth else {
                skip("its depth exceeds \(maximumDepth), where 32-bit sums could overflow")
                continue
            }
            var nodes = step.nodes
            let fused = step.fused as? FusedConvolution
            var activation = fused?.activation ?? .none
            if product.isAffine, let next = readers.onlyReader(of: head),
               next.function is ReLU || next.function is ReLU6 {
                activation = next.function is ReLU ? .relu : .relu6
                nodes.append(next)
            }
            var output: Grid?
            if let last = nodes.last, let next = readers.onlyReader(of: last), let g = quantizerGrid[ObjectIdentifier(next)] {
                output = g
                nodes.append(next)
            }
            // The weight's quantizer runs inside the layer when nothing else reads its output (its float copy of
            // the weight then never exists).
            let weightQuantizer = w.parent.flatMap { q in
                quantizerGrid[ObjectIdentifier(q)] != nil && readers.onlyReader(of: q) === head ? q : nil
            }
            layers[i] = Layer(nodes: nodes, product: product, input: xg, weight: wg, output: output,
                              fused: fused, activation: activation, weightQuantizer: weightQuantizer)
            for n in nodes.dropFirst(step.nodes.count) { absorbed.insert(ObjectIdentifier(n)) }
            if let q = weightQuantizer { absorbed.insert(ObjectIdentifier(q)) }
        }

        // A MaxPooling of a grid value can pool its codes.
        func poolsCodes(_ step: Fusion.Step) -> MaxPooling? {
            guard step.nodes.count == 1, step.fused == nil, let p = step.nodes[0].function as? MaxPooling,
                  !p.channelLast, grids[Key(step.nodes[0].inputs[0])] != nil else { return nil }
            return p
        }
        // Which grid values every reader takes as codes.
        var codeReaders: [Key: Int] = [:]
        var allReaders: [Key: Int] = [:]
        for (i, step) in steps.enumerated() where !absorbed.contains(ObjectIdentifier(step.nodes[0])) {
            let read = layers[i]?.inputs ?? step.readValues
            for (k, v) in read.enumerated() {
                allReaders[Key(v), default: 0] += 1
                if let l = layers[i], k == 0 || (k == read.count - 1 && l.fused?.residual == true) {
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
        for (i, step) in steps.enumerated() {
            if let l = layers[i], let g = l.output, let last = l.nodes.last {
                storedAsCodes(Key.output(node: ObjectIdentifier(last), index: 0), g)
            } else if step.nodes.count == 1, step.fused == nil, let g = quantizerGrid[ObjectIdentifier(step.nodes[0])],
                      !absorbed.contains(ObjectIdentifier(step.nodes[0])), step.nodes[0].outputs[0]?.persistent != true {
                storedAsCodes(Key.output(node: ObjectIdentifier(step.nodes[0]), index: 0), g)
            } else if poolsCodes(step) != nil, codes[Key(step.nodes[0].inputs[0])] != nil,
                      let g = grids[Key(step.nodes[0].inputs[0])], step.nodes[0].outputs[0]?.persistent != true {
                // Codes in, codes out when its readers take them too.
                storedAsCodes(Key.output(node: ObjectIdentifier(step.nodes[0]), index: 0), g)
            }
        }

        var result: [Fusion.Step] = []
        for (i, step) in steps.enumerated() {
            let head = step.nodes[0]
            if absorbed.contains(ObjectIdentifier(head)) { continue }
            guard let l = layers[i] else {
                let key = Key.output(node: ObjectIdentifier(head), index: 0)
                if let c = codes[key], let q = head.function as? FixedPointQuantize, step.fused == nil {
                    result.append(Fusion.Step(nodes: step.nodes, fused: QuantizeToCodes(quantizer: q, codes: c)))
                } else if let p = poolsCodes(step), let c = codes[Key(head.inputs[0])] {
                    result.append(Fusion.Step(nodes: step.nodes, fused: QuantizedMaxPooling(pooling: p, codes: c, codesOut: codes[key] != nil)))
                } else {
                    result.append(step)
                }
                continue
            }
            let inputs = l.inputs
            func storage(_ v: Variable, _ g: Grid?) -> QuantizedStorage {
                guard let g else { return .floats }
                return codes[Key(v)] != nil ? .codes(g.codes) : .floatsOnGrid(g.codes)
            }
            let residual = l.fused?.residual == true
            let residualValue = inputs[inputs.count - 1]
            let outKey = Key.output(node: ObjectIdentifier(l.nodes[l.nodes.count - 1]), index: 0)
            let output: QuantizedStorage = l.output.map { codes[outKey] != nil ? .codes($0.codes) : .floatsOnGrid($0.codes) } ?? .floats
            let layer = QuantizedLayer(
                product: l.product, productInputs: head.inputs.count, batchNormalization: l.fused?.batchNormalization,
                residual: residual, activation: l.activation, input: storage(inputs[0], l.input), weight: l.weight.codes,
                weightMaxCode: l.weight.maxCode,
                residualStorage: residual ? (codes[Key(residualValue)].map { .codes($0) } ?? .floats) : .floats,
                output: output)
            result.append(Fusion.Step(nodes: l.nodes, fused: layer, inputs: l.weightQuantizer == nil ? nil : inputs))
        }
        return Result(steps: result, codes: codes, notes: notes)
    }

}

extension QuantizedLayer.Product {
    var isAffine: Bool {
        if case .affine = self { return true }
        return false
    }
}
