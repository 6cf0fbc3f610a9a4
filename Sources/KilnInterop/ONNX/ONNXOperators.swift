import KilnCore
import KilnGraph

/// ONNX operators as Kiln functions. Each case reads the operator's attributes with ONNX's defaults for the
/// model's opset, and builds the nnabla functions that compute it; anything Kiln cannot compute exactly is
/// an error naming the node.
extension ONNXGraphBuilder {
    /// The operators `importOperator` maps (besides those folded when their inputs are known).
    static let supported: Set<String> = [
        "Identity", "Dropout", "Relu", "LeakyRelu", "Elu", "Sigmoid", "Tanh", "Softmax", "LogSoftmax",
        "Add", "Sub", "Mul", "Div", "Sum", "Mean", "Neg", "Reciprocal", "Sqrt", "Pow",
        "Conv", "ConvTranspose", "BatchNormalization", "Gemm", "MatMul",
        "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool",
        "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Concat", "Split", "Slice",
        "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "Cast",
        "Exp", "Log", "Abs", "Floor", "Ceil", "Erf", "Softplus", "Softsign", "Selu", "HardSigmoid", "HardSwish",
        "PRelu", "Clip", "Max", "Min", "Pad", "Gather", "LayerNormalization", "InstanceNormalization", "LRN", "Sign",
        "QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul",
    ]

