import KilnCore
import KilnGraph

/// ONNX's quantization operators as nnabla's QuantizeLinear and DequantizeLinear: QDQ pairs on computed values,
/// DequantizeLinear of 8-bit initializers (weights stay codes), and QLinearConv / QLinearMatMul as the product
/// between a DequantizeLinear of each operand and a QuantizeLinear of the result. Kiln's quantized plans run these
/// patterns on integer kernels (`Quantization`). Scales and zero points must be constants; they become constant
/// leaves shaped to broadcast against x (one value, or one per `axis`).
extension ONNXGraphBuilder {
    /// QuantizeLinear (`saturate(round_half_even(x / scale) + zero_point)`, to the zero point's type: uint8 when
    /// absent) or DequantizeLinear (`(x - zero_point) * scale`) of a computed tensor. `axis` overrides the attribute.
    mutating func linearQuantizer(quantize: Bool, _ x: Variable, scale sn: String, zeroPoint zn: String?,
                                  _ a: ONNXAttributes, axis fixedAxis: Int? = nil, suffix: String? = nil) throws -> Variable {
        if try a.int("block_size", default: 0) != 0 { throw ONNXError.at(place, "blocked quantization (block_size) is not supported") }
        guard let scale = try known(sn) else { throw ONNXError.at(place, "its scale '\(sn)' must be a constant") }
        let zero = try zn.map { n -> ONNXTensor in
            guard let t = try known(n) else { throw ONNXError.at(place, "its zero point '\(n)' must be a constant") }
            return t
        }
        // The codes' type: the zero point's, else opset 21's output_dtype, else uint8.
        var type = zero?.elementType ?? 0
        if type == 0 { type = Int32(clamping: try a.int("output_dtype", default: Int(ONNXDataType.uint8.rawValue))) }
        if quantize, type != ONNXDataType.uint8.rawValue, type != ONNXDataType.int8.rawValue {
            throw ONNXError.at(place, "quantizing to \(ONNXDataType.describe(type)) is not supported (uint8 and int8 are)")
        }
        let r = x.shape.count
        let perAxis = scale.count != 1
        var shape = [Int](repeating: 1, count: r)
        if perAxis {
            let axis = try fixedAxis ?? normalizedAxis(try a.int("axis", default: 1), rank: r)
            guard scale.shape.count == 1, r > 0, scale.count == x.shape[axis] else {
                throw ONNXError.at(place, "scale of shape \(scale.shape) is neither one value nor one per element of axis \(axis) of \(x.shape)")
            }
            shape[axis] = scale.count
        }
        let s = scale.floats
        guard s.allSatisfy({ $0.isFinite && $0 > 0 }) else { throw ONNXError.at(place, "its scale must be positive and finite") }
        let z = try zero?.ints(place) ?? [0]
        guard z.count == scale.count || z.count == 1 else {
            throw ONNXError.at(place, "zero point of \(z.count) values does not match the scale's \(scale.count)")
        }
        let zFloats = (z.count == scale.count ? z : [Int64](repeating: z[0], count: scale.count)).map { Float($0) }
        let scaleLeaf = try quantizerLeaf(sn, ONNXTensor(shape: shape, floats: s))
        let zeroLeaf = try quantizerLeaf(zn ?? "\(sn)/zero_point", ONNXTensor(shape: shape, floats: zFloats))
        if quantize {
            let dtype = type == ONNXDataType.int8.rawValue ? 1 : 2
            return try emit1("QuantizeLinear", ["round_mode": .string("HALF_TO_EVEN"), "narrow_range": .bool(false),
                                                "dtype": .int(dtype)], [x, scaleLeaf, zeroLeaf], suffix: suffix)
        }
        return try emit1("DequantizeLinear", [:], [x, scaleLeaf, zeroLeaf], suffix: suffix)
    }

    /// A constant leaf for a scale or zero point, one per name and shape.
    mutating func quantizerLeaf(_ name: String, _ t: ONNXTensor) throws -> Variable {
        let key = "\(name)|\(t.shape)"
        if let v = quantizerLeaves[key] { return v }
        let taken = names.contains(name)
        let v = try leaf(t, name: taken ? freshName("\(name)") : name, trainable: false)
        if !taken { try claim(name) }
        quantizerLeaves[key] = v
        return v
    }

