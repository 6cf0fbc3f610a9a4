import KilnCore
import KilnKernels

/// Reshape, Transpose, Concatenate, Split, Slice (and Pad, Gather, in their own files).
///
/// They move elements without arithmetic, so they accept float32 and int32 tensors (labels can be reshaped
/// or sliced); gradients are float32. None of their backward kernels reads a value: each is the reverse copy.
public enum ShapeFunctions {
    public static let all: [any Function.Type] = [
        Reshape.self, Transpose.self, Concatenate.self, Split.self, Slice.self, Pad.self, Gather.self,
    ]
}

/// Shape ops copy 4-byte elements: float32 or int32.
private func checkMovable(_ t: TensorType, _ f: String, _ what: String) throws {
    guard t.dtype == .float32 || t.dtype == .int32 else {
        throw KilnError.invalidFunction(function: f, reason: "\(what) must be float32 or int32, got \(t)")
    }
}

/// nnabla's `Reshape(shape, inplace=true)`: the same elements in row-major order under a new shape. One
/// entry of `shape` may be -1 (inferred). Kiln copies (the planner does not alias buffers yet); `inplace`
/// is accepted and recorded only.
public struct Reshape: Function {
    public static let typeName = "Reshape"
    public var shape: [Int]
    public var inplace: Bool

    public init(shape: [Int], inplace: Bool = true) {
        self.shape = shape
        self.inplace = inplace
    }

    public init(arguments a: inout ArgReader) throws {
        guard let s = try a.intsOrNil("shape") else {
            throw KilnError.invalidFunction(function: Self.typeName, reason: "argument 'shape' is required")
        }
        shape = s
        inplace = try a.bool("inplace", default: true)
    }

    public var arguments: [(String, ArgValue)] { [("shape", .ints(shape)), ("inplace", .bool(inplace))] }

    /// The target shape with -1 resolved for an input of `count` elements.
    func resolved(count: Int, inputShape: [Int]) throws -> [Int] {
        var out = shape
        var known = 1
        var infer: Int? = nil
        for (i, d) in shape.enumerated() {
            if d == -1 {
                guard infer == nil else { throw error("shape \(shape) has more than one -1") }
                infer = i
            } else if d < 0 {
                throw error("shape \(shape) has a negative dimension \(d)")
            } else {
                let (p, o) = known.multipliedReportingOverflow(by: d)
                guard !o else { throw error("shape \(shape) has too many elements") }
                known = p
            }
        }
        if let i = infer {
            guard known > 0, count % known == 0 else {
                throw error("cannot reshape \(inputShape) (\(count) elements) to \(shape): the -1 cannot be inferred")
            }
            out[i] = count / known
        } else if known != count {
            throw error("cannot reshape \(inputShape) (\(count) elements) to \(shape) (\(known) elements)")
        }
        return out
    }

    public func outputTypes(_ inputs: [TensorType]) throws -> [TensorType] {
        try Check.count(inputs, 1, Self.typeName)
        try checkMovable(inputs[0], Self.typeName, "x")
        return [TensorType(try resolved(count: inputs[0].count, inputShape: inputs[0].shape), inputs[0].dtype)]
    }

    public func backwardReads(inputCount: Int, outputCount: Int) -> (inputs: [Bool], outputs: [Bool]) {
        ([false], [false])
    }

    public func makeForward(_ b: ForwardBinding) throws -> Kernel {
        let x = b.inputs[0].raw, y = b.outputs[0].raw, bytes = b.inputs[0].type.byteCount
        return { if x != y { y.copyMemory(from: x, byteCount: bytes) } }
    }

    public func makeBackward(_ b: BackwardBinding) throws -> Kernel {
        guard let dx = b.inputGrads[0]?.f else { return {} }
        let dy = b.outputGrads[0].f, n = b.outputGrads[0].count, acc = b.accumulate[0]
        return { Elementwise.store(n, dy, dx, accumulate: acc) }
    }
}

/// nnabla's `Transpose(axes)`: `y = numpy.transpose(x, axes)`; `axes` is a permutation of the input's axes
/// (negative entries count from the end).
public struct Transpose: Function {
    public static let typeName = "Transpose"
    public var axes: [Int]

    public init(axes: [Int]) { self.axes = axes }

