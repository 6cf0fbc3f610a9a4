import KilnCore
import KilnGraph

/// Folding at import time: a node whose inputs are all known (initializers, Constant nodes, values given for
/// inputs, the static shape of any tensor) is computed here, so the chains exporters write to compute a
/// Reshape's target (Shape, Gather, Unsqueeze, Concat, ...) never reach the plan.
///
/// Contract: returns the node's outputs when it folded it, nil when the node must be computed by the graph.
/// Only operators whose result is exact in Int64 or a copy of float values fold here.
extension ONNXGraphBuilder {
    static let foldable: Set<String> = [
        "Constant", "Shape", "Size", "Identity", "Cast", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Concat",
        "Gather", "Slice", "Add", "Sub", "Mul", "Div", "Neg", "ConstantOfShape", "Range", "Transpose", "Dropout",
        "QuantizeLinear", "DequantizeLinear", "Clip", "Mod",
    ]

    func present(_ inputs: [String], _ k: Int) -> String? {
        k < inputs.count && !inputs[k].isEmpty ? inputs[k] : nil
    }

    mutating func fold(_ op: String, _ inputs: [String], _ a: ONNXAttributes) throws -> [ONNXTensor]? {
        guard Self.foldable.contains(op) else { return nil }
        switch op {
        case "Constant": return [try constantNode(a)]
        case "Shape":
            guard let x = present(inputs, 0) else { throw ONNXError.at(place, "has no input") }
            let s = try shape(x)
            let r = s.count
            // Opset 15's start and end select a range of the dimensions.
            func clamp(_ v: Int) -> Int { min(max(v < 0 ? v + r : v, 0), r) }
            let start = clamp(try a.int("start", default: 0)), end = clamp(try a.int("end", default: r))
            let dims = start < end ? Array(s[start..<end]) : []
            return [ONNXTensor(shape: [dims.count], ints: dims.map { Int64($0) })]
        case "Size":
            guard let x = present(inputs, 0) else { throw ONNXError.at(place, "has no input") }
            return [ONNXTensor(shape: [], ints: [Int64(try Shapes.count(try shape(x)))])]
        case "ConstantOfShape":
            guard let s = present(inputs, 0), let st = try constant(s) else { return nil }
            let dims = try st.indices("\(place) shape", in: 0...Int64(Int32.max))
            let n = try Shapes.count(dims, context: place)
            let fill = try a.tensor("value") ?? ONNXTensor(shape: [1], floats: [0])
            guard fill.count == 1 else { throw ONNXError.at(place, "attribute 'value' must hold one element") }
            try checkFoldSize(n)
            switch fill.values {
            case .floats(let f): return [ONNXTensor(shape: dims, floats: [Float](repeating: f[0], count: n))]
            case .ints(let i): return [ONNXTensor(shape: dims, ints: [Int64](repeating: i[0], count: n))]
            }
        case "DequantizeLinear":
            // 8-bit codes stored in the model (a QDQ model's weights) stay codes read by a DequantizeLinear, so that
            // quantized plans multiply them as integers; other known tensors fold.
            if let x = present(inputs, 0), case .constant(let t, true)? = values[x],
               t.elementType == ONNXDataType.int8.rawValue || t.elementType == ONNXDataType.uint8.rawValue {
                return nil
            }
        default: break
        }
        // The rest fold only when every present input is known (Range also from the values a run feeds: its
        // output's length depends on them).
        var known: [ONNXTensor?] = []
        for name in inputs {
            if name.isEmpty { known.append(nil); continue }
            guard let t = op == "Range" ? try self.known(name) : try constant(name) else { return nil }
            known.append(t)
        }
        guard let x = known.first ?? nil else { return nil }
        switch op {
        case "Identity", "Dropout": return [x]
        case "Cast":
            let to = try a.int("to", default: 1)
            switch ONNXDataType(rawValue: Int32(clamping: to)) {
            case .float?, .double?, .float16?: return [ONNXTensor(shape: x.shape, floats: x.floats)]
            case .int64?, .int32?, .int16?, .int8?, .uint8?, .uint16?, .uint32?:
                switch x.values {
                case .ints: return [x]
                case .floats(let f):
                    return [ONNXTensor(shape: x.shape, ints: try f.map {
                        guard $0.isFinite, abs($0) < 9.2e18 else { throw ONNXError.at(place, "cannot cast \($0) to an integer") }
                        return Int64($0.rounded(.towardZero))
                    })]
                }
            case .bool?:
                return [ONNXTensor(shape: x.shape, ints: x.floats.map { $0 != 0 ? 1 : 0 })]
            default: throw ONNXError.at(place, "cast to \(ONNXDataType.describe(Int32(clamping: to))) is not supported")
            }
        case "Reshape":
            return [x.reshaped(try reshapeTarget(x.shape, inputs, known, a))]
        case "Flatten":
            return [x.reshaped(try flattenShape(x.shape, a))]
        case "Squeeze":
            return [x.reshaped(try squeezeShape(x.shape, known, a))]
        case "Unsqueeze":
            return [x.reshaped(try unsqueezeShape(x.shape, known, a))]
        case "Transpose":
            let perm = try transposePerm(x.shape.count, a)
            let outShape = perm.map { x.shape[$0] }
            return [x.gathered(transposedPositions(x.shape, perm), shape: outShape)]
        case "Concat":
            let parts = known.compactMap { $0 }
            guard let r = parts.first?.shape.count, r > 0 else { throw ONNXError.at(place, "cannot concatenate scalars") }
            let axis = try normalizedAxis(try a.int("axis") ?? (opset < 4 ? 1 : 0), rank: r)
            var outShape = parts[0].shape
            outShape[axis] = 0
            for p in parts {
                guard p.shape.count == r, p.isInteger == parts[0].isInteger else { throw ONNXError.at(place, "inputs do not match") }
                for d in 0..<r where d != axis && p.shape[d] != outShape[d] { throw ONNXError.at(place, "input shapes \(parts.map { $0.shape }) do not match") }
                outShape[axis] += p.shape[axis]
            }
            let outer = outShape[..<axis].reduce(1, *)
            var f: [Float] = [], i: [Int64] = []
            for o in 0..<outer {
                for p in parts {
                    let inner = p.shape[axis...].reduce(1, *)
                    switch p.values {
                    case .floats(let v): f += v[(o * inner)..<((o + 1) * inner)]
                    case .ints(let v): i += v[(o * inner)..<((o + 1) * inner)]
                    }
                }
            }
            return [parts[0].isInteger ? ONNXTensor(shape: outShape, ints: i) : ONNXTensor(shape: outShape, floats: f)]
        case "Gather":
            guard known.count >= 2, let idx = known[1] else { throw ONNXError.at(place, "needs data and indices") }
            let r = x.shape.count
            guard r > 0 else { throw ONNXError.at(place, "cannot gather from a scalar") }
            let axis = try normalizedAxis(try a.int("axis", default: 0), rank: r)
            let n = x.shape[axis]
            let ids = try idx.indices("\(place) indices").map { i -> Int in
                guard i >= -n, i < n else { throw ONNXError.at(place, "index \(i) is out of range for dimension \(n)") }
                return i < 0 ? i + n : i
            }
            let outShape = Array(x.shape[..<axis]) + idx.shape + Array(x.shape[(axis + 1)...])
            let outer = x.shape[..<axis].reduce(1, *), inner = x.shape[(axis + 1)...].reduce(1, *)
            try checkFoldSize(outer * ids.count * inner)
            var pos: [Int] = []
            for o in 0..<outer { for i in ids { for k in 0..<inner { pos.append((o * n + i) * inner + k) } } }
            return [x.gathered(pos, shape: outShape)]
        case "Slice":
            let (start, stop, step) = try sliceArguments(x.shape, inputs, known, a)
            let spec = KilnGraph.Slice(start: start, stop: stop, step: step)
            let resolved = try spec.resolve(x.shape)
            let outShape = resolved.map { $0.length }
            try checkFoldSize(try Shapes.count(outShape))
            var pos: [Int] = [0]
            var acc = 1
            var strides = [Int](repeating: 1, count: x.shape.count)
            for d in stride(from: x.shape.count - 1, through: 0, by: -1) { strides[d] = acc; acc *= x.shape[d] }
            for (d, r) in resolved.enumerated() {
                pos = pos.flatMap { p in (0..<r.length).map { p + (r.first + $0 * r.step) * strides[d] } }
            }
            return [x.gathered(pos, shape: outShape)]
        case "Clip":
            // A weight clipped before QuantizeLinear (Kiln's fixed-point export) folds with it.
            guard opset >= 11, !x.isInteger else { return nil }
            let lo = known.count > 1 ? known[1]?.floats.first : nil, hi = known.count > 2 ? known[2]?.floats.first : nil
            return [ONNXTensor(shape: x.shape, floats: x.floats.map { v in min(max(v, lo ?? -.infinity), hi ?? .infinity) })]
        case "QuantizeLinear", "DequantizeLinear":
            guard known.count >= 2, let scale = known[1] else { throw ONNXError.at(place, "needs a scale") }
            let zero = known.count >= 3 ? known[2] : nil
            return [try quantizeLinear(op == "QuantizeLinear", x, scale, zero, a)]
        case "Neg":
            switch x.values {
            case .floats(let f): return [ONNXTensor(shape: x.shape, floats: f.map { -$0 })]
            case .ints(let v): return [ONNXTensor(shape: x.shape, ints: try v.map {
                guard $0 != Int64.min else { throw ONNXError.at(place, "overflows") }
                return -$0
            })]
            }
        case "Add", "Sub", "Mul", "Div", "Mod":
            guard known.count == 2, let y = known[1] else { throw ONNXError.at(place, "needs two inputs") }
            // Only shape arithmetic (integers) folds: float arithmetic on weights stays in the graph, where it
            // is computed as the model says.
            guard x.isInteger, y.isInteger else { return nil }
            return [try integerArithmetic(op, x, y, fmod: try a.int("fmod", default: 0) != 0)]
        case "Range":
            guard known.count == 3, let l = known[1], let d = known[2], x.count == 1, l.count == 1, d.count == 1 else {
                throw ONNXError.at(place, "needs scalar start, limit and delta")
            }
            guard x.isInteger, l.isInteger, d.isInteger else {
                // Float ranges as ONNX defines them: start + i * delta, n = ceil((limit - start) / delta).
                let s0 = x.floats[0], s1 = l.floats[0], st = d.floats[0]
                guard st != 0, s0.isFinite, s1.isFinite, st.isFinite else { throw ONNXError.at(place, "needs finite start, limit and a non-zero delta") }
                let n = try rangeCount(Double((s1 - s0) / st))
                return [ONNXTensor(shape: [n], floats: (0..<n).map { s0 + Float($0) * st })]
            }
            let s0 = try x.ints(place)[0], s1 = try l.ints(place)[0], st = try d.ints(place)[0]
            guard st != 0 else { throw ONNXError.at(place, "delta is 0") }
            let n = try rangeCount((Double(s1) - Double(s0)) / Double(st))
            return [ONNXTensor(shape: [n], ints: (0..<n).map { s0 + Int64($0) * st })]
        default: return nil
        }
    }

