import Foundation
import KilnCore
import KilnKernels

/// ReLU, LeakyReLU, ELU, Sigmoid, Tanh, Softmax, LogSoftmax, Identity, PReLU.
public enum ActivationFunctions {
    public static let all: [any Function.Type] = [
        ReLU.self, LeakyReLU.self, ELU.self, Sigmoid.self, Tanh.self, Softmax.self, LogSoftmax.self, Identity.self,
        PReLU.self,
    ]
}

/// An element-wise activation of one float input whose backward needs only its output (ReLU, Sigmoid, Tanh):
/// forward `y = forward(x)`, backward `dx (+)= backward(y, dy)`; it may run in place both ways.
protocol OutputGradientActivation: Function {
    associatedtype ForwardOp: UnaryFloatOp
    associatedtype BackwardOp: BinaryFloatOp
    static var forward: ForwardOp { get }
    static var backward: BackwardOp { get }
}

extension OutputGradientActivation {
    public var forwardInPlaceInput: Int? { 0 }
    public var backwardInPlace: Bool { true }
    public var isCheapToRecompute: Bool { true }

    public func outputTypes(_ inputs: [TensorType]) throws -> [TensorType] {
        try Check.count(inputs, 1, Self.typeName)
        try Check.float(inputs[0], Self.typeName, "x")
        return [inputs[0]]
    }

    public func backwardReads(inputCount: Int, outputCount: Int) -> (inputs: [Bool], outputs: [Bool]) {
        ([false], [true])
    }

    public func makeForward(_ b: ForwardBinding) throws -> Kernel {
        let x = b.inputs[0].f, y = b.outputs[0].f, n = b.inputs[0].count
        return { Elementwise.map(n, x, y, Self.forward) }
    }

    public func makeBackward(_ b: BackwardBinding) throws -> Kernel {
        guard let dx = b.inputGrads[0]?.f else { return {} }
        guard let y = b.outputs[0]?.f else { throw error("backward needs the output value") }
        let dy = b.outputGrads[0].f, n = b.outputGrads[0].count, acc = b.accumulate[0]
        return { Elementwise.zip(n, y, dy, dx, accumulate: acc, Self.backward) }
    }
}

/// `y = max(x, 0)`. Backward uses the output (`y > 0`), so the gradient at exactly 0 is 0, as in nnabla.
public struct ReLU: OutputGradientActivation {
    public static let typeName = "ReLU"
    public var inplace: Bool

    public init(inplace: Bool = false) { self.inplace = inplace }
    public init(arguments a: inout ArgReader) throws { inplace = try a.bool("inplace", default: false) }
    public var arguments: [(String, ArgValue)] { [("inplace", .bool(inplace))] }

    struct Forward: UnaryFloatOp { func callAsFunction(_ x: Float) -> Float { max(x, 0) } }
    /// `dx = dy` where the output is positive.
    struct Backward: BinaryFloatOp { func callAsFunction(_ y: Float, _ dy: Float) -> Float { y > 0 ? dy : 0 } }
    static let forward = Forward()
    static let backward = Backward()
}

public extension F {
    /// nnabla's `F.relu`.
    static func relu(_ x: Variable, inplace: Bool = false) throws -> Variable {
        try apply1(ReLU(inplace: inplace), [x])
    }
}

/// `y = x` if `x > 0` else `alpha * x`. nnabla's backward tests the output (`y > 0`), which for `alpha >= 0`
/// gives `alpha * dy` at exactly 0; with a negative alpha the output no longer tells the sign of `x`, so the
/// input is read instead.
public struct LeakyReLU: Function {
    public var forwardInPlaceInput: Int? { 0 }
    public var backwardInPlace: Bool { true }
    public var isCheapToRecompute: Bool { true }
    public static let typeName = "LeakyReLU"
    struct Forward: UnaryFloatOp {
        let alpha: Float
        func callAsFunction(_ x: Float) -> Float { x > 0 ? x : alpha * x }
    }
    /// `t` is the output (alpha >= 0) or the input: its sign picks the slope.
    struct Backward: BinaryFloatOp {
        let alpha: Float
        func callAsFunction(_ t: Float, _ dy: Float) -> Float { t > 0 ? dy : alpha * dy }
    }
    public var alpha: Double
    public var inplace: Bool