    public init(arguments a: inout ArgReader) throws {
        guard let v = try a.intsOrNil("axes") else {
            throw KilnError.invalidFunction(function: Self.typeName, reason: "argument 'axes' is required")
        }
        axes = v
    }

    public var arguments: [(String, ArgValue)] { [("axes", .ints(axes))] }

    func permutation(rank: Int) throws -> [Int] {
        guard axes.count == rank else {
            throw error("axes \(axes) must have one entry per input axis (rank \(rank))")
        }
        var seen = [Bool](repeating: false, count: rank)
        var perm: [Int] = []
        for a in axes {
            let r = a < 0 ? a + rank : a
            guard r >= 0, r < rank, !seen[r] else {
                throw error("axes \(axes) is not a permutation of the \(rank) input axes")
            }
            seen[r] = true
            perm.append(r)
        }
        return perm
    }

    public func outputTypes(_ inputs: [TensorType]) throws -> [TensorType] {
        try Check.count(inputs, 1, Self.typeName)
        try checkMovable(inputs[0], Self.typeName, "x")
        let perm = try permutation(rank: inputs[0].rank)
        return [TensorType(perm.map { inputs[0].shape[$0] }, inputs[0].dtype)]
    }

    public func backwardReads(inputCount: Int, outputCount: Int) -> (inputs: [Bool], outputs: [Bool]) {
        ([false], [false])
    }

    /// Output shape, input strides seen along the output axes, and the output's own strides.
    private func views(_ inShape: [Int]) throws -> (shape: [Int], src: [Int], dst: [Int]) {
        let perm = try permutation(rank: inShape.count)
        let inStrides = Shapes.strides(inShape)
        let outShape = perm.map { inShape[$0] }
        return (outShape, perm.map { inStrides[$0] }, Shapes.strides(outShape))
    }

    public func makeForward(_ b: ForwardBinding) throws -> Kernel {
        let v = try views(b.inputs[0].shape)
        let plan = StridedCopy(shape: v.shape, src: v.src, dst: v.dst)
        let x = b.inputs[0].raw, y = b.outputs[0].raw
        return { plan.copy(x, y) }
    }

    public func makeBackward(_ b: BackwardBinding) throws -> Kernel {
        guard let dx = b.inputGrads[0]?.f else { return {} }
        let v = try views(b.inputTypes[0].shape)
        let plan = StridedCopy(shape: v.shape, src: v.dst, dst: v.src)
        let dy = b.outputGrads[0].f, acc = b.accumulate[0]
        return { plan.store(dy, dx, accumulate: acc) }
    }
}

/// nnabla's `Concatenate(axis)`: joins N inputs along `axis` (default: the last axis). All inputs have the
/// same rank, dtype and dimensions except along `axis`.
public struct Concatenate: Function {
    public static let typeName = "Concatenate"
    /// nil: the last axis (nnabla's default `len(x[0].shape) - 1`, resolved when the inputs are known).
    public var axis: Int?

    public init(axis: Int? = nil) { self.axis = axis }
    public init(arguments a: inout ArgReader) throws { axis = try a.intOrNil("axis") }
    /// An unresolved default axis is written as -1 (the last axis).
    public var arguments: [(String, ArgValue)] { [("axis", .int(axis ?? -1))] }

    func resolvedAxis(rank: Int) throws -> Int {
        guard rank > 0 else { throw error("inputs must have at least one axis") }
        return try Shapes.axis(axis ?? rank - 1, rank: rank, function: Self.typeName)
    }

    public func outputTypes(_ inputs: [TensorType]) throws -> [TensorType] {
        guard !inputs.isEmpty else { throw error("takes at least one input") }
        let first = inputs[0]
        try checkMovable(first, Self.typeName, "x[0]")
        let ax = try resolvedAxis(rank: first.rank)
        var total = 0
        for (k, t) in inputs.enumerated() {
            guard t.dtype == first.dtype else {
                throw error("input \(k) is \(t) but input 0 is \(first): dtypes must match")
            }
            guard t.rank == first.rank else {
                throw error("input \(k) has shape \(t.shape) but input 0 has \(first.shape): ranks must match")
            }
            for d in 0..<t.rank where d != ax && t.shape[d] != first.shape[d] {
                throw error("input \(k) has shape \(t.shape) but input 0 has \(first.shape): dimensions other than axis \(ax) must match")
            }
            total += t.shape[ax]
        }
        var shape = first.shape
        shape[ax] = total
        return [TensorType(shape, first.dtype)]
    }

