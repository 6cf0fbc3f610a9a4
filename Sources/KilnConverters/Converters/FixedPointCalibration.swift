import Foundation
import KilnCore
import KilnGraph
import KilnCompiler
import KilnRuntime

/// Post-training quantization into nnabla's fixed-point format, from calibration data: every tensor a
/// Convolution (2-D, channels first) or an Affine reads as its input, and every such layer's weight, is read
/// through a `FixedPointQuantize` of `bits` bits and a power-of-two step. Quantized plans run those layers as
/// integer products (`Quantization`).
///
/// Steps: a weight's from its largest magnitude; an input's from the largest magnitude it reached over the
/// calibration batches, each the smallest power of two that represents that magnitude without clipping
/// (`QuantizationStep.powerOfTwo`). A tensor that never went negative is quantized unsigned (all `bits` for
/// magnitude), any other signed. The quantized tensor replaces the float one for every reader (a ResNet's
/// residual connection adds the quantized block input), as an integer engine would compute it. Biases and
/// batch normalisation stay float32: the integer layers apply them in their epilogue. Of a residual Add2 of two
/// layer outputs, the operand made later is quantized too (a projection shortcut then waits as codes), and a
/// quantizer moves up through the MaxPoolings and ReLUs before it, which changes no value.
public struct FixedPointCalibration {
    /// Bits of every quantizer, 2 to 8 (what integer kernels take).
    public let bits: Int

    public init(bits: Int = 8) throws {
        guard (2...8).contains(bits) else {
            throw KilnError.invalidData("quantization bits must be 2 to 8 (integer kernels take 8-bit codes at most), got \(bits)")
        }
        self.bits = bits
    }

    /// What calibration saw of one tensor and the quantizer it chose.
    public struct Range: Sendable {
        public var name: String
        /// The first layer reading it (its function's name).
        public var layer: String
        public var min: Float
        public var max: Float
        public var signed: Bool
        /// The quantizer's step, nil when the tensor stayed 0 (it is left unquantized).
        public var step: Double?
    }

    public struct Result {
        /// The quantized graph's roots, in the order of the roots given.
        public var outputs: [Variable]
        /// Every quantized input tensor, in graph order.
        public var ranges: [Range]
        public var notes: [String]
    }

    typealias Key = GraphCollector.ValueKey

