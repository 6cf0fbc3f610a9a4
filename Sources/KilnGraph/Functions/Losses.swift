import Foundation
import KilnCore
import KilnKernels

/// SoftmaxCrossEntropy, CategoricalCrossEntropy, SigmoidCrossEntropy, SquaredError, TopNError, BinaryError.
///
/// As in nnabla none of them reduces: the class-axis losses return one value per sample (the label tensor's
/// shape), the others one value per element.
public enum LossFunctions {
    public static let all: [any Function.Type] = [
        SoftmaxCrossEntropy.self, CategoricalCrossEntropy.self, SigmoidCrossEntropy.self, SquaredError.self,
        TopNError.self, BinaryError.self,
    ]
}

/// Shape rule of the class-axis losses: x float32, an int32 label tensor of x's rank with size 1 on the class
/// axis and x's dimensions elsewhere; the output has the label's shape. Returns the resolved axis too.
private func classAxisOutput(_ f: some Function, axis: Int?, _ inputs: [TensorType]) throws -> (TensorType, Int) {
    let name = f.typeName
    try Check.count(inputs, 2, name)
    try Check.float(inputs[0], name, "x")
    try Check.int(inputs[1], name, "target")
    let x = inputs[0], t = inputs[1]
    guard x.rank > 0 else { throw f.error("x must have at least one axis (the classes), got \(x)") }
    let ax = try Shapes.axis(axis ?? x.rank - 1, rank: x.rank, function: name)
    var expected = x.shape
    expected[ax] = 1
    guard t.shape == expected else {
        throw f.error("target must have shape \(expected) (x \(x.shape) with size 1 on the class axis \(ax)), got \(t.shape)")
    }
    return (TensorType(t.shape, .float32), ax)
}

/// Either-dtype element reads of a target tensor (float32 or int32).
private func checkFloatOrInt(_ t: TensorType, _ f: some Function, _ what: String) throws {
    guard t.dtype == .float32 || t.dtype == .int32 else {
        throw f.error("\(what) must be float32 or int32, got \(t)")
    }
}

/// nnabla's `SoftmaxCrossEntropy(axis)`: `y = -log_softmax(x)[label]` per sample (computed as
/// `logsumexp(x) - x[label]`, stable for any logits); `dx = dy * (softmax(x) - onehot(label))`. Labels < 0
/// are ignored (loss 0, gradient 0); a label >= the number of classes throws when the kernel runs.
public struct SoftmaxCrossEntropy: Function {
    public static let typeName = "SoftmaxCrossEntropy"
    /// nil: the last axis.
    public var axis: Int?

    public init(axis: Int? = nil) { self.axis = axis }
    public init(arguments a: inout ArgReader) throws { axis = try a.intOrNil("axis") }
    public var arguments: [(String, ArgValue)] { [("axis", .int(axis ?? -1))] }

    public func outputTypes(_ inputs: [TensorType]) throws -> [TensorType] {
        [try classAxisOutput(self, axis: axis, inputs).0]
    }

    public func propagatesGradient(toInput index: Int, inputCount: Int) -> Bool { index == 0 }

    public func backwardReads(inputCount: Int, outputCount: Int) -> (inputs: [Bool], outputs: [Bool]) {
        ([true, true], [false])
    }

    public func makeForward(_ b: ForwardBinding) throws -> Kernel {
        let ax = try classAxisOutput(self, axis: axis, b.inputs.map { $0.type }).1
        let lay = LossKernels.ClassLayout(shape: b.inputs[0].shape, axis: ax)
        let x = b.inputs[0].f, t = b.inputs[1].i32, y = b.outputs[0].f, labelShape = b.inputs[1].shape
        let classes = lay.classes, inner = lay.inner
        return {
            try LossKernels.checkLabels(t, lay, function: Self.typeName, labelShape: labelShape)
            Threads.items(lay.samples, workPerItem: 4 * classes,
                          SoftmaxCrossEntropyRows(x: x, t: t, y: y, lay: lay, classes: classes, inner: inner))
        }
    }