    /// Range's element count, ceil(steps), checked before it becomes an Int.
    func rangeCount(_ steps: Double) throws -> Int {
        let q = steps.rounded(.up)
        guard q.isFinite, q <= Double(Shapes.maxElements) else { throw ONNXError.at(place, "would make \(steps) elements") }
        let n = max(Int(q), 0)
        try checkFoldSize(n)
        return n
    }

    /// Folding builds arrays in memory: bounded by Kiln's element limit and the memory budget.
    func checkFoldSize(_ n: Int) throws {
        let budget = Context.current.memoryBudget ?? Int.max
        guard n <= Shapes.maxElements, n <= budget / 8 else {
            throw ONNXError.at(place, "would fold a constant of \(n) elements, beyond the memory budget")
        }
    }

    func constantNode(_ a: ONNXAttributes) throws -> ONNXTensor {
        if let t = try a.tensor("value") { return t }
        if let f = try a.float("value_float") { return ONNXTensor(shape: [], floats: [f]) }
        if let f = try a.floats("value_floats") { return ONNXTensor(shape: [f.count], floats: f) }
        if let i = try a.int("value_int") { return ONNXTensor(shape: [], ints: [Int64(i)]) }
        if let i = try a.ints("value_ints") { return ONNXTensor(shape: [i.count], ints: i.map { Int64($0) }) }
        throw ONNXError.at(place, "has no value Kiln reads (value, value_float(s), value_int(s); sparse and string values are not supported)")
    }

