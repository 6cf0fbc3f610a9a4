import Foundation
import KilnCore
import KilnKernels

/// Add2, Sub2, Mul2, Div2, Pow2, Maximum2, Minimum2 (broadcasting), AddScalar, MulScalar, PowScalar,
/// RSubScalar, RDivScalar.
public enum ArithmeticFunctions {
    public static let all: [any Function.Type] = [
        Add2.self, Sub2.self, Mul2.self, Div2.self, Pow2.self, Maximum2.self, Minimum2.self,
        AddScalar.self, MulScalar.self, PowScalar.self, RSubScalar.self, RDivScalar.self,
    ]
}

// MARK: - Binary operations with broadcasting

/// An element-wise binary operation that broadcasts size-1 dimensions of either input numpy-style. As in
/// nnabla 1.39 both inputs must have the same rank. The gradient of a broadcast input is summed over the
/// dimensions it was broadcast along.
protocol BroadcastBinary: Function {
    var inplace: Bool { get }
    init(inplace: Bool)
    /// Whether backward reads the input values (Mul2 and Div2 do; Add2 and Sub2 do not).
    static var backwardReadsInputs: Bool { get }
    /// Whether nnabla gives the function an `inplace` argument (Maximum2 and Minimum2 have none).
    static var hasInplaceArgument: Bool { get }
    static func op(_ a: Float, _ b: Float) -> Float
    /// d(op)/da times dy.
    static func gradA(_ dy: Float, _ a: Float, _ b: Float) -> Float
    /// d(op)/db times dy.
    static func gradB(_ dy: Float, _ a: Float, _ b: Float) -> Float
}

/// A binary function's forward and gradient formulas as operation types (see `UnaryFloatOp`).
struct BinaryForward<F: BroadcastBinary>: BinaryFloatOp {
    func callAsFunction(_ a: Float, _ b: Float) -> Float { F.op(a, b) }
}
struct BinaryGradA<F: BroadcastBinary>: TernaryFloatOp {
    func callAsFunction(_ dy: Float, _ a: Float, _ b: Float) -> Float { F.gradA(dy, a, b) }
}
struct BinaryGradB<F: BroadcastBinary>: TernaryFloatOp {
    func callAsFunction(_ dy: Float, _ a: Float, _ b: Float) -> Float { F.gradB(dy, a, b) }
}
/// A scalar function's forward and gradient formulas with its `val` (see `UnaryFloatOp`).
struct ScalarForward<F: ScalarArithmetic>: UnaryFloatOp {
    let v: Float
    func callAsFunction(_ x: Float) -> Float { F.op(x, v) }
}
struct ScalarGrad<F: ScalarArithmetic>: BinaryFloatOp {
    let v: Float
    func callAsFunction(_ dy: Float, _ x: Float) -> Float { F.grad(dy, x, v) }
}

extension BroadcastBinary {
    public var forwardInPlaceInput: Int? { 0 }
    public var isCheapToRecompute: Bool { true }

    static var hasInplaceArgument: Bool { true }

    public init(arguments a: inout ArgReader) throws {
        self.init(inplace: Self.hasInplaceArgument ? try a.bool("inplace", default: false) : false)
    }
    public var arguments: [(String, ArgValue)] { Self.hasInplaceArgument ? [("inplace", .bool(inplace))] : [] }

    public func outputTypes(_ inputs: [TensorType]) throws -> [TensorType] {
        try Check.count(inputs, 2, Self.typeName)
        try Check.float(inputs[0], Self.typeName, "x0")
        try Check.float(inputs[1], Self.typeName, "x1")
        let a = inputs[0].shape, b = inputs[1].shape
        guard a.count == b.count else {
            throw error("inputs must have the same number of dimensions (nnabla broadcasts size-1 dimensions only), got \(a) and \(b)")
        }
        guard let out = Broadcast.shape(a, b) else {
            throw error("shapes \(a) and \(b) cannot be broadcast: each dimension pair must be equal or contain a 1")
        }
        return [TensorType(out, .float32)]
    }

    public func backwardReads(inputCount: Int, outputCount: Int) -> (inputs: [Bool], outputs: [Bool]) {
        ([Self.backwardReadsInputs, Self.backwardReadsInputs], [false])
    }

    func loop(_ a: [Int], _ b: [Int], _ out: [Int]) -> StridedLoop {
        StridedLoop(shape: out, strides: [Shapes.strides(out), Broadcast.strides(a, in: out), Broadcast.strides(b, in: out)])
    }