    public func makeBackward(_ b: BackwardBinding) throws -> Kernel {
        guard let dx = b.inputGrads[0]?.f, let x = b.inputs[0]?.f, let t = b.inputs[1]?.i32 else { return {} }
        let ax = try classAxisOutput(self, axis: axis, b.inputTypes).1
        let lay = LossKernels.ClassLayout(shape: b.inputTypes[0].shape, axis: ax)
        let dy = b.outputGrads[0].f, acc = b.accumulate[0], labelShape = b.inputTypes[1].shape
        let classes = lay.classes, inner = lay.inner
        return {
            try LossKernels.checkLabels(t, lay, function: Self.typeName, labelShape: labelShape)
            Threads.items(lay.samples, workPerItem: 6 * classes,
                          SoftmaxCrossEntropyRowsBackward(x: x, t: t, dx: dx, dy: dy, lay: lay, classes: classes,
                                                          inner: inner, acc: acc))
        }
    }
}

/// nnabla's `CategoricalCrossEntropy(axis)`: x holds probabilities; `y = -log(max(x[label], FLT_MIN))`,
/// `dx[label] = -dy / max(x[label], FLT_MIN)` and 0 elsewhere. Labels < 0 are ignored; a label >= the number
/// of classes throws when the kernel runs.
public struct CategoricalCrossEntropy: Function {
    public static let typeName = "CategoricalCrossEntropy"
    /// nil: the last axis.
    public var axis: Int?

    public init(axis: Int? = nil) { self.axis = axis }
    public init(arguments a: inout ArgReader) throws { axis = try a.intOrNil("axis") }
    public var arguments: [(String, ArgValue)] { [("axis", .int(axis ?? -1))] }

    public func outputTypes(_ inputs: [TensorType]) throws -> [TensorType] {
        [try classAxisOutput(self, axis: axis, inputs).0]
    }

    public func propagatesGradient(toInput index: Int, inputCount: Int) -> Bool { index == 0 }

    public func backwardReads(inputCount: Int, outputCount: Int) -> (inputs: [Bool], outputs: [Bool]) {
        ([true, true], [false])
    }

    public func makeForward(_ b: ForwardBinding) throws -> Kernel {
        let ax = try classAxisOutput(self, axis: axis, b.inputs.map { $0.type }).1
        let lay = LossKernels.ClassLayout(shape: b.inputs[0].shape, axis: ax)
        let x = b.inputs[0].f, t = b.inputs[1].i32, y = b.outputs[0].f, labelShape = b.inputs[1].shape
        let inner = lay.inner
        return {
            try LossKernels.checkLabels(t, lay, function: Self.typeName, labelShape: labelShape)
            for j in 0..<lay.samples {
                let l = Int(t[j])
                y[j] = l < 0 ? 0 : -logf(max(x[lay.base(j) + l * inner], Float.leastNormalMagnitude))
            }
        }
    }

    public func makeBackward(_ b: BackwardBinding) throws -> Kernel {
        guard let dx = b.inputGrads[0]?.f, let x = b.inputs[0]?.f, let t = b.inputs[1]?.i32 else { return {} }
        let ax = try classAxisOutput(self, axis: axis, b.inputTypes).1
        let lay = LossKernels.ClassLayout(shape: b.inputTypes[0].shape, axis: ax)
        let dy = b.outputGrads[0].f, acc = b.accumulate[0], labelShape = b.inputTypes[1].shape
        let inner = lay.inner, n = b.inputTypes[0].count
        return {
            try LossKernels.checkLabels(t, lay, function: Self.typeName, labelShape: labelShape)
            if !acc { Elementwise.fill(n, dx, 0) }
            for j in 0..<lay.samples {
                let l = Int(t[j])
                if l < 0 { continue }
                let k = lay.base(j) + l * inner
                dx[k] -= dy[j] / max(x[k], Float.leastNormalMagnitude)
            }
        }
    }
}