    public init(alpha: Double = 0.1, inplace: Bool = false) {
        self.alpha = alpha
        self.inplace = inplace
    }

    public init(arguments a: inout ArgReader) throws {
        alpha = try a.double("alpha", default: 0.1)
        inplace = try a.bool("inplace", default: false)
    }

    public var arguments: [(String, ArgValue)] { [("alpha", .double(alpha)), ("inplace", .bool(inplace))] }

    public func outputTypes(_ inputs: [TensorType]) throws -> [TensorType] {
        try Check.count(inputs, 1, Self.typeName)
        try Check.float(inputs[0], Self.typeName, "x")
        return [inputs[0]]
    }

    public func backwardReads(inputCount: Int, outputCount: Int) -> (inputs: [Bool], outputs: [Bool]) {
        alpha >= 0 ? ([false], [true]) : ([true], [false])
    }

    public func makeForward(_ b: ForwardBinding) throws -> Kernel {
        let x = b.inputs[0].f, y = b.outputs[0].f, n = b.inputs[0].count, alpha = Float(alpha)
        return { Elementwise.map(n, x, y, Forward(alpha: alpha)) }
    }

    public func makeBackward(_ b: BackwardBinding) throws -> Kernel {
        guard let dx = b.inputGrads[0]?.f else { return {} }
        // The sign test reads the output for alpha >= 0 (x > 0 <=> y > 0 there), the input otherwise.
        guard let t = (alpha >= 0 ? b.outputs[0] : b.inputs[0])?.f else {
            throw error("backward needs the \(alpha >= 0 ? "output" : "input") value")
        }
        let dy = b.outputGrads[0].f, n = b.outputGrads[0].count, acc = b.accumulate[0], alpha = Float(alpha)
        return { Elementwise.zip(n, t, dy, dx, accumulate: acc, Backward(alpha: alpha)) }
    }
}

/// `y = x` if `x >= 0` else `alpha * (exp(x) - 1)`; the gradient at exactly 0 is `dy` (nnabla tests `x >= 0`).
public struct ELU: Function {
    public var forwardInPlaceInput: Int? { 0 }
    public var backwardInPlace: Bool { true }
    public var isCheapToRecompute: Bool { true }
    public static let typeName = "ELU"
    struct Forward: UnaryFloatOp {
        let alpha: Float
        func callAsFunction(_ x: Float) -> Float { x >= 0 ? x : alpha * (exp(x) - 1) }
    }
    struct Backward: BinaryFloatOp {
        let alpha: Float
        func callAsFunction(_ x: Float, _ dy: Float) -> Float { x >= 0 ? dy : dy * alpha * exp(x) }
    }
    public var alpha: Double

    public init(alpha: Double = 1.0) { self.alpha = alpha }
    public init(arguments a: inout ArgReader) throws { alpha = try a.double("alpha", default: 1.0) }
    public var arguments: [(String, ArgValue)] { [("alpha", .double(alpha))] }

    public func outputTypes(_ inputs: [TensorType]) throws -> [TensorType] {
        try Check.count(inputs, 1, Self.typeName)
        try Check.float(inputs[0], Self.typeName, "x")
        return [inputs[0]]
    }

    public func backwardReads(inputCount: Int, outputCount: Int) -> (inputs: [Bool], outputs: [Bool]) {
        ([true], [false])
    }