    public func makeForward(_ bind: ForwardBinding) throws -> Kernel {
        let a = bind.inputs[0].f, b = bind.inputs[1].f, y = bind.outputs[0].f
        let sa = bind.inputs[0].shape, sb = bind.inputs[1].shape, so = bind.outputs[0].shape
        if sa == sb {
            let n = bind.outputs[0].count
            return { Elementwise.zip(n, a, b, y, accumulate: false, BinaryForward<Self>()) }
        }
        let l = loop(sa, sb, so)
        return { Broadcast.binary(l, a, b, y, BinaryForward<Self>()) }
    }

    public func makeBackward(_ bind: BackwardBinding) throws -> Kernel {
        let ga = bind.inputGrads[0]?.f, gb = bind.inputGrads[1]?.f
        if ga == nil && gb == nil { return {} }
        let dy = bind.outputGrads[0].f
        // Add2 and Sub2 do not read the inputs: their gradient closures ignore the values passed.
        let a: UnsafeMutablePointer<Float>, b: UnsafeMutablePointer<Float>
        if Self.backwardReadsInputs {
            guard let pa = bind.inputs[0]?.f, let pb = bind.inputs[1]?.f else { throw error("backward needs the input values") }
            a = pa; b = pb
        } else {
            a = dy; b = dy
        }
        let sa = bind.inputTypes[0].shape, sb = bind.inputTypes[1].shape, so = bind.outputTypes[0].shape
        let accA = bind.accumulate[0], accB = bind.accumulate[1]
        let n = bind.outputTypes[0].count
        if sa == sb {
            return {
                // Input 0 first: with mul2(x, x) both gradients are the same buffer (accumulate false, true).
                if let ga {
                    if !Self.backwardReadsInputs { // Add2 and Sub2: dx0 = dy
                        Elementwise.store(n, dy, ga, accumulate: accA)
                    } else {
                        Elementwise.zip3(n, dy, a, b, ga, accumulate: accA, BinaryGradA<Self>())
                    }
                }
                if let gb {
                    Elementwise.zip3(n, dy, a, b, gb, accumulate: accB, BinaryGradB<Self>())
                }
            }
        }
        let l = loop(sa, sb, so)
        let countA = bind.inputTypes[0].count, countB = bind.inputTypes[1].count
        let fullA = sa == so, fullB = sb == so
        return {
            if let ga {
                if fullA {
                    Broadcast.gradient(l, dy, a, b, into: ga, accumulate: accA, BinaryGradA<Self>())
                } else {
                    Broadcast.reduce(l, dy: dy, a, b, into: ga, gCount: countA, which: 1, accumulate: accA) {
                        Self.gradA($0, $1, $2)
                    }
                }
            }
            if let gb {
                if fullB {
                    Broadcast.gradient(l, dy, a, b, into: gb, accumulate: accB, BinaryGradB<Self>())
                } else {
                    Broadcast.reduce(l, dy: dy, a, b, into: gb, gCount: countB, which: 2, accumulate: accB) {
                        Self.gradB($0, $1, $2)
                    }
                }
            }
        }
    }
}

/// `y = x0 + x1` with broadcasting.
public struct Add2: BroadcastBinary {
    public static let typeName = "Add2"
    public var inplace: Bool
    public init(inplace: Bool = false) { self.inplace = inplace }
    static let backwardReadsInputs = false
    @inline(__always) static func op(_ a: Float, _ b: Float) -> Float { a + b }
    @inline(__always) static func gradA(_ dy: Float, _ a: Float, _ b: Float) -> Float { dy }
    @inline(__always) static func gradB(_ dy: Float, _ a: Float, _ b: Float) -> Float { dy }
}

/// `y = x0 - x1` with broadcasting.
public struct Sub2: BroadcastBinary {
    public static let typeName = "Sub2"
    public var inplace: Bool
    public init(inplace: Bool = false) { self.inplace = inplace }
    static let backwardReadsInputs = false
    @inline(__always) static func op(_ a: Float, _ b: Float) -> Float { a - b }
    @inline(__always) static func gradA(_ dy: Float, _ a: Float, _ b: Float) -> Float { dy }
    @inline(__always) static func gradB(_ dy: Float, _ a: Float, _ b: Float) -> Float { -dy }
}

/// `y = x0 * x1` with broadcasting.
public struct Mul2: BroadcastBinary {
    public static let typeName = "Mul2"
    public var inplace: Bool
    public init(inplace: Bool = false) { self.inplace = inplace }
    static let backwardReadsInputs = true
    @inline(__always) static func op(_ a: Float, _ b: Float) -> Float { a * b }
    @inline(__always) static func gradA(_ dy: Float, _ a: Float, _ b: Float) -> Float { dy * b }
    @inline(__always) static func gradB(_ dy: Float, _ a: Float, _ b: Float) -> Float { dy * a }
}