/// nnabla's `SigmoidCrossEntropy`: element-wise `y = -(x*(t - [x>=0]) - log(1 + exp(x - 2*x*[x>=0])))`,
/// `dx = dy * (sigmoid(x) - t)`. The target is read as an integer, as nnabla's C++ does: float targets are
/// truncated toward zero (a soft 0.7 acts as 0). No gradient flows to the target.
public struct SigmoidCrossEntropy: Function {
    /// The loss and its gradient for float labels (truncated toward zero, as nnabla reads them).
    struct Loss: BinaryFloatOp {
        func callAsFunction(_ x: Float, _ t: Float) -> Float { SigmoidCrossEntropy.loss(x, t.rounded(.towardZero)) }
    }
    struct Gradient: TernaryFloatOp {
        func callAsFunction(_ x: Float, _ t: Float, _ dy: Float) -> Float {
            dy * (SigmoidCrossEntropy.sigmoid(x) - t.rounded(.towardZero))
        }
    }
    public static let typeName = "SigmoidCrossEntropy"

    public init() {}
    public init(arguments a: inout ArgReader) throws {}
    public var arguments: [(String, ArgValue)] { [] }

    public func outputTypes(_ inputs: [TensorType]) throws -> [TensorType] {
        try Check.count(inputs, 2, Self.typeName)
        try Check.float(inputs[0], Self.typeName, "x")
        try checkFloatOrInt(inputs[1], self, "target")
        try Check.sameShape(inputs[0], inputs[1], Self.typeName)
        return [inputs[0]]
    }

    public func propagatesGradient(toInput index: Int, inputCount: Int) -> Bool { index == 0 }

    public func backwardReads(inputCount: Int, outputCount: Int) -> (inputs: [Bool], outputs: [Bool]) {
        ([true, true], [false])
    }

    @inline(__always)
    static func loss(_ x: Float, _ t: Float) -> Float {
        let pos: Float = x >= 0 ? 1 : 0
        return -(x * (t - pos) - log1pf(expf(x - 2 * x * pos)))
    }

    @inline(__always)
    static func sigmoid(_ x: Float) -> Float {
        if x >= 0 { return 1 / (1 + expf(-x)) }
        let e = expf(x)
        return e / (1 + e)
    }

    public func makeForward(_ b: ForwardBinding) throws -> Kernel {
        let x = b.inputs[0].f, y = b.outputs[0].f, n = b.inputs[0].count
        if b.inputs[1].type.dtype == .int32 {
            let t = b.inputs[1].i32
            return { Threads.chunks(n, SigmoidCrossEntropyIntLabels(x: x, t: t, y: y)) }
        }
        let t = b.inputs[1].f
        return { Elementwise.zip(n, x, t, y, accumulate: false, Loss()) }
    }

    public func makeBackward(_ b: BackwardBinding) throws -> Kernel {
        guard let dx = b.inputGrads[0]?.f, let x = b.inputs[0]?.f, let tt = b.inputs[1] else { return {} }
        let dy = b.outputGrads[0].f, n = b.inputTypes[0].count, acc = b.accumulate[0]
        if tt.type.dtype == .int32 {
            let t = tt.i32
            return {
                Threads.chunks(n, SigmoidCrossEntropyIntLabelsBackward(x: x, t: t, dx: dx, dy: dy, acc: acc))
            }
        }
        let t = tt.f
        return { Elementwise.zip3(n, x, t, dy, dx, accumulate: acc, Gradient()) }
    }
}

/// nnabla's `SquaredError`: `y = (x0 - x1)^2` element-wise; both inputs get gradients
/// (`dx0 = 2 (x0 - x1) dy`, `dx1 = -dx0`).
public struct SquaredError: Function {
    struct Forward: BinaryFloatOp {
        func callAsFunction(_ a: Float, _ b: Float) -> Float { let d = a - b; return d * d }
    }
    /// `2 (a - b) dy`: dx0 with (x0, x1), dx1 with (x1, x0).
    struct Gradient: TernaryFloatOp {
        func callAsFunction(_ a: Float, _ b: Float, _ dy: Float) -> Float { 2 * (a - b) * dy }
    }
    public static let typeName = "SquaredError"