    func normalizedAxis(_ axis: Int, rank: Int) throws -> Int {
        guard axis >= -rank, axis < rank else { throw ONNXError.at(place, "axis \(axis) is out of range for rank \(rank)") }
        return axis < 0 ? axis + rank : axis
    }

    /// Reshape's target: from the second input (opset 5 on) or the `shape` attribute; 0 copies the input's
    /// dimension unless `allowzero`, and one -1 takes what is left.
    func reshapeTarget(_ inShape: [Int], _ inputs: [String], _ known: [ONNXTensor?], _ a: ONNXAttributes) throws -> [Int] {
        var spec: [Int]
        if opset < 5 {
            guard let s = try a.ints("shape") else { throw ONNXError.at(place, "has no 'shape' attribute") }
            spec = s
        } else {
            guard known.count >= 2, let s = known[1] else {
                throw ONNXError.at(place, "its shape input is computed by the graph: Kiln needs shapes known when the model is imported (give the input's value)")
            }
            spec = try s.indices("\(place) shape")
        }
        let allowZero = try a.int("allowzero", default: 0) != 0
        let total = try Shapes.count(inShape, context: place)
        var infer: Int?
        for (k, d) in spec.enumerated() {
            if d == 0 && !allowZero {
                guard k < inShape.count else { throw ONNXError.at(place, "shape \(spec) copies dimension \(k), which the input \(inShape) lacks") }
                spec[k] = inShape[k]
            } else if d == -1 {
                guard infer == nil else { throw ONNXError.at(place, "shape \(spec) has more than one -1") }
                infer = k
            } else if d < 0 {
                throw ONNXError.at(place, "shape \(spec) has a negative dimension")
            }
        }
        if let k = infer {
            let rest = try Shapes.count(spec.enumerated().filter { $0.offset != k }.map { $0.element }, context: place)
            guard rest > 0, total % rest == 0 else { throw ONNXError.at(place, "cannot reshape \(inShape) to \(spec)") }
            spec[k] = total / rest
        }
        guard try Shapes.count(spec, context: place) == total else { throw ONNXError.at(place, "cannot reshape \(inShape) to \(spec)") }
        return spec
    }