/// `y = x0 / x1` with broadcasting; `dx1 = -dy * x0 / x1^2` as nnabla computes it.
public struct Div2: BroadcastBinary {
    public static let typeName = "Div2"
    public var inplace: Bool
    public init(inplace: Bool = false) { self.inplace = inplace }
    static let backwardReadsInputs = true
    @inline(__always) static func op(_ a: Float, _ b: Float) -> Float { a / b }
    @inline(__always) static func gradA(_ dy: Float, _ a: Float, _ b: Float) -> Float { dy / b }
    @inline(__always) static func gradB(_ dy: Float, _ a: Float, _ b: Float) -> Float { dy * (-a / (b * b)) }
}

/// `y = x0 ^ x1` with broadcasting; `dx1 = dy * log(x0) * x0^x1`, as nnabla computes it.
public struct Pow2: BroadcastBinary {
    public static let typeName = "Pow2"
    public var inplace: Bool
    public init(inplace: Bool = false) { self.inplace = inplace }
    static let backwardReadsInputs = true
    @inline(__always) static func op(_ a: Float, _ b: Float) -> Float { Foundation.pow(a, b) }
    @inline(__always) static func gradA(_ dy: Float, _ a: Float, _ b: Float) -> Float { dy * b * Foundation.pow(a, b - 1) }
    @inline(__always) static func gradB(_ dy: Float, _ a: Float, _ b: Float) -> Float { dy * Foundation.log(a) * Foundation.pow(a, b) }
}

/// `y = max(x0, x1)` with broadcasting; on a tie the gradient goes to x1, as in nnabla.
public struct Maximum2: BroadcastBinary {
    public static let typeName = "Maximum2"
    public var inplace: Bool
    public init(inplace: Bool = false) { self.inplace = inplace }
    static let backwardReadsInputs = true
    static var hasInplaceArgument: Bool { false }
    @inline(__always) static func op(_ a: Float, _ b: Float) -> Float { a > b ? a : b }
    @inline(__always) static func gradA(_ dy: Float, _ a: Float, _ b: Float) -> Float { a > b ? dy : 0 }
    @inline(__always) static func gradB(_ dy: Float, _ a: Float, _ b: Float) -> Float { a <= b ? dy : 0 }
}

/// `y = min(x0, x1)` with broadcasting; on a tie the gradient goes to x1, as in nnabla.
public struct Minimum2: BroadcastBinary {
    public static let typeName = "Minimum2"
    public var inplace: Bool
    public init(inplace: Bool = false) { self.inplace = inplace }
    static let backwardReadsInputs = true
    static var hasInplaceArgument: Bool { false }
    @inline(__always) static func op(_ a: Float, _ b: Float) -> Float { a < b ? a : b }
    @inline(__always) static func gradA(_ dy: Float, _ a: Float, _ b: Float) -> Float { a < b ? dy : 0 }
    @inline(__always) static func gradB(_ dy: Float, _ a: Float, _ b: Float) -> Float { a >= b ? dy : 0 }
}

// MARK: - Scalar operations

/// An element-wise operation of one input and a scalar argument `val`.
protocol ScalarArithmetic: Function {
    var val: Double { get }
    /// Whether backward reads the input value.
    static var backwardReadsInput: Bool { get }
    static func op(_ x: Float, _ v: Float) -> Float
    static func grad(_ dy: Float, _ x: Float, _ v: Float) -> Float
}

extension ScalarArithmetic {
    public var forwardInPlaceInput: Int? { 0 }
    public var backwardInPlace: Bool { true }
    public var isCheapToRecompute: Bool { true }

    public func outputTypes(_ inputs: [TensorType]) throws -> [TensorType] {
        try Check.count(inputs, 1, Self.typeName)
        try Check.float(inputs[0], Self.typeName, "x")
        return [inputs[0]]
    }

    public func backwardReads(inputCount: Int, outputCount: Int) -> (inputs: [Bool], outputs: [Bool]) {
        ([Self.backwardReadsInput], [false])
    }

    public func makeForward(_ b: ForwardBinding) throws -> Kernel {
        let x = b.inputs[0].f, y = b.outputs[0].f, n = b.inputs[0].count, v = Float(val)
        return { Elementwise.map(n, x, y, ScalarForward<Self>(v: v)) }
    }