    mutating func importOperator(_ op: String, _ inputs: [String], _ a: ONNXAttributes, outputCount: Int) throws -> [ONNXValue] {
        func x(_ k: Int = 0) throws -> Variable {
            guard let n = present(inputs, k) else { throw ONNXError.at(place, "input \(k) is missing") }
            return try floatVariable(n)
        }
        func one(_ v: Variable) -> [ONNXValue] { [.variable(v)] }
        switch op {
        case "Identity": return one(try x())
        case "Dropout":
            if outputCount > 1 { notes.append("\(place): the mask output is not computed") }
            guard training else { return one(try x()) }    // inference: the input passes through
            var ratio = try a.float("ratio", default: 0.5)
            if opset >= 12, let rn = present(inputs, 1) {
                guard let t = try known(rn), t.count == 1 else { throw ONNXError.at(place, "its ratio must be known when the model is imported") }
                ratio = t.floats[0]
            }
            guard (0..<1).contains(ratio) else { throw ONNXError.at(place, "ratio \(ratio) must be in [0, 1)") }
            return one(try emit1("Dropout", ["p": .double(Double(ratio))], [try x()]))
        case "Cast":
            let to = try a.int("to", default: 1)
            guard [1, 10, 11].contains(to), try x().dtype == .float32 else {
                throw ONNXError.at(place, "casting a computed tensor to \(ONNXDataType.describe(Int32(clamping: to))) is not supported")
            }
            return one(try x())
        case "Relu": return one(try emit1("ReLU", [:], [try x()]))
        case "LeakyRelu": return one(try emit1("LeakyReLU", ["alpha": .double(Double(try a.float("alpha", default: 0.01)))], [try x()]))
        case "Elu": return one(try emit1("ELU", ["alpha": .double(Double(try a.float("alpha", default: 1)))], [try x()]))
        case "Sigmoid": return one(try emit1("Sigmoid", [:], [try x()]))
        case "Tanh": return one(try emit1("Tanh", [:], [try x()]))
        case "Softmax", "LogSoftmax": return one(try softmax(op == "Softmax" ? "Softmax" : "LogSoftmax", try x(), a))
        case "Add", "Sub", "Mul", "Div": return one(try binary(op, inputs, a))
        case "Sum", "Mean":
            let parts = try inputs.filter { !$0.isEmpty }.map { try floatVariable($0) }
            guard var acc = parts.first else { throw ONNXError.at(place, "has no inputs") }
            for p in parts.dropFirst() {
                let (l, r) = try broadcastPair(acc, p)
                acc = try emit1("Add2", [:], [l, r], suffix: "sum")
            }
            if op == "Mean" && parts.count > 1 { acc = try emit1("MulScalar", ["val": .double(1 / Double(parts.count))], [acc], suffix: "mean") }
            else if parts.count == 1 { acc = try emit1("Identity", [:], [acc]) }
            return one(acc)
        case "Exp", "Log", "Abs", "Floor", "Ceil", "Erf", "HardSwish":
            return one(try emit1(op, [:], [try x()]))
        case "Sign": return one(try emit1("Sign", ["alpha": .double(0)], [try x()]))
        case "Softplus": return one(try emit1("SoftPlus", ["beta": .double(1)], [try x()]))
        case "Softsign": return one(try emit1("SoftSign", [:], [try x()]))
        case "Selu":
            return one(try emit1("SELU", ["scale": .double(Double(try a.float("gamma", default: 1.05070102214813232421875))),
                                          "alpha": .double(Double(try a.float("alpha", default: 1.67326319217681884765625)))], [try x()]))
        case "HardSigmoid":
            let alpha = try a.float("alpha", default: 0.2), beta = try a.float("beta", default: 0.5)
            if alpha == 0.2 && beta == 0.5 { return one(try emit1("HardSigmoid", [:], [try x()])) }
            // Other slopes: nnabla's HardSigmoid has none, so max(0, min(1, alpha x + beta)) as its parts.
            var y = try emit1("MulScalar", ["val": .double(Double(alpha))], [try x()], suffix: "alpha")
            y = try emit1("AddScalar", ["val": .double(Double(beta))], [y], suffix: "beta")
            y = try emit1("MaximumScalar", ["val": .double(0)], [y], suffix: "low")
            return one(try emit1("MinimumScalar", ["val": .double(1)], [y]))
        case "PRelu": return one(try prelu(inputs))
        case "Clip": return one(try clip(inputs, a))
        case "Max", "Min":
            let parts = try inputs.filter { !$0.isEmpty }.map { try floatVariable($0) }
            guard var acc = parts.first else { throw ONNXError.at(place, "has no inputs") }
            if parts.count == 1 { return one(try emit1("Identity", [:], [acc])) }
            for p in parts.dropFirst() {
                let (l, r) = try broadcastPair(acc, p)
                acc = try emit1(op == "Max" ? "Maximum2" : "Minimum2", [:], [l, r], suffix: op == "Max" ? "max" : "min")
            }
            return one(acc)
        case "Pad": return one(try pad(inputs, a))
        case "Gather":
            let v = try x()
            guard let iname = present(inputs, 1) else { throw ONNXError.at(place, "needs indices") }
            let axis = try normalizedAxis(try a.int("axis", default: 0), rank: v.shape.count)
            return one(try emit1("Gather", ["axis": .int(axis)], [v, try variable(iname)]))
        case "LayerNormalization":
            let y = try layerNormalization(inputs, a)
            guard outputCount > 1 else { return one(y) }
            // The optional Mean and InvStdDev outputs, as graph functions over the normalised axes.
            let v = try x()
            let axis = try normalizedAxis(try a.int("axis", default: -1), rank: v.shape.count)
            let axes: ArgValue = .ints(Array(axis..<v.shape.count))
            let mean = try emit1("Mean", ["axes": axes, "keep_dims": .bool(true)], [v], suffix: "mean")
            let (l, r) = try broadcastPair(v, mean)
            let centred = try emit1("Sub2", [:], [l, r], suffix: "centred")
            let square = try emit1("PowScalar", ["val": .double(2)], [centred], suffix: "square")
            let variance = try emit1("Mean", ["axes": axes, "keep_dims": .bool(true)], [square], suffix: "variance")
            let shifted = try emit1("AddScalar", ["val": .double(Double(try a.float("epsilon", default: 1e-5)))], [variance], suffix: "eps")
            let inv = try emit1("PowScalar", ["val": .double(-0.5)], [shifted], suffix: "invstddev")
            return [.variable(y), .variable(mean), .variable(inv)]
        case "InstanceNormalization":
            let v = try x()
            guard v.shape.count >= 3 else { throw ONNXError.at(place, "needs an input with spatial axes, got \(v.shape)") }
            let ps = [1, v.shape[1]] + [Int](repeating: 1, count: v.shape.count - 2)
            let gamma = try parameter(inputs, 1, ps), beta = try parameter(inputs, 2, ps)
            return one(try emit1("InstanceNormalization", ["eps": .double(Double(try a.float("epsilon", default: 1e-5)))], [v, beta, gamma]))
        case "LRN":
            guard let size = try a.int("size") else { throw ONNXError.at(place, "has no size") }
            return one(try emit1("LRN", ["size": .int(size), "alpha": .double(Double(try a.float("alpha", default: 1e-4))),
                                         "beta": .double(Double(try a.float("beta", default: 0.75))),
                                         "bias": .double(Double(try a.float("bias", default: 1)))], [try x()]))
        case "Neg": return one(try emit1("MulScalar", ["val": .double(-1)], [try x()]))
        case "Reciprocal": return one(try emit1("RDivScalar", ["val": .double(1)], [try x()]))
        case "Sqrt": return one(try emit1("PowScalar", ["val": .double(0.5)], [try x()]))
        case "Pow":
            guard let e = present(inputs, 1) else { throw ONNXError.at(place, "needs an exponent") }
            if let t = try constant(e), t.count == 1, try x().shape.count >= t.shape.count {
                return one(try emit1("PowScalar", ["val": .double(Double(t.floats[0]))], [try x()]))
            }
            let (l, r) = try broadcastPair(try x(), try floatVariable(e))
            return one(try emit1("Pow2", [:], [l, r]))
        case "QuantizeLinear", "DequantizeLinear":
            guard let xn = present(inputs, 0), let sn = present(inputs, 1) else { throw ONNXError.at(place, "needs x and a scale") }
            return one(try linearQuantizer(quantize: op == "QuantizeLinear", try floatVariable(xn), scale: sn,
                                           zeroPoint: present(inputs, 2), a))
        case "QLinearConv", "QLinearMatMul": return one(try qlinear(op, inputs, a))
        case "Conv": return one(try convolution(inputs, a))
        case "ConvTranspose": return one(try deconvolution(inputs, a))
        case "BatchNormalization": return one(try batchNormalization(inputs, a, outputCount: outputCount))
        case "Gemm": return one(try gemm(inputs, a))
        case "MatMul": return one(try matmul(inputs))
        case "MaxPool", "AveragePool":
            if op == "MaxPool" && outputCount > 1 { notes.append("\(place): the indices output is not computed") }
            return one(try pooling(op, try x(), a))
        case "GlobalAveragePool":
            let v = try x()
            guard v.shape.count == 4 else {
                return one(try emit1("Mean", ["axes": .ints(Array(2..<v.shape.count)), "keep_dims": .bool(true)], [v]))
            }
            return one(try emit1("GlobalAveragePooling", [:], [v]))
        case "GlobalMaxPool":
            let v = try x()
            guard v.shape.count >= 3 else { throw ONNXError.at(place, "needs an input with spatial dimensions, got \(v.shape)") }
            let k = Array(v.shape[2...])
            return one(try emit1("MaxPooling", ["kernel": .ints(k), "stride": .ints(k), "ignore_border": .bool(true)], [v]))
        case "Reshape":
            let v = try x()
            let known = try inputs.map { $0.isEmpty ? nil : try constant($0) }
            return one(try reshape(v, try reshapeTarget(v.shape, inputs, known, a)))
        case "Flatten":
            let v = try x()
            return one(try reshape(v, try flattenShape(v.shape, a)))
        case "Squeeze", "Unsqueeze":
            let v = try x()
            let known = try inputs.map { $0.isEmpty ? nil : try constant($0) }
            if inputs.count > 1 && !inputs[1].isEmpty && known[1] == nil {
                throw ONNXError.at(place, "its axes are computed by the graph: Kiln needs them known when the model is imported")
            }
            let s = op == "Squeeze" ? try squeezeShape(v.shape, known, a) : try unsqueezeShape(v.shape, known, a)
            return one(try reshape(v, s))
        case "Transpose":
            let v = try x()
            return one(try emit1("Transpose", ["axes": .ints(try transposePerm(v.shape.count, a))], [v]))
        case "Concat":
            let parts = try inputs.filter { !$0.isEmpty }.map { try floatVariable($0) }
            guard let r = parts.first?.shape.count else { throw ONNXError.at(place, "has no inputs") }
            let axis = try normalizedAxis(try a.int("axis") ?? (opset < 4 ? 1 : 0), rank: r)
            if parts.count == 1 { return one(try emit1("Identity", [:], parts)) }
            return one(try emit1("Concatenate", ["axis": .int(axis)], parts))
        case "Split": return try split(try x(), inputs, a, outputCount: outputCount).map { .variable($0) }
        case "Slice":
            let v = try x()
            let known = try inputs.map { $0.isEmpty ? nil : try constant($0) }
            let (start, stop, step) = try sliceArguments(v.shape, inputs, known, a)
            return one(try emit1("Slice", ["start": .ints(start), "stop": .ints(stop), "step": .ints(step)], [v]))
        case "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin":
            let v = try x()
            let known = try inputs.map { $0.isEmpty ? nil : try constant($0) }
            // ReduceSum takes its axes as an input from opset 13, the others from 18.
            var axes = try axesArgument(known, a, inputFrom: op == "ReduceSum" ? 13 : 18)
            if axes == nil && inputs.count > 1 && !inputs[1].isEmpty {
                throw ONNXError.at(place, "its axes are computed by the graph: Kiln needs them known when the model is imported")
            }
            if axes?.isEmpty ?? true {
                if try a.int("noop_with_empty_axes", default: 0) != 0 { return one(try emit1("Identity", [:], [v])) }
                axes = Array(0..<v.shape.count)
            }
            let ax = try (axes ?? []).map { try normalizedAxis($0, rank: v.shape.count) }.sorted()
            let keep = try a.int("keepdims", default: 1) != 0
            let type = ["ReduceMean": "Mean", "ReduceSum": "Sum", "ReduceMax": "Max", "ReduceMin": "Min"][op] ?? op
            return one(try emit1(type, ["axes": .ints(ax), "keep_dims": .bool(keep)], [v]))
        default:
            throw ONNXError.at(place, "operator \(op) is not supported")
        }
    }