    public func makeForward(_ b: ForwardBinding) throws -> Kernel {
        let x = b.inputs[0].f, y = b.outputs[0].f, n = b.inputs[0].count, alpha = Float(alpha)
        return { Elementwise.map(n, x, y, Forward(alpha: alpha)) }
    }

    public func makeBackward(_ b: BackwardBinding) throws -> Kernel {
        guard let dx = b.inputGrads[0]?.f else { return {} }
        guard let x = b.inputs[0]?.f else { throw error("backward needs the input value") }
        let dy = b.outputGrads[0].f, n = b.outputGrads[0].count, acc = b.accumulate[0], alpha = Float(alpha)
        return { Elementwise.zip(n, x, dy, dx, accumulate: acc, Backward(alpha: alpha)) }
    }
}

/// `y = 1 / (1 + exp(-x))`; backward `dy * y * (1 - y)` from the output alone.
public struct Sigmoid: OutputGradientActivation {
    public static let typeName = "Sigmoid"
    struct Forward: UnaryFloatOp { func callAsFunction(_ x: Float) -> Float { 1 / (1 + exp(-x)) } }
    struct Backward: BinaryFloatOp { func callAsFunction(_ y: Float, _ dy: Float) -> Float { dy * y * (1 - y) } }
    static let forward = Forward()
    static let backward = Backward()
    public init() {}
    public init(arguments a: inout ArgReader) throws {}
    public var arguments: [(String, ArgValue)] { [] }
}

/// `y = tanh(x)`; backward `dy * (1 - y^2)` from the output alone.
public struct Tanh: OutputGradientActivation {
    public static let typeName = "Tanh"
    struct Forward: UnaryFloatOp { func callAsFunction(_ x: Float) -> Float { tanh(x) } }
    struct Backward: BinaryFloatOp { func callAsFunction(_ y: Float, _ dy: Float) -> Float { dy * (1 - y * y) } }
    static let forward = Forward()
    static let backward = Backward()
    public init() {}
    public init(arguments a: inout ArgReader) throws {}
    public var arguments: [(String, ArgValue)] { [] }
}

/// `y = x`, `dx = dy`.
public struct Identity: Function {
    public var forwardInPlaceInput: Int? { 0 }
    public var backwardInPlace: Bool { true }
    public var isCheapToRecompute: Bool { true }
    public static let typeName = "Identity"
    public init() {}
    public init(arguments a: inout ArgReader) throws {}
    public var arguments: [(String, ArgValue)] { [] }

    public func outputTypes(_ inputs: [TensorType]) throws -> [TensorType] {
        try Check.count(inputs, 1, Self.typeName)
        try Check.float(inputs[0], Self.typeName, "x")
        return [inputs[0]]
    }

    public func backwardReads(inputCount: Int, outputCount: Int) -> (inputs: [Bool], outputs: [Bool]) {
        ([false], [false])
    }

    public func makeForward(_ b: ForwardBinding) throws -> Kernel {
        let x = b.inputs[0].f, y = b.outputs[0].f, n = b.inputs[0].count
        return { Elementwise.store(n, x, y, accumulate: false) }
    }

    public func makeBackward(_ b: BackwardBinding) throws -> Kernel {
        guard let dx = b.inputGrads[0]?.f else { return {} }
        let dy = b.outputGrads[0].f, n = b.outputGrads[0].count, acc = b.accumulate[0]
        return { Elementwise.store(n, dy, dx, accumulate: acc) }
    }
}

/// The view of a tensor as `outer x size x inner` around one axis.
struct AxisGeometry {
    let outer: Int, size: Int, inner: Int

    init(_ shape: [Int], axis: Int) {
        outer = Shapes.product(shape, 0..<axis)
        size = shape[axis]
        inner = Shapes.product(shape, (axis + 1)..<shape.count)
    }

    /// `minimumWork` for splitting the inner dimension when every part also runs `outer * size` rows.
    var innerMinimumWork: Int { Swift.max(64, Threads.minimumWork / Swift.max(outer * size, 1)) }
}