    public init() {}
    public init(arguments a: inout ArgReader) throws {}
    public var arguments: [(String, ArgValue)] { [] }

    public func outputTypes(_ inputs: [TensorType]) throws -> [TensorType] {
        try Check.count(inputs, 2, Self.typeName)
        try Check.float(inputs[0], Self.typeName, "x0")
        try Check.float(inputs[1], Self.typeName, "x1")
        try Check.sameShape(inputs[0], inputs[1], Self.typeName)
        return [inputs[0]]
    }

    public func backwardReads(inputCount: Int, outputCount: Int) -> (inputs: [Bool], outputs: [Bool]) {
        ([true, true], [false])
    }

    public func makeForward(_ b: ForwardBinding) throws -> Kernel {
        let x0 = b.inputs[0].f, x1 = b.inputs[1].f, y = b.outputs[0].f, n = b.inputs[0].count
        return { Elementwise.zip(n, x0, x1, y, accumulate: false, Forward()) }
    }

    public func makeBackward(_ b: BackwardBinding) throws -> Kernel {
        guard let x0 = b.inputs[0]?.f, let x1 = b.inputs[1]?.f else { return {} }
        let dy = b.outputGrads[0].f, n = b.inputTypes[0].count
        let g0 = b.inputGrads[0]?.f, g1 = b.inputGrads[1]?.f
        let acc0 = b.accumulate[0], acc1 = b.accumulate[1]
        return {
            // Input 0 first: squared_error(x, x) gives both gradients one buffer with [overwrite, accumulate].
            if let g0 { Elementwise.zip3(n, x0, x1, dy, g0, accumulate: acc0, Gradient()) }
            if let g1 { Elementwise.zip3(n, x1, x0, dy, g1, accumulate: acc1, Gradient()) }
        }
    }
}

/// nnabla's `TopNError(axis, n=1)`, forward only: per sample 1 when more than `n` classes score at least as
/// high as the label's (ties count against the label), else 0. Labels < 0 give 0 (Kiln's choice: nnabla
/// reads out of bounds); a label >= the number of classes throws when the kernel runs.
public struct TopNError: Function {
    public static let typeName = "TopNError"
    /// nil: the last axis.
    public var axis: Int?
    public var n: Int

    public init(axis: Int? = nil, n: Int = 1) {
        self.axis = axis
        self.n = n
    }

    public init(arguments a: inout ArgReader) throws {
        axis = try a.intOrNil("axis")
        n = try a.int("n", default: 1)
    }

    public var arguments: [(String, ArgValue)] { [("axis", .int(axis ?? -1)), ("n", .int(n))] }
    public var isDifferentiable: Bool { false }
    public func propagatesGradient(toInput index: Int, inputCount: Int) -> Bool { false }

    public func outputTypes(_ inputs: [TensorType]) throws -> [TensorType] {
        guard n >= 1 else { throw error("n must be at least 1, got \(n)") }
        return [try classAxisOutput(self, axis: axis, inputs).0]
    }

    public func backwardReads(inputCount: Int, outputCount: Int) -> (inputs: [Bool], outputs: [Bool]) {
        ([false, false], [false])
    }

    public func makeForward(_ b: ForwardBinding) throws -> Kernel {
        let ax = try classAxisOutput(self, axis: axis, b.inputs.map { $0.type }).1
        let lay = LossKernels.ClassLayout(shape: b.inputs[0].shape, axis: ax)
        let x = b.inputs[0].f, t = b.inputs[1].i32, y = b.outputs[0].f, labelShape = b.inputs[1].shape
        let classes = lay.classes, inner = lay.inner, top = n
        return {
            try LossKernels.checkLabels(t, lay, function: Self.typeName, labelShape: labelShape)
            Threads.items(lay.samples, workPerItem: 2 * classes,
                          TopNErrorRows(x: x, t: t, y: y, lay: lay, classes: classes, inner: inner, top: top))
        }
    }
}