    // MARK: - Element-wise

    /// ONNX broadcasts numpy-style across ranks; nnabla's binary functions need equal ranks, so the lower
    /// rank side gets leading 1s.
    mutating func broadcastPair(_ l: Variable, _ r: Variable) throws -> (Variable, Variable) {
        let n = max(l.shape.count, r.shape.count)
        func lift(_ v: Variable) throws -> Variable {
            v.shape.count == n ? v : try reshape(v, [Int](repeating: 1, count: n - v.shape.count) + v.shape)
        }
        return (try lift(l), try lift(r))
    }

    mutating func binary(_ op: String, _ inputs: [String], _ a: ONNXAttributes) throws -> Variable {
        guard let ln = present(inputs, 0), let rn = present(inputs, 1) else { throw ONNXError.at(place, "needs two inputs") }
        // A constant single element on one side is a scalar function, as nnabla writes it.
        if let c = try constant(rn), c.count == 1, case .variable = try value(ln) {
            let v = Double(c.floats[0]), x = try floatVariable(ln)
            let outRank = max(x.shape.count, c.shape.count)
            var y: Variable
            switch op {
            case "Add": y = try emit1("AddScalar", ["val": .double(v)], [x])
            case "Sub": y = try emit1("AddScalar", ["val": .double(-v)], [x])
            case "Mul": y = try emit1("MulScalar", ["val": .double(v)], [x])
            default:
                let (l, r) = try broadcastPair(x, try floatVariable(rn))
                y = try emit1("Div2", [:], [l, r])
            }
            if y.shape.count < outRank { y = try reshape(y, [Int](repeating: 1, count: outRank - y.shape.count) + y.shape) }
            return y
        }
        if let c = try constant(ln), c.count == 1, case .variable = try value(rn), op == "Add" || op == "Mul" || op == "Sub" || op == "Div" {
            let v = Double(c.floats[0]), x = try floatVariable(rn)
            switch op {
            case "Add": return try emit1("AddScalar", ["val": .double(v)], [x])
            case "Mul": return try emit1("MulScalar", ["val": .double(v)], [x])
            case "Sub": return try emit1("RSubScalar", ["val": .double(v)], [x])
            default: return try emit1("RDivScalar", ["val": .double(v)], [x])
            }
        }
        var l = try floatVariable(ln), r = try floatVariable(rn)
        // Before opset 7, B broadcasts only with `broadcast`, aligned at `axis` (by default its trailing dims).
        if opset < 7, try a.int("broadcast", default: 0) != 0, r.shape.count < l.shape.count {
            let axis = try a.int("axis") ?? (l.shape.count - r.shape.count)
            guard axis >= 0, axis + r.shape.count <= l.shape.count else { throw ONNXError.at(place, "broadcast axis \(axis) does not fit") }
            r = try reshape(r, [Int](repeating: 1, count: axis) + r.shape + [Int](repeating: 1, count: l.shape.count - axis - r.shape.count))
        }
        (l, r) = try broadcastPair(l, r)
        return try emit1(["Add": "Add2", "Sub": "Sub2", "Mul": "Mul2", "Div": "Div2"][op] ?? op, [:], [l, r])
    }

    mutating func softmax(_ type: String, _ v: Variable, _ a: ONNXAttributes) throws -> Variable {
        let r = v.shape.count
        guard r > 0 else { throw ONNXError.at(place, "needs an input of rank 1 or more") }
        if opset >= 13 {
            return try emit1(type, ["axis": .int(try normalizedAxis(try a.int("axis", default: -1), rank: r))], [v])
        }
        // Before opset 13 the input is seen as 2-D, [prod(dims before axis), prod(dims from axis)].
        let axis = try a.int("axis", default: 1)
        guard axis >= -r, axis <= r else { throw ONNXError.at(place, "axis \(axis) is out of range for rank \(r)") }
        let k = axis < 0 ? axis + r : axis
        if k == r - 1 { return try emit1(type, ["axis": .int(k)], [v]) }
        let flat = try reshape(v, [v.shape[..<k].reduce(1, *), v.shape[k...].reduce(1, *)])
        let y = try emit1(type, ["axis": .int(1)], [flat], suffix: "2d")
        return try reshape(y, v.shape)
    }