/// The shared implementation of Softmax and LogSoftmax: the axis argument, the checks, the workspace and
/// the kernels are the same; the functions differ only in `logarithmic`, which the kernels test
/// outside their inner loops. The `public` members below are the two functions' `Function` witnesses.
protocol AxisNormalized: Function {
    var axis: Int? { get }
    static var logarithmic: Bool { get }
    init(axis: Int?)
}

extension AxisNormalized {
    /// The normalised axis for an input of rank `rank` (nnabla's default is the last axis).
    func resolvedAxis(_ rank: Int) throws -> Int {
        let a = axis ?? rank - 1
        let r = a < 0 ? a + rank : a
        guard r >= 0 && r < rank else {
            throw error("axis \(axis.map(String.init) ?? "(last)") is out of range for an input of rank \(rank)")
        }
        return r
    }

    func geometry(_ shape: [Int]) throws -> AxisGeometry { AxisGeometry(shape, axis: try resolvedAxis(shape.count)) }

    public init(arguments a: inout ArgReader) throws { self.init(axis: try a.intOrNil("axis")) }
    public var arguments: [(String, ArgValue)] { axis.map { [("axis", .int($0))] } ?? [] }

    public func outputTypes(_ inputs: [TensorType]) throws -> [TensorType] {
        try Check.count(inputs, 1, Self.typeName)
        try Check.float(inputs[0], Self.typeName, "x")
        _ = try resolvedAxis(inputs[0].rank)
        return [inputs[0]]
    }

    public func backwardReads(inputCount: Int, outputCount: Int) -> (inputs: [Bool], outputs: [Bool]) {
        ([false], [true])
    }

    /// Forward keeps a running maximum and sum per inner position, backward a sum.
    public func forwardWorkspace(_ b: TypeBinding) -> Int { workspace(b, vectors: 2) }
    public func backwardWorkspace(_ b: TypeBinding) -> Int { workspace(b, vectors: 1) }

    func workspace(_ b: TypeBinding, vectors: Int) -> Int {
        guard let g = try? geometry(b.inputs[0].shape), g.inner > 1 else { return 0 }
        return vectors * g.inner * MemoryLayout<Float>.size
    }

    public func makeForward(_ b: ForwardBinding) throws -> Kernel {
        let g = try geometry(b.inputs[0].shape)
        let x = b.inputs[0].f, y = b.outputs[0].f
        let outer = g.outer, size = g.size, inner = g.inner, isLog = Self.logarithmic
        if b.inputs[0].count == 0 { return {} }
        if inner == 1 {
            return {
                Threads.items(outer, workPerItem: size, SoftmaxRows(x: x, y: y, size: size, isLog: isLog))
            }
        }
        guard let ws = b.workspace?.assumingMemoryBound(to: Float.self) else { throw error("missing workspace") }
        let minWork = g.innerMinimumWork
        return {
            Threads.chunks(inner, minimumWork: minWork,
                           SoftmaxColumns(x: x, y: y, ws: ws, outer: outer, size: size, inner: inner, isLog: isLog))
        }
    }

    /// Softmax: `dx = y * (dy - sum(dy * y))`; LogSoftmax: `dx = dy - exp(y) * sum(dy)`.
    public func makeBackward(_ b: BackwardBinding) throws -> Kernel {
        guard let dx = b.inputGrads[0]?.f else { return {} }
        guard let y = b.outputs[0]?.f else { throw error("backward needs the output value") }
        let g = try geometry(b.inputTypes[0].shape)
        let dy = b.outputGrads[0].f, acc = b.accumulate[0], isLog = Self.logarithmic
        let outer = g.outer, size = g.size, inner = g.inner
        if b.inputTypes[0].count == 0 { return {} }
        if inner == 1 {
            return {
                Threads.items(outer, workPerItem: size,
                              SoftmaxRowsBackward(y: y, dy: dy, dx: dx, size: size, isLog: isLog, acc: acc))
            }
        }
        guard let ws = b.workspace?.assumingMemoryBound(to: Float.self) else { throw error("missing workspace") }
        let minWork = g.innerMinimumWork
        return {
            Threads.chunks(inner, minimumWork: minWork,
                           SoftmaxColumnsBackward(y: y, dy: dy, dx: dx, ws: ws, outer: outer, size: size, inner: inner,
                                                  isLog: isLog, acc: acc))
        }
    }
}

