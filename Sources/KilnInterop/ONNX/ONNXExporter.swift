import Foundation
import KilnCore
import KilnGraph

/// Writes a Kiln graph as an ONNX model (opset 17): each nnabla function becomes the ONNX nodes that compute
/// it in inference, parameters become initializers under their Kiln names (with their current values),
/// inputs the graph's leaves that are not parameters.
///
/// Contract: the model computes the graph's outputs as a Kiln inference plan does (BatchNormalization with
/// its running statistics, Dropout as identity). A function with no exact ONNX form (a loss, a fixed-point
/// quantizer) is an error naming it; nothing is written.
public enum ONNXExporter {
    public static let opset = 17

    public static func export(_ outputs: [Variable], producerVersion: String = "") throws -> ONNXModel {
        var e = ONNXGraphWriter()
        let nodes = try GraphCollector.checkedNodes(from: outputs)
        for n in nodes { try e.write(n) }
        var graph = Onnx_GraphProto()
        graph.name = "kiln"
        graph.node = e.nodes
        graph.initializer = e.initializers
        for v in e.inputs { graph.input.append(try valueInfo(e.name(v), v)) }
        for o in outputs {
            let name = e.name(o)
            if o.parent == nil && !e.written.contains(ObjectIdentifier(o)) {
                throw KilnError.invalidGraphFile("ONNX export: output '\(name)' is a leaf; export the function that computes it")
            }
            graph.output.append(try valueInfo(name, o))
        }
        var model = Onnx_ModelProto()
        model.irVersion = 7
        model.producerName = "kiln"
        model.producerVersion = producerVersion
        var op = Onnx_OperatorSetIdProto()
        op.version = Int64(opset)
        model.opsetImport = [op]
        model.graph = graph
        var result = try ONNXModel(proto: model)
        result.notes = e.notes
        return result
    }

    static func valueInfo(_ name: String, _ v: Variable) throws -> Onnx_ValueInfoProto {
        var i = Onnx_ValueInfoProto()
        i.name = name
        var t = Onnx_TypeProto.Tensor()
        switch v.dtype {
        case .float32: t.elemType = ONNXDataType.float.rawValue
        case .int32: t.elemType = ONNXDataType.int32.rawValue
        case .float16: t.elemType = ONNXDataType.float16.rawValue
        }
        var s = Onnx_TensorShapeProto()
        s.dim = v.shape.map { d in
            var dim = Onnx_TensorShapeProto.Dimension()
            dim.dimValue = Int64(d)
            return dim
        }
        t.shape = s
        i.type.tensorType = t
        return i
    }
}

extension ONNXModel {
    /// Writes the model atomically (a crash leaves the old file or the new one, never half of either).
    public func save(path: String) throws {
        try AtomicFile.write(try serializedBytes(), to: path)
    }
}

/// The nodes and initializers of an export in progress.
struct ONNXGraphWriter {
    var nodes: [Onnx_NodeProto] = []
    var initializers: [Onnx_TensorProto] = []
    var inputs: [Variable] = []
    var names: [ObjectIdentifier: String] = [:]
    var used: Set<String> = []
    var written: Set<ObjectIdentifier> = []
    var counter = 0
    var nodeNames: Set<String> = []
    var notes: [String] = []

    /// The ONNX name of a variable: its Kiln name when it has one not yet taken, else a fresh one. A leaf is
    /// declared (initializer or input) the first time it is named.
    mutating func name(_ v: Variable) -> String {
        if let n = names[ObjectIdentifier(v)] { return n }
        var n = v.name.isEmpty ? fresh("v") : v.name
        if used.contains(n) { n = fresh(n) }
        used.insert(n)
        names[ObjectIdentifier(v)] = n
        if v.parent == nil {
            if v.isParameter && !v.isInput {
                // Integer leaves (Gather's indices) as int64, ONNX's index type.
                let t = v.dtype == .int32
                    ? ONNXTensor(shape: v.shape, ints: ((try? v.data.toInt32s()) ?? []).map { Int64($0) })
                    : ONNXTensor(shape: v.shape, floats: v.d)
                initializers.append(t.proto(name: n))
            } else {
                inputs.append(v)
            }
        }
        return n
    }