    public func makeBackward(_ b: BackwardBinding) throws -> Kernel {
        guard let dx = b.inputGrads[0]?.f else { return {} }
        let dy = b.outputGrads[0].f, n = b.outputGrads[0].count, acc = b.accumulate[0], v = Float(val)
        if Self.backwardReadsInput {
            guard let x = b.inputs[0]?.f else { throw error("backward needs the input value") }
            return { Elementwise.zip(n, dy, x, dx, accumulate: acc, ScalarGrad<Self>(v: v)) }
        }
        return { Threads.chunks(n, ScalarGradientOfOutput<Self>(dy: dy, dx: dx, v: v, acc: acc)) }
    }
}

/// `y = x + val`.
public struct AddScalar: ScalarArithmetic {
    public static let typeName = "AddScalar"
    public var val: Double
    public var inplace: Bool
    public init(val: Double = 1.0, inplace: Bool = false) { self.val = val; self.inplace = inplace }
    public init(arguments a: inout ArgReader) throws {
        val = try a.double("val", default: 1.0)
        inplace = try a.bool("inplace", default: false)
    }
    public var arguments: [(String, ArgValue)] { [("val", .double(val)), ("inplace", .bool(inplace))] }
    static let backwardReadsInput = false
    @inline(__always) static func op(_ x: Float, _ v: Float) -> Float { x + v }
    @inline(__always) static func grad(_ dy: Float, _ x: Float, _ v: Float) -> Float { dy }
}

/// `y = x * val`.
public struct MulScalar: ScalarArithmetic {
    public static let typeName = "MulScalar"
    public var val: Double
    public var inplace: Bool
    public init(val: Double = 1.0, inplace: Bool = false) { self.val = val; self.inplace = inplace }
    public init(arguments a: inout ArgReader) throws {
        val = try a.double("val", default: 1.0)
        inplace = try a.bool("inplace", default: false)
    }
    public var arguments: [(String, ArgValue)] { [("val", .double(val)), ("inplace", .bool(inplace))] }
    static let backwardReadsInput = false
    @inline(__always) static func op(_ x: Float, _ v: Float) -> Float { x * v }
    @inline(__always) static func grad(_ dy: Float, _ x: Float, _ v: Float) -> Float { dy * v }
}

/// `y = x ^ val`; `dx = dy * val * x ^ (val - 1)` (float32 `pow`, as nnabla).
public struct PowScalar: ScalarArithmetic {
    public static let typeName = "PowScalar"
    public var val: Double
    public var inplace: Bool
    public init(val: Double = 1.0, inplace: Bool = false) { self.val = val; self.inplace = inplace }
    public init(arguments a: inout ArgReader) throws {
        val = try a.double("val", default: 1.0)
        inplace = try a.bool("inplace", default: false)
    }
    public var arguments: [(String, ArgValue)] { [("val", .double(val)), ("inplace", .bool(inplace))] }
    static let backwardReadsInput = true
    @inline(__always) static func op(_ x: Float, _ v: Float) -> Float { pow(x, v) }
    @inline(__always) static func grad(_ dy: Float, _ x: Float, _ v: Float) -> Float { dy * v * pow(x, v - 1) }
}

/// `y = val - x`.
public struct RSubScalar: ScalarArithmetic {
    public static let typeName = "RSubScalar"
    public var val: Double
    public init(val: Double = 1.0) { self.val = val }
    public init(arguments a: inout ArgReader) throws { val = try a.double("val", default: 1.0) }
    public var arguments: [(String, ArgValue)] { [("val", .double(val))] }
    static let backwardReadsInput = false
    @inline(__always) static func op(_ x: Float, _ v: Float) -> Float { v - x }
    @inline(__always) static func grad(_ dy: Float, _ x: Float, _ v: Float) -> Float { -dy }
}

/// `y = val / x`; `dx = -dy * val / x^2`.
public struct RDivScalar: ScalarArithmetic {
    public static let typeName = "RDivScalar"
    public var val: Double
    public init(val: Double = 1.0) { self.val = val }
    public init(arguments a: inout ArgReader) throws { val = try a.double("val", default: 1.0) }
    public var arguments: [(String, ArgValue)] { [("val", .double(val))] }
    static let backwardReadsInput = true
    @inline(__always) static func op(_ x: Float, _ v: Float) -> Float { v / x }
    @inline(__always) static func grad(_ dy: Float, _ x: Float, _ v: Float) -> Float { dy * (-v / (x * x)) }
}

// MARK: - Swift API

public extension F {
    /// nnabla's `F.pow2`: `x0 ^ x1` with broadcasting.
    static func pow2(_ x0: Variable, _ x1: Variable, inplace: Bool = false) throws -> Variable {
        try apply1(Pow2(inplace: inplace), [x0, x1])
    }

    /// nnabla's `F.maximum2`.
    static func maximum2(_ x0: Variable, _ x1: Variable) throws -> Variable { try apply1(Maximum2(), [x0, x1]) }