    /// Calibrates on `batches` batches (`feed(i)` sets the graph's inputs for batch `i`), then builds the
    /// quantized graph behind `outputs`, sharing its parameters and inputs with the float graph.
    public func quantize(_ outputs: [Variable], batches: Int, feed: (Int) throws -> Void,
                         progress: ((Int) -> Void)? = nil) throws -> Result {
        guard batches > 0 else { throw KilnError.invalidData("calibration needs at least one batch, got \(batches)") }
        let nodes = try GraphCollector.checkedNodes(from: outputs)
        var targets: [Variable] = [], layers: [String] = []
        var seen = Set<Key>()
        for n in nodes where Self.isQuantizable(n) && seen.insert(Key(n.inputs[0])).inserted {
            targets.append(n.inputs[0])
            layers.append(n.name)
        }
        guard !targets.isEmpty else {
            throw KilnError.invalidData("the graph has no Convolution (2-D, channels first) or Affine to quantize")
        }
        // A residual Add2 of two layer outputs (a projection shortcut and the main path): the one made later is
        // quantized too, so that it waits in memory as codes and the other layer adds it in its epilogue.
        var readerCount: [Key: Int] = [:]
        for n in nodes { for v in n.inputs { readerCount[Key(v), default: 0] += 1 } }
        let position = Dictionary(uniqueKeysWithValues: nodes.enumerated().map { (ObjectIdentifier($1), $0) })
        func layerOutput(_ v: Variable) -> Bool {
            guard let p = v.parent, readerCount[Key(v)] == 1, !seen.contains(Key(v)) else { return false }
            if Self.isQuantizable(p) { return true }
            return p.function is BatchNormalization && p.inputs[0].parent.map(Self.isQuantizable) == true
        }
        for n in nodes where n.function is Add2 && n.inputs.count == 2 && n.inputs.allSatisfy(layerOutput) {
            let ranked = n.inputs.compactMap { v in v.parent.map { (v, position[ObjectIdentifier($0)] ?? 0) } }
            guard let later = ranked.max(by: { $0.1 < $1.1 })?.0 else { continue }
            if seen.insert(Key(later)).inserted {
                targets.append(later)
                layers.append("\(n.name) (residual)")
            }
        }
        // One inference plan computing the outputs and keeping every calibrated tensor.
        let computed = targets.filter { $0.parent != nil }
        let exe = try Compiler.compile(outputs + computed, .inference)
        var low = [Float](repeating: .infinity, count: targets.count), high = [Float](repeating: -.infinity, count: targets.count)
        for b in 0..<batches {
            try feed(b)
            try exe.run()
            for (i, t) in targets.enumerated() {
                for v in t.d {
                    guard v.isFinite else {
                        throw KilnError.invalidData("calibration batch \(b): '\(Self.name(t))' holds \(v); no fixed-point step can represent it")
                    }
                    low[i] = Swift.min(low[i], v)
                    high[i] = Swift.max(high[i], v)
                }
            }
            progress?(b + 1)
        }
        var ranges: [Range] = []
        var grids: [Key: FixedPointQuantize] = [:]
        var notes: [String] = []
        for (i, t) in targets.enumerated() {
            let signed = low[i] < 0
            let magnitude = Swift.max(abs(low[i]), abs(high[i]))
            var range = Range(name: Self.name(t), layer: layers[i], min: low[i], max: high[i], signed: signed, step: nil)
            do {
                let step = try QuantizationStep.powerOfTwo.resolve(for: { [magnitude] }, sign: signed, n: bits, floor: false)
                range.step = step
                grids[Key(t)] = FixedPointQuantize(sign: signed, n: bits, delta: step, quantize: true, steFineGrained: true)
            } catch let skip as ConversionSkip {
                notes.append("'\(range.name)' is not quantized: \(skip.reason)")
            }
            ranges.append(range)
        }

        // A quantizer moves up through the MaxPoolings and ReLUs before it, where each is its input's only reader,
        // so that the integer plan pools 8-bit codes: the values are the same. A quantizer never reverses an
        // order, so the maximum of quantized values is the quantized maximum; and an unsigned quantizer's values
        // are never negative, so a ReLU after it changes nothing and is dropped (a ReLU before a signed quantizer
        // stops the move).
        let quantizedInputs = Set(grids.keys)
        let rootKeys = Set(outputs.map { Key($0) })
        var dropped = Set<ObjectIdentifier>()
        for t in targets {
            guard let q = grids[Key(t)] else { continue }
            var at = t, passed: [FunctionNode] = []
            while let f = at.parent, f.function is MaxPooling || (f.function is ReLU && !q.sign),
                  let input = Optional(f.inputs[0]), input.parent != nil, readerCount[Key(input)] == 1,
                  !rootKeys.contains(Key(input)), grids[Key(input)] == nil {
                passed.append(f)
                at = input
            }
            guard !passed.isEmpty else { continue }
            grids[Key(t)] = nil
            grids[Key(at)] = q
            for f in passed where f.function is ReLU { dropped.insert(ObjectIdentifier(f)) }
        }

        var g = GraphRewrite(roots: outputs, prefix: "fixed-point-calibration", params: ParameterDictionary(), entryVariables: [])
        for t in targets where t.parent == nil {
            guard let q = grids[Key(t)] else { continue }
            let y = try g.emit(q, [t], name: g.uniqueName("\(Self.name(t))/quantize"))[0]
            y.name = g.uniqueName("\(Self.name(t))_q")
            g.stand(y, forLeaf: t)
        }
        for node in g.nodes {
            if dropped.contains(ObjectIdentifier(node)) {
                g.stand(try g.value(node.inputs[0]), for: node, output: 0)
                continue
            }
            var inputs = try g.inputs(of: node)
            if Self.isQuantizable(node), quantizedInputs.contains(Key(node.inputs[0])) {
                let w = node.inputs[1]
                do {
                    let step = try QuantizationStep.powerOfTwo.resolve(
                        for: { try GraphRewrite.parameterValues(w, role: "weight", of: node) }, sign: true, n: bits, floor: false)
                    let q = FixedPointQuantize(sign: true, n: bits, delta: step, quantize: true, steFineGrained: true)
                    inputs[1] = try g.emit(q, [inputs[1]], name: g.uniqueName("\(node.name)/W_q"))[0]
                } catch let skip as ConversionSkip {
                    notes.append("the weight of \(GraphRewrite.describe(node)) is not quantized: \(skip.reason)")
                }
            }
            let outs = try g.emit(node.function, inputs, name: node.name)
            for (i, o) in outs.enumerated() {
                g.stand(o, for: node, output: i)
                let key = Key.output(node: ObjectIdentifier(node), index: i)
                guard let q = grids[key] else { continue }
                let name = o.name
                o.name = g.uniqueName("\(name)_float")
                let y = try g.emit(q, [o], name: g.uniqueName("\(name)/quantize"))[0]
                g.stand(y, for: node, output: i)
            }
        }
        let converted = try g.finish()
        return Result(outputs: converted.outputs, ranges: ranges, notes: notes + converted.notes)
    }

    /// Layers whose input and weight are quantized: those integer kernels run.
    static func isQuantizable(_ n: FunctionNode) -> Bool {
        if let c = n.function as? Convolution { return !c.channelLast && n.inputs[0].type.rank == 4 }
        return n.function is Affine
    }

    static func name(_ v: Variable) -> String {
        if !v.name.isEmpty { return v.name }
        if let p = v.parent { return p.outputTypes.count > 1 ? "\(p.name):\(v.outputIndex)" : p.name }
        return "input"
    }
}