    public func backwardReads(inputCount: Int, outputCount: Int) -> (inputs: [Bool], outputs: [Bool]) {
        ([Bool](repeating: false, count: inputCount), [false])
    }

    /// Per input: the copy plan between the input (contiguous) and its block of the output, and the block's
    /// offset in the output.
    private func blocks(_ inShapes: [[Int]], _ outShape: [Int], toOutput: Bool) throws -> [(StridedCopy, Int)] {
        let ax = try resolvedAxis(rank: outShape.count)
        let outStrides = Shapes.strides(outShape)
        var offset = 0
        var result: [(StridedCopy, Int)] = []
        for s in inShapes {
            let own = Shapes.strides(s)
            let plan = toOutput ? StridedCopy(shape: s, src: own, dst: outStrides)
                                : StridedCopy(shape: s, src: outStrides, dst: own)
            result.append((plan, offset * outStrides[ax]))
            offset += s[ax]
        }
        return result
    }

    public func makeForward(_ b: ForwardBinding) throws -> Kernel {
        let plans = try blocks(b.inputs.map { $0.shape }, b.outputs[0].shape, toOutput: true)
        let xs = b.inputs.map { $0.raw }
        let y = b.outputs[0].raw
        return {
            for k in 0..<plans.count {
                let (plan, off) = plans[k]
                plan.copy(xs[k], y + off * 4)
            }
        }
    }

    public func makeBackward(_ b: BackwardBinding) throws -> Kernel {
        let plans = try blocks(b.inputTypes.map { $0.shape }, b.outputTypes[0].shape, toOutput: false)
        var jobs: [(StridedCopy, UnsafeMutablePointer<Float>, UnsafePointer<Float>, Bool)] = []
        let dy = b.outputGrads[0].f
        for k in plans.indices {
            guard let dx = b.inputGrads[k]?.f else { continue }
            jobs.append((plans[k].0, dx, UnsafePointer(dy + plans[k].1), b.accumulate[k]))
        }
        // In order: an input given twice gets [overwrite, accumulate] on one buffer.
        return {
            for j in 0..<jobs.count {
                let (plan, dx, src, acc) = jobs[j]
                plan.store(src, dx, accumulate: acc)
            }
        }
    }
}

/// nnabla's `Split(axis=0)`: `x.shape[axis]` outputs, output i = `x[..., i, ...]` with `axis` removed.
public struct Split: Function {
    public static let typeName = "Split"
    public var axis: Int

    public init(axis: Int = 0) { self.axis = axis }
    public init(arguments a: inout ArgReader) throws { axis = try a.int("axis", default: 0) }
    public var arguments: [(String, ArgValue)] { [("axis", .int(axis))] }

    func resolvedAxis(rank: Int) throws -> Int {
        guard rank > 0 else { throw error("x must have at least one axis") }
        return try Shapes.axis(axis, rank: rank, function: Self.typeName)
    }

    public func outputTypes(_ inputs: [TensorType]) throws -> [TensorType] {
        try Check.count(inputs, 1, Self.typeName)
        try checkMovable(inputs[0], Self.typeName, "x")
        let ax = try resolvedAxis(rank: inputs[0].rank)
        var shape = inputs[0].shape
        let n = shape.remove(at: ax)
        guard n > 0 else { throw error("x \(inputs[0].shape) has size 0 along axis \(ax): nothing to split") }
        return [TensorType](repeating: TensorType(shape, inputs[0].dtype), count: n)
    }

    public func backwardReads(inputCount: Int, outputCount: Int) -> (inputs: [Bool], outputs: [Bool]) {
        ([false], [Bool](repeating: false, count: outputCount))
    }

    /// The plan between one output (contiguous) and its slab of the input, and the slab stride.
    private func plan(_ inShape: [Int], toOutput: Bool) throws -> (StridedCopy, Int) {
        let ax = try resolvedAxis(rank: inShape.count)
        var inStrides = Shapes.strides(inShape)
        let step = inStrides.remove(at: ax)
        var shape = inShape
        shape.remove(at: ax)
        let own = Shapes.strides(shape)
        let p = toOutput ? StridedCopy(shape: shape, src: inStrides, dst: own)
                         : StridedCopy(shape: shape, src: own, dst: inStrides)
        return (p, step)
    }