    mutating func fresh(_ base: String) -> String {
        while true {
            counter += 1
            let n = "\(base)_\(counter)"
            if !used.contains(n) { used.insert(n); return n }
        }
    }

    /// A constant initializer (a shape, a scalar) under a fresh name.
    mutating func constant(_ t: ONNXTensor, _ base: String) -> String {
        let n = fresh(base)
        initializers.append(t.proto(name: n))
        return n
    }

    /// A parameter written under another shape (BN's [1, C, 1, 1] as ONNX's [C]).
    mutating func reshapedInitializer(_ v: Variable, _ shape: [Int]) -> String {
        if v.parent == nil && v.isParameter && !v.isInput {
            let key = ObjectIdentifier(v)
            if let n = names[key] { return n }
            var n = v.name.isEmpty ? fresh("p") : v.name
            if used.contains(n) { n = fresh(n) }
            used.insert(n)
            names[key] = n
            initializers.append(ONNXTensor(shape: shape, floats: v.d).proto(name: n))
            return n
        }
        return ""
    }

    mutating func node(_ op: String, _ inputs: [String], _ outputs: [String], name: String, _ attrs: [Onnx_AttributeProto] = []) {
        // ONNX checkers want node names unique; Kiln's functions may share one ("MaxPooling").
        var name = name
        var k = 1
        while !nodeNames.insert(name).inserted {
            k += 1
            name = "\(name.split(separator: "#").first.map(String.init) ?? name)#\(k)"
        }
        var n = Onnx_NodeProto()
        n.opType = op
        n.input = inputs
        n.output = outputs
        n.name = name
        n.attribute = attrs
        nodes.append(n)
    }

    static func ints(_ name: String, _ v: [Int]) -> Onnx_AttributeProto {
        var a = Onnx_AttributeProto()
        a.name = name
        a.type = .ints
        a.ints = v.map { Int64($0) }
        return a
    }

    static func int(_ name: String, _ v: Int) -> Onnx_AttributeProto {
        var a = Onnx_AttributeProto()
        a.name = name
        a.type = .int
        a.i = Int64(v)
        return a
    }

    static func float(_ name: String, _ v: Double) -> Onnx_AttributeProto {
        var a = Onnx_AttributeProto()
        a.name = name
        a.type = .float
        a.f = Float(v)
        return a
    }