/// `y = exp(x - max) / sum(exp(x - max))` along `axis` (default: the last axis). Backward reads the output only.
public struct Softmax: AxisNormalized {
    public static let typeName = "Softmax"
    static let logarithmic = false
    /// nil means the last axis of the input; negative values count from the end.
    public var axis: Int?

    public init(axis: Int? = nil) { self.axis = axis }
}

/// `y = (x - max) - log(sum(exp(x - max)))` along `axis` (default: the last axis). Backward reads the output only.
public struct LogSoftmax: AxisNormalized {
    public static let typeName = "LogSoftmax"
    static let logarithmic = true
    /// nil means the last axis of the input; negative values count from the end.
    public var axis: Int?

    public init(axis: Int? = nil) { self.axis = axis }
}

public extension F {
    /// nnabla's `F.leaky_relu`.
    static func leakyRelu(_ x: Variable, alpha: Double = 0.1, inplace: Bool = false) throws -> Variable {
        try apply1(LeakyReLU(alpha: alpha, inplace: inplace), [x])
    }

    /// nnabla's `F.elu`.
    static func elu(_ x: Variable, alpha: Double = 1.0) throws -> Variable {
        try apply1(ELU(alpha: alpha), [x])
    }

    /// nnabla's `F.sigmoid`.
    static func sigmoid(_ x: Variable) throws -> Variable { try apply1(Sigmoid(), [x]) }

    /// nnabla's `F.tanh`.
    static func tanh(_ x: Variable) throws -> Variable { try apply1(Tanh(), [x]) }

    /// nnabla's `F.identity`.
    static func identity(_ x: Variable) throws -> Variable { try apply1(Identity(), [x]) }

    /// nnabla's `F.softmax`; `axis` nil is the last axis (recorded resolved in the graph).
    static func softmax(_ x: Variable, axis: Int? = nil) throws -> Variable {
        try apply1(Softmax(axis: axis ?? x.shape.count - 1), [x])
    }

    /// nnabla's `F.log_softmax`; `axis` nil is the last axis (recorded resolved in the graph).
    static func logSoftmax(_ x: Variable, axis: Int? = nil) throws -> Variable {
        try apply1(LogSoftmax(axis: axis ?? x.shape.count - 1), [x])
    }
}

/// Softmax or LogSoftmax forward over rows of `size` contiguous values.
struct SoftmaxRows: ParallelItem {
    let x: UnsafeMutablePointer<Float>, y: UnsafeMutablePointer<Float>, size: Int, isLog: Bool
    @inline(__always) func callAsFunction(_ o: Int) {
        let px = x + o * size, py = y + o * size
        let m = Reduce.max(px, size)
        var s: Float = 0
        if isLog {
            for j in 0..<size { s += exp(px[j] - m) }
            let c = log(s)
            for j in 0..<size { py[j] = (px[j] - m) - c }
        } else {
            for j in 0..<size { let e = exp(px[j] - m); py[j] = e; s += e }
            for j in 0..<size { py[j] /= s }
        }
    }
}