    /// QLinearConv (x, x_scale, x_zero_point, w, w_scale, w_zero_point, y_scale, y_zero_point, B) and QLinearMatMul
    /// (a, a_scale, a_zero_point, b, b_scale, b_zero_point, y_scale, y_zero_point): the float product of the
    /// dequantized operands, plus B (int32 at scale x_scale * w_scale), quantized to y's grid.
    mutating func qlinear(_ op: String, _ inputs: [String], _ a: ONNXAttributes) throws -> Variable {
        guard [0, 1, 3, 4, 6].allSatisfy({ present(inputs, $0) != nil }) else {
            throw ONNXError.at(place, "needs its operands and the scales of both and of the result")
        }
        let none = ONNXAttributes(place: place)
        func name(_ k: Int) -> String? { present(inputs, k) }
        let xd = try linearQuantizer(quantize: false, try floatVariable(inputs[0]), scale: inputs[1], zeroPoint: name(2), none,
                                     suffix: "x_dequantized")
        let isConv = op == "QLinearConv"
        // A weight's scale runs along its output axis: a convolution's maps (0), a matrix's columns (1).
        let w = try floatVariable(inputs[3])
        let wd = try linearQuantizer(quantize: false, w, scale: inputs[4], zeroPoint: name(5), none,
                                     axis: isConv ? 0 : max(w.shape.count - 1, 0), suffix: "w_dequantized")
        let xName = freshName("x_dequantized_value"), wName = freshName("w_dequantized_value")
        values[xName] = .variable(xd)
        values[wName] = .variable(wd)
        var product = [xName, wName]
        if isConv, let bn = name(8) {
            // The int32 bias at scale x_scale * w_scale (per map), as floats.
            guard let b = try known(bn), let xs = try known(inputs[1]), let ws = try known(inputs[4]) else {
                throw ONNXError.at(place, "its bias and scales must be constants")
            }
            let bias = try b.ints(place), xScale = xs.floats, wScale = ws.floats
            guard xScale.count == 1, wScale.count == 1 || wScale.count == bias.count else {
                throw ONNXError.at(place, "bias of \(bias.count) values does not match the scales")
            }
            let floats = bias.indices.map { Float(bias[$0]) * (xScale[0] * wScale[wScale.count == 1 ? 0 : $0]) }
            let bName = freshName("bias_dequantized")
            values[bName] = .constant(ONNXTensor(shape: b.shape, floats: floats), initializer: false)
            product.append(bName)
        }
        let y = isConv ? try convolution(product, a) : try matmul(product)
        if y.name.isEmpty { y.name = freshName("product") }
        return try linearQuantizer(quantize: true, y, scale: inputs[6], zeroPoint: name(7), none)
    }

    /// A DequantizeLinear of constant codes transposed as a matrix (Gemm's transB): the codes, scales and zero points
    /// moved, so the product still reads the codes directly. Nil for any other value.
    mutating func transposedDequantizedMatrix(_ v: Variable) throws -> Variable? {
        guard let dq = v.parent, dq.function is DequantizeLinear, v.shape.count == 2,
              dq.inputs.allSatisfy({ $0.parent == nil && !$0.needGrad }) else { return nil }
        let codes = dq.inputs[0], s = codes.shape
        let transposed = ONNXTensor(shape: s, floats: codes.d).gathered(transposedPositions(s, [1, 0]), shape: [s[1], s[0]])
        let codesT = try leaf(transposed, name: freshName("codes_transposed"), trainable: false)
        // Scale and zero point vary along one axis at most: transposing moves that axis, not their order.
        func reversed(_ u: Variable, _ suffix: String) throws -> Variable {
            try leaf(ONNXTensor(shape: u.shape.reversed(), floats: u.d), name: freshName(suffix), trainable: false)
        }
        return try emit1("DequantizeLinear", [:], [codesT, try reversed(dq.inputs[1], "scale_transposed"),
                                                   try reversed(dq.inputs[2], "zero_point_transposed")], suffix: "transB")
    }
}