    // MARK: - Convolution and pooling

    /// Per spatial axis begin and end padding from `pads` or `auto_pad`, for input sizes `size` and effective
    /// kernel sizes `k` (dilated), strides `s`.
    func padding(_ a: ONNXAttributes, size: [Int], k: [Int], s: [Int]) throws -> (begin: [Int], end: [Int]) {
        let n = size.count
        let auto = try a.string("auto_pad") ?? "NOTSET"
        switch auto {
        case "NOTSET":
            let pads = try a.ints("pads") ?? [Int](repeating: 0, count: 2 * n)
            guard pads.count == 2 * n, pads.allSatisfy({ $0 >= 0 }) else { throw ONNXError.at(place, "pads \(pads) must be \(2 * n) non-negative numbers") }
            return (Array(pads[..<n]), Array(pads[n...]))
        case "VALID":
            return ([Int](repeating: 0, count: n), [Int](repeating: 0, count: n))
        case "SAME_UPPER", "SAME_LOWER":
            var b: [Int] = [], e: [Int] = []
            for i in 0..<n {
                let out = (size[i] + s[i] - 1) / s[i]
                let total = max((out - 1) * s[i] + k[i] - size[i], 0)
                let small = total / 2, big = total - small
                b.append(auto == "SAME_UPPER" ? small : big)
                e.append(auto == "SAME_UPPER" ? big : small)
            }
            return (b, e)
        default:
            throw ONNXError.at(place, "auto_pad '\(auto)' is not one of NOTSET, VALID, SAME_UPPER, SAME_LOWER")
        }
    }

    func symmetric(_ p: (begin: [Int], end: [Int])) throws -> [Int] {
        guard p.begin == p.end else {
            throw ONNXError.at(place, "asymmetric padding (begin \(p.begin), end \(p.end)) is not supported")
        }
        return p.begin
    }

    mutating func convolution(_ inputs: [String], _ a: ONNXAttributes) throws -> Variable {
        guard let xn = present(inputs, 0), let wn = present(inputs, 1) else { throw ONNXError.at(place, "needs X and W") }
        let x = try floatVariable(xn), w = try floatVariable(wn)
        let n = w.shape.count - 2
        guard n >= 1, x.shape.count == n + 2 else { throw ONNXError.at(place, "X \(x.shape) and W \(w.shape) do not match") }
        let kernel = try a.ints("kernel_shape") ?? Array(w.shape[2...])
        guard kernel == Array(w.shape[2...]) else { throw ONNXError.at(place, "kernel_shape \(kernel) differs from W's \(Array(w.shape[2...]))") }
        let stride = try a.ints("strides") ?? [Int](repeating: 1, count: n)
        let dilation = try a.ints("dilations") ?? [Int](repeating: 1, count: n)
        guard stride.count == n, dilation.count == n, stride.allSatisfy({ $0 >= 1 }), dilation.allSatisfy({ $0 >= 1 }) else {
            throw ONNXError.at(place, "strides \(stride) and dilations \(dilation) must be \(n) positive numbers")
        }
        let eff = (0..<n).map { (kernel[$0] - 1) * dilation[$0] + 1 }
        let p = try padding(a, size: Array(x.shape[2...]), k: eff, s: stride)
        var input = x, pad = p.begin
        if p.begin != p.end {
            // Uneven padding (SAME with an odd total): zeros added by a Pad, the convolution pads nothing.
            input = try padded(x, begin: [0, 0] + p.begin, end: [0, 0] + p.end, suffix: "pad")
            pad = [Int](repeating: 0, count: n)
        }
        var ins = [input, w]
        if let bn = present(inputs, 2) { ins.append(try floatVariable(bn)) }
        return try emit1("Convolution", ["base_axis": .int(1), "pad": .ints(pad), "stride": .ints(stride),
                                         "dilation": .ints(dilation), "group": .int(try a.int("group", default: 1))], ins)
    }