/// nnabla's `BinaryError`, forward only: `y = float((x >= 0.5) != (t >= 0.5))` element-wise (0.5 counts as
/// positive). The target may be float32 or int32.
public struct BinaryError: Function {
    struct Forward: BinaryFloatOp {
        func callAsFunction(_ x: Float, _ t: Float) -> Float { (x >= 0.5) != (t >= 0.5) ? 1 : 0 }
    }
    public static let typeName = "BinaryError"

    public init() {}
    public init(arguments a: inout ArgReader) throws {}
    public var arguments: [(String, ArgValue)] { [] }
    public var isDifferentiable: Bool { false }
    public func propagatesGradient(toInput index: Int, inputCount: Int) -> Bool { false }

    public func outputTypes(_ inputs: [TensorType]) throws -> [TensorType] {
        try Check.count(inputs, 2, Self.typeName)
        try Check.float(inputs[0], Self.typeName, "x")
        try checkFloatOrInt(inputs[1], self, "target")
        try Check.sameShape(inputs[0], inputs[1], Self.typeName)
        return [inputs[0]]
    }

    public func backwardReads(inputCount: Int, outputCount: Int) -> (inputs: [Bool], outputs: [Bool]) {
        ([false, false], [false])
    }

    public func makeForward(_ b: ForwardBinding) throws -> Kernel {
        let x = b.inputs[0].f, y = b.outputs[0].f, n = b.inputs[0].count
        if b.inputs[1].type.dtype == .int32 {
            let t = b.inputs[1].i32
            return {
                Threads.chunks(n, BinaryErrorIntLabels(x: x, t: t, y: y))
            }
        }
        let t = b.inputs[1].f
        return { Elementwise.zip(n, x, t, y, accumulate: false, Forward()) }
    }
}

public extension F {
    /// nnabla's `F.softmax_cross_entropy(x, target, axis=None)`: per-sample loss with the target's shape.
    static func softmaxCrossEntropy(_ x: Variable, _ target: Variable, axis: Int? = nil) throws -> Variable {
        try apply1(SoftmaxCrossEntropy(axis: axis ?? x.ndim - 1), [x, target])
    }

    /// nnabla's `F.categorical_cross_entropy(x, target, axis=None)`.
    static func categoricalCrossEntropy(_ x: Variable, _ target: Variable, axis: Int? = nil) throws -> Variable {
        try apply1(CategoricalCrossEntropy(axis: axis ?? x.ndim - 1), [x, target])
    }

    /// nnabla's `F.sigmoid_cross_entropy(x, target)` (element-wise; the target is read as an integer).
    static func sigmoidCrossEntropy(_ x: Variable, _ target: Variable) throws -> Variable {
        try apply1(SigmoidCrossEntropy(), [x, target])
    }

    /// nnabla's `F.squared_error(x0, x1)` (element-wise).
    static func squaredError(_ x0: Variable, _ x1: Variable) throws -> Variable {
        try apply1(SquaredError(), [x0, x1])
    }

    /// nnabla's `F.top_n_error(x, target, axis=None, n=1)` (forward only).
    static func topNError(_ x: Variable, _ target: Variable, axis: Int? = nil, n: Int = 1) throws -> Variable {
        try apply1(TopNError(axis: axis ?? x.ndim - 1, n: n), [x, target])
    }

    /// nnabla's `F.binary_error(x, target)` (forward only).
    static func binaryError(_ x: Variable, _ target: Variable) throws -> Variable {
        try apply1(BinaryError(), [x, target])
    }
}