    public func makeForward(_ b: ForwardBinding) throws -> Kernel {
        let (p, step) = try plan(b.inputs[0].shape, toOutput: true)
        let x = b.inputs[0].raw
        let ys = b.outputs.map { $0.raw }
        return {
            for j in 0..<ys.count { p.copy(x + j * step * 4, ys[j]) }
        }
    }

    public func makeBackward(_ b: BackwardBinding) throws -> Kernel {
        guard let dx = b.inputGrads[0]?.f else { return {} }
        let (p, step) = try plan(b.inputTypes[0].shape, toOutput: false)
        let dys = b.outputGrads.map { UnsafePointer($0.f) }
        let acc = b.accumulate[0]
        // Every element of dx belongs to exactly one output: copying all of them overwrites dx completely.
        return {
            for j in 0..<dys.count { p.store(dys[j], dx + j * step, accumulate: acc) }
        }
    }
}

/// nnabla's `Slice(start, stop, step)`: Python slicing per axis, negative indices and negative steps
/// included. Lists shorter than the rank apply to the last axes (the leading ones are taken whole), as in
/// nnabla; empty lists take everything. Out-of-range bounds are clamped like Python's `slice.indices`
/// (nnabla leaves them unchecked). nnabla's None marker 0x7fffffff is understood in graph files.
public struct Slice: Function {
    public static let typeName = "Slice"
    public var start: [Int]
    public var stop: [Int]
    public var step: [Int]

    /// nnabla's C++ marker for a Python `None` entry.
    public static let none = 0x7fff_ffff

    public init(start: [Int] = [], stop: [Int] = [], step: [Int] = []) {
        self.start = start
        self.stop = stop
        self.step = step
    }

    public init(arguments a: inout ArgReader) throws {
        start = try a.ints("start", default: [])
        stop = try a.ints("stop", default: [])
        step = try a.ints("step", default: [])
    }

    public var arguments: [(String, ArgValue)] {
        [("start", .ints(start)), ("stop", .ints(stop)), ("step", .ints(step))]
    }

    /// Per axis: first index, step and output length.
    package func resolve(_ shape: [Int]) throws -> [(first: Int, step: Int, length: Int)] {
        guard start.count == stop.count, start.count == step.count else {
            throw error("start \(start), stop \(stop) and step \(step) must have the same length")
        }
        guard start.count <= shape.count else {
            throw error("start/stop/step have \(start.count) entries but x \(shape) has rank \(shape.count)")
        }
        let lead = shape.count - start.count
        var out: [(first: Int, step: Int, length: Int)] = []
        for i in shape.indices {
            let n = shape[i]
            if i < lead {
                out.append((0, 1, n))
                continue
            }
            var s0 = start[i - lead], s1 = stop[i - lead], st = step[i - lead]
            guard st != 0 else { throw error("step[\(i - lead)] must not be 0 (step \(step))") }
            if st == Self.none { st = 1 }
            if st > 0 {
                if s0 == Self.none { s0 = 0 } else { s0 = s0 < 0 ? max(s0 + n, 0) : min(s0, n) }
                if s1 == Self.none { s1 = n } else { s1 = s1 < 0 ? max(s1 + n, 0) : min(s1, n) }
                let len = s1 > s0 ? (s1 - s0 - 1) / st + 1 : 0
                out.append((s0, st, len))
            } else {
                if s0 == Self.none { s0 = n - 1 } else { s0 = s0 < 0 ? max(s0 + n, -1) : min(s0, n - 1) }
                if s1 == Self.none { s1 = -1 } else { s1 = s1 < 0 ? max(s1 + n, -1) : min(s1, n - 1) }
                let len = s0 > s1 ? (s0 - s1 - 1) / (-st) + 1 : 0
                out.append((s0, st, len))
            }
        }
        return out
    }