    func flattenShape(_ s: [Int], _ a: ONNXAttributes) throws -> [Int] {
        let axis = try a.int("axis", default: 1)
        let r = s.count
        guard axis >= -r, axis <= r else { throw ONNXError.at(place, "axis \(axis) is out of range for rank \(r)") }
        let k = axis < 0 ? axis + r : axis
        return [s[..<k].reduce(1, *), s[k...].reduce(1, *)]
    }

    /// Axes from the attribute (before opset 13) or the second input.
    func axesArgument(_ known: [ONNXTensor?], _ a: ONNXAttributes, inputFrom version: Int) throws -> [Int]? {
        if opset < version { return try a.ints("axes") }
        if known.count >= 2, let t = known[1] { return try t.indices("\(place) axes") }
        return nil
    }

    func squeezeShape(_ s: [Int], _ known: [ONNXTensor?], _ a: ONNXAttributes) throws -> [Int] {
        guard let axes = try axesArgument(known, a, inputFrom: 13) else { return s.filter { $0 != 1 } }
        let drop = Set(try axes.map { try normalizedAxis($0, rank: s.count) })
        for d in drop where s[d] != 1 { throw ONNXError.at(place, "cannot squeeze dimension \(d) of \(s)") }
        return s.enumerated().filter { !drop.contains($0.offset) }.map { $0.element }
    }