/// SoftmaxCrossEntropy forward, one sample per item.
struct SoftmaxCrossEntropyRows: ParallelItem {
    let x: UnsafeMutablePointer<Float>, t: UnsafeMutablePointer<Int32>, y: UnsafeMutablePointer<Float>
    let lay: LossKernels.ClassLayout, classes: Int, inner: Int
    @inline(__always) func callAsFunction(_ j: Int) {
        let l = Int(t[j])
        if l < 0 { y[j] = 0; return }
        let xb = x + lay.base(j)
        y[j] = LossKernels.logSumExp(xb, classes, inner) - xb[l * inner]
    }
}

/// SoftmaxCrossEntropy backward, one sample per item.
struct SoftmaxCrossEntropyRowsBackward: ParallelItem {
    let x: UnsafeMutablePointer<Float>, t: UnsafeMutablePointer<Int32>, dx: UnsafeMutablePointer<Float>
    let dy: UnsafeMutablePointer<Float>, lay: LossKernels.ClassLayout, classes: Int, inner: Int, acc: Bool
    @inline(__always) func callAsFunction(_ j: Int) {
        let off = lay.base(j)
        let xb = x + off, gb = dx + off
        let l = Int(t[j])
        if l < 0 {
            if !acc { for c in 0..<classes { gb[c * inner] = 0 } }
            return
        }
        let lse = LossKernels.logSumExp(xb, classes, inner), g = dy[j]
        if acc {
            for c in 0..<classes { gb[c * inner] += g * expf(xb[c * inner] - lse) }
        } else {
            for c in 0..<classes { gb[c * inner] = g * expf(xb[c * inner] - lse) }
        }
        gb[l * inner] -= g
    }
}

/// SigmoidCrossEntropy forward with int32 labels.
struct SigmoidCrossEntropyIntLabels: ParallelChunk {
    let x: UnsafeMutablePointer<Float>, t: UnsafeMutablePointer<Int32>, y: UnsafeMutablePointer<Float>
    @inline(__always) func callAsFunction(_ s: Int, _ e: Int) {
        for i in s..<e { y[i] = SigmoidCrossEntropy.loss(x[i], Float(t[i])) }
    }
}

/// SigmoidCrossEntropy backward with int32 labels.
struct SigmoidCrossEntropyIntLabelsBackward: ParallelChunk {
    let x: UnsafeMutablePointer<Float>, t: UnsafeMutablePointer<Int32>, dx: UnsafeMutablePointer<Float>
    let dy: UnsafeMutablePointer<Float>, acc: Bool
    @inline(__always) func callAsFunction(_ s: Int, _ e: Int) {
        for i in s..<e {
            let g = dy[i] * (SigmoidCrossEntropy.sigmoid(x[i]) - Float(t[i]))
            if acc { dx[i] += g } else { dx[i] = g }
        }
    }
}

/// TopNError, one sample per item.
struct TopNErrorRows: ParallelItem {
    let x: UnsafeMutablePointer<Float>, t: UnsafeMutablePointer<Int32>, y: UnsafeMutablePointer<Float>
    let lay: LossKernels.ClassLayout, classes: Int, inner: Int, top: Int
    @inline(__always) func callAsFunction(_ j: Int) {
        let l = Int(t[j])
        if l < 0 { y[j] = 0; return }
        let xb = x + lay.base(j)
        let threshold = xb[l * inner]
        var count = 0
        for c in 0..<classes where xb[c * inner] >= threshold { count += 1 }
        y[j] = count > top ? 1 : 0
    }
}

/// BinaryError with int32 labels.
struct BinaryErrorIntLabels: ParallelChunk {
    let x: UnsafeMutablePointer<Float>, t: UnsafeMutablePointer<Int32>, y: UnsafeMutablePointer<Float>
    @inline(__always) func callAsFunction(_ s: Int, _ e: Int) {
        for i in s..<e { y[i] = (x[i] >= 0.5) != (Float(t[i]) >= 0.5) ? 1 : 0 }
    }
}