    /// nnabla's FixedPointQuantize, exactly. QuantizeLinear rounds halfway cases to even where nnabla rounds
    /// them away from zero, so QuantizeLinear/DequantizeLinear is written only where no value is halfway: a
    /// quantized parameter (checked here) with a power-of-two step and at most 8 bits, after a Clip to
    /// nnabla's range (int8 reaches -128, nnabla's signed 8 bits stop at -127). Anything else, activations
    /// included, is written as the same arithmetic nnabla does (Clip, Div, Abs, Add 0.5, Floor, Sign, Mul),
    /// which is exact; a note says which and why.
    mutating func fixedPoint(_ n: FunctionNode, _ x: String, _ y: String, _ nodeName: String, _ args: [String: ArgValue]) throws {
        func fail(_ why: String) -> KilnError { .invalidGraphFile("ONNX export: function '\(n.name)' (FixedPointQuantize): \(why)") }
        guard let f = n.function as? FixedPointQuantize else { throw fail("unexpected function") }
        guard f.quantize else { node("Identity", [x], [y], name: nodeName); return }
        // |x| / delta + 0.5 stays exact in float32 while the largest level is below 2^23.
        guard (f.sign ? f.n - 1 : f.n) <= 23 else { throw fail("n = \(f.n) bits: float32 arithmetic is exact only up to 23 magnitude bits") }
        let (mx, mn) = f.bounds
        let d = Float(f.delta)
        func scalar(_ v: Float, _ tag: String) -> String { constant(ONNXTensor(shape: [], floats: [v]), "\(nodeName)/\(tag)") }
        let clipped = fresh("\(nodeName)/clipped")
        node("Clip", [x, scalar(mn, "min"), scalar(mx, "max")], [clipped], name: "\(clipped)_clip")
        let input = n.inputs[0]
        let powerOfTwo = d > 0 && d.significandBitPattern == 0 && d.isNormal
        var halfway: Int?
        if input.parent == nil && input.isParameter {
            halfway = input.d.firstIndex { v in
                let c = min(max(v, mn), mx)
                let q = Swift.abs(c) / d
                return q - q.rounded(.down) == 0.5
            }
        }
        if input.parent == nil && input.isParameter && powerOfTwo && f.n <= 8 && halfway == nil {
            var zero = ONNXTensor(shape: [], ints: [0])
            zero.elementType = f.sign ? ONNXDataType.int8.rawValue : ONNXDataType.uint8.rawValue
            let zp = constant(zero, "\(nodeName)/zero_point"), scale = scalar(d, "scale")
            let q = fresh("\(nodeName)/quantized")
            node("QuantizeLinear", [clipped, scale, zp], [q], name: "\(q)_quantize")
            node("DequantizeLinear", [q, scale, zp], [y], name: nodeName)
            return
        }
        let why = input.parent != nil || !input.isParameter ? "it quantizes values computed at run time, where QuantizeLinear's rounding of halfway cases (to even) differs from nnabla's (away from zero)"
            : !powerOfTwo ? "its step \(f.delta) is not a power of two"
            : f.n > 8 ? "\(f.n) bits do not fit 8-bit QuantizeLinear"
            : "'\(input.name)' holds a halfway value at index \(halfway ?? 0), which QuantizeLinear would round to even"
        notes.append("\(n.name): FixedPointQuantize written as float arithmetic, not QuantizeLinear/DequantizeLinear: \(why)")
        let steps = fresh("\(nodeName)/steps"), magnitude = fresh("\(nodeName)/abs"), shifted = fresh("\(nodeName)/half")
        let levels = fresh("\(nodeName)/levels"), sign = fresh("\(nodeName)/sign"), signed = fresh("\(nodeName)/signed")
        node("Abs", [clipped], [magnitude], name: "\(magnitude)_abs")
        node("Div", [magnitude, scalar(d, "delta")], [steps], name: "\(steps)_div")
        node("Add", [steps, scalar(0.5, "half")], [shifted], name: "\(shifted)_add")
        node("Floor", [shifted], [levels], name: "\(levels)_floor")
        node("Sign", [clipped], [sign], name: "\(sign)_sign")
        node("Mul", [levels, sign], [signed], name: "\(signed)_mul")
        node("Mul", [signed, scalar(d, "delta")], [y], name: nodeName)
    }