    mutating func deconvolution(_ inputs: [String], _ a: ONNXAttributes) throws -> Variable {
        guard let xn = present(inputs, 0), let wn = present(inputs, 1) else { throw ONNXError.at(place, "needs X and W") }
        let x = try floatVariable(xn), w = try floatVariable(wn)
        let n = w.shape.count - 2
        guard n >= 1, x.shape.count == n + 2 else { throw ONNXError.at(place, "X \(x.shape) and W \(w.shape) do not match") }
        let stride = try a.ints("strides") ?? [Int](repeating: 1, count: n)
        let dilation = try a.ints("dilations") ?? [Int](repeating: 1, count: n)
        let outPad = try a.ints("output_padding") ?? [Int](repeating: 0, count: n)
        guard stride.count == n, dilation.count == n, outPad.count == n else { throw ONNXError.at(place, "strides, dilations and output_padding must have \(n) entries") }
        let auto = try a.string("auto_pad") ?? "NOTSET"
        guard ["NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"].contains(auto) else { throw ONNXError.at(place, "auto_pad '\(auto)' is not supported") }
        let inSize = Array(x.shape[2...]), k = Array(w.shape[2...])
        // The size before cropping: stride * (in - 1) + output_padding + dilated kernel.
        let limit = 1 << 20
        guard (stride + dilation + outPad).allSatisfy({ $0 >= 0 && $0 <= limit }), stride.allSatisfy({ $0 >= 1 }), dilation.allSatisfy({ $0 >= 1 }) else {
            throw ONNXError.at(place, "strides \(stride), dilations \(dilation) and output_padding \(outPad) must be positive (output_padding non-negative) and at most \(limit)")
        }
        var full: [Int] = []
        for i in 0..<n {
            let span: Int = stride[i] * (inSize[i] - 1) + outPad[i]
            full.append(span + (k[i] - 1) * dilation[i] + 1)
        }
        var begin: [Int], end: [Int]
        if let os = try a.ints("output_shape") ?? (auto.hasPrefix("SAME") ? (0..<n).map { inSize[$0] * stride[$0] } : nil) {
            // Pads follow from the output size; the larger half goes first except with SAME_UPPER, as
            // onnxruntime splits them.
            let spatial = os.count == n + 2 ? Array(os[2...]) : os
            guard spatial.count == n else { throw ONNXError.at(place, "output_shape \(os) must give \(n) spatial sizes") }
            begin = []
            end = []
            for i in 0..<n {
                let total = full[i] - spatial[i]
                // A larger output than the convolution makes (negative padding) extends the end.
                begin.append(total < 0 ? 0 : auto == "SAME_UPPER" ? total / 2 : total - total / 2)
                end.append(total - begin[i])
            }
        } else {
            let pads = auto == "VALID" ? [Int](repeating: 0, count: 2 * n) : (try a.ints("pads") ?? [Int](repeating: 0, count: 2 * n))
            guard pads.count == 2 * n, pads.allSatisfy({ $0 >= 0 }) else { throw ONNXError.at(place, "pads \(pads) must be \(2 * n) non-negative numbers") }
            begin = Array(pads[..<n])
            end = Array(pads[n...])
        }
        // nnabla crops `pad` from both ends and output_padding extends the end: so begin is the pad, and
        // output_padding + begin - end what the end keeps; when that is negative, a Slice crops the rest.
        let pad = begin
        let keep = (0..<n).map { outPad[$0] + begin[$0] - end[$0] }
        let extra = keep.map { max($0, 0) }
        var ins = [x, w]
        if let bn = present(inputs, 2) { ins.append(try floatVariable(bn)) }
        let y = try emit1("Deconvolution", ["base_axis": .int(1), "pad": .ints(pad), "stride": .ints(stride),
                                            "dilation": .ints(dilation), "group": .int(try a.int("group", default: 1)),
                                            "output_padding": .ints(extra)], ins, suffix: keep.allSatisfy { $0 >= 0 } ? nil : "uncropped")
        guard keep.contains(where: { $0 < 0 }) else { return y }
        var stop = y.shape
        for i in 0..<n { stop[i + 2] += min(keep[i], 0) }
        return try emit1("Slice", ["start": .ints([Int](repeating: 0, count: n + 2)), "stop": .ints(stop),
                                   "step": .ints([Int](repeating: 1, count: n + 2))], [y])
    }

    /// ONNX's output size of a pooling window, with ceil_mode (a last window that would start in the end
    /// padding is dropped, as onnxruntime and PyTorch do).
    static func poolOutputSize(_ size: Int, k: Int, s: Int, begin: Int, end: Int, ceil: Bool) -> Int {
        let span = size + begin + end - k
        guard span >= 0 else { return 0 }
        var out = (ceil ? (span + s - 1) / s : span / s) + 1
        if ceil && (out - 1) * s >= size + begin { out -= 1 }
        return out
    }

    mutating func pooling(_ op: String, _ x: Variable, _ a: ONNXAttributes) throws -> Variable {
        guard let kernel = try a.ints("kernel_shape") else { throw ONNXError.at(place, "has no kernel_shape") }
        let n = kernel.count
        guard x.shape.count == n + 2 else { throw ONNXError.at(place, "X \(x.shape) does not match kernel_shape \(kernel)") }
        let stride = try a.ints("strides") ?? [Int](repeating: 1, count: n)
        guard stride.count == n, stride.allSatisfy({ $0 >= 1 }), kernel.allSatisfy({ $0 >= 1 }) else {
            throw ONNXError.at(place, "strides \(stride) must be \(n) positive numbers")
        }
        if let d = try a.ints("dilations"), d.contains(where: { $0 != 1 }) { throw ONNXError.at(place, "dilations \(d) are not supported") }
        if try a.int("storage_order", default: 0) != 0 { throw ONNXError.at(place, "storage_order 1 is not supported") }
        let size = Array(x.shape[2...])
        let p = try padding(a, size: size, k: kernel, s: stride)
        let ceil = try a.int("ceil_mode", default: 0) != 0
        let want = (0..<n).map { Self.poolOutputSize(size[$0], k: kernel[$0], s: stride[$0], begin: p.begin[$0], end: p.end[$0], ceil: ceil) }
        var input = x, pad = p.begin
        let includePad = try a.int("count_include_pad", default: 0) != 0
        if p.begin != p.end && op == "AveragePool" && !includePad {
            // Padding must not count here: pool with the larger side on both ends, then keep the windows that
            // start where ONNX's do (possible when the two sides differ by a multiple of the stride).
            let big = (0..<n).map { max(p.begin[$0], p.end[$0]) }
            let offset = (0..<n).map { (big[$0] - p.begin[$0]) / stride[$0] }
            guard (0..<n).allSatisfy({ (big[$0] - p.begin[$0]) % stride[$0] == 0 }) else {
                throw ONNXError.at(place, "uneven padding (begin \(p.begin), end \(p.end)) with these strides is not supported")
            }
            let args: [String: ArgValue] = ["kernel": .ints(kernel), "stride": .ints(stride), "pad": .ints(big),
                                            "including_pad": .bool(false), "ignore_border": .bool(true)]
            let wide = try emit1("AveragePooling", args, [x], suffix: "wide")
            guard (0..<n).allSatisfy({ offset[$0] + want[$0] <= wide.shape[$0 + 2] }) else {
                throw ONNXError.at(place, "uneven padding (begin \(p.begin), end \(p.end)) is not supported for these shapes")
            }
            return try emit1("Slice", ["start": .ints([0, 0] + offset), "stop": .ints(Array(wide.shape[..<2]) + (0..<n).map { offset[$0] + want[$0] }),
                                       "step": .ints([Int](repeating: 1, count: n + 2))], [wide])
        }
        if p.begin != p.end {
            // Uneven padding: a Pad adds it (the lowest float for MaxPool, zeros counted by AveragePool with
            // count_include_pad), the pooling pads nothing.
            input = try padded(x, begin: [0, 0] + p.begin, end: [0, 0] + p.end,
                               value: op == "MaxPool" ? -Float.greatestFiniteMagnitude : 0, suffix: "pad")
            pad = [Int](repeating: 0, count: n)
        }
        var args: [String: ArgValue] = ["kernel": .ints(kernel), "stride": .ints(stride), "pad": .ints(pad)]
        if op == "AveragePool" { args["including_pad"] = .bool(includePad) }
        let type = op == "MaxPool" ? "MaxPooling" : "AveragePooling"
        // nnabla's ignore_border=True is ONNX's floor; its False is a ceiling that agrees with ceil_mode on
        // most shapes. Whichever matches ONNX's output size is used; none matching is an error.
        for ignoreBorder in ceil ? [false, true] : [true] {
            args["ignore_border"] = .bool(ignoreBorder)
            let f = try FunctionRegistry.make(type: type, arguments: args)
            if let t = try? f.outputTypes([input.type]).first, Array(t.shape[2...]) == want {
                return try emit1(type, args, [input])
            }
        }
        throw ONNXError.at(place, "ceil_mode with these shapes (output \(want)) is not supported")
    }