    /// nnabla's `F.minimum2`.
    static func minimum2(_ x0: Variable, _ x1: Variable) throws -> Variable { try apply1(Minimum2(), [x0, x1]) }

    /// nnabla's `F.add2`: same rank, size-1 dimensions broadcast.
    static func add2(_ x0: Variable, _ x1: Variable, inplace: Bool = false) throws -> Variable {
        try apply1(Add2(inplace: inplace), [x0, x1])
    }

    /// nnabla's `F.sub2`.
    static func sub2(_ x0: Variable, _ x1: Variable, inplace: Bool = false) throws -> Variable {
        try apply1(Sub2(inplace: inplace), [x0, x1])
    }

    /// nnabla's `F.mul2`.
    static func mul2(_ x0: Variable, _ x1: Variable, inplace: Bool = false) throws -> Variable {
        try apply1(Mul2(inplace: inplace), [x0, x1])
    }

    /// nnabla's `F.div2`.
    static func div2(_ x0: Variable, _ x1: Variable, inplace: Bool = false) throws -> Variable {
        try apply1(Div2(inplace: inplace), [x0, x1])
    }

    /// nnabla's `F.add_scalar`.
    static func addScalar(_ x: Variable, val: Double = 1.0, inplace: Bool = false) throws -> Variable {
        try apply1(AddScalar(val: val, inplace: inplace), [x])
    }

    /// nnabla's `F.mul_scalar`.
    static func mulScalar(_ x: Variable, val: Double = 1.0, inplace: Bool = false) throws -> Variable {
        try apply1(MulScalar(val: val, inplace: inplace), [x])
    }

    /// nnabla's `F.pow_scalar`.
    static func powScalar(_ x: Variable, val: Double = 1.0, inplace: Bool = false) throws -> Variable {
        try apply1(PowScalar(val: val, inplace: inplace), [x])
    }

    /// nnabla's `F.r_sub_scalar`: `val - x`.
    static func rSubScalar(_ x: Variable, val: Double = 1.0) throws -> Variable {
        try apply1(RSubScalar(val: val), [x])
    }

    /// nnabla's `F.r_div_scalar`: `val / x`.
    static func rDivScalar(_ x: Variable, val: Double = 1.0) throws -> Variable {
        try apply1(RDivScalar(val: val), [x])
    }
}

/// Arithmetic operators as in nnabla's Python `Variable`: between variables they are Add2/Sub2/Mul2/Div2,
/// with a number they are the scalar functions (`x / c` is `x * (1/c)`, `c - x` RSubScalar, `c / x`
/// RDivScalar). They throw like the functions: `let z = try x * y + 1`.
public extension Variable {
    static func + (a: Variable, b: Variable) throws -> Variable { try F.add2(a, b) }
    static func - (a: Variable, b: Variable) throws -> Variable { try F.sub2(a, b) }
    static func * (a: Variable, b: Variable) throws -> Variable { try F.mul2(a, b) }
    static func / (a: Variable, b: Variable) throws -> Variable { try F.div2(a, b) }

    static func + (a: Variable, c: Double) throws -> Variable { try F.addScalar(a, val: c) }
    static func + (c: Double, a: Variable) throws -> Variable { try F.addScalar(a, val: c) }
    static func - (a: Variable, c: Double) throws -> Variable { try F.addScalar(a, val: -c) }
    static func - (c: Double, a: Variable) throws -> Variable { try F.rSubScalar(a, val: c) }
    static func * (a: Variable, c: Double) throws -> Variable { try F.mulScalar(a, val: c) }
    static func * (c: Double, a: Variable) throws -> Variable { try F.mulScalar(a, val: c) }
    static func / (a: Variable, c: Double) throws -> Variable { try F.mulScalar(a, val: 1 / c) }
    static func / (c: Double, a: Variable) throws -> Variable { try F.rDivScalar(a, val: c) }
    static prefix func - (a: Variable) throws -> Variable { try F.mulScalar(a, val: -1) }
}

/// The backward of a scalar function whose gradient does not read its input: `dx (+)= F.grad(dy, 0, v)`.
struct ScalarGradientOfOutput<F: ScalarArithmetic>: ParallelChunk {
    let dy: UnsafeMutablePointer<Float>, dx: UnsafeMutablePointer<Float>, v: Float, acc: Bool
    @inline(__always) func callAsFunction(_ s: Int, _ e: Int) {
        if acc {
            for i in s..<e { dx[i] += F.grad(dy[i], 0, v) }
        } else {
            for i in s..<e { dx[i] = F.grad(dy[i], 0, v) }
        }
    }
}