    public func outputTypes(_ inputs: [TensorType]) throws -> [TensorType] {
        try Check.count(inputs, 1, Self.typeName)
        try checkMovable(inputs[0], Self.typeName, "x")
        return [TensorType(try resolve(inputs[0].shape).map { $0.length }, inputs[0].dtype)]
    }

    public func backwardReads(inputCount: Int, outputCount: Int) -> (inputs: [Bool], outputs: [Bool]) {
        ([false], [false])
    }

    /// The plan between the output (contiguous) and the sliced view of x, and the view's base offset.
    private func plan(_ inShape: [Int], toOutput: Bool) throws -> (StridedCopy, Int) {
        let axes = try resolve(inShape)
        let inStrides = Shapes.strides(inShape)
        let outShape = axes.map { $0.length }
        var offset = 0
        var view: [Int] = []
        for (i, a) in axes.enumerated() {
            if a.length > 0 { offset += a.first * inStrides[i] }
            view.append(inStrides[i] * a.step)
        }
        let own = Shapes.strides(outShape)
        let p = toOutput ? StridedCopy(shape: outShape, src: view, dst: own)
                         : StridedCopy(shape: outShape, src: own, dst: view)
        return (p, p.count == 0 ? 0 : offset)
    }

    public func makeForward(_ b: ForwardBinding) throws -> Kernel {
        let (p, offset) = try plan(b.inputs[0].shape, toOutput: true)
        let x = b.inputs[0].raw, y = b.outputs[0].raw
        return { p.copy(x + offset * 4, y) }
    }

    public func makeBackward(_ b: BackwardBinding) throws -> Kernel {
        guard let dx = b.inputGrads[0]?.f else { return {} }
        let (p, offset) = try plan(b.inputTypes[0].shape, toOutput: false)
        let dy = b.outputGrads[0].f, acc = b.accumulate[0], n = b.inputTypes[0].count
        return {
            if !acc { Elementwise.fill(n, dx, 0) }
            p.store(dy, dx + offset, accumulate: true)
        }
    }
}

public extension F {
    /// nnabla's `F.reshape`: one entry of `shape` may be -1.
    static func reshape(_ x: Variable, shape: [Int], inplace: Bool = true) throws -> Variable {
        try apply1(Reshape(shape: shape, inplace: inplace), [x])
    }

    /// nnabla's `F.transpose`.
    static func transpose(_ x: Variable, axes: [Int]) throws -> Variable {
        try apply1(Transpose(axes: axes), [x])
    }

    /// nnabla's `F.concatenate(*xs, axis=None)`: `axis` nil is the last axis of `xs[0]`.
    static func concatenate(_ xs: [Variable], axis: Int? = nil) throws -> Variable {
        let resolved = axis ?? xs.first.map { $0.ndim - 1 }
        return try apply1(Concatenate(axis: resolved), xs)
    }

    /// nnabla's `F.split`: `x.shape[axis]` outputs with that axis removed.
    static func split(_ x: Variable, axis: Int = 0) throws -> [Variable] {
        try apply(Split(axis: axis), [x])
    }

    /// nnabla's `F.slice`: Python slicing per axis. nil lists (or nil entries) take the whole axis in the
    /// direction of the step, as nnabla's Python wrapper maps `None`.
    static func slice(_ x: Variable, start: [Int?]? = nil, stop: [Int?]? = nil, step: [Int?]? = nil) throws -> Variable {
        let r = x.ndim
        let m = (start ?? stop ?? step)?.count ?? r
        let st = step ?? [Int?](repeating: 1, count: m)
        let s0 = start ?? [Int?](repeating: nil, count: m)
        let s1 = stop ?? [Int?](repeating: nil, count: m)
        guard s0.count == st.count, s1.count == st.count, st.count <= r else {
            throw KilnError.invalidFunction(function: Slice.typeName,
                                            reason: "start, stop and step must have the same length, at most the rank \(r) of x \(x.shape)")
        }
        let lead = r - st.count
        var a: [Int] = [], b: [Int] = [], c: [Int] = []
        for i in st.indices {
            let n = x.shape[lead + i]
            let k = st[i] ?? 1
            c.append(k)
            a.append(s0[i] ?? (k > 0 ? 0 : -1))
            b.append(s1[i] ?? (k > 0 ? n : -n - 1))
        }
        return try apply1(Slice(start: a, stop: b, step: c), [x])
    }
}