    // MARK: - Normalization and products

    mutating func batchNormalization(_ inputs: [String], _ a: ONNXAttributes, outputCount: Int) throws -> Variable {
        guard inputs.count >= 5, let xn = present(inputs, 0) else { throw ONNXError.at(place, "needs X, scale, B, mean and var") }
        if opset < 9, try a.int("spatial", default: 1) == 0 { throw ONNXError.at(place, "spatial=0 is not supported") }
        if try a.int("training_mode", default: 0) != 0 { throw ONNXError.at(place, "training_mode=1 is not supported (inference only)") }
        if outputCount > 1 { notes.append("\(place): only Y is computed (inference)") }
        let x = try floatVariable(xn)
        guard x.shape.count >= 2 else { throw ONNXError.at(place, "X \(x.shape) has no channel axis") }
        let c = x.shape[1]
        // nnabla keeps BN's parameters as [1, C, 1, ...] and takes them as beta, gamma, mean, variance.
        let statShape = [1, c] + [Int](repeating: 1, count: x.shape.count - 2)
        var params: [Variable] = []
        for k in [2, 1, 3, 4] {
            guard let n = present(inputs, k) else { throw ONNXError.at(place, "input \(k) is missing") }
            guard try shape(n).reduce(1, *) == c else { throw ONNXError.at(place, "input '\(n)' must hold \(c) values") }
            let v = try floatVariable(n)
            let p = v.parent == nil && v.shape != statShape && !v.isInput ? try reshapedLeaf(v, statShape) : try reshape(v, statShape)
            // The running statistics are state, not weights: no gradient, as nnabla's.
            if k >= 3 && p.parent == nil { p.needGrad = false }
            params.append(p)
        }
        return try emit1("BatchNormalization", ["axes": .ints([1]), "eps": .double(Double(try a.float("epsilon", default: 1e-5))),
                                                "decay_rate": .double(Double(try a.float("momentum", default: 0.9))),
                                                "batch_stat": .bool(training)], [x] + params)
    }

    /// A parameter leaf stored under another shape of the same size (BN's [C] as nnabla's [1, C, 1, 1]):
    /// the parameter keeps its ONNX name, and export writes it back as [C].
    mutating func reshapedLeaf(_ v: Variable, _ s: [Int]) throws -> Variable {
        if let u = sharedParameter(v.name, s) {
            for (k, leaf) in leaves where leaf === v { leaves[k] = u }
            return u
        }
        let u = try Variable(shape: s, dtype: v.dtype, needGrad: v.needGrad, name: v.name)
        try u.data.setFloats(v.d, name: v.name)
        u.isParameter = v.isParameter
        for (k, leaf) in leaves where leaf === v { leaves[k] = u }
        return u
    }

    mutating func gemm(_ inputs: [String], _ a: ONNXAttributes) throws -> Variable {
        guard let an = present(inputs, 0), let bn = present(inputs, 1) else { throw ONNXError.at(place, "needs A and B") }
        let alpha = try a.float("alpha", default: 1), beta = try a.float("beta", default: 1)
        let transA = try a.int("transA", default: 0) != 0, transB = try a.int("transB", default: 0) != 0
        var x = try floatVariable(an)
        guard x.shape.count == 2, try shape(bn).count == 2 else { throw ONNXError.at(place, "A and B must be matrices") }
        if transA { x = try emit1("Transpose", ["axes": .ints([1, 0])], [x], suffix: "transA") }
        let w = try weightMatrix(bn, transposed: transB)
        let nOut = w.shape[1]
        // The common case, alpha = beta = 1 and a bias of N values, is one Affine with bias.
        if alpha == 1, beta == 1, let cn = present(inputs, 2), try shape(cn).reduce(1, *) == nOut, try shape(cn).last == nOut {
            var bias = try floatVariable(cn)
            if bias.shape != [nOut] { bias = bias.parent == nil && !bias.isInput ? try reshapedLeaf(bias, [nOut]) : try reshape(bias, [nOut]) }
            return try emit1("Affine", ["base_axis": .int(1)], [x, w, bias])
        }
        var y = try emit1("Affine", ["base_axis": .int(1)], [x, w], suffix: present(inputs, 2) == nil && alpha == 1 ? nil : "product")
        if alpha != 1 { y = try emit1("MulScalar", ["val": .double(Double(alpha))], [y], suffix: "alpha") }
        if let cn = present(inputs, 2) {
            var c = try floatVariable(cn)
            if beta != 1 { c = try emit1("MulScalar", ["val": .double(Double(beta))], [c], suffix: "beta") }
            let (l, r) = try broadcastPair(y, c)
            y = try emit1("Add2", [:], [l, r])
        }
        return y
    }