    func unsqueezeShape(_ s: [Int], _ known: [ONNXTensor?], _ a: ONNXAttributes) throws -> [Int] {
        guard let axes = try axesArgument(known, a, inputFrom: 13) else { throw ONNXError.at(place, "has no axes") }
        let r = s.count + axes.count
        let add = Set(try axes.map { try normalizedAxis($0, rank: r) })
        guard add.count == axes.count else { throw ONNXError.at(place, "axes \(axes) repeat an axis") }
        var out: [Int] = []
        var it = s.makeIterator()
        for d in 0..<r { out.append(add.contains(d) ? 1 : (it.next() ?? 1)) }
        return out
    }

    func transposePerm(_ r: Int, _ a: ONNXAttributes) throws -> [Int] {
        let perm = try a.ints("perm") ?? Array((0..<r).reversed())
        guard perm.count == r, Set(perm) == Set(0..<r) else { throw ONNXError.at(place, "perm \(perm) is not a permutation of \(r) axes") }
        return perm
    }

    func transposedPositions(_ s: [Int], _ perm: [Int]) -> [Int] {
        var strides = [Int](repeating: 1, count: s.count)
        var acc = 1
        for d in stride(from: s.count - 1, through: 0, by: -1) { strides[d] = acc; acc *= s[d] }
        var pos: [Int] = [0]
        for d in perm { pos = pos.flatMap { p in (0..<s[d]).map { p + $0 * strides[d] } } }
        return pos
    }

    /// nnabla's Slice arguments (start, stop, step over every axis, `Slice.none` for Python's None) for an
    /// ONNX Slice: starts/ends/axes as attributes before opset 10, as inputs (with steps) from then on.
    func sliceArguments(_ s: [Int], _ inputs: [String], _ known: [ONNXTensor?], _ a: ONNXAttributes) throws -> ([Int], [Int], [Int]) {
        let r = s.count
        var starts: [Int], ends: [Int], axes: [Int]?, steps: [Int]?
        if opset < 10 {
            guard let st = try a.ints("starts"), let en = try a.ints("ends") else { throw ONNXError.at(place, "needs starts and ends") }
            starts = st
            ends = en
            axes = try a.ints("axes")
        } else {
            func input(_ k: Int) throws -> [Int]? {
                guard k < inputs.count, !inputs[k].isEmpty else { return nil }
                guard k < known.count, let t = known[k] else {
                    throw ONNXError.at(place, "input \(k) is computed by the graph: Kiln needs slice bounds known when the model is imported")
                }
                return try t.indices("\(place) input \(k)", in: Int64.min...Int64.max).map { $0 }
            }
            guard let st = try input(1), let en = try input(2) else { throw ONNXError.at(place, "needs starts and ends") }
            starts = st
            ends = en
            axes = try input(3)
            steps = try input(4)
        }
        let ax = try (axes ?? Array(0..<starts.count)).map { try normalizedAxis($0, rank: r) }
        let st = steps ?? [Int](repeating: 1, count: starts.count)
        guard ends.count == starts.count, ax.count == starts.count, st.count == starts.count, Set(ax).count == ax.count else {
            throw ONNXError.at(place, "starts, ends, axes and steps must have one entry per sliced axis, each axis once")
        }
        var start = [Int](repeating: 0, count: r), stop = s, step = [Int](repeating: 1, count: r)
        for (k, d) in ax.enumerated() {
            let n = s[d], sp = st[k]
            guard sp != 0 else { throw ONNXError.at(place, "step is 0") }
            // ONNX clamps the (negative-adjusted) bounds; then they are plain indices, and a negative step's
            // end before the first element is Python's None.
            var b = starts[k] < 0 ? starts[k] + n : starts[k]
            var e = ends[k] < 0 ? ends[k] + n : ends[k]
            if sp > 0 {
                b = min(max(b, 0), n)
                e = min(max(e, 0), n)
            } else {
                b = min(max(b, 0), n - 1)
                e = min(max(e, -1), n - 1)
            }
            start[d] = b
            stop[d] = sp < 0 && e < 0 ? KilnGraph.Slice.none : e
            step[d] = sp
        }
        return (start, stop, step)
    }