/// Softmax or LogSoftmax forward along a strided axis, over a range of inner positions.
struct SoftmaxColumns: ParallelChunk {
    let x: UnsafeMutablePointer<Float>, y: UnsafeMutablePointer<Float>, ws: UnsafeMutablePointer<Float>, outer: Int
    let size: Int, inner: Int, isLog: Bool
    @inline(__always) func callAsFunction(_ s: Int, _ e: Int) {
        let m = ws, sum = ws + inner
        for o in 0..<outer {
            let xb = x + o * size * inner, yb = y + o * size * inner
            for i in s..<e { m[i] = xb[i] }
            for j in 1..<size {
                let xr = xb + j * inner
                for i in s..<e where xr[i] > m[i] { m[i] = xr[i] }
            }
            for i in s..<e { sum[i] = 0 }
            for j in 0..<size {
                let xr = xb + j * inner, yr = yb + j * inner
                if isLog {
                    for i in s..<e { sum[i] += exp(xr[i] - m[i]) }
                } else {
                    for i in s..<e { let v = exp(xr[i] - m[i]); yr[i] = v; sum[i] += v }
                }
            }
            if isLog {
                for i in s..<e { sum[i] = log(sum[i]) }
                for j in 0..<size {
                    let xr = xb + j * inner, yr = yb + j * inner
                    for i in s..<e { yr[i] = (xr[i] - m[i]) - sum[i] }
                }
            } else {
                for j in 0..<size {
                    let yr = yb + j * inner
                    for i in s..<e { yr[i] /= sum[i] }
                }
            }
        }
    }
}

/// Softmax or LogSoftmax backward over rows of `size` contiguous values.
struct SoftmaxRowsBackward: ParallelItem {
    let y: UnsafeMutablePointer<Float>, dy: UnsafeMutablePointer<Float>, dx: UnsafeMutablePointer<Float>, size: Int
    let isLog: Bool, acc: Bool
    @inline(__always) func callAsFunction(_ o: Int) {
        let py = y + o * size, pd = dy + o * size, px = dx + o * size
        var s: Float = 0
        if isLog {
            for j in 0..<size { s += pd[j] }
            if acc {
                for j in 0..<size { px[j] += pd[j] - exp(py[j]) * s }
            } else {
                for j in 0..<size { px[j] = pd[j] - exp(py[j]) * s }
            }
        } else {
            for j in 0..<size { s += pd[j] * py[j] }
            if acc {
                for j in 0..<size { px[j] += py[j] * (pd[j] - s) }
            } else {
                for j in 0..<size { px[j] = py[j] * (pd[j] - s) }
            }
        }
    }
}

/// Softmax or LogSoftmax backward along a strided axis, over a range of inner positions.
struct SoftmaxColumnsBackward: ParallelChunk {
    let y: UnsafeMutablePointer<Float>, dy: UnsafeMutablePointer<Float>, dx: UnsafeMutablePointer<Float>
    let ws: UnsafeMutablePointer<Float>, outer: Int, size: Int, inner: Int, isLog: Bool, acc: Bool
    @inline(__always) func callAsFunction(_ s: Int, _ e: Int) {
        let sum = ws
        for o in 0..<outer {
            let base = o * size * inner
            let yb = y + base, db = dy + base, xb = dx + base
            for i in s..<e { sum[i] = 0 }
            for j in 0..<size {
                let yr = yb + j * inner, dr = db + j * inner
                if isLog {
                    for i in s..<e { sum[i] += dr[i] }
                } else {
                    for i in s..<e { sum[i] += dr[i] * yr[i] }
                }
            }
            for j in 0..<size {
                let yr = yb + j * inner, dr = db + j * inner, xr = xb + j * inner
                switch (isLog, acc) {
                case (true, true): for i in s..<e { xr[i] += dr[i] - exp(yr[i]) * sum[i] }
                case (true, false): for i in s..<e { xr[i] = dr[i] - exp(yr[i]) * sum[i] }
                case (false, true): for i in s..<e { xr[i] += yr[i] * (dr[i] - sum[i]) }
                case (false, false): for i in s..<e { xr[i] = yr[i] * (dr[i] - sum[i]) }
                }
            }
        }
    }
}