    /// B of a matrix product as nnabla's Affine weight [K, N]. A transposed initializer is stored transposed
    /// (a parameter, so training sees one weight); a computed one gets a Transpose function.
    mutating func weightMatrix(_ name: String, transposed: Bool) throws -> Variable {
        guard transposed else { return try floatVariable(name) }
        if case .constant(let t, let isInitializer) = try value(name), leaves[name] == nil {
            let s = t.shape
            let moved = t.gathered(transposedPositions(s, [1, 0]), shape: [s[1], s[0]])
            let v = try leaf(moved, name: name, trainable: isInitializer)
            leaves[name] = v
            try claim(name)
            notes.append("'\(name)' is stored transposed, [\(s[1]), \(s[0])], as nnabla's Affine weight")
            return v
        }
        let b = try floatVariable(name)
        if let codes = try transposedDequantizedMatrix(b) { return codes }
        return try emit1("Transpose", ["axes": .ints([1, 0])], [b], suffix: "transB")
    }

    mutating func matmul(_ inputs: [String]) throws -> Variable {
        guard let an = present(inputs, 0), let bn = present(inputs, 1) else { throw ONNXError.at(place, "needs A and B") }
        let x = try floatVariable(an)
        let bs = try shape(bn)
        // A product with a matrix is nnabla's Affine over the last axis; batches of products BatchMatmul.
        if bs.count == 2, x.shape.count >= 2 {
            return try emit1("Affine", ["base_axis": .int(x.shape.count - 1)], [x, try floatVariable(bn)])
        }
        let b = try floatVariable(bn)
        guard x.shape.count >= 3, b.shape.count == x.shape.count, x.shape.dropLast(2) == b.shape.dropLast(2) else {
            throw ONNXError.at(place, "only products with a 2-D B or with equal batch dimensions are supported (A \(x.shape), B \(bs))")
        }
        return try emit1("BatchMatmul", [:], [x, b])
    }

    mutating func prelu(_ inputs: [String]) throws -> Variable {
        guard let xn = present(inputs, 0), let sn = present(inputs, 1) else { throw ONNXError.at(place, "needs X and slope") }
        let x = try floatVariable(xn)
        let s = try shape(sn)
        let slope = try floatVariable(sn)
        if s.reduce(1, *) == 1 { return try emit1("PReLU", ["base_axis": .int(min(1, max(x.shape.count - 1, 0)))], [x, try reshape(slope, [])]) }
        // Before opset 7 a 1-D slope of C values is per channel (axis 1), as PyTorch exported it.
        if opset < 7, s.count == 1, x.shape.count >= 2, s[0] == x.shape[1] {
            return try emit1("PReLU", ["base_axis": .int(1)], [x, slope])
        }
        // The slope broadcasts against X from the right: it must vary along one axis only, nnabla's channel.
        guard s.count <= x.shape.count else { throw ONNXError.at(place, "slope \(s) has more dimensions than X \(x.shape)") }
        let offset = x.shape.count - s.count
        let varying = s.indices.filter { s[$0] != 1 }
        guard varying.count == 1, let k = varying.first, s[k] == x.shape[offset + k] else {
            // A slope over several axes: relu(x) + slope * min(x, 0), which is PReLU exactly.
            let positive = try emit1("ReLU", [:], [x], suffix: "positive")
            let negative = try emit1("MinimumScalar", ["val": .double(0)], [x], suffix: "negative")
            let (l, r) = try broadcastPair(negative, slope)
            let scaled = try emit1("Mul2", [:], [l, r], suffix: "scaled")
            let (p, q) = try broadcastPair(positive, scaled)
            return try emit1("Add2", [:], [p, q])
        }
        let c = s[k]
        let w = slope.parent == nil && !slope.isInput && slope.shape != [c] ? try reshapedLeaf(slope, [c]) : try reshape(slope, [c])
        return try emit1("PReLU", ["base_axis": .int(offset + k)], [x, w])
    }

    /// Input `k` as a parameter of shape `s` (a leaf stored so, a computed value reshaped).
    mutating func parameter(_ inputs: [String], _ k: Int, _ s: [Int]) throws -> Variable {
        guard let n = present(inputs, k) else { throw ONNXError.at(place, "input \(k) is missing") }
        guard try shape(n).reduce(1, *) == s.reduce(1, *) else {
            throw ONNXError.at(place, "input '\(n)' has shape \(try shape(n)), \(s.reduce(1, *)) values are needed")
        }
        let v = try floatVariable(n)
        if v.shape == s { return v }
        return v.parent == nil && !v.isInput ? try reshapedLeaf(v, s) : try reshape(v, s)
    }

    /// ONNX normalises over the axes from `axis` on: nnabla's LayerNormalization with the axes before as its
    /// batch axes, Scale and B expanded to x's trailing shape.
    mutating func layerNormalization(_ inputs: [String], _ a: ONNXAttributes) throws -> Variable {
        guard let xn = present(inputs, 0) else { throw ONNXError.at(place, "needs X") }
        let x = try floatVariable(xn)
        let r = x.shape.count
        let axis = try normalizedAxis(try a.int("axis", default: -1), rank: r)
        let ps = [Int](repeating: 1, count: axis) + Array(x.shape[axis...])
        func expanded(_ k: Int) throws -> Variable? {
            guard let n = present(inputs, k) else { return nil }
            let s = try shape(n)
            if s.reduce(1, *) == ps.reduce(1, *) { return try parameter(inputs, k, ps) }
            // A smaller Scale or B broadcasts: multiply a ones tensor of the full shape by it.
            let v = try floatVariable(n)
            let ones = try leaf(ONNXTensor(shape: ps, floats: [Float](repeating: 1, count: ps.reduce(1, *))), name: freshName("ones"), trainable: false)
            let (l, rr) = try broadcastPair(ones, v)
            return try emit1("Mul2", [:], [l, rr], suffix: "expand")
        }
        guard let gamma = try expanded(1) else { throw ONNXError.at(place, "needs Scale") }
        let beta = try expanded(2)
        var args: [String: ArgValue] = ["batch_axis": .ints(Array(0..<axis)), "eps": .double(Double(try a.float("epsilon", default: 1e-5)))]
        if beta == nil { args["no_bias"] = .bool(true) }
        return try emit1("LayerNormalization", args, [x] + (beta.map { [$0] } ?? []) + [gamma])
    }