    mutating func write(_ n: FunctionNode) throws {
        let f = n.function
        let type = f.typeName
        let args = Dictionary(f.arguments, uniquingKeysWith: { a, _ in a })
        let outs = n.outputs
        func fail(_ why: String) -> KilnError { .invalidGraphFile("ONNX export: function '\(n.name)' (\(type)): \(why)") }
        guard let out0 = outs.first ?? nil else { return }
        let nodeName = n.name.isEmpty ? fresh(type) : n.name
        // Normalisations' parameters are declared by their cases below, in ONNX's shapes.
        let x = ["BatchNormalization", "LayerNormalization", "InstanceNormalization"].contains(type)
            ? [name(n.inputs[0])] : n.inputs.map { name($0) }
        let y = outs.map { $0.map { name($0) } ?? fresh("unused") }
        for o in outs.compactMap({ $0 }) { written.insert(ObjectIdentifier(o)) }
        func intArg(_ k: String) -> Int? { if case .int(let v)? = args[k] { return v }; return nil }
        func intsArg(_ k: String) -> [Int]? { if case .ints(let v)? = args[k] { return v }; return nil }
        func doubleArg(_ k: String) -> Double? {
            switch args[k] { case .double(let v)?: return v; case .int(let v)?: return Double(v); default: return nil }
        }
        func boolArg(_ k: String) -> Bool? { if case .bool(let v)? = args[k] { return v }; return nil }
        func scalar(_ v: Double) -> String { constant(ONNXTensor(shape: [], floats: [Float(v)]), "\(nodeName)/c") }
        func shapeConst(_ s: [Int]) -> String { constant(ONNXTensor(shape: [s.count], ints: s.map { Int64($0) }), "\(nodeName)/shape") }
        if boolArg("channel_last") == true { throw fail("channel_last is not exported") }

        switch type {
        case "ReLU": node("Relu", x, y, name: nodeName)
        case "Sigmoid", "Tanh", "Identity": node(type, x, y, name: nodeName)
        case "LeakyReLU": node("LeakyRelu", x, y, name: nodeName, [Self.float("alpha", doubleArg("alpha") ?? 0.1)])
        case "ELU": node("Elu", x, y, name: nodeName, [Self.float("alpha", doubleArg("alpha") ?? 1)])
        case "Softmax", "LogSoftmax":
            let axis = intArg("axis") ?? (n.inputs[0].shape.count - 1)
            node(type, x, y, name: nodeName, [Self.int("axis", axis)])
        case "Dropout": node("Identity", [x[0]], [y[0]], name: nodeName)
        case "Add2", "Sub2", "Mul2", "Div2": node(String(type.dropLast()), x, y, name: nodeName)
        case "AddScalar": node("Add", [x[0], scalar(doubleArg("val") ?? 1)], y, name: nodeName)
        case "MulScalar": node("Mul", [x[0], scalar(doubleArg("val") ?? 1)], y, name: nodeName)
        case "PowScalar": node("Pow", [x[0], scalar(doubleArg("val") ?? 1)], y, name: nodeName)
        case "RSubScalar": node("Sub", [scalar(doubleArg("val") ?? 1), x[0]], y, name: nodeName)
        case "RDivScalar": node("Div", [scalar(doubleArg("val") ?? 1), x[0]], y, name: nodeName)
        case "Affine":
            let xs = n.inputs[0].shape, ws = n.inputs[1].shape
            let base = intArg("base_axis") ?? 1
            let m = xs[..<base].reduce(1, *), k = xs[base...].reduce(1, *), outN = ws[1...].reduce(1, *)
            let x2 = xs.count == 2 && base == 1 ? x[0] : fresh("\(nodeName)/x2d")
            if x2 != x[0] { node("Reshape", [x[0], shapeConst([m, k])], [x2], name: "\(nodeName)/reshape_x") }
            let w2 = ws.count == 2 ? x[1] : fresh("\(nodeName)/w2d")
            if w2 != x[1] { node("Reshape", [x[1], shapeConst([k, outN])], [w2], name: "\(nodeName)/reshape_w") }
            var ins = [x2, w2]
            if x.count == 3 {
                let b1 = n.inputs[2].shape.count == 1 ? x[2] : fresh("\(nodeName)/b1d")
                if b1 != x[2] { node("Reshape", [x[2], shapeConst([outN])], [b1], name: "\(nodeName)/reshape_b") }
                ins.append(b1)
            }
            let direct = out0.shape == [m, outN]
            let g = direct ? y[0] : fresh("\(nodeName)/y2d")
            node("Gemm", ins, [g], name: nodeName)
            if !direct { node("Reshape", [g, shapeConst(out0.shape)], [y[0]], name: "\(nodeName)/reshape_y") }
        case "Convolution", "Deconvolution":
            guard (intArg("base_axis") ?? 1) == 1, n.inputs[0].shape.count >= 3 else { throw fail("only base_axis 1 is exported") }
            let k = Array(n.inputs[1].shape[2...])
            let pad = intsArg("pad") ?? [Int](repeating: 0, count: k.count)
            var attrs = [Self.ints("kernel_shape", k), Self.ints("pads", pad + pad),
                         Self.ints("strides", intsArg("stride") ?? [Int](repeating: 1, count: k.count)),
                         Self.ints("dilations", intsArg("dilation") ?? [Int](repeating: 1, count: k.count)),
                         Self.int("group", intArg("group") ?? 1)]
            if type == "Deconvolution" {
                attrs.append(Self.ints("output_padding", intsArg("output_padding") ?? [Int](repeating: 0, count: k.count)))
            }
            node(type == "Convolution" ? "Conv" : "ConvTranspose", x, y, name: nodeName, attrs)
        case "BatchNormalization":
            guard intsArg("axes") ?? [1] == [1] else { throw fail("only axes [1] is exported") }
            let noScale = boolArg("no_scale") ?? false, noBias = boolArg("no_bias") ?? false
            let c = n.inputs[0].shape[1]
            var k = 1
            func param(_ fill: Float?) -> String {
                if let fill { return constant(ONNXTensor(shape: [c], floats: [Float](repeating: fill, count: c)), "\(nodeName)/const") }
                defer { k += 1 }
                let v = n.inputs[k]
                let r = reshapedInitializer(v, [c])
                if !r.isEmpty { return r }
                let flat = fresh("\(nodeName)/flat")
                node("Reshape", [name(v), shapeConst([c])], [flat], name: "\(flat)_reshape")
                return flat
            }
            let beta = param(noBias ? 0 : nil), gamma = param(noScale ? 1 : nil), mean = param(nil), variance = param(nil)
            node("BatchNormalization", [x[0], gamma, beta, mean, variance], [y[0]], name: nodeName,
                 [Self.float("epsilon", doubleArg("eps") ?? 1e-5), Self.float("momentum", doubleArg("decay_rate") ?? 0.9)])
        case "MaxPooling", "AveragePooling":
            let kernel = intsArg("kernel") ?? []
            guard n.inputs[0].shape.count == kernel.count + 2 else { throw fail("pooling must cover every axis after the first two") }
            let stride = intsArg("stride") ?? kernel
            let pad = intsArg("pad") ?? [Int](repeating: 0, count: kernel.count)
            var attrs = [Self.ints("kernel_shape", kernel), Self.ints("strides", stride), Self.ints("pads", pad + pad)]
            if boolArg("ignore_border") == false {
                // nnabla's ignore_border=False is ONNX's ceil_mode where their output sizes agree.
                let inSize = Array(n.inputs[0].shape[2...])
                let want = Array(out0.shape[2...])
                let ceil = (0..<kernel.count).map {
                    ONNXGraphBuilder.poolOutputSize(inSize[$0], k: kernel[$0], s: stride[$0], begin: pad[$0], end: pad[$0], ceil: true)
                }
                guard ceil == want else { throw fail("ignore_border=false gives \(want), which ONNX's ceil_mode does not (\(ceil))") }
                attrs.append(Self.int("ceil_mode", 1))
            }
            if type == "AveragePooling" { attrs.append(Self.int("count_include_pad", boolArg("including_pad") ?? true ? 1 : 0)) }
            node(type == "MaxPooling" ? "MaxPool" : "AveragePool", x, y, name: nodeName, attrs)
        case "GlobalAveragePooling": node("GlobalAveragePool", x, y, name: nodeName)
        case "Reshape": node("Reshape", [x[0], shapeConst(out0.shape)], y, name: nodeName)
        case "Transpose": node("Transpose", x, y, name: nodeName, [Self.ints("perm", intsArg("axes") ?? [])])
        case "Concatenate":
            node("Concat", x, y, name: nodeName, [Self.int("axis", intArg("axis") ?? (n.inputs[0].shape.count - 1))])
        case "Split":
            let axis = intArg("axis") ?? 0
            let parts = (0..<y.count).map { _ in fresh("\(nodeName)/part") }
            node("Split", [x[0], shapeConst([Int](repeating: 1, count: y.count))], parts, name: nodeName, [Self.int("axis", axis)])
            for (p, o) in zip(parts, y) { node("Squeeze", [p, shapeConst([axis])], [o], name: "\(o)_squeeze") }
        case "Slice":
            let s = n.inputs[0].shape
            let r = try KilnGraph.Slice(start: intsArg("start") ?? [], stop: intsArg("stop") ?? [], step: intsArg("step") ?? []).resolve(s)
            let ends = r.enumerated().map { d, a -> Int in
                let e = a.first + a.length * a.step
                return a.step < 0 && e < 0 ? -(s[d] + 1) : e
            }
            node("Slice", [x[0], shapeConst(r.map { $0.first }), shapeConst(ends), shapeConst(Array(0..<s.count)),
                           shapeConst(r.map { $0.step })], y, name: nodeName)
        case "Sum", "Mean":
            let r = n.inputs[0].shape.count
            let axes = intsArg("axes") ?? Array(0..<r)
            let keep = boolArg("keep_dims") ?? false
            if type == "Sum" {
                node("ReduceSum", [x[0], shapeConst(axes)], y, name: nodeName, [Self.int("keepdims", keep ? 1 : 0)])
            } else {
                node("ReduceMean", x, y, name: nodeName, [Self.ints("axes", axes), Self.int("keepdims", keep ? 1 : 0)])
            }
        case "Exp", "Log", "Abs", "Floor", "Ceil", "Erf", "HardSwish": node(type, x, y, name: nodeName)
        case "SoftSign": node("Softsign", x, y, name: nodeName)
        case "SoftPlus":
            let beta = doubleArg("beta") ?? 1
            guard beta == 1 else { throw fail("beta \(beta) has no ONNX Softplus form") }
            node("Softplus", x, y, name: nodeName)
        case "SELU":
            node("Selu", x, y, name: nodeName, [Self.float("gamma", doubleArg("scale") ?? 1.05070098735548),
                                                Self.float("alpha", doubleArg("alpha") ?? 1.673263242354377)])
        case "HardSigmoid": node("HardSigmoid", x, y, name: nodeName, [Self.float("alpha", 0.2), Self.float("beta", 0.5)])
        case "ReLU6": node("Clip", [x[0], scalar(0), scalar(6)], y, name: nodeName)
        case "MaximumScalar": node("Max", [x[0], scalar(doubleArg("val") ?? 1)], y, name: nodeName)
        case "MinimumScalar": node("Min", [x[0], scalar(doubleArg("val") ?? 1)], y, name: nodeName)
        case "Pow2": node("Pow", x, y, name: nodeName)
        case "Maximum2": node("Max", x, y, name: nodeName)
        case "Minimum2": node("Min", x, y, name: nodeName)
        case "PReLU":
            // ONNX broadcasts the slope from the right: C values at nnabla's base axis become [C, 1, ...].
            let xs = n.inputs[0].shape, ws = n.inputs[1].shape
            var slope = x[1]
            if ws.count == 1 && ws[0] > 1 {
                let base = intArg("base_axis") ?? 1
                slope = fresh("\(nodeName)/slope")
                node("Reshape", [x[1], shapeConst([ws[0]] + [Int](repeating: 1, count: xs.count - base - 1))], [slope], name: "\(slope)_reshape")
            }
            node("PRelu", [x[0], slope], y, name: nodeName)
        case "Max", "Min":
            let r = n.inputs[0].shape.count
            node(type == "Max" ? "ReduceMax" : "ReduceMin", x, y, name: nodeName,
                 [Self.ints("axes", intsArg("axes") ?? Array(0..<r)), Self.int("keepdims", boolArg("keep_dims") ?? false ? 1 : 0)])
        case "Pad":
            let r = n.inputs[0].shape.count
            let w = intsArg("pad_width") ?? []
            let lead = r - w.count / 2
            var begin = [Int](repeating: 0, count: r), end = begin
            for k in 0..<(w.count / 2) { begin[lead + k] = w[2 * k]; end[lead + k] = w[2 * k + 1] }
            var modeName = "constant"
            if case .string(let m)? = args["mode"] { modeName = m == "repeat" ? "edge" : m }
            var a = Onnx_AttributeProto()
            a.name = "mode"
            a.type = .string
            a.s = Data(modeName.utf8)
            node("Pad", [x[0], shapeConst(begin + end), scalar(doubleArg("constant_value") ?? 0)], y, name: nodeName, [a])
        case "Gather": node("Gather", x, y, name: nodeName, [Self.int("axis", intArg("axis") ?? 0)])
        case "BatchMatmul":
            var ins = x
            for (k, flag) in [(0, boolArg("transpose_a") ?? false), (1, boolArg("transpose_b") ?? false)] where flag {
                let r = n.inputs[k].shape.count
                let t = fresh("\(nodeName)/t\(k)")
                node("Transpose", [x[k]], [t], name: "\(t)_transpose", [Self.ints("perm", Array(0..<(r - 2)) + [r - 1, r - 2])])
                ins[k] = t
            }
            node("MatMul", ins, y, name: nodeName)
        case "LayerNormalization", "InstanceNormalization":
            let noScale = boolArg("no_scale") ?? false, noBias = boolArg("no_bias") ?? false
            let xs = n.inputs[0].shape
            let isLayer = type == "LayerNormalization"
            let axis = isLayer ? (intsArg("batch_axis") ?? [0]).count : 1
            let ps = isLayer ? Array(xs[axis...]) : [xs[1]]
            var k = 1
            func param(_ fill: Float) -> String {
                let skip = fill == 0 ? noBias : noScale
                if skip { return constant(ONNXTensor(shape: ps, floats: [Float](repeating: fill, count: ps.reduce(1, *))), "\(nodeName)/const") }
                defer { k += 1 }
                let r = reshapedInitializer(n.inputs[k], ps)
                if !r.isEmpty { return r }
                let flat = fresh("\(nodeName)/param")
                node("Reshape", [name(n.inputs[k]), shapeConst(ps)], [flat], name: "\(flat)_reshape")
                return flat
            }
            let beta = param(0), gamma = param(1)
            let eps = Self.float("epsilon", doubleArg("eps") ?? 1e-5)
            if isLayer {
                node("LayerNormalization", [x[0], gamma, beta], [y[0]], name: nodeName, [Self.int("axis", axis), eps])
            } else {
                node("InstanceNormalization", [x[0], gamma, beta], [y[0]], name: nodeName, [eps])
            }
        case "LRN":
            node("LRN", x, y, name: nodeName, [Self.int("size", intArg("size") ?? 1), Self.float("alpha", doubleArg("alpha") ?? 1e-4),
                                               Self.float("beta", doubleArg("beta") ?? 0.75), Self.float("bias", doubleArg("bias") ?? 1)])
        case "FixedPointQuantize":
            try fixedPoint(n, x[0], y[0], nodeName, args)
        case "FusedNormalization":
            throw fail("export the graph before fusion (its BatchNormalization, Add2 and ReLU)")
        default:
            throw fail("has no ONNX form in Kiln's exporter (only inference functions export; losses and quantizers do not)")
        }
    }
}