    /// QuantizeLinear (`saturate(round_half_even(x / scale) + zero_point)`, to the zero point's type, uint8 by
    /// default) or DequantizeLinear (`(x - zero_point) * scale`) of known tensors, per tensor or per `axis`.
    func quantizeLinear(_ quantize: Bool, _ x: ONNXTensor, _ scale: ONNXTensor, _ zero: ONNXTensor?, _ a: ONNXAttributes) throws -> ONNXTensor {
        let r = x.shape.count
        let axis = scale.count == 1 ? 0 : try normalizedAxis(try a.int("axis", default: 1), rank: r)
        guard scale.count == 1 || (r > 0 && scale.count == x.shape[axis]) else {
            throw ONNXError.at(place, "scale of \(scale.count) values does not match X \(x.shape)")
        }
        let zp = try zero?.ints(place) ?? [0]
        guard zp.count == scale.count || zp.count == 1 else { throw ONNXError.at(place, "zero point does not match the scale") }
        let inner = scale.count == 1 ? 1 : x.shape[(axis + 1)...].reduce(1, *)
        let s = scale.floats
        func channel(_ i: Int) -> Int { scale.count == 1 ? 0 : (i / inner) % scale.count }
        if quantize {
            let type = zero?.elementType ?? ONNXDataType.uint8.rawValue
            let range: ClosedRange<Float> = type == ONNXDataType.int8.rawValue ? -128...127 : type == ONNXDataType.uint8.rawValue ? 0...255 : -Float.infinity...Float.infinity
            guard range.lowerBound.isFinite else { throw ONNXError.at(place, "quantizing to \(ONNXDataType.describe(type)) is not supported") }
            let f = x.floats
            var out = ONNXTensor(shape: x.shape, ints: try f.indices.map { i in
                let c = channel(i)
                let q = (f[i] / s[c]).rounded(.toNearestOrEven) + Float(zp[zp.count == 1 ? 0 : c])
                guard q.isFinite || q.isInfinite else { throw ONNXError.at(place, "quantizes NaN") }
                return Int64(min(max(q, range.lowerBound), range.upperBound))
            })
            out.elementType = type
            return out
        }
        let v = try x.ints(place)
        return ONNXTensor(shape: x.shape, floats: v.indices.map { i in
            let c = channel(i)
            return Float(v[i] - zp[zp.count == 1 ? 0 : c]) * s[c]
        })
    }

    func integerArithmetic(_ op: String, _ x: ONNXTensor, _ y: ONNXTensor, fmod: Bool = false) throws -> ONNXTensor {
        let a = try x.ints(place), b = try y.ints(place)
        // Same shape, or one side a single element (the forms shape arithmetic uses).
        let shape: [Int]
        if x.shape == y.shape { shape = x.shape }
        else if y.count == 1 { shape = x.shape.count >= y.shape.count ? x.shape : y.shape }
        else if x.count == 1 { shape = y.shape.count >= x.shape.count ? y.shape : x.shape }
        else { throw ONNXError.at(place, "folding broadcasts only a single element, got \(x.shape) and \(y.shape)") }
        let n = max(a.count, b.count)
        var out: [Int64] = []
        for i in 0..<n {
            let p = a[a.count == 1 ? 0 : i], q = b[b.count == 1 ? 0 : i]
            let (v, o): (Int64, Bool)
            switch op {
            case "Add": (v, o) = p.addingReportingOverflow(q)
            case "Sub": (v, o) = p.subtractingReportingOverflow(q)
            case "Mul": (v, o) = p.multipliedReportingOverflow(by: q)
            case "Mod":
                // ONNX's integer Mod takes the divisor's sign (Python's %), fmod=1 the dividend's (C's).
                guard q != 0 else { throw ONNXError.at(place, "takes a remainder by zero") }
                let (r, ro) = p.remainderReportingOverflow(dividingBy: q)
                (v, o) = (fmod || r == 0 || (r < 0) == (q < 0) ? r : r + q, ro)
            default:
                guard q != 0 else { throw ONNXError.at(place, "divides by zero") }
                (v, o) = p.dividedReportingOverflow(by: q)
            }
            guard !o else { throw ONNXError.at(place, "overflows int64") }
            out.append(v)
        }
        return ONNXTensor(shape: shape, ints: out)
    }
}