    /// Clip as nnabla's clip_by_value writes it: MaximumScalar(min) then MinimumScalar(max); [0, 6] is ReLU6.
    mutating func clip(_ inputs: [String], _ a: ONNXAttributes) throws -> Variable {
        guard let xn = present(inputs, 0) else { throw ONNXError.at(place, "needs an input") }
        var lo: Float?, hi: Float?
        if opset < 11 {
            lo = try a.float("min")
            hi = try a.float("max")
        } else {
            func bound(_ k: Int) throws -> Float? {
                guard let n = present(inputs, k) else { return nil }
                guard let t = try known(n), t.count == 1 else {
                    throw ONNXError.at(place, "its bounds are computed by the graph: Kiln needs them known when the model is imported")
                }
                return t.floats[0]
            }
            lo = try bound(1)
            hi = try bound(2)
        }
        let x = try floatVariable(xn)
        if lo == 0 && hi == 6 { return try emit1("ReLU6", [:], [x]) }
        let useLow = lo.map { $0 > -Float.greatestFiniteMagnitude } ?? false
        let useHigh = hi.map { $0 < Float.greatestFiniteMagnitude } ?? false
        var y = x
        if useLow, let lo { y = try emit1("MaximumScalar", ["val": .double(Double(lo))], [y], suffix: useHigh ? "min" : nil) }
        if useHigh, let hi { y = try emit1("MinimumScalar", ["val": .double(Double(hi))], [y]) }
        return useLow || useHigh ? y : try emit1("Identity", [:], [x])
    }

    mutating func pad(_ inputs: [String], _ a: ONNXAttributes) throws -> Variable {
        guard let xn = present(inputs, 0) else { throw ONNXError.at(place, "needs an input") }
        let x = try floatVariable(xn)
        let r = x.shape.count
        var pads: [Int]
        var value: Float = 0
        if opset < 11 {
            guard let p = try a.ints("pads") ?? a.ints("paddings") else { throw ONNXError.at(place, "has no pads") }
            pads = p
            value = try a.float("value", default: 0)
        } else {
            guard let pn = present(inputs, 1), let t = try known(pn) else {
                throw ONNXError.at(place, "its pads are computed by the graph: Kiln needs them known when the model is imported")
            }
            pads = try t.indices("\(place) pads")
            if let cn = present(inputs, 2) {
                guard let c = try known(cn), c.count == 1 else { throw ONNXError.at(place, "constant_value must be a known scalar") }
                value = c.floats[0]
            }
            if let an = present(inputs, 3) {
                guard let t = try constant(an) else { throw ONNXError.at(place, "its axes must be known when the model is imported") }
                let axes = try t.indices("\(place) axes").map { try normalizedAxis($0, rank: r) }
                guard pads.count == 2 * axes.count else { throw ONNXError.at(place, "pads \(pads) must have two entries per axis \(axes)") }
                var full = [Int](repeating: 0, count: 2 * r)
                for (k, d) in axes.enumerated() {
                    full[d] = pads[k]
                    full[r + d] = pads[axes.count + k]
                }
                pads = full
            }
        }
        guard pads.count == 2 * r else { throw ONNXError.at(place, "pads \(pads) must have \(2 * r) entries for X \(x.shape)") }
        guard pads.allSatisfy({ $0 >= 0 }) else { throw ONNXError.at(place, "negative pads (cropping) \(pads) are not supported") }
        let modeName = try a.string("mode") ?? "constant"
        let mode: String
        switch modeName {
        case "constant": mode = "constant"
        case "reflect": mode = "reflect"
        case "edge": mode = "repeat"
        default: throw ONNXError.at(place, "mode '\(modeName)' is not supported (constant, reflect, edge)")
        }
        return try padded(x, begin: Array(pads[..<r]), end: Array(pads[r...]), mode: mode, value: value)
    }

    /// `x` padded per axis (nnabla's Pad, pairs over every axis).
    mutating func padded(_ x: Variable, begin: [Int], end: [Int], mode: String = "constant", value: Float = 0, suffix: String? = nil) throws -> Variable {
        let width = zip(begin, end).flatMap { [$0, $1] }
        return try emit1("Pad", ["pad_width": .ints(width), "mode": .string(mode), "constant_value": .double(Double(value))], [x], suffix: suffix)
    }

    // MARK: - Shapes

    mutating func split(_ x: Variable, _ inputs: [String], _ a: ONNXAttributes, outputCount: Int) throws -> [Variable] {
        let r = x.shape.count
        let axis = try normalizedAxis(try a.int("axis", default: 0), rank: r)
        let n = x.shape[axis]
        var sizes: [Int]
        if opset < 13, let s = try a.ints("split") { sizes = s }
        else if let sn = present(inputs, 1) {
            guard let t = try constant(sn) else { throw ONNXError.at(place, "its split sizes are computed by the graph") }
            sizes = try t.indices("\(place) split")
        } else {
            let parts = opset >= 18 ? try a.int("num_outputs", default: outputCount) : outputCount
            guard parts >= 1 else { throw ONNXError.at(place, "has no outputs") }
            let each = (n + parts - 1) / parts
            sizes = (0..<parts).map { min(each, max(n - $0 * each, 0)) }
        }
        guard sizes.allSatisfy({ $0 >= 0 }), sizes.reduce(0, +) == n else { throw ONNXError.at(place, "split \(sizes) does not add up to \(n)") }
        var out: [Variable] = []
        var at = 0
        for s in sizes {
            var start = [Int](repeating: 0, count: r), stop = x.shape
            start[axis] = at
            stop[axis] = at + s
            out.append(try emit1("Slice", ["start": .ints(start), "stop": .ints(stop), "step": .ints([Int](repeating: 1, count: r))], [x],
                                 suffix: "split"))
            at += s
        }
        return out
    }
}
